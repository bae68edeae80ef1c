"""The curriculum checks (tests/curriculum/curriculum.py) on every assignment of the track 'ai-advanced'.

One file per track, so the tracks are graded side by side in parallel test processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.curriculum.curriculum import assignments, check_assignment

# Every notebook of the track imports torch (1.2 s of each kernel's CPU here): its grading worker's zygote imports it
# once (tests/curriculum/conftest.py).
ZYGOTE_PRELOAD_EXTRA = ("torch",)


@pytest.mark.parametrize(("course", "assignment"), assignments(track="ai-advanced"))
def test_source_full_release_zero_and_each_wrong_answer_loses(course: str, assignment: str, tmp_path: Path,
                                                              curriculum_cache: Path) -> None:
    report = check_assignment(course, assignment, tmp_path, cache_dir=curriculum_cache)
    assert not report.problems, report.text()
