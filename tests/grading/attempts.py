"""Learner attempts at the shipped assignments, for the grading and browser tests."""

from __future__ import annotations

import json

from tests.support import ROOT

HIDDEN_LINE = "full = add_defect_rate(production)"  # a line of the pandas assignment's first hidden tests


def pandas_attempt() -> bytes:
    """The student version with question 1 right, question 2 wrong (unsorted), question 3 not written."""
    from academy.engine.pipeline import release_notebooks

    released = json.loads(release_notebooks(ROOT / "courses" / "python-data", "01-pandas-basics")["production_log"])
    answers = {
        "add_defect_rate": (
            "def add_defect_rate(df):\n"
            "    result = df.copy()\n"
            "    produced = result['produced'].astype(float)\n"
            "    result['defect_rate'] = (result['defects'] / produced.where(produced > 0)).fillna(0.0)\n"
            "    return result\n"
            "print('문제 1 함수 준비 완료')\n"
            "from IPython.display import HTML, display\n"
            "display(HTML('<b onclick=\"steal()\">표 미리보기</b><script>steal()</script>'))\n"),
        "summarize_by_line": (
            "def summarize_by_line(df):\n"
            "    summary = df.groupby('line', sort=False)[['produced', 'defects']].sum()\n"
            "    summary['defect_rate'] = summary['defects'] / summary['produced']\n"
            "    return summary\n"),
        "priority_answer": "라인 B를 먼저 개선해야 합니다. <img src=x onerror=steal()>",
    }
    for cell in released["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell["source"] = answers[grade_id]
    return json.dumps(released, ensure_ascii=False).encode("utf-8")
