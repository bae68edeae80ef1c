"""Run by every Python of a learner's lab at start (this folder is on the lab's PYTHONPATH, set by the hub).

A lab on a GPU seat (the hub sets ACADEMY_GPU_MEMORY_MB; see hub_config/gpu_share.py) holds PyTorch to the
seat: academy_gpu_cap.py.  Nothing else happens here, and nothing at all in any other lab.
"""

import os

if os.environ.get("ACADEMY_GPU_MEMORY_MB"):
    try:
        import academy_gpu_cap

        academy_gpu_cap.install()
    except Exception as exc:  # noqa: BLE001 - never stop a learner's Python from starting
        import sys

        print(f"academy: the GPU share could not be set up: {exc}", file=sys.stderr)
