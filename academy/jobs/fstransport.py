"""Celery's filesystem transport (the embedded broker), with messages that appear whole.

kombu's filesystem channel creates a message file and then writes into it; a worker polling the
folder can move and read that file in between, find it empty, and stop with a JSONDecodeError
("Unrecoverable error").  Here a message is written under a name the workers skip and renamed
into place once complete: a rename within one folder is atomic.  Everything else is kombu's.
Registered as the ``academyfs://`` transport by :mod:`academy.jobs`.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    """A filesystem channel whose put is write-then-rename."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")  # not "<queue>.msg": workers skip it
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    """kombu's filesystem transport with :class:`Channel`."""

    Channel = Channel
