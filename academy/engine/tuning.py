"""Work nbgrader repeats for every submission, done once per worker process instead.

A grading worker runs nbgrader's converters once per submission.  Profiling a warm worker
(bench/grading.py, docs/grading.md "Speed") showed that most of its own CPU went to work
whose result never changes from one submission to the next:

feedback templates
    nbconvert builds a new Jinja environment for each exporter, so the feedback templates
    were parsed and compiled to Python again for every submission (a fifth of the worker's
    CPU, and 0.3 s in each new process).  ``FeedbackExporter`` gives each environment one
    bytecode cache shared by the process and kept in the grading cache directory for the
    next processes: Jinja keys it by template name and checks the source's checksum, so an
    edited template is compiled again.

nbgrader metadata checks
    nbgrader's ``CheckCellMetadata`` runs twice per notebook and, through
    ``jsonschema.validate``, checks nbgrader's own metadata schema again for every cell before
    checking the cell.  ``CheckCellMetadata`` here checks the schema once per process and
    then each cell against it: the same checks, the same first error, the same message.

the job's gradebook
    nbgrader opens the job's gradebook about ten times per submission (``Gradebook(url)`` in
    each converter and preprocessor), and each time makes a new SQLAlchemy engine, whose
    statement cache starts empty: compiling the same queries again was a sixth of the
    worker's CPU.  Within ``shared_gradebook_engine(path)`` (one job), ``Gradebook`` gets the
    process's one engine for that gradebook; it opens a new SQLite connection to the current
    job's file on every checkout (no pool), so nothing of one job's database reaches the
    next, while the compiled statements are kept.  This is the one place where an nbgrader
    name is replaced (``nbgrader.api.create_engine``, for the job's URL only and only during
    the job); it needs one job at a time per process, as nbgrader's ``chdir`` already does.

The first two are subclasses chosen through nbgrader's configuration by the pipeline.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading
import traceback
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import sqlalchemy
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from nbconvert.exporters import HTMLExporter
from nbgrader.nbgraderformat import MetadataValidator, SchemaTooNewError, SchemaTooOldError, ValidationError
from nbgrader.nbgraderformat.common import BaseMetadataValidator
from nbgrader.preprocessors import CheckCellMetadata as NbgraderCheckCellMetadata

__all__ = ["CheckCellMetadata", "FeedbackExporter", "freeze_for_fork", "replace_checks", "shared_gradebook_engine",
           "use_template_cache", "warm_up", "warm_up_feedback"]


class _TemplateBytecode(BytecodeCache):
    """Compiled templates kept in memory for the life of the process, and on disk for the next processes.

    Jinja names each entry after the template and checks the source's checksum on load; an
    entry from another Jinja or Python version is ignored and compiled again.  The directory is
    the grader's cache (``cache_root``: 0700, never visible to learners' kernels); files are
    written whole, then renamed, so concurrent workers never read half an entry.
    """

    def __init__(self) -> None:
        self._memory: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.directory: Path | None = None

    def _file(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.jinja-bytecode"

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            data = self._memory.get(bucket.key)
        path = self._file(bucket.key)
        if data is None and path is not None:
            try:
                data = path.read_bytes()
            except OSError:
                data = None
        if data is not None:
            bucket.bytecode_from_string(data)
            if bucket.code is not None:  # a stale or foreign entry leaves the bucket empty
                with self._lock:
                    self._memory[bucket.key] = data

    def dump_bytecode(self, bucket: Bucket) -> None:
        data = bucket.bytecode_to_string()
        with self._lock:
            self._memory[bucket.key] = data
        path = self._file(bucket.key)
        if path is None:
            return
        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as handle:
                temporary = handle.name
                handle.write(data)
            os.replace(temporary, path)
        except OSError:  # a cache that cannot be written costs time, never a grade
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    def clear(self) -> None:
        with self._lock:
            self._memory.clear()


TEMPLATE_BYTECODE = _TemplateBytecode()
"""The process's compiled feedback templates (``use_template_cache`` adds the directory)."""


def use_template_cache(directory: Path) -> None:
    """Keep compiled feedback templates under ``directory`` too (the grading cache), for later processes."""
    TEMPLATE_BYTECODE.directory = Path(directory)


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTML exporter (as nbgrader's GenerateFeedback uses it) with compiled templates kept."""

    def _create_environment(self) -> Any:
        environment = super()._create_environment()
        environment.bytecode_cache = TEMPLATE_BYTECODE
        return environment


class _SchemaCheckedOnce(BaseMetadataValidator):
    """nbgrader's version and schema checks of one cell, against a validator built once per process."""

    def validate_cell(self, cell: Any) -> None:
        if "nbgrader" not in cell.metadata:
            return
        version = cell.metadata["nbgrader"].get("schema_version", 0)
        if version < self.schema_version:
            raise SchemaTooOldError(f"Outdated schema version: {version} (expected {self.schema_version})",
                                    version, self.schema_version)
        if version > self.schema_version:
            raise SchemaTooNewError(f"Schema version is too new: {version} (expected {self.schema_version})",
                                    version, self.schema_version)
        error = jsonschema.exceptions.best_match(_schema_validator().iter_errors(
            cell.metadata["nbgrader"]))
        if error is not None:
            raise error


class _MetadataValidator(MetadataValidator, _SchemaCheckedOnce):
    """nbgrader's current metadata validator; its base's schema step is ``_SchemaCheckedOnce``'s."""


@cache
def _schema_validator() -> Any:
    """A validator for nbgrader's current metadata schema (which is checked here, once)."""
    schema = MetadataValidator().schema
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


class CheckCellMetadata(NbgraderCheckCellMetadata):
    """nbgrader's ``CheckCellMetadata`` with the schema checked once per process."""

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        try:
            _MetadataValidator().validate_nb(nb)
        except ValidationError:
            self.log.error(traceback.format_exc())
            msg = "Notebook failed to validate; the nbgrader metadata may be corrupted."
            self.log.error(msg)
            raise ValidationError(msg) from None
        return nb, resources


def replace_checks(preprocessors: list[Any]) -> list[Any]:
    """``preprocessors`` with nbgrader's ``CheckCellMetadata`` (class or dotted name) replaced by ours."""
    names = {"nbgrader.preprocessors.CheckCellMetadata", "nbgrader.preprocessors.checkcellmetadata.CheckCellMetadata"}
    return [CheckCellMetadata if pp is NbgraderCheckCellMetadata or pp in names else pp for pp in preprocessors]


class _GradebookEngine:
    """The process's engine for the current job's gradebook (see the module docstring)."""

    def __init__(self) -> None:
        self.path: str | None = None  # the current job's gradebook, while a job runs
        self._engine: sqlalchemy.engine.Engine | None = None

    def _connect(self) -> sqlite3.Connection:
        if self.path is None:
            raise RuntimeError("the job's gradebook engine was used outside its job")
        return sqlite3.connect(self.path, check_same_thread=False)

    def create_engine(self, url: Any, *args: Any, **kwargs: Any) -> sqlalchemy.engine.Engine:
        """nbgrader's ``create_engine``: the shared engine for the job's gradebook, a new one for anything else."""
        if self.path is None or str(url) != f"sqlite:///{self.path}":
            return sqlalchemy.create_engine(url, *args, **kwargs)
        if self._engine is None:
            self._engine = sqlalchemy.create_engine("sqlite://", creator=self._connect,
                                                    poolclass=sqlalchemy.pool.NullPool, **kwargs)
        return self._engine


_GRADEBOOK = _GradebookEngine()


@contextlib.contextmanager
def shared_gradebook_engine(path: Path) -> Iterator[None]:
    """During one job: nbgrader's ``Gradebook("sqlite:///<path>")`` uses the process's one engine."""
    from nbgrader import api

    if _GRADEBOOK.path is not None:
        raise RuntimeError("one grading job at a time per process")
    original = api.create_engine
    _GRADEBOOK.path = str(path)
    api.create_engine = _GRADEBOOK.create_engine
    try:
        yield
    finally:
        api.create_engine = original
        _GRADEBOOK.path = None


def _warm_up_notebook() -> Any:
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    return new_notebook(cells=[
        new_markdown_cell("# warm-up\n\n*text*"),
        new_code_cell("print(1)", outputs=[new_output("stream", name="stdout", text="1\n")]),
    ], metadata={"language_info": {"name": "python", "pygments_lexer": "ipython3"}})


def warm_up() -> None:
    """Do once, in a parent process, what every new grading process did on its first submission.

    A process that forks grading workers (``academy grade --all``'s fork server, Celery's main
    process) calls this so that each worker starts with nbformat's validator built, nbgrader's
    database mappings configured and its metadata schema checked (``warm_up_feedback`` adds the
    feedback HTML) and the sandbox's isolation probed: 0.3 to 0.5 s of CPU per worker otherwise.
    Nothing here touches a course or a submission; a failure only costs that time.
    """
    with _optional("grading warm-up"):
        from nbformat import validate
        from nbgrader import api  # noqa: F401 - its mappings are the ones configure_mappers() builds
        from sqlalchemy.orm import configure_mappers

        validate(_warm_up_notebook())
        configure_mappers()
        _schema_validator()
    with _optional("sandbox probe"):
        # Which isolation layers work here: a few trial sandboxes, cached per process (workers inherit it).
        from academy.engine.kernels import resolve_policy, sandbox_module

        sandbox = sandbox_module()
        if sandbox is not None:
            sandbox.probe_isolation(resolve_policy(None))


def freeze_for_fork() -> None:
    """Move everything this process has built so far out of reach of its forked children's garbage collector.

    A worker forked from a warmed-up parent inherits hundreds of thousands of objects (nbgrader,
    SQLAlchemy, nbconvert); each full collection in the worker walked all of them and, by writing
    their GC headers, copied most of the inherited pages.  ``gc.freeze()`` (meant for exactly this)
    puts them in a permanent generation: A/B on the bench batch, 3-9% less CPU.
    """
    import gc

    gc.collect()
    gc.freeze()


def warm_up_feedback() -> None:
    """``warm_up`` for feedback: nbgrader's feedback templates compiled, the HTML exporter's regular
    expressions (CSS selectors, syntax highlighting) built."""
    with _optional("feedback warm-up"):
        from nbgrader.converters import GenerateFeedback
        from traitlets.config import Config

        config = GenerateFeedback(config=Config()).config  # nbgrader's feedback template and paths
        resources = {"nbgrader": {"notebook": "warm-up", "assignment": "warm-up", "student": "warm-up",
                                  "score": 0, "max_score": 0, "late_penalty": 0}}
        FeedbackExporter(config=config).from_notebook_node(_warm_up_notebook(), resources=resources)


@contextlib.contextmanager
def _optional(what: str) -> Iterator[None]:
    """An optimisation must never stop grading: its failure is logged (debug) and forgotten."""
    try:
        yield
    except Exception:  # noqa: BLE001
        import logging

        logging.getLogger(__name__).debug("%s failed", what, exc_info=True)
