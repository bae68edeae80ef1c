"""A content-addressed, write-once file store for submissions and feedback.

Files are named by their SHA-256 and written with the usual crash-safe dance: a
temporary file in the same directory, fsync, atomic rename, fsync of the directory.
A stored file is made read-only and never rewritten, so "nothing a learner submitted
is ever lost or overwritten" holds at the file level too: the same bytes submitted
twice are one file, different bytes are different files.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from academy.errors import NotFound

_HEX = set("0123456789abcdef")


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 hex digits."""
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Write-once blobs under ``root/<aa>/<sha256>``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, digest: str) -> Path:
        """Where the blob with this digest lives. Raises NotFound for a malformed digest."""
        if len(digest) != 64 or not set(digest) <= _HEX:
            raise NotFound("no such file")
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Store ``data`` durably (once) and return its SHA-256."""
        digest = sha256_hex(data)
        target = self.path_for(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp_name, 0o444)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes of a stored blob, checked against their digest.

        Raises NotFound when it is missing, and RuntimeError when it is corrupted.
        """
        path = self.path_for(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound("no such file") from None
        if sha256_hex(data) != digest:
            raise RuntimeError(f"stored file {digest} is corrupted")
        return data

    def exists(self, digest: str) -> bool:
        """Whether a blob with this digest is stored."""
        return self.path_for(digest).exists()


def submission_store(data_dir: Path) -> BlobStore:
    """The store of submitted notebooks under the data directory."""
    return BlobStore(Path(data_dir) / "submissions")


def feedback_store(data_dir: Path) -> BlobStore:
    """The store of generated feedback pages under the data directory."""
    return BlobStore(Path(data_dir) / "feedback")


def graded_store(data_dir: Path) -> BlobStore:
    """The store of notebooks as the grader ran them (the feedback page reads them)."""
    return BlobStore(Path(data_dir) / "graded")
