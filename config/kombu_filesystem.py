"""kombu's filesystem transport (make run's broker without Redis), with each message whole before a worker sees it.

kombu writes a message in place: it creates the file in the queue folder, then serializes and writes into it. A
worker polling in between (every 0.05 s under make run) moves the still-empty file away, cannot decode it and
stops on JSONDecodeError; the message is lost and make run stops web and beat with the worker. Here the message is
written under a name no queue reads (`.part`) and renamed into place: a rename within one folder is atomic.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


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


class Transport(filesystem.Transport):
    Channel = Channel
