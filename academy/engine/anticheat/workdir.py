"""The instructor's files next to the notebook, compared from outside the sandbox with the course source."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


def _hash_file(path: Path, limit: int) -> str | None:
    """sha256 of a regular file opened without following links or blocking, None if it is not one."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > limit:
            return f"size:{info.st_size}"
        digest = hashlib.sha256()
        with os.fdopen(fd, "rb", closefd=False) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    finally:
        os.close(fd)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


@dataclass
class WorkdirWatch:
    """The instructor's files next to the notebook, checked against the course source from outside the kernel."""

    workdir: Path
    source: Path
    max_bytes: int = 64 * 1024 * 1024
    expected: dict[str, str] = field(default_factory=dict)
    _stat: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, workdir: Path, source: Path, ignore: Iterable[str] = ()) -> WorkdirWatch:
        import fnmatch

        watch = cls(Path(workdir), Path(source))
        if not watch.source.is_dir():
            return watch
        patterns = [*ignore, "*.ipynb"]
        for dirpath, dirnames, filenames in os.walk(watch.source):
            dirnames[:] = [d for d in dirnames if not any(fnmatch.fnmatch(d, p) for p in patterns)]
            for filename in filenames:
                if any(fnmatch.fnmatch(filename, p) for p in patterns):
                    continue
                path = Path(dirpath) / filename
                digest = _hash_file(path, watch.max_bytes)
                if digest is not None:
                    watch.expected[str(path.relative_to(watch.source))] = digest
        return watch

    @property
    def python_files(self) -> list[str]:
        return sorted(rel for rel in self.expected if rel.endswith(".py"))

    def drop_bytecode(self) -> None:
        """Remove cached bytecode of the instructor's modules, so a forged ``.pyc`` cannot stand in for them.

        Python trusts ``__pycache__/<module>.*.pyc`` when its recorded size and mtime match
        the source, both of which the notebook can read.  Links are not followed.
        """
        stems = {}
        for rel in self.python_files:
            folder, _, name = rel.rpartition("/")
            stems.setdefault(folder, set()).add(name[:-3])
        for folder, names in stems.items():
            try:
                fd = os.open(self.workdir / folder / "__pycache__",
                             os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
            except OSError:
                continue
            try:
                if not _inside(self.workdir / folder, self.workdir):
                    continue
                for entry in os.listdir(fd):
                    if entry.partition(".")[0] in names and entry.endswith(".pyc"):
                        with contextlib.suppress(OSError):
                            os.unlink(entry, dir_fd=fd)
            finally:
                os.close(fd)

    def changed(self) -> list[str]:
        """Relative paths of instructor files that differ from the source now (each reported once)."""
        self.drop_bytecode()
        changed = []
        for rel, digest in self.expected.items():
            if rel in self.reported:
                continue
            path = self.workdir / rel
            try:
                info = os.lstat(path)
                key = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
            except OSError:
                key = None
            if key is not None and self._stat.get(rel) == key:
                continue
            current = _hash_file(path, self.max_bytes) if key is not None and _inside(path.parent, self.workdir) \
                else None
            if current == digest and key is not None:
                self._stat[rel] = key
                continue
            self.reported.add(rel)
            changed.append(rel)
        return changed
