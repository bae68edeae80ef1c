"""Jupyter Server settings of the learners' labs (found through JUPYTER_CONFIG_PATH, set by the hub)."""

# ruff: noqa: F821
import importlib.util
import os
from pathlib import Path

from jupyter_core.paths import jupyter_runtime_dir

c = get_config()  # noqa: F821
HERE = Path(__file__).resolve().parent


def _beside(name):
    """A module of this folder, whatever PYTHONPATH says."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# JupyterLab in Korean by default (jupyterlab-language-pack-ko-KR); learners may switch in Settings > Language.
# A "back to the academy" entry (File menu and top bar) opens the portal the hub names in ACADEMY_PORTAL_URL;
# the File menu keeps one sign-out, the hub's (it ends at the portal). See academy_lab_settings.py.
# Course staff's authoring lab (the hub sets ACADEMY_LAB_ROLE=authoring for the "authoring" profile) also has
# nbgrader's "Create Assignment" cell toolbar and validate button; no lab has nbgrader's exchange, formgrader,
# assignment or course lists: the portal releases, collects and grades.
AUTHORING = os.environ.get("ACADEMY_LAB_ROLE") == "authoring"
c.LabApp.app_settings_dir = str(_beside("academy_lab_settings").lab_settings_dir(
    os.environ.get("ACADEMY_PORTAL_URL"), Path(jupyter_runtime_dir()), authoring=AUTHORING))

# Idle culling follows kernels, not browsers: see academy_lab_activity.
c.ServerApp.jpserver_extensions = {
    "academy_lab_activity": True,
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.assignment_list": False,
    "nbgrader.server_extensions.course_list": False,
    "nbgrader.server_extensions.validate_assignment": AUTHORING,
}
# Never cull a busy kernel (a training cell that prints nothing for an hour is still working).
c.MappingKernelManager.cull_busy = False
c.ServerApp.terminals_enabled = True
