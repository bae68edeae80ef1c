"""Reading and checking course manifests: the shipped courses/ and every kind of mistake."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from academy.catalog.manifest import Catalog, ManifestError, locate_line, read_catalog, read_course, read_tracks
from academy.errors import ValidationFailed
from tests.support import COURSES

PANDAS_NB = "python-data/source/01-pandas-basics/production_log.ipynb"


def read_strictly(courses: Path) -> Catalog:
    """``read_catalog``, raising the problem of the first course it refused (``read_course``'s ManifestError)."""
    catalog = read_catalog(courses)
    for refused in catalog.refused:
        read_course(courses / refused.slug, {t.slug for t in catalog.tracks})
    return catalog


def copy_courses(tmp_path: Path) -> Path:
    """A private copy of the shipped courses/ to break."""
    return Path(shutil.copytree(COURSES, tmp_path / "courses"))


def edit(path: Path, old: str, new: str) -> str:
    """Replace the first ``old`` in ``path`` with ``new``; returns the new text."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    return text


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


# --------------------------------------------------------------------------- shipped content


def test_shipped_catalog_reads() -> None:
    catalog = read_catalog(COURSES)

    assert [t.slug for t in catalog.tracks] == ["ai-basics", "data-analytics", "applied-ml", "ai-advanced"]
    track = catalog.tracks[0]
    assert track.title_ko == "제조 AI 기초" and track.title_en == "AI Foundations for Manufacturing"
    assert all(t.description_ko and t.description_en for t in catalog.tracks)
    assert catalog.refused == ()

    courses = {c.slug: c for c in catalog.courses}
    assert {slug: c.track for slug, c in courses.items()} == {
        "python-basics": "ai-basics", "python-data": "ai-basics", "ml-quality": "ai-basics",
        "process-spc": "data-analytics", "anomaly-maintenance": "data-analytics",
        "ml-practice": "applied-ml", "ml-pitfalls": "applied-ml",
        "pytorch-basics": "ai-advanced", "dl-vision": "ai-advanced",
    }
    for course in courses.values():
        assert course.instructors == ("instructor@demo.academy.kr",)
        assert course.lab_profile in {"cpu", "gpu", "gpu-shared"}
        assert course.directory == COURSES.resolve() / course.slug
        assert len(course.manifest_hash) == 64
        assert set(course.passing_rule) == {"min_score_percent", "required_assignments"}
        assert course.passing_rule["required_assignments"] == [a.slug for a in course.assignments]
    # The deep-learning track runs on a seat of a shared GPU (and on the CPU where there is none): a whole device
    # per learner for these notebooks would leave most of it idle. The others run on the CPU.
    assert {(c.lab_profile, c.gpu_hour_quota) for c in courses.values() if c.track == "ai-advanced"} == {
        ("gpu-shared", 10.0)}
    assert {c.lab_profile for c in courses.values() if c.track != "ai-advanced"} == {"cpu"}

    scores = {(c.slug, a.slug): (a.max_score, a.notebooks) for c in catalog.courses for a in c.assignments}
    assert scores == {
        ("python-basics", "01-values-and-lists"): (12.0, ("shift_report.ipynb",)),
        ("python-basics", "02-functions-and-loops"): (12.0, ("defect_counts.ipynb",)),
        ("python-basics", "03-numpy-arrays"): (12.0, ("sensor_readings.ipynb",)),
        ("python-data", "01-pandas-basics"): (12.0, ("production_log.ipynb",)),
        ("python-data", "02-sensor-cleaning"): (13.0, ("sensor_cleaning.ipynb",)),
        ("python-data", "03-shift-charts"): (15.0, ("shift_charts.ipynb",)),
        ("ml-quality", "01-linear-regression"): (13.0, ("defect_regression.ipynb",)),
        ("ml-quality", "02-logistic-defect"): (13.0, ("defect_classifier.ipynb",)),
        ("ml-quality", "03-final-project"): (17.0, ("final_project.ipynb",)),
        ("process-spc", "01-cleaning-process-data"): (17.0, ("process_data_cleaning.ipynb",)),
        ("process-spc", "02-control-charts"): (15.0, ("xbar_r_charts.ipynb",)),
        ("process-spc", "03-process-capability"): (15.0, ("process_capability.ipynb",)),
        ("anomaly-maintenance", "01-anomaly-detection"): (16.0, ("anomaly_detection.ipynb",)),
        ("anomaly-maintenance", "02-maintenance-features"): (15.0, ("maintenance_features.ipynb",)),
        ("anomaly-maintenance", "03-final-project"): (17.0, ("predictive_maintenance_project.ipynb",)),
        ("ml-practice", "01-first-classifier"): (13.0, ("brake_disc_inspection.ipynb",)),
        ("ml-practice", "02-regression"): (15.0, ("coating_thickness.ipynb",)),
        ("ml-practice", "03-validation"): (14.0, ("validation.ipynb",)),
        ("ml-pitfalls", "01-feature-engineering"): (14.0, ("press_features.ipynb",)),
        ("ml-pitfalls", "02-leakage-and-imbalance"): (14.0, ("leakage_imbalance.ipynb",)),
        ("ml-pitfalls", "03-final-project"): (17.0, ("cost_aware_classifier.ipynb",)),
        ("pytorch-basics", "01-tensors"): (13.0, ("sensor_tensors.ipynb",)),
        ("pytorch-basics", "02-training-loop"): (15.0, ("quality_regression.ipynb",)),
        ("pytorch-basics", "03-why-gpu"): (14.0, ("why_gpu.ipynb",)),
        ("dl-vision", "01-defect-cnn"): (12.0, ("surface_scratch_cnn.ipynb",)),
        ("dl-vision", "02-transfer-learning"): (12.0, ("crack_transfer.ipynb",)),
        ("dl-vision", "03-final-project"): (16.0, ("part_inspection.ipynb",)),
    }


def test_manifest_hash_is_stable_and_follows_notebooks(tmp_path: Path) -> None:
    courses = copy_courses(tmp_path)
    before = read_course(courses / "python-data", {"ai-basics"}).manifest_hash
    assert read_course(courses / "python-data", {"ai-basics"}).manifest_hash == before
    assert read_course(COURSES / "python-data", {"ai-basics"}).manifest_hash == before

    edit(courses / PANDAS_NB, "과제 1.", "과제 1번.")
    assert read_course(courses / "python-data", {"ai-basics"}).manifest_hash != before


@pytest.mark.parametrize("notebook", sorted(COURSES.glob("*/source/*/*.ipynb")), ids=lambda p: p.name)
def test_shipped_notebooks_are_complete_nbgrader_sources(notebook: Path) -> None:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5
    cells = nb["cells"]
    assert all(cell.get("id") for cell in cells)
    assert len({cell["id"] for cell in cells}) == len(cells)

    meta = [cell["metadata"]["nbgrader"] for cell in cells if "nbgrader" in cell["metadata"]]
    grade_ids = [m["grade_id"] for m in meta]
    assert len(grade_ids) == len(set(grade_ids))

    def source(cell: dict) -> str:
        return "".join(cell["source"])

    answers = [c for c in cells if c["metadata"].get("nbgrader", {}).get("solution")]
    tests = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade") and c["cell_type"] == "code"]
    manual = [c for c in answers if c["cell_type"] == "markdown"]
    assert any("### BEGIN SOLUTION" in source(c) and "### END SOLUTION" in source(c) for c in answers)
    assert all(not c["metadata"]["nbgrader"]["grade"] for c in answers if c["cell_type"] == "code")
    assert tests and all(c["metadata"]["nbgrader"]["locked"] and c["metadata"]["nbgrader"]["points"] > 0 for c in tests)
    assert any("### BEGIN HIDDEN TESTS" in source(c) and "### END HIDDEN TESTS" in source(c) for c in tests)
    assert len(manual) == 1 and manual[0]["metadata"]["nbgrader"]["grade"]
    assert manual[0]["metadata"]["nbgrader"]["points"] > 0
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in cells if c["cell_type"] == "code")


def test_nbgrader_config_names_each_course() -> None:
    for course_dir in sorted(path.parent for path in COURSES.glob("*/course.toml")):
        config = (course_dir / "nbgrader_config.py").read_text(encoding="utf-8")
        assert f'c.CourseDirectory.course_id = "{course_dir.name}"' in config
        assert "c.ExecutePreprocessor.timeout" in config


# --------------------------------------------------------------------------- the locator


def test_locate_line_finds_keys_in_arrays_of_tables() -> None:
    text = (
        'id = "x"\n'  # 1
        "[title]\n"  # 2
        'ko = "a"\n'  # 3
        "[[assignments]]\n"  # 4
        'id = "one"\n'  # 5
        "[assignments.title]\n"  # 6
        'ko = """first\n'  # 7
        'id = "not a key"\n'  # 8
        '"""\n'  # 9
        "[[assignments]]\n"  # 10
        'id = "two"\n'  # 11
        "title = { ko = 'b' }\n"  # 12
    )
    assert locate_line(text, (), "id") == 1
    assert locate_line(text, ("title",), "ko") == 3
    assert locate_line(text, ("assignments", 0), "id") == 5
    assert locate_line(text, ("assignments", 0, "title"), "ko") == 7
    assert locate_line(text, ("assignments", 1), "id") == 11
    # not written: the enclosing table (or the inline table's key) is the best place to point at
    assert locate_line(text, ("assignments", 0, "title"), "en") == 6
    assert locate_line(text, ("assignments", 1, "title"), "ko") == 12
    assert locate_line(text, ("assignments", 1), "due_days") == 10
    assert locate_line(text, (), "hours") is None


# --------------------------------------------------------------------------- malformed manifests

COURSE_TOML = "python-data/course.toml"

# (case id, file under courses/, text to replace, replacement, field named, line marker, words in the message)
# The expected line is the line of the edited file that holds ``line marker``.
MALFORMED = [
    ("syntax-error", COURSE_TOML, "hours = 12.0", "hours = 12.0.0", "hours", "hours =", "TOML syntax error"),
    ("missing-field", COURSE_TOML, "hours = 12.0\n", "", "hours", None, "required field is missing"),
    ("missing-nested-field", COURSE_TOML, 'en = "Production Logs with pandas"\n', "",
     "assignments[0].title.en", "[assignments.title]", "required field is missing"),
    ("wrong-type", COURSE_TOML, "hours = 12.0", 'hours = "twelve"', "hours", "hours =", "non-negative number"),
    ("negative-number", COURSE_TOML, "hours = 12.0", "hours = -3", "hours", "hours =", "non-negative number"),
    ("wrong-type-position", COURSE_TOML, "position = 2", "position = 2.5", "position", "position = 2.5",
     "whole number"),
    ("unknown-key", COURSE_TOML, "hours = 12.0", "hour = 12.0", "hour", "hour =", "did you mean 'hours'"),
    ("unknown-nested-key", COURSE_TOML, "due_days = 28", "due_date = 28", "assignments[1].due_date",
     "due_date", "unknown key"),
    ("unknown-track", COURSE_TOML, 'track = "ai-basics"', 'track = "ai-basic"', "track", "track =",
     "unknown track 'ai-basic'"),
    ("bad-lab-profile", COURSE_TOML, 'lab_profile = "cpu"', 'lab_profile = "tpu"', "lab_profile",
     "lab_profile", "must be one of cpu, gpu, gpu-shared"),
    ("bad-grading-profile", COURSE_TOML, 'lab_profile = "cpu"', 'lab_profile = "cpu"\ngrading_profile = "tpu"',
     "grading_profile", "grading_profile", "must be one of cpu, gpu (found 'tpu')"),
    ("gpu-quota-on-cpu", COURSE_TOML, "gpu_hour_quota = 0.0", "gpu_hour_quota = 5.0", "gpu_hour_quota",
     "gpu_hour_quota", "'cpu' lab profile"),
    ("id-not-dir-name", COURSE_TOML, 'id = "python-data"', 'id = "python-data-2"', "id", 'id = "python-data-2"',
     "directory name"),
    ("instructor-not-email", COURSE_TOML, 'instructors = ["instructor@demo.academy.kr"]',
     'instructors = ["instructor@demo.academy.kr", "kim"]', "instructors[1]", "instructors", "'kim'"),
    ("missing-assignment-dir", COURSE_TOML, 'id = "02-sensor-cleaning"', 'id = "02-sensor-cleanup"',
     "assignments[1].id", '"02-sensor-cleanup"', "no assignment directory source/02-sensor-cleanup/"),
    ("duplicate-assignment-id", COURSE_TOML, 'id = "02-sensor-cleaning"', 'id = "01-pandas-basics"',
     "assignments[1].id", 'id = "01-pandas-basics"|2', "duplicate assignment id '01-pandas-basics'"),
    ("unknown-required-assignment", COURSE_TOML, '"03-shift-charts"]', '"03-shift"]',
     "passing.required_assignments[2]", "required_assignments", "'03-shift' is not one of"),
    ("passing-over-100", COURSE_TOML, "min_score_percent = 60", "min_score_percent = 120",
     "passing.min_score_percent", "min_score_percent", "at most 100"),
    ("competency-without-english", COURSE_TOML, 'en = "Read production logs with pandas and summarise them per line"',
     'english = "Read production logs"', "competencies[0].english", "english =", "unknown key"),
    ("misspelt-table", COURSE_TOML, "[description]", "[descripton]", "descripton", "[descripton]",
     "did you mean 'description'"),
    ("track-unknown-key", "tracks.toml", "position = 1", "positon = 1", "tracks[0].positon", "positon",
     "did you mean 'position'"),
    ("track-title-type", "tracks.toml", 'en = "AI Foundations for Manufacturing"', "en = 3",
     "tracks[0].title.en", "en = 3", "must be a string"),
    ("broken-notebook", PANDAS_NB, '"cells": [', '"cells": [,', None, '"cells": [,', "not valid JSON"),
    ("notebook-not-v4", PANDAS_NB, '"nbformat": 4', '"nbformat": 3', "nbformat", '"nbformat": 3', "must be 4"),
    ("notebook-points", PANDAS_NB, '"points": 2', '"points": "two"', "cells[4].metadata.nbgrader.points",
     '"grade_id": "test_add_defect_rate"', "non-negative points"),
    ("notebook-duplicate-grade-id", PANDAS_NB, '"grade_id": "test_find_bad_days"',
     '"grade_id": "test_add_defect_rate"', "cells[10].metadata.nbgrader.grade_id",
     '"grade_id": "test_add_defect_rate"|2', "used by two cells"),
]


@pytest.mark.parametrize(
    ("rel", "old", "new", "field", "marker", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in MALFORMED],
)
def test_malformed_manifest_names_file_line_and_field(
    tmp_path: Path, rel: str, old: str, new: str, field: str | None, marker: str | None, words: str
) -> None:
    courses = copy_courses(tmp_path)
    text = edit(courses / rel, old, new)

    with pytest.raises(ManifestError) as caught:
        read_strictly(courses)

    error = caught.value
    message = str(error)
    if marker is None:
        line = 1  # a key missing from the top-level table: the top of the file
    else:
        needle, _, occurrence = marker.partition("|")
        line = line_of(text, needle, int(occurrence or 1))
    assert message.startswith(f"courses/{rel}, line {line}: "), message
    assert error.path == f"courses/{rel}" and error.line == line
    if field is not None:
        assert f"field '{field}': " in message, message
    assert words in message, message
    assert isinstance(error, ValidationFailed)


def test_syntax_error_keeps_tomllib_position(tmp_path: Path) -> None:
    courses = copy_courses(tmp_path)
    edit(courses / COURSE_TOML, "[title]", "[title")
    with pytest.raises(ManifestError, match=r"course\.toml, line \d+: .*TOML syntax error: .*\(at line \d+, column"):
        read_strictly(courses)


def test_missing_tracks_file(tmp_path: Path) -> None:
    courses = copy_courses(tmp_path)
    (courses / "tracks.toml").unlink()
    with pytest.raises(ManifestError, match=r"^courses/tracks\.toml: file is missing$"):
        read_catalog(courses)


def test_directory_without_course_toml_is_an_error_unless_hidden(tmp_path: Path) -> None:
    courses = copy_courses(tmp_path)
    (courses / "draft").mkdir()
    with pytest.raises(ManifestError, match=r"^courses/draft/course\.toml: file is missing$"):
        read_strictly(courses)
    (courses / "draft").rename(courses / "_draft")
    (courses / ".ipynb_checkpoints").mkdir()
    assert len(read_catalog(courses).courses) == 9


def test_assignment_dir_without_notebook(tmp_path: Path) -> None:
    courses = copy_courses(tmp_path)
    nb = courses / PANDAS_NB
    nb.rename(nb.with_suffix(".txt"))
    line = line_of((courses / COURSE_TOML).read_text(encoding="utf-8"), 'id = "01-pandas-basics"')
    with pytest.raises(ManifestError) as caught:
        read_strictly(courses)
    assert str(caught.value) == (
        f"courses/{COURSE_TOML}, line {line}: field 'assignments[0].id': "
        "courses/python-data/source/01-pandas-basics/ holds no .ipynb notebook"
    )


def test_duplicate_track_id(tmp_path: Path) -> None:
    courses = copy_courses(tmp_path)
    path = courses / "tracks.toml"
    original = path.read_text(encoding="utf-8")
    first = original.index("[[tracks]]")
    first_track = original[first : original.find("[[tracks]]", first + 1)]  # ai-basics again
    path.write_text(original + "\n" + first_track, encoding="utf-8")
    with pytest.raises(ManifestError, match=r"line \d+: field 'tracks\[4\]\.id': duplicate track id 'ai-basics'"):
        read_tracks(path)


def test_unlisted_assignment_dirs_are_not_published(tmp_path: Path) -> None:
    courses = copy_courses(tmp_path)
    draft = courses / "python-data" / "source" / "99-draft"
    draft.mkdir()
    (draft / "draft.ipynb").write_text("not json", encoding="utf-8")
    course = read_course(courses / "python-data", {"ai-basics"})
    assert [a.slug for a in course.assignments] == ["01-pandas-basics", "02-sensor-cleaning", "03-shift-charts"]


def test_points_count_graded_and_task_cells(tmp_path: Path) -> None:
    courses = copy_courses(tmp_path)
    nb_path = courses / PANDAS_NB
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    nb["cells"].append(
        {
            "cell_type": "markdown",
            "id": "task-cell",
            "metadata": {
                "nbgrader": {"grade": False, "grade_id": "task_1", "locked": False, "points": 1.5,
                             "schema_version": 3, "solution": False, "task": True}
            },
            "source": ["Describe the chart."],
        }
    )
    nb_path.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    course = read_course(courses / "python-data", {"ai-basics"})
    assert course.assignments[0].max_score == 13.5
