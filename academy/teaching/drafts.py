"""Publishing a new version of an assignment: checked by a job, confirmed by staff, then released.

A version reaches learners in three steps, whichever way it came in (an upload, or the source
notebooks pulled from the instructor's authoring lab):

1. :func:`start` keeps the notebooks (blob store, by digest) in a **draft** and the caller queues
   the ``academy.check_version`` job;
2. the job (:func:`run_check`) runs :func:`academy.teaching.publish.check_version` (valid, the
   solution scores full marks, the learner version zero, what changed against the current release)
   and records the outcome in the draft: ``ready`` or ``refused`` with the problems, each naming
   the notebook and the cell;
3. staff read the outcome and :func:`confirm`; the ``academy.publish_version`` job
   (:func:`run_publish`) releases the new version and, when staff chose so, regrades every
   existing attempt against it.

Nothing is released before step 3, and a draft checked against a release that is no longer the
current one must be checked again.  A draft is a small JSON file under ``<data dir>/publish/``
(written aside and renamed into place), beside the blobs the grading already keeps there, so the
portal and the workers share it as they share releases.  No Flask request here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from academy.audit.services import record
from academy.catalog.models import Assignment
from academy.db import utcnow
from academy.errors import ValidationFailed
from academy.grading.models import Submission
from academy.grading.storage import BlobStore
from academy.users.models import User

STATES = ("checking", "ready", "refused", "releasing", "released", "failed")
ORIGINS = ("upload", "lab")
REGRADE = ("none", "all")
log = logging.getLogger(__name__)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class DraftConflict(ValidationFailed):
    """The draft cannot be confirmed now: not checked, refused, released already, or checked against an old release."""


@dataclass
class Draft:
    """A version on its way to learners (see the module docstring)."""

    token: str
    assignment_id: int
    actor_id: int | None
    origin: str  # upload | lab
    files: dict[str, str]  # notebook name → blob digest
    created_at: str  # ISO, UTC
    state: str = "checking"
    base_version: int | None = None  # the current release when the check ran
    problems: list[dict[str, Any]] = field(default_factory=list)  # notebook, cell, number, code, detail
    changes: list[dict[str, Any]] = field(default_factory=list)  # notebook, cell, code, before, after
    points: float = 0.0
    regrade: str | None = None
    version: int | None = None  # the released version
    regraded: int = 0
    error: str | None = None
    moved_at: str | None = None  # ISO, UTC: when it last went to a job (None: when it was created)

    @property
    def created(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.created_at)

    @property
    def finished(self) -> bool:
        """Nothing more will happen to it by itself (no job is working on it)."""
        return self.state not in ("checking", "releasing")


class DraftStore:
    """Drafts as JSON files under ``root`` (``<data dir>/publish``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, token: str) -> Path:
        if not _TOKEN.match(token or ""):
            raise KeyError(token)
        return self.root / f"{token}.json"

    def save(self, draft: Draft) -> None:
        """Write the draft whole: a reader sees the old or the new one, never half of it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".draft-", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(asdict(draft), fh, ensure_ascii=False)
            os.replace(tmp, self._path(draft.token))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, token: str) -> Draft | None:
        """The draft, or None for an unknown (or malformed) token."""
        try:
            data = json.loads(self._path(token).read_text(encoding="utf-8"))
        except (KeyError, OSError, ValueError):
            return None
        return Draft(**data)

    def recent(self, assignment_id: int, *, limit: int = 5) -> list[Draft]:
        """The assignment's latest drafts, newest first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.glob("*.json"):
            draft = self.load(path.stem)
            if draft is not None and draft.assignment_id == assignment_id:
                found.append(draft)
        return sorted(found, key=lambda d: d.created_at, reverse=True)[:limit]

    def work_dir(self, token: str) -> Path:
        """Scratch space of the check job for this draft."""
        return self.root / "work" / self._path(token).stem


def stores(data_dir: Path) -> tuple[DraftStore, BlobStore]:
    """The drafts and the blobs their notebooks are kept in, under the data directory."""
    return DraftStore(Path(data_dir) / "publish"), BlobStore(Path(data_dir) / "sources")


def current_version(session: Session, assignment: Assignment) -> int | None:
    """The version number of the assignment's current release (None before the first)."""
    from academy.grading.services import current_release

    release = current_release(session, assignment)
    return release.version if release is not None else None


def start(session: Session, data_dir: Path, assignment: Assignment, files: Mapping[str, bytes], *,
          actor: User, origin: str) -> Draft:
    """Keep ``files`` (source notebooks of ``assignment``) in a new draft to be checked.

    The quick checks run now, so a notebook that is not one, an unknown name, duplicate grade ids
    or a graded cell without points are refused at once (ValidationFailed or ManifestError naming
    the notebook and cell) and nothing is kept.  The caller queues ``academy.check_version`` with
    the draft's token when it commits.
    """
    from academy.grading.releases import check_uploaded_source

    if origin not in ORIGINS:
        raise ValueError(origin)
    with tempfile.TemporaryDirectory() as work:
        check_uploaded_source(assignment, dict(files), Path(work))
    drafts, blobs = stores(data_dir)
    draft = Draft(token=secrets.token_urlsafe(18), assignment_id=assignment.id, actor_id=actor.id, origin=origin,
                  files={name: blobs.put(data) for name, data in sorted(files.items())},
                  created_at=utcnow().isoformat(), base_version=current_version(session, assignment))
    drafts.save(draft)
    record(session, "assignment.publish_check", actor=actor, target_type="assignment", target_id=assignment.id,
           draft=draft.token, origin=origin, notebooks=sorted(files))
    return draft


def _cell_numbers(files: Mapping[str, bytes]) -> dict[tuple[str, str], int]:
    """(notebook, grade id) → the cell's position in the notebook, counted from 1 as JupyterLab shows it."""
    numbers = {}
    for name, data in files.items():
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            for index, cell in enumerate(json.loads(data).get("cells", []), start=1):
                grade_id = ((cell.get("metadata") or {}).get("nbgrader") or {}).get("grade_id")
                if isinstance(grade_id, str):
                    numbers[(name, grade_id)] = index
    return numbers


def run_check(session: Session, data_dir: Path, token: str, *, cache_dir: Path | None = None) -> str:
    """The ``academy.check_version`` job: check the draft's notebooks and record the outcome; its state after."""
    from academy.engine.course import portal_cache_dir
    from academy.grading.services import current_release
    from academy.teaching.publish import check_version

    drafts, blobs = stores(data_dir)
    draft = drafts.load(token)
    if draft is None or draft.state != "checking":
        log.warning("publish check %s: nothing to check (%s)", token, draft.state if draft else f"not in {data_dir}")
        return draft.state if draft is not None else "gone"
    assignment = session.get(Assignment, draft.assignment_id)
    if assignment is None:
        draft.state, draft.error = "failed", "the assignment no longer exists"
        drafts.save(draft)
        return draft.state
    work = drafts.work_dir(token)
    try:
        files = {name: blobs.get(digest) for name, digest in draft.files.items()}
        release = current_release(session, assignment)
        current = Path(release.path) / "source" / assignment.slug if release is not None else None
        check = check_version(Path(assignment.course.source_path), assignment.slug, files, work,
                              current_source=current, cache_dir=cache_dir or portal_cache_dir(data_dir))
    except Exception as exc:  # noqa: BLE001 - recorded for staff; the draft must not stay "checking"
        draft.state, draft.error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        drafts.save(draft)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    numbers = _cell_numbers(files)
    draft.base_version = release.version if release is not None else None
    draft.problems = [{**asdict(p), "number": numbers.get((p.notebook, p.cell or ""))} for p in check.problems]
    draft.changes = [{**asdict(c), "number": numbers.get((c.notebook, c.cell))} for c in check.changes]
    draft.points = check.points
    draft.state = "ready" if check.ok else "refused"
    drafts.save(draft)
    return draft.state


def confirm(session: Session, data_dir: Path, draft: Draft, *, actor: User, regrade: str) -> Draft:
    """Staff confirm a checked draft: it goes to ``releasing``; the caller queues ``academy.publish_version``.

    Raises DraftConflict when the draft is not ready (still checking, refused, already released) or
    the assignment's current release changed since the check (its summary of changes is out of date).
    """
    from flask_babel import gettext as _

    if regrade not in REGRADE:
        raise ValidationFailed(_("Choose whether existing submissions are graded again."))
    if draft.state != "ready":
        raise DraftConflict(_("This version cannot be released: it has not passed the checks, or it was "
                              "released already."))
    assignment = session.get(Assignment, draft.assignment_id)
    if assignment is None or current_version(session, assignment) != draft.base_version:
        raise DraftConflict(_("Another version was released after this one was checked. Check it again "
                              "before releasing it."))
    draft.state, draft.regrade, draft.moved_at = "releasing", regrade, utcnow().isoformat()
    stores(data_dir)[0].save(draft)
    record(session, "assignment.publish", actor=actor, target_type="assignment", target_id=assignment.id,
           draft=draft.token, regrade=regrade, notebooks=sorted(draft.files))
    return draft


#: A job that has not moved a draft on after this long is taken for lost (a broker restarted without its
#: messages, a worker killed): staff may send it again.
STALLED_AFTER = dt.timedelta(minutes=5)


def stalled(draft: Draft, *, now: dt.datetime | None = None) -> bool:
    """A job should have finished with the draft by now, or it failed: staff may send it again."""
    if draft.state == "failed":
        return True
    return draft.state in ("checking", "releasing") and (now or utcnow()) - _moved_at(draft) > STALLED_AFTER


def _moved_at(draft: Draft) -> dt.datetime:
    return dt.datetime.fromisoformat(draft.moved_at) if draft.moved_at else draft.created


def retry(session: Session, data_dir: Path, draft: Draft, *, actor: User) -> str:
    """Send a stalled or failed draft's job again; the task the caller queues with the token.

    A release that failed or stalled goes back to ``releasing`` (releasing is idempotent: the same
    sources make the same release); a check goes back to ``checking``.  Raises DraftConflict otherwise.
    """
    from flask_babel import gettext as _

    if not stalled(draft):
        raise DraftConflict(_("This version is still being worked on. Wait a moment before sending it again."))
    releasing = draft.regrade is not None and draft.version is None
    draft.state, draft.error = ("releasing" if releasing else "checking"), None
    draft.moved_at = utcnow().isoformat()
    stores(data_dir)[0].save(draft)
    record(session, "assignment.publish_retry", actor=actor, target_type="assignment",
           target_id=draft.assignment_id, draft=draft.token, state=draft.state)
    return "academy.publish_version" if releasing else "academy.check_version"


def run_publish(session: Session, data_dir: Path, token: str, *, cache_dir: Path | None = None) -> str:
    """The ``academy.publish_version`` job: release the confirmed draft, then regrade if staff chose so.

    Each learner's attempts are pointed at the new version and graded again (their grading jobs
    go out when this commits).  Commits; returns the draft's state.
    """
    from academy.grading import services as grading
    from academy.grading.releases import release_upload

    drafts, blobs = stores(data_dir)
    draft = drafts.load(token)
    if draft is None or draft.state != "releasing":
        return draft.state if draft is not None else "gone"
    assignment = session.get(Assignment, draft.assignment_id)
    actor = session.get(User, draft.actor_id) if draft.actor_id else None
    try:
        release = release_upload(session, assignment, {n: blobs.get(d) for n, d in draft.files.items()},
                                 Path(data_dir), actor=actor, cache_dir=cache_dir)
        regraded = 0
        if draft.regrade == "all" and actor is not None:
            attempts = list(session.scalars(select(Submission).where(
                Submission.assignment_id == assignment.id, Submission.release_id != release.id)
                .order_by(Submission.id)))
            attempts = [s for s in attempts if s.status.finished]
            for submission in attempts:
                submission.release_id = release.id
            regraded = len(grading.regrade(session, attempts, actor=actor))
        session.commit()
    except Exception as exc:  # noqa: BLE001 - recorded for staff; nothing half-released stays committed
        session.rollback()
        draft.state, draft.error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        drafts.save(draft)
        raise
    draft.state, draft.version, draft.regraded = "released", release.version, regraded
    drafts.save(draft)
    return draft.state
