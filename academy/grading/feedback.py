"""The detailed feedback of a submission, as a portal page builds it from what is stored.

nbgrader's own feedback file is a snapshot: English, outside the portal's design, and stale
once an instructor grades by hand.  This module rebuilds the feedback at each request from
stored things that stay true:

- the notebook as the grader ran it (``Submission.graded_notebooks``: the learner's code with
  the outputs of the graded run, the tests with their hidden parts), or, for a submission
  graded before those were kept, the notebook the learner submitted;
- the released notebook (the tests exactly as the learner saw them);
- the current cell scores and the instructor's comments (``CellScore``), through
  ``standing.cell_views``, so scores, "waiting" and held results agree with every other page.

While hidden results are held, a test cell with hidden tests shows its released source and
its visible result only: neither its full source nor its outputs (which come from the hidden
tests too).  Everything a learner or a notebook wrote is escaped or sanitised (``nh3``), and
no script or remote resource can reach the page (the portal's Content-Security-Policy).

Plain functions on parsed notebooks (``dict``) and ``CellView`` objects: no Flask request.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

from academy.grading.standing import CellView

MAX_TEXT = 20_000  # characters of one output shown; the rest is cut with a note
MAX_IMAGE = 2_000_000  # base64 characters of one image
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")
_HEADING_TAG = re.compile(r"<(/?)h([1-6])(?=[\s>])")
_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
_markdown = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
_ALLOWED_TAGS = set(nh3.ALLOWED_TAGS) | {"img", "caption", "colgroup", "col", "span", "div"}
_ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "img": {"src", "alt", "width", "height"},
    "th": {"colspan", "rowspan", "scope"},
    "td": {"colspan", "rowspan"},
    "table": set(),
}


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Images only from data URLs (the page loads nothing else), links never to data URLs.

    Class and style never pass: nh3 drops every attribute not listed.
    """
    lowered = value.strip().lower()
    if tag == "img" and attribute == "src":
        return value if lowered.startswith("data:image/") else None
    if attribute == "href" and lowered.startswith("data:"):
        return None
    return value


def sanitise_html(html: str) -> Markup:
    """HTML from a notebook (a markdown cell, a table output) with only harmless tags and attributes left."""
    cleaned = nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "data"},
        attribute_filter=_keep_attribute,
        link_rel="noopener noreferrer nofollow",
    )
    # The page has its own headings: a notebook's "# 과제 1" becomes a third-level heading under them.
    cleaned = _HEADING_TAG.sub(lambda m: f"<{m[1]}h{min(int(m[2]) + 2, 6)}", cleaned)
    return Markup(cleaned)  # noqa: S704 - sanitised by nh3 just above


def render_markdown(text: str) -> Markup:
    """Markdown (instructions, a written answer) as sanitised HTML."""
    return sanitise_html(_markdown.render(text or ""))


def plain_text(value: Any) -> str:
    """A notebook text field (a string or a list of lines) as one string, without ANSI colours."""
    text = "".join(value) if isinstance(value, list) else str(value or "")
    return _ANSI.sub("", text)


def _cut(text: str) -> tuple[str, bool]:
    return (text, False) if len(text) <= MAX_TEXT else (text[:MAX_TEXT], True)


@dataclass(frozen=True)
class OutputView:
    """One output of a code cell, ready to show: ``kind`` is text, stderr, error, image or html."""

    kind: str
    text: str = ""
    html: Markup | None = None
    src: str | None = None  # a data: URL, for images
    cut: bool = False  # the text was longer than MAX_TEXT


def output_views(outputs: Any) -> list[OutputView]:
    """The outputs of a code cell as ``OutputView`` objects; unknown or malformed outputs are left out."""
    views: list[OutputView] = []
    for output in outputs if isinstance(outputs, list) else []:
        if not isinstance(output, dict):
            continue
        kind = output.get("output_type")
        if kind == "stream":
            text, cut = _cut(plain_text(output.get("text")))
            if text:
                views.append(OutputView("stderr" if output.get("name") == "stderr" else "text", text, cut=cut))
        elif kind == "error":
            lines = output.get("traceback")
            text = "\n".join(plain_text(line) for line in lines) if isinstance(lines, list) and lines else (
                f"{plain_text(output.get('ename'))}: {plain_text(output.get('evalue'))}")
            text, cut = _cut(text)
            views.append(OutputView("error", text, cut=cut))
        elif kind in ("execute_result", "display_data"):
            view = _rich_output(output.get("data"))
            if view is not None:
                views.append(view)
    return views


def _rich_output(data: Any) -> OutputView | None:
    if not isinstance(data, dict):
        return None
    for mime in _IMAGES:
        value = data.get(mime)
        if value is None:
            continue
        if mime == "image/svg+xml":
            encoded = base64.b64encode(plain_text(value).encode("utf-8")).decode("ascii")
        else:
            encoded = "".join(value) if isinstance(value, list) else str(value)
            if not _BASE64.match(encoded):
                continue
            try:
                base64.b64decode(encoded, validate=False)
            except (binascii.Error, ValueError):
                continue
            encoded = "".join(encoded.split())
        if len(encoded) <= MAX_IMAGE:
            return OutputView("image", src=f"data:{mime};base64,{encoded}")
    if "text/html" in data:
        return OutputView("html", html=sanitise_html(plain_text(data["text/html"])))
    if "text/markdown" in data:
        return OutputView("html", html=render_markdown(plain_text(data["text/markdown"])))
    for mime in ("text/plain", "application/json"):
        if mime in data:
            value = data[mime]
            text = json.dumps(value, ensure_ascii=False, indent=1) if isinstance(value, dict) else plain_text(value)
            text, cut = _cut(text)
            return OutputView("text", text, cut=cut)
    return None


@dataclass(frozen=True)
class Block:
    """One cell of a notebook on the feedback page.

    ``kind``: ``instructions`` (markdown), ``code`` (given code), ``answer`` (the learner's code),
    ``written`` (the learner's written answer), or ``test`` (an autograder test).  ``question`` is
    the graded cell's view (score, waiting, held, message, comment) for graded cells.
    ``withheld``: a test whose full source and outputs wait for the deadline.
    """

    kind: str
    source: str = ""
    html: Markup | None = None
    outputs: list[OutputView] = field(default_factory=list)
    question: CellView | None = None
    withheld: bool = False


@dataclass(frozen=True)
class NotebookFeedback:
    """The blocks of one notebook of the assignment; ``submitted`` False for a notebook not handed in."""

    name: str
    blocks: list[Block]
    submitted: bool = True
    ran: bool = True  # False: built from the submitted notebook (no graded run was kept)

    @property
    def questions(self) -> list[CellView]:
        """The graded cells of this notebook, in notebook order."""
        return [b.question for b in self.blocks if b.question is not None]


def _cells(notebook: Any) -> list[dict[str, Any]]:
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    return [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else []


def _nbgrader(cell: Mapping[str, Any]) -> dict[str, Any]:
    metadata = cell.get("metadata")
    meta = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    return meta if isinstance(meta, dict) else {}


def _released_sources(released: Any) -> dict[str, str]:
    return {meta["grade_id"]: plain_text(cell.get("source")) for cell in _cells(released)
            if isinstance((meta := _nbgrader(cell)).get("grade_id"), str)}


def notebook_feedback(name: str, notebook: Any, *, released: Any, views: Sequence[CellView],
                      ran: bool = True) -> NotebookFeedback:
    """The feedback blocks of one notebook.

    ``notebook``: the graded run (or, with ``ran=False``, the submitted notebook); ``released``:
    the released notebook, whose test sources are shown for withheld tests; ``views``: this
    notebook's cell views (from ``standing.cell_views``), matched by grade id.
    """
    by_grade = {v.cell.grade_id: v for v in views}
    released_source = _released_sources(released)
    blocks: list[Block] = []
    for cell in _cells(notebook):
        meta = _nbgrader(cell)
        grade_id = meta.get("grade_id") if isinstance(meta.get("grade_id"), str) else None
        view = by_grade.get(grade_id) if grade_id and meta.get("grade") else None
        source = plain_text(cell.get("source"))
        if cell.get("cell_type") == "markdown":
            kind = "written" if meta.get("solution") else "instructions"
            blocks.append(Block(kind, source, html=render_markdown(source), question=view))
            continue
        if cell.get("cell_type") != "code":
            continue
        if meta.get("grade") and not meta.get("solution"):
            withheld = view is not None and view.held
            if withheld or not ran:
                # The released lines only: the hidden tests (and what they printed) wait for the deadline.
                blocks.append(Block("test", released_source.get(grade_id or "", "") if withheld else source,
                                    question=view, withheld=withheld))
            else:
                blocks.append(Block("test", source, outputs=output_views(cell.get("outputs")), question=view))
            continue
        kind = "answer" if meta.get("solution") else "code"
        blocks.append(Block(kind, source, outputs=output_views(cell.get("outputs")), question=view))
    placed = {id(b.question) for b in blocks if b.question is not None}
    # A graded cell the notebook no longer holds (deleted by the learner) still shows its result.
    blocks.extend(Block("test", question=v) for v in views if id(v) not in placed)
    return NotebookFeedback(name, blocks, ran=ran)


def missing_notebook(name: str, views: Sequence[CellView]) -> NotebookFeedback:
    """A notebook of the assignment the learner did not hand in: its questions, no code."""
    return NotebookFeedback(name, [Block("test", question=v) for v in views], submitted=False, ran=False)


def _parsed(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def submission_feedback(submission: Any, views: Sequence[CellView], data_dir: Any) -> list[NotebookFeedback]:
    """The feedback of ``submission`` (a ``Submission``), one entry per notebook of the assignment.

    ``views``: ``standing.cell_views(submission, held=...)``.  Reads the graded notebooks kept for
    the submission, or the submitted ones for a submission graded before they were kept, and the
    released notebooks; a stored file that is missing or unreadable is skipped, never a crash.
    """
    from pathlib import Path

    from academy.errors import NotFound
    from academy.grading.storage import graded_store, submission_store

    data_dir = Path(data_dir)
    notebooks: dict[str, tuple[Any, bool]] = {}
    for name, digest in (submission.graded_notebooks or {}).items():
        with contextlib.suppress(NotFound, RuntimeError, OSError):
            parsed = _parsed(graded_store(data_dir).get(digest))
            if parsed is not None:
                notebooks[name.removesuffix(".ipynb")] = (parsed, True)
    for row in submission.files:
        stem = row.name.removesuffix(".ipynb")
        if stem not in notebooks:
            with contextlib.suppress(NotFound, RuntimeError, OSError):
                parsed = _parsed(submission_store(data_dir).get(row.sha256))
                if parsed is not None:
                    notebooks[stem] = (parsed, False)
    release_dir = Path(submission.release.path) / "release" / submission.assignment.slug if submission.release else None
    released_names = sorted(p.stem for p in release_dir.glob("*.ipynb")) if release_dir and release_dir.is_dir() else []
    by_notebook: dict[str, list[CellView]] = {}
    for view in views:
        by_notebook.setdefault(view.cell.notebook.removesuffix(".ipynb"), []).append(view)
    result = []
    for stem in dict.fromkeys([*released_names, *notebooks, *by_notebook]):
        own = by_notebook.get(stem, [])
        notebook, ran = notebooks.get(stem, (None, False))
        if notebook is None:
            result.append(missing_notebook(stem, own))
            continue
        released = None
        if release_dir is not None:
            with contextlib.suppress(OSError):
                released = _parsed((release_dir / f"{stem}.ipynb").read_bytes())
        result.append(notebook_feedback(stem, notebook, released=released, views=own, ran=ran))
    return result
