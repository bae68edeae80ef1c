"""Kernels forked from a kernel zygote (``academy/engine/sandbox/zygote.py``), against real attacks.

Real bubblewrap, real kernels, a real zygote.  The zygote serves one kernel after another;
what one kernel leaves (files in HOME, /tmp, /dev/shm, processes) must be gone before the
next, the zygote must stay out of the kernels' reach, and every failure of the zygote must
fall back to a fresh kernel.  Without the sandbox, root or cgroup.kill the tests skip.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from academy.engine.anticheat.canary import canary_source
from academy.engine.anticheat.cells import new_nonce
from academy.engine.sandbox import SandboxPolicy, probe_isolation, run_cells, zygote
from academy.engine.sandbox.launch import CANARY_MESSAGE
from academy.engine.sandbox.policy import CGROUP_GROUP
from tests.engine.sandboxing import TRY, as_json, gone, processes
from tests.support import ROOT, skip_or_fail


@pytest.fixture(scope="module")
def policy() -> SandboxPolicy:
    policy = SandboxPolicy(cell_timeout=20.0, notebook_timeout=120.0, allow_unsandboxed=False, zygote=True)
    if not policy.bwrap or not os.access(policy.python, os.X_OK):
        skip_or_fail("bubblewrap or the lab interpreter is missing")
    report = probe_isolation(policy, refresh=True)
    if not report.sandbox_available:
        skip_or_fail("the sandbox cannot be built here: " + "; ".join(report.notes))
    if not zygote.usable(policy, report):
        skip_or_fail("kernel zygotes need root, the uid drop and cgroup v2's cgroup.kill; kernels start fresh here")
    return policy


@pytest.fixture(autouse=True)
def _no_zygote_between_tests() -> None:
    zygote.close_all()
    yield
    zygote.close_all()


def _work(root: Path, name: str, content: str = "hello\n") -> Path:
    work = root / name
    work.mkdir()
    (work / "data.txt").write_text(content)
    return work


def _job_cgroups() -> list[Path]:
    """This process's per-kernel cgroups (the zygote's own excepted)."""
    found = []
    for group in probe_isolation(SandboxPolicy()).cgroups.values():
        base = Path(group) if Path(group).name == CGROUP_GROUP else Path(group, CGROUP_GROUP)
        if base.is_dir():
            found += [p for p in base.glob(f"{os.getpid()}-*") if "-zygote-" not in p.name]
    return found


def _run(policy: SandboxPolicy, work: Path, cells: list[str]) -> list:
    out = run_cells(policy, work, cells, zygote=True)
    assert not _job_cgroups(), "a kernel's cgroups were left behind"
    assert work.is_dir() and not work.is_symlink(), "the workdir was not put back"
    return out


def _the_zygote() -> zygote.Zygote:
    (only,) = zygote.running()
    return only


def test_kernels_share_one_zygote_and_nothing_else(policy: SandboxPolicy, tmp_path: Path) -> None:
    first = _work(tmp_path, "first", "first learner\n")
    second = _work(tmp_path, "second", "second learner\n")
    leave = (
        "import os, json\n"
        "for path in ('/tmp/left.txt', '/dev/shm/left.txt', os.path.expanduser('~/left.txt'), 'mine.txt'):\n"
        "    open(path, 'w').write('secret of the first learner')\n"
        "os.makedirs(os.path.expanduser('~/.config/x'), exist_ok=True)\n"
        "print(json.dumps({'pid': os.getpid(), 'ppid': os.getppid(), 'cwd': os.getcwd(),"
        " 'data': open('data.txt').read()}))"
    )
    look = (
        "import os, json\n"
        "print(json.dumps({'pid': os.getpid(), 'tmp': os.listdir('/tmp'), 'shm': os.listdir('/dev/shm'),"
        " 'home': sorted(os.listdir(os.path.expanduser('~'))), 'work': sorted(os.listdir('.')),"
        " 'data': open('data.txt').read()}))"
    )
    one = as_json(_run(policy, first, [leave])[0])
    zyg = _the_zygote()
    two = as_json(_run(policy, second, [look])[0])
    assert _the_zygote() is zyg and zyg.alive(), "the second kernel did not come from the same zygote"
    assert one["cwd"] == "/home/learner/work" and one["data"] == "first learner\n"
    assert one["pid"] != two["pid"]
    assert two["data"] == "second learner\n" and two["work"] == ["data.txt"]
    assert "left.txt" not in two["shm"] and not any("left" in name for name in two["tmp"]), two
    assert two["home"] == ["work"] or set(two["home"]) <= {"work", ".ipython", ".local", ".cache"}, two["home"]
    assert "left.txt" not in two["home"] and ".config" not in two["home"]
    # what the first kernel wrote in its workdir is back in the first job's directory on the host
    assert (first / "mine.txt").read_text() == "secret of the first learner"
    assert not (second / "mine.txt").exists()


def test_a_daemon_of_one_kernel_is_dead_before_the_next_kernel(policy: SandboxPolicy, tmp_path: Path) -> None:
    spy = (
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        while True:\n"
        "            for d in ('/home/learner/work', '/tmp', '/home/learner'):\n"
        "                try:\n"
        "                    open(d + '/spied.txt', 'a').write(str(os.listdir(d)))\n"
        "                except OSError:\n"
        "                    pass\n"
        "            time.sleep(0.02)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "time.sleep(0.3)\n"
        "print(os.path.exists('spied.txt'))"
    )
    out = _run(policy, _work(tmp_path, "first"), [spy])
    assert out[0].stdout.strip() == "True"
    zyg = _the_zygote()
    assert zyg.clean(), "a process of the first kernel is still in the zygote's cgroups"
    second = _work(tmp_path, "second", "second learner\n")
    look = "import os, time\ntime.sleep(0.5)\nprint(sorted(os.listdir('.')), sorted(os.listdir('/tmp')))"
    out = _run(policy, second, [look])
    assert "spied" not in out[0].stdout, out[0].stdout
    assert not (second / "spied.txt").exists()


def test_the_zygote_is_out_of_the_kernels_reach(policy: SandboxPolicy, tmp_path: Path) -> None:
    cell = TRY + (
        "import ctypes, shutil\n"
        "z = os.getppid()\n"
        "home = os.path.expanduser('~')\n"
        "def replace_work():\n"
        "    os.symlink('/etc', home + '/other')\n"
        "    return os.rename(home + '/other', home + '/work')\n"
        "print(json.dumps({\n"
        "  'environ': attempt(lambda: open(f'/proc/{z}/environ', 'rb').read()),\n"
        "  'fds': attempt(lambda: os.listdir(f'/proc/{z}/fd')),\n"
        "  'stdin': attempt(lambda: open(f'/proc/{z}/fd/0', 'wb')),\n"
        "  'mem': attempt(lambda: open(f'/proc/{z}/mem', 'rb').read(1)),\n"
        "  'ptrace': attempt(lambda: ctypes.CDLL(None, use_errno=True).ptrace(16, z, 0, 0) or ctypes.get_errno()),\n"
        "  'rename_work': attempt(lambda: os.rename(home + '/work', home + '/moved')),\n"
        "  'replace_work': attempt(replace_work),\n"
        "  'remove_work': attempt(lambda: shutil.rmtree(home + '/work')),\n"
        "  'cwd': os.getcwd(),\n"
        "}))"
    )
    work = _work(tmp_path, "work")
    seen = as_json(_run(policy, work, [cell])[0])
    for key in ("environ", "fds", "stdin", "mem"):
        assert seen[key].startswith("PermissionError"), (key, seen[key])
    assert seen["ptrace"] == "ok:-1", seen["ptrace"]  # PTRACE_ATTACH refused
    assert seen["rename_work"].startswith("PermissionError"), seen
    assert seen["replace_work"].startswith("PermissionError"), seen
    assert not seen["remove_work"].startswith("ok"), seen  # its files may go, the directory stays
    assert work.is_dir() and not work.is_symlink()
    assert _the_zygote().clean()


def test_a_kernel_that_kills_the_zygote_only_loses_itself(policy: SandboxPolicy, tmp_path: Path) -> None:
    first = _work(tmp_path, "first")
    # The kernel goes when bubblewrap's init, its parent's parent, sees the zygote die and leaves: soon, not at
    # once; under load a short cell can still run meanwhile, so the second cell gives it time.
    out = _run(policy, first, ["import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
                               "import time\ntime.sleep(15)", "'after'"])
    assert "died" in {cell.status for cell in out} and out[-1].status in {"died", "skipped"}, out
    gone = zygote.running()
    assert not gone or not gone[0].alive()
    out = _run(policy, _work(tmp_path, "second"), ["print(open('data.txt').read())"])
    assert out[0].stdout == "hello\n\n"
    assert _the_zygote().alive()
    assert (first / "data.txt").read_text() == "hello\n"


def test_the_job_cgroups_limit_a_forked_kernel(policy: SandboxPolicy, tmp_path: Path) -> None:
    if "memory" not in probe_isolation(policy).cgroups:
        skip_or_fail("no writable memory cgroup here")
    small = dataclasses.replace(policy, memory_bytes=384 * 1024 * 1024, address_space_bytes=None)
    bomb = (
        "import os, json\nchildren, error = 0, None\n"
        "try:\n"
        "    for _ in range(5000):\n"
        "        if os.fork() == 0:\n"
        "            import time; time.sleep(60); os._exit(0)\n"
        "        children += 1\n"
        "except OSError as exc:\n"
        "    error = exc.errno\n"
        "print(json.dumps({'children': children, 'errno': error}))"
    )
    out = _run(small, _work(tmp_path, "forks"), [bomb])
    seen = as_json(out[0])
    assert seen["errno"] == 11 and seen["children"] < small.max_processes, seen
    assert not [p for p in processes() if b"sleep" in p[2] and p[1] == _the_zygote().uid]
    out = _run(small, _work(tmp_path, "memory"), ["hog = bytearray(3 * 1024**3)", "'after'"])
    assert out[0].status == "died" and "out of memory" in out[0].error, out[0]
    assert _the_zygote().clean()


def test_a_failed_fork_falls_back_to_a_fresh_kernel(
    policy: SandboxPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(policy, _work(tmp_path, "warm"), ["1"])
    zyg = _the_zygote()

    def broken(self: zygote.Zygote, connection_file: str, log_file: str) -> int:
        raise zygote.ZygoteError("simulated failure")

    monkeypatch.setattr(zygote.Zygote, "spawn", broken)
    work = _work(tmp_path, "fresh")
    out = _run(policy, work, ["import os; print(os.getppid(), open('data.txt').read().strip())"])
    assert out[0].stdout.split() == ["1", "hello"], out[0]  # a fresh sandbox: its init is the parent
    assert not zyg.alive() and zygote.running() == [], "the failed zygote was kept"
    assert gone({zyg.pid})


def test_zygote_is_not_used_when_turned_off_or_across_filesystems(policy: SandboxPolicy, tmp_path: Path) -> None:
    off = dataclasses.replace(policy, zygote=False)
    out = _run(off, _work(tmp_path, "off"), ["import os; print(os.getppid())"])
    assert out[0].stdout.strip() == "1" and zygote.running() == []
    shm = Path("/dev/shm")
    if shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        _run(policy, _work(tmp_path, "warm"), ["1"])
        other = Path(os.path.realpath(shm)) / f"academy-test-{os.getpid()}"
        other.mkdir()
        try:
            work = _work(other, "work")
            out = _run(policy, work, ["import os; print(os.getppid(), open('data.txt').read().strip())"])
            assert out[0].stdout.split() == ["1", "hello"]
        finally:
            import shutil

            shutil.rmtree(other, ignore_errors=True)


def test_the_zygote_ends_with_its_worker(policy: SandboxPolicy, tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys
    import tempfile

    script = (
        "import os, sys, time\n"
        "from academy.engine.sandbox import SandboxPolicy, run_cells, zygote\n"
        "policy = SandboxPolicy(zygote=True)\n"
        "run_cells(policy, sys.argv[1], ['1'], zygote=True)\n"
        "print(zygote.running()[0].pid, zygote.running()[0].uid, flush=True)\n"
        "time.sleep(60)\n"
    )
    work = _work(tmp_path, "work")
    private_tmp = Path(tempfile.mkdtemp(prefix="zt-", dir="/tmp"))  # short: the zygote's folder lands in it
    worker = subprocess.Popen(
        [sys.executable, "-c", script, str(work)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(private_tmp)},
    )
    try:
        line = worker.stdout.readline() if worker.stdout else ""
        pid, uid = (int(x) for x in line.split())
        assert not gone({pid}, timeout=0.2)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert gone({pid}, timeout=5.0), "the zygote outlived its worker"
        deadline = time.monotonic() + 5
        while [p for p in processes() if p[1] == uid] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in processes() if p[1] == uid]
        # A killed worker cannot tidy up: the next zygote's start removes its folder, and no live worker's.
        (left,) = private_tmp.glob(f"academy-z-{worker.pid}-*")
        live = private_tmp / f"academy-z-{os.getpid()}-busy"
        live.mkdir()
        assert zygote.reap_stale_folders(str(private_tmp)) == 1
        assert not left.exists() and live.exists()
    finally:
        worker.kill()
        worker.wait()
        if worker.stdout:
            worker.stdout.close()
        shutil.rmtree(private_tmp, ignore_errors=True)


@pytest.mark.parametrize("from_zygote", [True, False], ids=["zygote", "fresh-kernel"])
def test_a_failed_cell_shows_ipythons_traceback_and_keeps_only_a_plain_copy(
    policy: SandboxPolicy, tmp_path: Path, from_zygote: bool
) -> None:
    """KERNEL_TUNING: IPython's second, stored formatting of a traceback is the standard library's."""
    look = (
        "import json\n"
        "stored = get_ipython().history_manager.exceptions\n"
        "print(json.dumps([dict(v, traceback=''.join(v['traceback'])) for v in stored.values()]))"
    )
    out = run_cells(policy, _work(tmp_path, "work"), ["def f():\n    return 1 / 0\nf()", look], zygote=from_zygote)
    assert out[0].status == "error" and out[0].ename == "ZeroDivisionError"
    shown = "".join(out[0].traceback)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", shown)
    assert "\x1b[" in shown and "----> 3" in plain and "return 1 / 0" in plain  # IPython's colours and context
    (stored,) = json.loads(out[1].stdout.strip().splitlines()[-1])
    assert stored["ename"] == "ZeroDivisionError" and stored["evalue"] == "division by zero"
    assert stored["traceback"].startswith("Traceback (most recent call last):") and "\x1b[" not in stored["traceback"]
    assert "return 1 / 0" in stored["traceback"]


@pytest.mark.parametrize("from_zygote", [True, False], ids=["zygote", "fresh-kernel"])
def test_a_canarys_failure_is_plain_text_and_every_other_error_keeps_ipythons_traceback(
    policy: SandboxPolicy, tmp_path: Path, from_zygote: bool
) -> None:
    """KERNEL_TUNING and KERNEL_OPTIONS: the cheap paths touch only what the grader throws away."""
    nonce = new_nonce()
    assert re.fullmatch(CANARY_MESSAGE, nonce)
    cells = [
        canary_source("x = 1\nassert x == 1", nonce),
        "assert x == 2, 'not two'",
        "raise AssertionError('0123456789abcdef01234567', 'two arguments')",
        "print(get_ipython().history_manager.hist_file, len(In), In[2].startswith('assert x'), _i3[:5])",
    ]
    out = run_cells(policy, _work(tmp_path, "work"), cells, zygote=from_zygote)
    canary, other, lookalike, look = out
    assert canary.status == "error" and canary.ename == "AssertionError" and canary.evalue == nonce
    assert "".join(canary.traceback).strip() == f"AssertionError: {nonce}"
    for failed in (other, lookalike):
        shown = re.sub(r"\x1b\[[0-9;]*m", "", "".join(failed.traceback))
        assert failed.status == "error" and "\x1b[" in "".join(failed.traceback) and "----> 1" in shown
    assert look.stdout.split() == [":memory:", "5", "True", "raise"]  # no history file; In and _i work


def test_prestart_launches_the_zygote_that_the_first_kernel_uses(policy: SandboxPolicy, tmp_path: Path) -> None:
    report = probe_isolation(policy)
    assert zygote.prestart(policy, report)
    (launched,) = zygote.running()
    assert launched.pid is None or launched.alive()  # launched; its imports may still be running
    assert zygote.prestart(policy, report)  # idempotent
    assert zygote.running() == [launched]
    out = _run(policy, _work(tmp_path, "work"), ["import os; print(os.getppid())"])
    assert out[0].stdout.strip() == "2"  # forked by the zygote (pid 2 in its sandbox)
    assert _the_zygote() is launched and launched.pid is not None
    off = dataclasses.replace(policy, zygote=False)
    assert not zygote.prestart(off, report)


def test_the_zygote_preloads_its_modules_once_and_shrugs_off_a_missing_one(
    policy: SandboxPolicy, tmp_path: Path
) -> None:
    """``zygote_preload``: the kernels find the modules imported (and still import what failed, with its error)."""
    look = ("import gc, os, sys; print(os.getppid(), *(name in sys.modules for name in "
            "('numpy', 'stack_data', 'no_such_module_here')), gc.get_freeze_count() > 10000)")
    preload = dataclasses.replace(policy, zygote_preload=("no_such_module_here", "numpy"))
    out = _run(preload, _work(tmp_path, "with"), [look, "import no_such_module_here"])
    assert out[0].stdout.split() == ["2", "True", "True", "False", "True"]  # and the zygote's objects frozen
    assert out[1].status == "error" and out[1].ename == "ModuleNotFoundError"
    assert "preloading no_such_module_here failed: ModuleNotFoundError" in _the_zygote().log_tail(4000)
    zygote.close_all()
    bare = dataclasses.replace(policy, zygote_preload=())
    out = _run(bare, _work(tmp_path, "without"), [look])
    assert out[0].stdout.split() == ["2", "False", "True", "False", "True"]  # IPython's traceback machinery stays
    fresh = dataclasses.replace(policy, zygote=False)
    out = run_cells(fresh, _work(tmp_path, "fresh"), [look])
    assert out[0].stdout.split() == ["1", "False", "False", "False", "False"]  # a fresh kernel: nothing of that


def test_the_preload_list_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from academy.engine.sandbox.policy import DEFAULT_ZYGOTE_PRELOAD, ZYGOTE_PRELOAD_ENV

    monkeypatch.delenv(ZYGOTE_PRELOAD_ENV, raising=False)
    assert SandboxPolicy().zygote_preload == DEFAULT_ZYGOTE_PRELOAD == (
        "numpy", "pandas", "sklearn.model_selection", "sklearn.linear_model")
    for raw, expected in (("numpy, pandas", ("numpy", "pandas")), ("sklearn.linear_model torch", (
            "sklearn.linear_model", "torch")), ("", ()), ("none", ())):
        monkeypatch.setenv(ZYGOTE_PRELOAD_ENV, raw)
        assert SandboxPolicy().zygote_preload == expected
    monkeypatch.setenv(ZYGOTE_PRELOAD_ENV, "numpy;import os")
    with pytest.raises(ValueError, match="not a module name: numpy;import"):
        SandboxPolicy()


def test_kernel_options_are_added_once_whoever_else_passes_them() -> None:
    """nbclient passes ``--HistoryManager.hist_file`` itself: an option given twice kills IPython at start."""
    from academy.engine.sandbox.launch import KERNEL_OPTIONS, kernel_arguments

    assert kernel_arguments(None) == list(KERNEL_OPTIONS)
    assert kernel_arguments(["--HistoryManager.hist_file=:memory:"]) == ["--HistoryManager.hist_file=:memory:"]
    assert kernel_arguments(["--HistoryManager.hist_file=/tmp/h.sqlite", "--x=1"]) == [
        "--HistoryManager.hist_file=/tmp/h.sqlite", "--x=1"]
