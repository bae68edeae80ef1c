"""Jupyter Server settings of the learners' labs (found through JUPYTER_CONFIG_PATH, set by the hub)."""

# ruff: noqa: F821
from pathlib import Path

c = get_config()  # noqa: F821

# JupyterLab in Korean by default (jupyterlab-language-pack-ko-KR); learners may switch in Settings > Language.
c.LabApp.app_settings_dir = str(Path(__file__).resolve().parent / "lab-settings")

# Idle culling follows kernels, not browsers: see academy_lab_activity.
c.ServerApp.jpserver_extensions = {"academy_lab_activity": True}
# Never cull a busy kernel (a training cell that prints nothing for an hour is still working).
c.MappingKernelManager.cull_busy = False
c.ServerApp.terminals_enabled = True
