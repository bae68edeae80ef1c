"""The curriculum as a whole: four tracks, each with two or three courses of three to five assignments of four to
eight autograded exercises, a final project per track, and every assignment covered by a per-track test file."""

from __future__ import annotations

import json
import tomllib

from tests.curriculum.curriculum import COURSES, assignments, graded_cells, tracks


def test_every_track_is_a_whole_curriculum() -> None:
    assert len(tracks()) == 4
    for track in tracks():
        courses = {course for course, _ in assignments(track=track)}
        assert 2 <= len(courses) <= 3, (track, courses)
        for course in courses:
            listed = [a for c, a in assignments(track=track) if c == course]
            assert 3 <= len(listed) <= 5, (course, listed)
            for assignment in listed:
                cells = {}
                for path in (COURSES / course / "source" / assignment).glob("*.ipynb"):
                    cells.update(graded_cells(json.loads(path.read_text(encoding="utf-8"))))
                assert 4 <= len(cells) <= 8, (course, assignment, sorted(cells))
        finals = [a for _, a in assignments(track=track) if "final-project" in a]
        assert len(finals) == 1, (track, finals)


def test_every_course_lists_competencies_and_a_passing_rule() -> None:
    for course, _ in assignments():
        manifest = tomllib.loads((COURSES / course / "course.toml").read_text(encoding="utf-8"))
        assert 3 <= len(manifest.get("competencies", [])) <= 8, course
        assert manifest["passing"]["min_score_percent"] > 0, course


def test_every_shipped_copy_of_the_strict_helpers_is_the_engine_s_own() -> None:
    """nbgrader only copies files that sit beside a notebook, so each assignment that imports ``academy_checks``
    holds a copy of ``academy/engine/checks.py`` (docs/anticheat.md): none may drift from the original."""
    original = (COURSES.parent / "academy" / "engine" / "checks.py").read_bytes()
    copies = sorted(COURSES.glob("*/source/*/academy_checks.py"))
    assert copies
    assert [path for path in copies if path.read_bytes() != original] == []
