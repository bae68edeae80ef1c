"""PyTorch held to the lab's GPU seat, and an out-of-memory error that says why (see hub_config/gpu_share.py).

``install()`` (from sitecustomize.py, when ACADEMY_GPU_MEMORY_MB is set) watches for ``import torch``
without importing it (PyTorch takes a second and a half to import; most cells never need it).  Once
PyTorch is imported:

* without MPS (ACADEMY_GPU_SHARE_ENFORCED=soft) it queues, for the moment CUDA starts, a cap of PyTorch's
  caching allocator at the seat's memory (``torch.cuda.set_per_process_memory_fraction``).  The cap is
  soft: memory allocated outside PyTorch's allocator (another library, raw CUDA) is not counted.  Under
  MPS the driver enforces the limit and nothing is capped here;
* in an IPython kernel, ``torch.cuda.OutOfMemoryError`` is shown with its traceback and a message saying
  that the lab's share of the GPU is used up and what to do, instead of only CUDA's allocator figures.
"""

import importlib.abc
import importlib.util
import os
import sys

MESSAGE = (
    "이 실습 환경의 GPU 메모리 몫({mb} MiB)을 다 썼습니다. 배치 크기나 이미지 크기를 줄이거나, 필요 없는 텐서를 "
    "지우고(del, torch.cuda.empty_cache()) 다시 실행하세요. 그래도 안 되면 커널을 다시 시작하세요.\n"
    "This lab's share of the GPU ({mb} MiB) is used up: use a smaller batch or image size, or delete tensors "
    "you no longer need (del, torch.cuda.empty_cache()) and run again; if that is not enough, restart the kernel."
)


def seat_mb():
    try:
        return int(os.environ.get("ACADEMY_GPU_MEMORY_MB", ""))
    except ValueError:
        return None


def cap(torch, mb):
    """Cap PyTorch's allocator on the lab's device at ``mb`` MiB (run when CUDA starts)."""
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, mb * 1024 * 1024 / total), 0)


def out_of_memory_handler(mb):
    def handler(shell, etype, value, tb, tb_offset=None):
        lines = [*shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset), "",
                 MESSAGE.format(mb=mb)]
        shell._showtraceback(etype, value, lines)  # IPython discards what a handler returns when code runs
        return lines

    return handler


def torch_imported(torch):
    """Called once, right after ``import torch`` finished."""
    mb = seat_mb()
    if mb is None:
        return
    if os.environ.get("ACADEMY_GPU_SHARE_ENFORCED", "soft") != "mps":
        lazy = getattr(torch.cuda, "_lazy_call", None)  # run when CUDA starts, not now (a CUDA context costs)
        if lazy is not None:
            lazy(lambda: cap(torch, mb))
        elif torch.cuda.is_initialized():
            cap(torch, mb)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    error = getattr(torch.cuda, "OutOfMemoryError", None)
    if shell is not None and error is not None:
        shell.set_custom_exc((error,), out_of_memory_handler(mb))


class _Watch(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of ``torch`` so that ``torch_imported`` runs after it."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module):
            run(module)
            sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
            try:
                torch_imported(module)
            except Exception as exc:  # noqa: BLE001 - the learner's import must not fail because of us
                print(f"academy: the GPU share could not be applied: {exc}", file=sys.stderr)

        loader.exec_module = exec_module
        return spec


def install():
    if "torch" in sys.modules:
        torch_imported(sys.modules["torch"])
    elif not any(isinstance(f, _Watch) for f in sys.meta_path):
        sys.meta_path.insert(0, _Watch())
