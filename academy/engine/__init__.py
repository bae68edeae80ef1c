"""The grading engine: drives nbgrader and runs learners' code in the sandbox; knows nothing of Flask or the portal.

Its entry points are ``pipeline.grade_submission`` / ``pipeline.release_notebooks`` (what the portal's
grading worker and releases call) and ``grade.run_grade`` (``academy grade``).  Modules here import
only each other and third-party packages (nbgrader, jupyter_client, ...), never ``flask`` or another
``academy`` package; ``tests/engine/test_boundary.py`` checks it.  Its expected failures are its own
(``errors.EngineError``); the portal translates them (``academy.errors.from_engine``).
"""
