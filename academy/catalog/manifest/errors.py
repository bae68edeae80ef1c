"""The one exception a malformed manifest or source notebook raises."""

from __future__ import annotations

from academy.errors import ValidationFailed


class ManifestError(ValidationFailed):
    """A manifest or notebook under ``courses/`` is malformed.

    ``path`` is the file as shown to people (``courses/<id>/course.toml``), ``line`` the
    1-based line (``None`` when the file itself is missing) and ``field`` the dotted
    field name (``assignments[1].title.ko``) when one is to blame.
    """

    def __init__(self, path: str, problem: str, *, line: int | None = None, field: str | None = None):
        where = path if line is None else f"{path}, line {line}"
        what = problem if field is None else f"field '{field}': {problem}"
        super().__init__(f"{where}: {what}", field=field)
        self.path = path
        self.line = line
        self.problem = problem
