# A kernel zygote's program (``python -c``, run inside the sandbox by the lab interpreter; see
# academy.engine.sandbox.zygote).  It answers one JSON line on its control descriptor per request line on
# stdin; EOF on stdin (the worker is gone) ends it, and with it the sandbox's pid namespace.  The engine
# appends ``tuning`` and the calls ``tune_kernel(...)`` then ``main(KERNEL_OPTIONS)``.
import ctypes
import gc
import json
import os
import shutil
import signal
import sys
import threading
import traceback

if sys.path[0] == "":
    del sys.path[0]
import ipykernel_launcher  # noqa: E402 - after sys.path lost the working directory
from ipykernel.kernelapp import IPKernelApp  # noqa: E402

_prctl = ctypes.CDLL(None, use_errno=True).prctl
_PR_SET_DUMPABLE = 4


def _empty(root, keep):
    # ``keep``: the connection directory, bound from the host below /tmp; it is the worker's to empty.
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if keep == entry.path or keep.startswith(entry.path + "/"):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def _kernel(request, kernel_options):
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.closerange(3, 65536)
    _prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    os.chdir(request["cwd"])
    sys.argv = [ipykernel_launcher.__file__, "-f", request["conn"], *kernel_options]
    sys.modules["debugpy"] = None
    app = IPKernelApp.instance()
    app.initialize()
    del sys.modules["debugpy"]
    app.start()


def _preload(modules):
    # Imported once here instead of in every kernel: the modules of SandboxPolicy.zygote_preload (a module
    # that fails to import is left to the notebook, which gets the same error), then IPython's verbose
    # traceback machinery (stack_data, pygments), which IPython imports at a kernel's first error.
    import importlib
    for name in filter(None, modules.split(",")):
        try:
            importlib.import_module(name)
        except Exception as exc:
            print(f"zygote: preloading {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    try:
        from IPython.core import ultratb
        try:
            raise ValueError("warm-up")
        except ValueError:
            ultratb.AutoFormattedTB(mode="Context", theme_name="linux").structured_traceback(*sys.exc_info())
    except Exception:
        traceback.print_exc()


def main(kernel_options):
    _preload(sys.argv[2])
    # With gc.freeze() before each fork, the kernels' garbage collections never walk (and so never copy the
    # pages of) the objects inherited from the zygote: a grading kernel's full collection was a tenth of its CPU.
    gc.collect()
    control = os.dup(1)
    os.dup2(2, 1)
    if _prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise SystemExit("zygote: prctl(PR_SET_DUMPABLE) failed")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    os.chdir("/")

    def reply(**fields):
        os.write(control, (json.dumps(fields) + "\n").encode())

    reply(pid=os.getpid())
    for line in sys.stdin.buffer:
        request = json.loads(line)
        _empty("/tmp", sys.argv[1])
        _empty("/dev/shm", sys.argv[1])
        if threading.active_count() != 1:
            reply(error="the zygote has threads")
            continue
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(control)
                _kernel(request, kernel_options)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        reply(pid=pid)
