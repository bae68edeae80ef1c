# A fresh grading kernel's program (``python -c``; academy.engine.sandbox.launch.kernel_argv): ipykernel_launcher,
# except that ipykernel does not load the debugger (debugpy): a grading kernel is never debugged, and importing
# debugpy was a fifth of a kernel's start-up CPU.  The notebook can still import debugpy; sys.path and sys.argv
# are what ``-m ipykernel_launcher`` gives.  The engine appends ``tuning`` and the calls
# ``tune_kernel(...)`` then ``start_kernel()``.
import sys

if sys.path[0] == "":
    del sys.path[0]
import ipykernel_launcher  # noqa: E402 - after sys.path lost the working directory
from ipykernel.kernelapp import IPKernelApp  # noqa: E402


def start_kernel():
    sys.argv[0] = ipykernel_launcher.__file__
    sys.modules["debugpy"] = None
    app = IPKernelApp.instance()
    app.initialize()
    del sys.modules["debugpy"]
    app.start()
