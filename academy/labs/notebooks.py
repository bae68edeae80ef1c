"""The assignment's notebooks in the learner's workspace: where they live, copy, reset, read back.

Everything goes through the learner's server (the contents API, via ``HubClient``).
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

from flask_babel import gettext as _
from sqlalchemy.orm import Session

from academy.audit.services import record as audit
from academy.catalog.models import Assignment, Course
from academy.db import utcnow
from academy.labs import LabRefused
from academy.labs.hub import HubClient
from academy.labs.models import LabSession
from academy.oidc.server import hub_username
from academy.users.models import User


def workspace_path(assignment: Assignment, name: str) -> str:
    """Where a notebook of ``assignment`` lives in the learner's lab: ``<course>/<assignment>/<name>``.

    Raises LabRefused for a name that would leave that folder (``..``, absolute, a backslash).
    """
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith(".") or "\x00" in name:
        raise LabRefused(_("That notebook name is not allowed."))
    path = posixpath.join(assignment.course.slug, assignment.slug, name)
    if posixpath.normpath(path) != path or path.startswith(("/", "..")):
        raise LabRefused(_("That notebook name is not allowed."))
    return path


def source_path(assignment: Assignment, name: str) -> str:
    """Where a source file of ``assignment`` lives in the authoring lab: ``<course>/source/<assignment>/<name>``
    (nbgrader's own layout).  Raises LabRefused for a name that would leave that folder."""
    workspace_path(assignment, name)  # the same rules for the name
    return posixpath.join(assignment.course.slug, "source", assignment.slug, name)


def open_notebooks(session: Session, client: HubClient, lab: LabSession) -> str:
    """Copy the notebooks of the lab's assignment into its workspace; the path the lab opens ("" for none).

    Course staff's authoring lab gets the source notebooks of every assignment of the course instead.
    """
    from academy.labs.profiles import AUTHORING

    if lab.profile == AUTHORING:
        course = session.get(Course, lab.course_id)
        return copy_sources(session, client, lab.hub_user, course, lab.assignment_id) if course else ""
    assignment = session.get(Assignment, lab.assignment_id) if lab.assignment_id else None
    if assignment is None:
        return ""
    return copy_notebooks(session, client, lab.hub_user, assignment)


def current_sources(session: Session, assignment: Assignment) -> dict[str, bytes]:
    """The assignment's source files as its current release has them (the course folder's before the first
    release): the notebooks with solutions and hidden tests, and the files beside them."""
    from academy.grading import services as grading

    release = grading.current_release(session, assignment)
    folder = (Path(release.path) if release is not None else Path(assignment.course.source_path)) \
        / "source" / assignment.slug
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".")}


def copy_sources(session: Session, client: HubClient, hub_user: str, course: Course,
                 assignment_id: int | None) -> str:
    """Put the source files of the course's active assignments into the authoring lab, never over a file already
    there (the instructor's edits stay).  Returns the path of the first notebook of ``assignment_id`` (or of the
    course's first assignment), the one the lab opens."""
    chosen = fallback = ""
    for assignment in [a for a in course.assignments if a.active]:
        files = current_sources(session, assignment)
        if not files:
            continue
        folder = posixpath.dirname(source_path(assignment, next(iter(files))))
        client.make_dirs(hub_user, folder)
        for name, data in files.items():
            path = source_path(assignment, name)
            if client.get_file(hub_user, path, content=False) is not None:
                continue
            if name.endswith(".ipynb"):
                client.put_notebook(hub_user, path, json.loads(data))
            else:
                client.put_file(hub_user, path, data)
        first = next((source_path(assignment, n) for n in assignment.notebooks if n in files), "")
        if assignment.id == assignment_id:
            chosen = first
        fallback = fallback or first
    return chosen or fallback


def pull_sources(client: HubClient, user: User, assignment: Assignment) -> dict[str, bytes]:
    """The source notebooks of ``assignment`` as they are now in ``user``'s running authoring lab (read through
    the contents API, as JupyterLab saved them; indented as nbformat writes source files).

    Raises LabRefused when the lab is not running or holds none of them.
    """
    return _pull(client, user, {name: source_path(assignment, name) for name in assignment.notebooks},
                 not_running=_("Your authoring lab is not running. Open it first, or upload the notebooks instead."),
                 none=_("Your authoring lab has no source notebook of this assignment. Open the authoring lab "
                        "from this page first."), indent=1)


def copy_notebooks(session: Session, client: HubClient, hub_user: str, assignment: Assignment) -> str:
    """Put the released notebooks, and the files released beside them (the test cells may import a helper
    module), into the workspace, never over the learner's own copy.

    Returns the path of the first notebook (the one the lab opens).
    """
    from academy.grading import services as grading

    release = grading.current_release(session, assignment)
    paths = [workspace_path(assignment, name) for name in assignment.notebooks]
    if not paths:
        return ""
    client.make_dirs(hub_user, posixpath.dirname(paths[0]))
    for name, path in zip(assignment.notebooks, paths, strict=True):
        if client.get_file(hub_user, path, content=False) is None:
            client.put_notebook(hub_user, path, json.loads(grading.released_notebook(release, name)))
    for name, data in grading.released_support_files(release).items():
        path = workspace_path(assignment, name)
        if client.get_file(hub_user, path, content=False) is None:
            client.put_file(hub_user, path, data)
    return paths[0]


def reset_notebook(session: Session, client: HubClient, user: User, assignment: Assignment, name: str) -> str:
    """Replace the learner's notebook by the original; their version is kept as a backup copy.

    Returns the backup's path ("" when there was nothing to back up).
    """
    from academy.grading import services as grading

    if name not in assignment.notebooks:
        raise LabRefused(_("That notebook is not part of this assignment."))
    path = workspace_path(assignment, name)
    hub_user = hub_username(user)
    backup = ""
    if client.get_file(hub_user, path, content=False) is not None:
        stem = name[:-6] if name.endswith(".ipynb") else name
        backup = posixpath.join(posixpath.dirname(path), f"{stem}.backup-{utcnow():%Y%m%d-%H%M%S}.ipynb")
        client.rename(hub_user, path, backup)
    else:
        client.make_dirs(hub_user, posixpath.dirname(path))
    original = grading.released_notebook(grading.current_release(session, assignment), name)
    client.put_notebook(hub_user, path, json.loads(original))
    audit(session, "lab.reset_notebook", actor=user, target_type="assignment", target_id=assignment.id,
          notebook=name, backup=backup)
    return backup


def pull_notebooks(client: HubClient, user: User, assignment: Assignment) -> dict[str, bytes]:
    """The learner's current notebooks of ``assignment``, read from their running lab.

    Raises LabRefused when the lab is not running or holds none of them.
    """
    return _pull(client, user, {name: workspace_path(assignment, name) for name in assignment.notebooks},
                 not_running=_("Your lab is not running. Open the lab first, or upload the notebook instead."),
                 none=_("Your lab has no notebook of this assignment. Open the assignment in the lab first."))


def _pull(client: HubClient, user: User, paths: dict[str, str], *, not_running: str, none: str,
          indent: int | None = None) -> dict[str, bytes]:
    """The notebooks at ``paths`` ({name: workspace path}) in ``user``'s running lab, by name, as JSON bytes."""
    hub_user = hub_username(user)
    if not client.server(hub_user).ready:
        raise LabRefused(not_running)
    files: dict[str, bytes] = {}
    for name, path in paths.items():
        model = client.get_file(hub_user, path)
        if model is not None and model.get("type") == "notebook":
            files[name] = json.dumps(model["content"], ensure_ascii=False, indent=indent).encode("utf-8")
    if not files:
        raise LabRefused(none)
    return files
