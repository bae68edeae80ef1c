"""Build the device kit: what the GPU checks need on a lent GPU machine that its image does not have.

Run on this (networked) machine, from the repository root, after ``make install lab-env``::

    .venv/bin/python bench/device/build_kit.py [--python 3.12.3]

The device tool's GPU machines have no network, a Python (3.12) holding PyTorch with CUDA, NumPy, pandas,
scikit-learn, matplotlib and nvidia-ml-py, and none of Jupyter, nbgrader or bubblewrap; a call takes the working
tree and at most 64 MiB in all.  The kit, in ``.device-kit/`` (ignored by git, sent with ``carry``), holds:

- ``wheels/``: wheels for the machine's Python of every distribution the checks need (``probe.py``: what
  ``bench/gpu_check.py`` and ``bench/gpu_track.py`` import and a real grading loads, in ``.venv``; ipykernel's
  requirements, in ``.venv-lab``), at the versions installed here, less those the image has (``IMAGE_HAS``);
- ``bwrap/``: Debian's bubblewrap and the libraries it links (``apt-get download``), for the grading sandbox;
- ``kit.json``: the Python version the wheels are for, the pins and the sizes.

``bench/device/run.sh`` installs it there and runs the checks; ``bench/README.md`` says how to call it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / ".device-kit"
LIMIT_MB = 64  # what one device call takes: the working tree and the carried kit together
# The image's own (the device tool's list of its packages), large or shared with PyTorch: never replaced. The
# project itself runs from the working tree.
IMAGE_HAS = {
    "ai-saemaul-academy", "numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "pillow", "torch",
    "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing", "joblib", "threadpoolctl", "python-dateutil",
    "six", "packaging", "setuptools", "psutil", "typing-extensions", "sympy", "mpmath", "networkx", "filelock",
    "fsspec", "nvidia-ml-py",
}
DEBS = ("bubblewrap", "libcap2", "libselinux1", "libpcre2-8-0")


def _key(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def pins() -> dict[str, str]:
    """``{distribution: version}`` the checks need, less the image's: the portal's versions where both name one."""
    found: dict[str, str] = {}
    for venv, side in ((".venv-lab", "kernel"), (".venv", "portal")):
        out = subprocess.run([str(ROOT / venv / "bin" / "python"), str(Path(__file__).with_name("probe.py")), side],
                             cwd=ROOT,
                             capture_output=True, text=True, check=True)
        found.update({_key(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()})
    return {name: version for name, version in sorted(found.items()) if name not in IMAGE_HAS}


def wheels(pinned: dict[str, str], python: str, dest: Path) -> None:
    """Download one wheel of each pin for CPython ``python`` (X.Y.Z) on x86-64 Linux (glibc 2.17 to 2.35)."""
    tag = "".join(python.split(".")[:2])
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(17, 36)] + ["manylinux2014_x86_64"]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", python, "--implementation", "cp", "--abi", f"cp{tag}", "--abi", "abi3",
           "--abi", "none", "--dest", str(dest)]
    for platform in platforms:
        cmd += ["--platform", platform]
    subprocess.run(cmd + [f"{name}=={version}" for name, version in pinned.items()], check=True)


def bubblewrap(dest: Path) -> None:
    """Debian's bwrap in ``dest/bin`` and the libraries it links in ``dest/lib`` (``run.sh`` uses them if needed)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", "-q", *DEBS], cwd=tmp, check=True, capture_output=True)
        unpacked = Path(tmp) / "root"
        for deb in Path(tmp).glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        (dest / "bin").mkdir(parents=True)
        (dest / "lib").mkdir()
        shutil.copy2(unpacked / "usr" / "bin" / "bwrap", dest / "bin" / "bwrap")
        for library in unpacked.glob("**/lib/x86_64-linux-gnu/*.so.*"):
            shutil.copy2(library, dest / "lib" / library.name, follow_symlinks=True)


def _mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default="3.12.3",
                        help="the device's Python, X.Y.Z (default 3.12.3: the device tool's image in 2026-11)")
    args = parser.parse_args()
    pinned = pins()
    shutil.rmtree(KIT, ignore_errors=True)
    wheels(pinned, args.python, KIT / "wheels")
    bubblewrap(KIT / "bwrap")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    tree_mb = sum((ROOT / name).stat().st_size for name in tracked.decode().split("\0") if name
                  and (ROOT / name).is_file()) / 2**20
    kit_mb = _mb(KIT)
    kit = {"python": ".".join(args.python.split(".")[:2]), "pins": pinned, "kit_mb": round(kit_mb, 1),
           "tree_mb": round(tree_mb, 1)}
    (KIT / "kit.json").write_text(json.dumps(kit, indent=1), encoding="utf-8")
    print(f"{KIT.relative_to(ROOT)}: {len(pinned)} wheels for Python {args.python} and bubblewrap, {kit_mb:.1f} MiB; "
          f"with the working tree ({tree_mb:.1f} MiB) {kit_mb + tree_mb:.1f} of the {LIMIT_MB} MiB a call takes")
    if kit_mb + tree_mb > LIMIT_MB:
        print("too large for one device call: add what the image has to IMAGE_HAS", file=sys.stderr)
        return 1
    print('On a lent GPU machine: run(command="bash bench/device/run.sh", carry=[".device-kit"], timeout_s=600)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
