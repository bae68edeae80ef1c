"""The embedded broker's messages appear whole: written aside, then renamed into the folder workers read."""

from __future__ import annotations

import json
from pathlib import Path

from kombu import Connection


def test_a_message_is_never_seen_half_written(tmp_path: Path) -> None:
    import academy.jobs  # noqa: F401 - registers the academyfs transport

    folder = tmp_path / "messages"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False}
    with Connection("academyfs://", transport_options=options) as conn:
        channel = conn.default_channel
        (folder / ".1_x.academy.msg.part").write_bytes(b"")  # a message still being written elsewhere
        channel._put("academy", {"body": "완성된 메시지"})
        names = sorted(p.name for p in folder.iterdir())
        assert len(names) == 2 and names[1].endswith(".academy.msg") and not names[1].startswith(".")
        assert json.loads((folder / names[1]).read_text("utf-8")) == {"body": "완성된 메시지"}
        assert channel._get("academy") == {"body": "완성된 메시지"}  # the partial file is skipped, not read
        assert [p.name for p in folder.iterdir()] == [".1_x.academy.msg.part"]
