"""``python -m tests.curriculum.check courses/<course> [ASSIGNMENT...]``: the curriculum checks, by hand."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.curriculum.curriculum import assignments, check_assignment


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    course_dir = Path(argv[0]).resolve()
    wanted = argv[1:] or [a for c, a in assignments(course_dir.parent) if c == course_dir.name]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for assignment in wanted:
            report = check_assignment(course_dir.name, assignment, Path(tmp) / assignment,
                                      courses=course_dir.parent, cache_dir=Path(tmp) / "cache")
            print(report.text(), flush=True)
            failed += bool(report.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
