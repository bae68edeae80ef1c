"""An nbgrader course directory as the grader reads it, and the ``generate_assignment`` cache.

``load_course`` reads ``nbgrader_config.py`` alone (not merged with ``~/.jupyter`` files,
so a grade does not depend on the machine) and finds the assignment's notebooks;
``read_inputs`` checks the submitted notebooks' names and sizes; ``job_config`` points a
copy of the course's configuration at one job's directory.

Cache
    ``generate_assignment`` runs once per (assignment, content of the source tree,
    ``nbgrader_config.py``, header/footer, the other files at the course root, nbgrader version): its gradebook,
    source snapshot and release go to ``<cache>/<assignment>-<hash>/`` (built aside and
    renamed into place, so concurrent workers never see half an entry) and are copied into
    each job.  The cache holds answer keys: it is created mode 0700.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbgrader.api as nbgrader_api
from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from academy.engine.joblog import LOGGER_NAME, JobLog, one_line, root_cause
from academy.engine.results import GraderSetupError
from academy.engine.validation import MAX_NOTEBOOK_BYTES, UngradableInput, check_name

CACHE_DIR_ENV = "ACADEMY_GRADING_CACHE_DIR"
"""Environment variable naming the generate_assignment cache directory."""

_CACHE_FORMAT = "1"


@functools.cache
def gradebook_schema_head() -> str:
    """The head revision of nbgrader's gradebook schema, read from its migration scripts in this process.

    nbgrader asks the ``alembic`` command for it every time it creates a gradebook: a process of its own that
    imports SQLAlchemy and Alembic, 3.3 s on an idle 2-core machine (the suite started about 80 CPU-seconds of
    them), once per assignment released and per grading process.  The answer is fixed for the installed nbgrader;
    Alembic's own API reads it here in 0.1 s (tests/engine/test_nbgrader_schema.py checks both agree).
    """
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    head = ScriptDirectory(ALEMBIC_DIR).get_current_head()
    if not head:
        raise GraderSetupError(f"nbgrader's gradebook migrations in {ALEMBIC_DIR} have no single head")
    return head


nbgrader_api.get_alembic_version = gradebook_schema_head

_DEFAULT_IGNORE = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]


@dataclass(frozen=True)
class NbgraderCourse:
    """An nbgrader course directory and one of its assignments, as ``load_course`` found them."""

    root: Path
    config: Any  # traitlets Config from nbgrader_config.py, header/footer made absolute
    config_bytes: bytes
    source: Path  # <root>/<source_directory>/<assignment>
    notebook_names: tuple[str, ...]
    ignore: tuple[str, ...]


def load_course(root: Path, assignment: str) -> NbgraderCourse:
    """Read ``root/nbgrader_config.py`` and find ``assignment``; ``UngradableInput`` when either is unusable."""
    check_name(assignment, "assignment")
    if not root.is_dir():
        raise UngradableInput(f"course directory {root} does not exist")
    root = root.resolve()
    config_file = root / "nbgrader_config.py"
    config, config_bytes = Config(), b""
    if config_file.is_file():
        config_bytes = config_file.read_bytes()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                config = PyFileConfigLoader(config_file.name, path=str(root),
                                            log=logging.getLogger(LOGGER_NAME)).load_config()
        except Exception as exc:  # noqa: BLE001 - a broken course file is reported, not raised raw
            raise UngradableInput(f"{config_file}: cannot be loaded ({type(exc).__name__}: {exc})") from None
    source_name = config.CourseDirectory.get("source_directory", "source") if "CourseDirectory" in config else "source"
    source = root / source_name / assignment
    if not source.is_dir():
        parent = root / source_name
        available = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        hint = f" (assignments: {', '.join(available[:10])})" if available else ""
        raise UngradableInput(f"assignment {assignment!r} not found under {root / source_name}{hint}")
    names = tuple(sorted(p.stem for p in source.glob("*.ipynb")))
    if not names:
        raise UngradableInput(f"assignment {assignment!r} has no notebooks in {source}")
    check_python_kernel(source, names)
    for option in ("header", "footer"):
        if "IncludeHeaderFooter" in config and config.IncludeHeaderFooter.get(option):
            path = Path(config.IncludeHeaderFooter[option])
            config.IncludeHeaderFooter[option] = str(path if path.is_absolute() else root / path)
    ignore = _DEFAULT_IGNORE
    if "CourseDirectory" in config and "ignore" in config.CourseDirectory:
        ignore = list(config.CourseDirectory.ignore)
    return NbgraderCourse(root, config, config_bytes, source, names, tuple(ignore))


def check_python_kernel(source: Path, names: Sequence[str]) -> None:
    """``UngradableInput`` when a source notebook declares a kernel for another language than Python.

    nbgrader would start the declared kernel (R, Julia, ...); the grading sandbox runs the lab's
    Python only, so such a course is refused rather than silently run as Python.  The language
    is the kernelspec's ``language``, else ``language_info.name``, else the kernelspec's name;
    a notebook that declares none is Python.
    """
    import json

    for name in names:
        try:
            metadata = json.loads((source / f"{name}.ipynb").read_bytes()).get("metadata") or {}
        except (OSError, ValueError, AttributeError):
            continue  # an unreadable source notebook is generate_assignment's to report
        spec = metadata.get("kernelspec") if isinstance(metadata.get("kernelspec"), dict) else {}
        info = metadata.get("language_info") if isinstance(metadata.get("language_info"), dict) else {}
        language = spec.get("language") or info.get("name")
        if language is None and spec.get("name"):
            language = "python" if str(spec["name"]).startswith("python") else str(spec["name"])
        if language is not None and str(language).lower() != "python":
            kernel = f" (kernel {spec['name']!r})" if spec.get("name") else ""
            raise UngradableInput(f"{name}.ipynb declares a kernel for {language}{kernel}: the grader runs Python "
                                  "notebooks only")


def read_inputs(notebooks: Mapping[str, bytes] | Sequence[Path], course: NbgraderCourse) -> dict[str, bytes]:
    """``{notebook name: bytes}``, each name one of the assignment's notebooks."""
    items: list[tuple[str, bytes]] = []
    if isinstance(notebooks, Mapping):
        for key, data in notebooks.items():
            items.append((key.removesuffix(".ipynb"), bytes(data)))
    else:
        for raw in notebooks:
            path = Path(raw)
            if not path.is_file():
                raise UngradableInput(f"{path}: not a file")
            if path.suffix != ".ipynb":
                raise UngradableInput(f"{path}: not a .ipynb notebook file")
            if path.stat().st_size > MAX_NOTEBOOK_BYTES:
                raise UngradableInput(f"{path}: the file is larger than {MAX_NOTEBOOK_BYTES // (1024 * 1024)} MB")
            try:
                items.append((path.stem, path.read_bytes()))
            except OSError as exc:
                raise UngradableInput(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not items:
        raise UngradableInput("no notebooks to grade")
    result: dict[str, bytes] = {}
    for name, data in items:
        if name not in course.notebook_names:
            raise UngradableInput(
                f"notebook {name!r} is not part of the assignment (expected: {', '.join(course.notebook_names)})")
        if name in result:
            raise UngradableInput(f"notebook {name!r} given twice")
        result[name] = data
    return result


def portal_cache_dir(data_dir: Path | str) -> Path:
    """The grading cache of a portal (releases, grading jobs, publish checks): ``$ACADEMY_GRADING_CACHE_DIR``,
    else ``<data dir>/cache``.  Its entries are named by content, so portals, workers and ``academy init`` runs
    that share one reuse each other's releases."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path(data_dir) / "cache")


def cache_root(cache_dir: Path | None, work_root: Path | None) -> Path:
    """The cache directory: ``cache_dir``, ``$ACADEMY_GRADING_CACHE_DIR``, ``<work_root>/cache`` or the user's cache."""
    if cache_dir is not None:
        root = Path(cache_dir)
    elif os.environ.get(CACHE_DIR_ENV):
        root = Path(os.environ[CACHE_DIR_ENV])
    elif work_root is not None:
        root = Path(work_root) / "cache"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        root = base / "ai-saemaul-academy" / "grading"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def _source_key(course: NbgraderCourse, assignment: str) -> str:
    import nbgrader

    digest = hashlib.sha256()
    # Content only, not the directory's path: copies of a course (releases) share entries.
    for part in (_CACHE_FORMAT, nbgrader.__version__, assignment):
        digest.update(part.encode() + b"\0")
    digest.update(hashlib.sha256(course.config_bytes).digest())
    for option in ("header", "footer"):
        if "IncludeHeaderFooter" in course.config and course.config.IncludeHeaderFooter.get(option):
            path = Path(course.config.IncludeHeaderFooter[option])
            digest.update(hashlib.sha256(path.read_bytes() if path.is_file() else b"missing").digest())
    for path in sorted(_source_files(course)):
        digest.update(str(path.relative_to(course.source)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for path in course_root_files(course):
        digest.update(b"root/" + path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def course_root_files(course: NbgraderCourse) -> list[Path]:
    """The plain files at the course root that nbgrader reads from its working directory (``autotests.yml``, ...).

    nbgrader runs ``generate_assignment`` in the course root, so these sit beside the job's
    ``source/`` as they do for nbgrader.  Folders, links, hidden files, gradebooks (``*.db``)
    and the course's ignore patterns are left out.
    """
    import fnmatch

    files = []
    for path in sorted(course.root.iterdir()):
        if path.name.startswith(".") or path.suffix == ".db" or path.is_symlink() or not path.is_file():
            continue
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in course.ignore):
            files.append(path)
    return files


def _source_files(course: NbgraderCourse) -> Iterator[Path]:
    import fnmatch

    for dirpath, dirnames, filenames in os.walk(course.source):
        dirnames[:] = [d for d in dirnames if not any(fnmatch.fnmatch(d, pat) for pat in course.ignore)]
        for filename in filenames:
            if not any(fnmatch.fnmatch(filename, pat) for pat in course.ignore):
                yield Path(dirpath) / filename


def cache_entry(course: NbgraderCourse, assignment: str, cache_root: Path, joblog: JobLog) -> Path:
    """The cached generate_assignment output for this source, built if missing."""
    entry = cache_root / f"{assignment}-{_source_key(course, assignment)[:32]}"
    if (entry / "ok").is_file():
        joblog.timings["generate_assignment"] = 0.0
        return entry
    started = time.monotonic()
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_root))
    try:
        shutil.copytree(course.source, build / "source" / assignment, ignore=shutil.ignore_patterns(*course.ignore))
        for path in course_root_files(course):
            shutil.copyfile(path, build / path.name)
        config = job_config(course, build, assignment, ".")
        coursedir = CourseDirectory(config=config, log=joblog.logger)
        converter = GenerateAssignment(coursedir=coursedir, config=config, log=joblog.logger)
        converter.force = True
        converter.create_assignment = True
        converter.start()
        (build / "ok").write_text(course.root.as_posix() + "\n")
        try:
            os.rename(build, entry)
        except OSError:
            if not (entry / "ok").is_file():  # not a concurrent builder that won the race
                raise
    except Exception as exc:
        cause = root_cause(joblog) or one_line(exc)
        raise GraderSetupError(f"generate_assignment failed for {assignment!r}: {cause}") from exc
    finally:
        shutil.rmtree(build, ignore_errors=True)
    joblog.timings["generate_assignment"] = round(time.monotonic() - started, 3)
    return entry


def job_config(course: NbgraderCourse, root: Path, assignment: str, student: str) -> Any:
    """The course's configuration with every path pointed into ``root``."""
    config = copy.deepcopy(course.config)
    coursedir = config.CourseDirectory
    coursedir.root = str(root)
    coursedir.db_url = f"sqlite:///{root / 'gradebook.db'}"
    coursedir.assignment_id = assignment
    coursedir.student_id = student
    coursedir.notebook_id = "*"
    coursedir.directory_structure = os.path.join("{nbgrader_step}", "{student_id}", "{assignment_id}")
    for step in ("source", "release", "submitted", "autograded", "feedback", "solution", "source_with_tests"):
        coursedir[f"{step}_directory"] = step
    return config
