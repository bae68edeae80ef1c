"""Reading and checking the course manifests under ``courses/`` (no database).

One module per idea:

- :mod:`.reader` reads ``tracks.toml`` and each ``course.toml`` into the dataclasses of :mod:`.model`;
- :mod:`.toml_source` is TOML read with line numbers, so every :class:`ManifestError` (:mod:`.errors`)
  names the file, the line and the field;
- :mod:`.grading_policy` is an assignment's ``[assignments.grading]`` table and its defaults;
- :mod:`.notebooks` reads an nbgrader source notebook's points, graded cells and imports.

The names below are the package's public interface; import them from here.
"""

from academy.catalog.manifest.errors import ManifestError
from academy.catalog.manifest.grading_policy import GRADING_DEFAULTS
from academy.catalog.manifest.model import AssignmentManifest, Catalog, CourseManifest, RefusedCourse, TrackManifest
from academy.catalog.manifest.notebooks import SourceNotebook, read_source_notebook, source_notebook_points
from academy.catalog.manifest.reader import LAB_PROFILES, read_catalog, read_course, read_tracks
from academy.catalog.manifest.toml_source import locate_line

__all__ = [
    "GRADING_DEFAULTS",
    "LAB_PROFILES",
    "AssignmentManifest",
    "Catalog",
    "CourseManifest",
    "ManifestError",
    "RefusedCourse",
    "SourceNotebook",
    "TrackManifest",
    "locate_line",
    "read_catalog",
    "read_course",
    "read_source_notebook",
    "read_tracks",
    "source_notebook_points",
]
