"""Files uploaded with a form (submissions, new assignment versions)."""

from __future__ import annotations

from flask import request


def uploaded_files(field: str = "notebooks") -> dict[str, bytes]:
    """The request's uploaded files of ``field`` by name, as browsers name them; two of one name (picked from
    two folders) are both kept, the second as ``name (2).ext``: their content decides what they are."""
    files: dict[str, bytes] = {}
    for storage in request.files.getlist(field):
        if not storage or not storage.filename:
            continue
        name = storage.filename.replace("\\", "/").rsplit("/", 1)[-1]
        stem, dot, suffix = name.rpartition(".")
        copy = 2
        while name in files:  # two files of one name (picked from two folders): keep both, content decides
            name = f"{stem} ({copy}).{suffix}" if dot else f"{suffix} ({copy})"
            copy += 1
        files[name] = storage.read()
    return files
