"""make run's broker without Redis (kombu's filesystem transport): a worker polling while a message is written."""

from queue import Empty

import pytest
from kombu import Connection
from kombu.exceptions import ChannelError

import config.celery  # noqa: F401 - the app's transport for filesystem://


@pytest.fixture
def channels(tmp_path):
    folders = {name: tmp_path / name for name in ("out", "processed")}
    for folder in folders.values():
        folder.mkdir()
    options = {
        "data_folder_in": str(folders["out"]),
        "data_folder_out": str(folders["out"]),
        "processed_folder": str(folders["processed"]),
        "store_processed": False,
    }
    with Connection("filesystem://localhost/", transport_options=options) as beat:
        with Connection("filesystem://localhost/", transport_options=options) as worker:
            yield beat.default_channel, worker.default_channel


def test_a_worker_polling_while_a_message_is_written_finds_nothing_yet_then_the_whole_message(channels):
    beat, worker = channels
    polled = []

    class PollsMidWrite:
        """Serialized while the message is being written: the moment the worker's poll must not take it."""

        def __json__(self):
            try:
                polled.append(worker._get("default"))
            except Empty:
                polled.append("nothing yet")
            return "task"

    # kombu's own transport hands the worker the half-written (empty) file here: JSONDecodeError, message lost.
    beat._put("default", {"body": PollsMidWrite()})
    assert polled == ["nothing yet"]
    assert worker._get("default") == {"body": "task"}


def test_a_folder_that_cannot_be_written_is_a_channel_error(channels, tmp_path):
    beat, _ = channels
    beat.data_folder_out = str(tmp_path / "missing")
    with pytest.raises(ChannelError):
        beat._put("default", {"body": "task"})


def test_a_message_is_taken_through_the_brokers_own_folder_never_the_system_temp_directory(
    channels, tmp_path, monkeypatch
):
    import tempfile

    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(system_tmp))
    seen = []
    real_open = open

    def watching_open(path, *args, **kwargs):
        seen.append(str(path))
        return real_open(path, *args, **kwargs)

    beat, worker = channels
    beat._put("default", {"body": "task"})
    monkeypatch.setattr("builtins.open", watching_open)
    assert worker._get("default") == {"body": "task"}
    assert seen and all(path.startswith(str(tmp_path / "processed")) for path in seen)
    # Read, then gone: nothing left in the processed folder (store_processed is off), nothing in the system's.
    assert list((tmp_path / "processed").iterdir()) == [] and list(system_tmp.iterdir()) == []
    with pytest.raises(Empty):
        worker._get("default")


def test_a_message_another_consumer_claimed_first_is_skipped(channels, tmp_path, monkeypatch):
    import os

    beat, worker = channels
    beat._put("default", {"body": "task"})
    real_rename = os.rename

    def rival_claims_it_first(src, dst):
        real_rename(src, str(tmp_path / "rival.msg"))  # between our listing and our claim
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rival_claims_it_first)
    with pytest.raises(Empty):
        worker._get("default")
    assert (tmp_path / "rival.msg").exists() and list((tmp_path / "processed").iterdir()) == []
