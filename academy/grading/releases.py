"""Releasing assignment versions: nbgrader's student version of each source, kept per version.

A release is a small nbgrader course directory of its own under the data directory
(``releases/<course>/<assignment>/v<N>/``): the course's ``nbgrader_config.py``, the
assignment's ``source/`` as it was, and ``release/`` made by ``generate_assignment``.
Submissions point at the version they were made against, so grading uses the tests
that learner saw even after the instructor publishes a new version; learners always
download the latest.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from academy.audit.services import record
from academy.catalog.models import Assignment
from academy.grading.models import AssignmentRelease
from academy.users.models import User

CONFIG_NAME = "nbgrader_config.py"


def source_hash(course_dir: Path, slug: str) -> str:
    """SHA-256 over the assignment's source files (names and bytes) and the course config."""
    digest = hashlib.sha256()
    config = course_dir / CONFIG_NAME
    if config.is_file():
        digest.update(b"config\0" + config.read_bytes())
    source = course_dir / "source" / slug
    for path in sorted(p for p in source.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _build(staging: Path, course_dir: Path, slug: str, sources: dict[str, bytes] | None,
           cache_dir: Path) -> None:
    """Fill ``staging`` with config, source (from the course or uploaded) and nbgrader's release."""
    from academy.engine.pipeline import release_notebooks
    from academy.errors import from_engine

    shutil.rmtree(staging, ignore_errors=True)
    (staging / "source").mkdir(parents=True)
    if (course_dir / CONFIG_NAME).is_file():
        shutil.copy2(course_dir / CONFIG_NAME, staging / CONFIG_NAME)
    if sources is None:
        shutil.copytree(course_dir / "source" / slug, staging / "source" / slug,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        # Generated from the course directory itself (same bytes as the copy, checked by the
        # hash), whose stable path lets nbgrader's output be cached across data dirs.
        with from_engine():
            released = release_notebooks(course_dir, slug, cache_dir=cache_dir)
    else:
        (staging / "source" / slug).mkdir(parents=True)
        for name, data in sources.items():
            (staging / "source" / slug / name).write_bytes(data)
        with from_engine():
            released = release_notebooks(staging, slug, cache_dir=cache_dir)
    out = staging / "release" / slug
    out.mkdir(parents=True)
    for name, data in released.items():
        (out / (name if name.endswith(".ipynb") else f"{name}.ipynb")).write_bytes(data)


def check_uploaded_source(assignment: Assignment, files: dict[str, bytes], work_dir: Path) -> None:
    """Check instructor-uploaded source notebooks before releasing them.

    Raises ManifestError naming the notebook and cell (duplicate grade ids, a graded cell
    without points, not a notebook) or ValidationFailed for names the assignment lacks.
    """
    from flask_babel import gettext as _

    from academy.catalog.manifest import source_notebook_points
    from academy.errors import ValidationFailed

    expected = set(assignment.notebooks)
    if not files:
        raise ValidationFailed(_("Choose the source notebook(s) to upload."))
    unknown = sorted(set(files) - expected)
    if unknown:
        raise ValidationFailed(_("'%(name)s' is not a notebook of this assignment. Expected: %(expected)s",
                                 name=unknown[0], expected=", ".join(sorted(expected))))
    work_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = work_dir / name
        path.write_bytes(data)
        source_notebook_points(path, f"{assignment.slug}/{name}")


def release_upload(session: Session, assignment: Assignment, files: dict[str, bytes], data_dir: Path, *,
                   actor: User | None, cache_dir: Path | None = None) -> AssignmentRelease:
    """Release a new version from uploaded source notebooks (the others kept from the course).

    Runs nbgrader, so it is called from a job, not a request.
    """
    course_dir = Path(assignment.course.source_path)
    sources = {p.name: p.read_bytes() for p in (course_dir / "source" / assignment.slug).iterdir()
               if p.is_file() and ".ipynb_checkpoints" not in p.parts}
    sources.update(files)
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name])
    source_digest = "upload-" + digest.hexdigest()[:57]
    existing = session.scalar(select(AssignmentRelease).where(
        AssignmentRelease.assignment_id == assignment.id, AssignmentRelease.source_hash == source_digest))
    if existing is not None:
        return existing
    version = (session.scalar(
        select(AssignmentRelease.version).where(AssignmentRelease.assignment_id == assignment.id)
        .order_by(AssignmentRelease.version.desc()).limit(1)
    ) or 0) + 1
    target = Path(data_dir) / "releases" / assignment.course.slug / assignment.slug / f"v{version}"
    staging = target.with_name(target.name + ".tmp")
    from academy.engine.course import portal_cache_dir

    _build(staging, course_dir, assignment.slug, sources, cache_dir or portal_cache_dir(data_dir))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    release = AssignmentRelease(assignment_id=assignment.id, version=version, source_hash=source_digest,
                                path=str(target), created_by_id=actor.id if actor else None)
    session.add(release)
    session.flush()
    record(session, "assignment.release", actor=actor, target_type="assignment", target_id=assignment.id,
           version=version, source_hash=source_digest, uploaded=sorted(files))
    return release


def ensure_release(session: Session, assignment: Assignment, data_dir: Path, *,
                   actor: User | None = None, cache_dir: Path | None = None) -> AssignmentRelease:
    """The release matching the assignment's current source, generated when new.

    Raises whatever nbgrader raises for a source it cannot release (the catalog loader
    has already checked the notebooks' structure).
    """
    course_dir = Path(assignment.course.source_path)
    digest = source_hash(course_dir, assignment.slug)
    existing = session.scalar(
        select(AssignmentRelease).where(
            AssignmentRelease.assignment_id == assignment.id, AssignmentRelease.source_hash == digest
        )
    )
    if existing is not None and Path(existing.path).is_dir():
        return existing
    latest = session.scalar(
        select(AssignmentRelease.version).where(AssignmentRelease.assignment_id == assignment.id)
        .order_by(AssignmentRelease.version.desc()).limit(1)
    ) or 0
    version = existing.version if existing is not None else latest + 1
    target = Path(data_dir) / "releases" / assignment.course.slug / assignment.slug / f"v{version}"
    staging = target.with_name(target.name + ".tmp")
    from academy.engine.course import portal_cache_dir

    _build(staging, course_dir, assignment.slug, None, cache_dir or portal_cache_dir(data_dir))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    if existing is not None:
        return existing
    release = AssignmentRelease(assignment_id=assignment.id, version=version, source_hash=digest,
                                path=str(target), created_by_id=actor.id if actor else None)
    session.add(release)
    session.flush()
    record(session, "assignment.release", actor=actor, target_type="assignment", target_id=assignment.id,
           version=version, source_hash=digest)
    return release


def release_all(session: Session, data_dir: Path, *, cache_dir: Path | None = None) -> int:
    """Make sure every active assignment has a release of its current source; returns how many were new."""
    from sqlalchemy import func

    def count() -> int:
        return session.scalar(select(func.count()).select_from(AssignmentRelease)) or 0

    before = count()
    for assignment in session.scalars(select(Assignment).where(Assignment.active.is_(True))).all():
        ensure_release(session, assignment, data_dir, cache_dir=cache_dir)
    return count() - before


def hidden_test_cells(release: AssignmentRelease) -> set[tuple[str, str]]:
    """``(notebook stem, grade_id)`` of the release's test cells that hold hidden tests.

    Read from the release's own copy of the source, so it matches what was graded.
    """
    import json

    found: set[tuple[str, str]] = set()
    source = Path(release.path) / "source" / release.assignment.slug
    for path in sorted(source.glob("*.ipynb")):
        try:
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            continue
        for cell in cells:
            meta = (cell.get("metadata") or {}).get("nbgrader") or {}
            text = cell.get("source", "")
            text = "".join(text) if isinstance(text, list) else text
            if meta.get("grade_id") and "BEGIN HIDDEN TESTS" in text:
                found.add((path.stem, meta["grade_id"]))
    return found
