"""kombu's filesystem transport (make run's broker without Redis), with each message whole before a worker sees it.

kombu writes a message in place: it creates the file in the queue folder, then serializes and writes into it. A
worker polling in between (every 0.05 s under make run) moves the still-empty file away, cannot decode it and
stops on JSONDecodeError; the message is lost and make run stops web and beat with the worker. Here the message is
written under a name no queue reads (`.part`) and renamed into place: a rename within one folder is atomic.

Taking a message: kombu moves it into the system's temporary directory (when processed messages are not kept) and
reads it there. That put every task's arguments, for an instant, in a folder other local users can list, and when
/tmp is another filesystem (a tmpfs) the "move" is a copy then a delete, not one step. Here a consumer
claims a message by renaming it into the broker's own processed folder (same filesystem, atomic: exactly one
rename succeeds), reads it, and deletes it unless processed messages are kept.
"""

import os
import uuid
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        # The name kombu gives it (time first, so a queue is read in order); `_get` reads only `<name>.<queue>.msg`.
        path = os.path.join(self.data_folder_out, f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg")
        try:
            with open(f"{path}.part", "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(f"{path}.part", path)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {path!r} to directory") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue  # another queue's message, or one still being written (`.part`)
            claimed = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:
                continue  # another consumer claimed it first
            try:
                with open(claimed, "rb") as f:
                    payload = f.read()
                if not self.store_processed:
                    os.remove(claimed)
            except OSError as exc:
                raise ChannelError(f"Cannot read file {claimed!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel
