"""The shipped curriculum on the CPU: how long each source notebook takes, plain and in the grader.

Run from the repository root with the portal's environment::

    .venv/bin/python bench/curriculum.py [--course ID ...] [--json]

For every assignment of every course under ``courses/`` (or of the courses named), the instructor's source
notebook is run top to bottom twice:

1. **plain**: nbclient with the learners' kernel (``.venv-lab``), no sandbox, no grading: the floor;
2. **grader**: ``academy.engine.pipeline.grade_submission`` on the same notebook as a submission, in the sandbox,
   as the grading worker runs it (kernel start, anticheat, the tests, scores).

Printed per notebook: both wall-clock times and their ratio, and at the end the totals, the slowest notebook and
the issue's limit (each notebook under 60 s on a 2-core machine).  Figures depend on the machine: run it with
nothing else busy.  With ``--json`` the last line is one JSON object of every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LIMIT_S = 60.0


def _notebooks(only: set[str]) -> list[tuple[str, str, Path]]:
    found = []
    for manifest in sorted((ROOT / "courses").glob("*/course.toml")):
        course = manifest.parent.name
        if course.startswith((".", "_")) or (only and course not in only):
            continue
        for item in tomllib.loads(manifest.read_text(encoding="utf-8")).get("assignments", []):
            for path in sorted((manifest.parent / "source" / item["id"]).glob("*.ipynb")):
                found.append((course, item["id"], path))
    return found


def _plain(path: Path) -> float:
    """Seconds for nbclient to run the notebook in the lab's kernel, in a copy of its folder."""
    import shutil

    from labkernel import run_notebook

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(path.parent, Path(tmp) / "nb"))
        run = run_notebook(folder / path.name, folder)
        if run.error:
            raise RuntimeError(f"{path}: {run.error}")
        return run.seconds


def _graded(course: str, assignment: str, path: Path, cache: Path) -> tuple[float, float, float, str]:
    """Seconds for the grader to grade the source as a submission; its score, the maximum and the status with
    the first problem when it was not graded (the sandbox missing, say: no cell is scored, 0 of 0)."""
    from academy.engine.pipeline import grade_submission

    here = os.getcwd()
    started = time.perf_counter()
    try:
        result = grade_submission(ROOT / "courses" / course, assignment, {path.name: path.read_bytes()},
                                  student_id="bench", feedback=False, cache_dir=cache).to_json()
    finally:
        os.chdir(here)
    seconds = time.perf_counter() - started
    cells = [c for nb in result.get("notebooks", []) for c in nb.get("cells", []) if not c.get("needs_manual_grading")]
    status = result.get("status", "?")
    if status != "graded":
        status += f": {(result.get('problems') or ['no problem said'])[0]}"[:200]
    return seconds, sum(c.get("score") or 0 for c in cells), sum(c.get("max_score") or 0 for c in cells), status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--course", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        _graded(*_notebooks(set(args.course))[0][:3], cache)  # warm: imports, the release cache of one
        print(f"{'notebook':<64} {'plain s':>8} {'grader s':>9} {'ratio':>6} {'score':>9}")
        for course, assignment, path in _notebooks(set(args.course)):
            plain = _plain(path)
            graded, score, top, status = _graded(course, assignment, path, cache)
            name = f"{course}/{assignment}/{path.name}"
            rows.append({"notebook": name, "plain_s": round(plain, 2), "grader_s": round(graded, 2),
                         "ratio": round(graded / plain, 2), "score": score, "max_score": top, "status": status})
            print(f"{name:<64} {plain:>8.1f} {graded:>9.1f} {graded / plain:>6.2f} {score:>4g}/{top:<4g}"
                  f"{'' if status == 'graded' else '  ' + status}", flush=True)
    slowest = max(rows, key=lambda r: r["grader_s"])
    summary = {"notebooks": len(rows), "plain_total_s": round(sum(r["plain_s"] for r in rows), 1),
               "grader_total_s": round(sum(r["grader_s"] for r in rows), 1), "slowest": slowest["notebook"],
               "slowest_plain_s": slowest["plain_s"], "slowest_grader_s": slowest["grader_s"], "limit_s": LIMIT_S,
               "slowest_share_of_limit": round(slowest["grader_s"] / LIMIT_S, 2),
               "full_marks": all(r["status"] == "graded" and 0 < r["max_score"] <= r["score"] for r in rows)}
    print(f"\n{summary['notebooks']} notebooks: plain {summary['plain_total_s']} s, grader "
          f"{summary['grader_total_s']} s in all; slowest {slowest['notebook']}: {slowest['grader_s']} s in the "
          f"grader ({summary['slowest_share_of_limit']:.0%} of the {LIMIT_S:g} s limit), {slowest['plain_s']} s plain; "
          f"every source at full marks: {summary['full_marks']}")
    if args.json:
        print(json.dumps({"rows": rows, **summary}))
    return 0 if summary["full_marks"] else 1


if __name__ == "__main__":
    sys.exit(main())
