"""The grading sandbox against real attacks: real bubblewrap, real kernels, no mocks.

Each adversarial cell must fail, the test process (standing in for the grading worker)
must be unharmed, and no process of the kernel may be left afterwards.  Without bubblewrap
or the lab interpreter the tests skip with the reason, unless ACADEMY_TEST_REQUIRE_SERVICES=1
(``make test``), in which case they fail.  The limits (time, memory, processes, files) are
tested in ``test_sandbox_limits.py``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from academy.engine.sandbox import (
    SANDBOX_WORKDIR,
    SandboxedKernelManager,
    SandboxPolicy,
    SandboxUnavailable,
    probe_isolation,
    require_isolation,
)
from tests.engine.sandboxing import TRY, as_json, assert_no_leftovers, run
from tests.support import ROOT, skip_or_fail

PG_SOCKET = "/var/run/postgresql/.s.PGSQL.5432"
CANARIES = {
    "ACADEMY_SECRET_KEY": "canary-secret-7f3a9c",
    "DATABASE_URL": "postgresql://canary-user:canary-pw-51d2@db/academy",
    "ACADEMY_DATABASE_URL": "postgresql://canary-user:canary-pw-51d2@db/academy",
    "JUPYTERHUB_API_TOKEN": "canary-hub-token-c0ffee",
}




def test_probe_reports_the_layers(base_policy: SandboxPolicy) -> None:
    report = probe_isolation(base_policy)
    assert report.namespaces and report.python_ok and report.sandbox_available
    assert report.mode in {"root", "userns"}
    if os.geteuid() == 0:
        assert report.mode == "root" and report.uid_drop
    assert report.summary().startswith("sandboxed: bwrap")


def test_fail_closed_without_bubblewrap(workdir: Path) -> None:
    policy = SandboxPolicy(bwrap="/nonexistent/bwrap", allow_unsandboxed=False)
    with pytest.raises(SandboxUnavailable) as caught:
        require_isolation(policy)
    assert caught.value.status_code == 503
    assert "\n" not in str(caught.value) and "bubblewrap" in str(caught.value)
    km = SandboxedKernelManager(policy=policy, workdir=str(workdir))
    with pytest.raises(SandboxUnavailable):
        km.start_kernel()
    assert_no_leftovers(workdir)


def test_unsandboxed_only_when_explicitly_allowed(
    base_policy: SandboxPolicy, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    policy = SandboxPolicy(bwrap="/nonexistent/bwrap", allow_unsandboxed=True, python=base_policy.python)
    km = SandboxedKernelManager(policy=policy, workdir=str(workdir))
    assert km.sandboxed is False
    km.start_kernel()
    kc = km.client()
    outputs: list[dict] = []
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        reply = kc.execute_interactive(
            "import os, json; print(json.dumps({'cwd': os.getcwd(), 'uid': os.getuid(), 'env': dict(os.environ)}))",
            timeout=20,
            output_hook=lambda msg: outputs.append(msg),
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
    assert reply["content"]["status"] == "ok"
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    seen = json.loads(text)
    assert seen["cwd"] == str(workdir.resolve())
    if os.geteuid() == 0:
        assert seen["uid"] != 0
    assert not any(canary in text for canary in CANARIES.values())
    assert km.private_dir is None
    assert_no_leftovers(workdir)


# ----------------------------------------------------------------------------- normal work


def test_numpy_cell_works_in_the_workdir(base_policy: SandboxPolicy, workdir: Path) -> None:
    cells = [
        "import numpy as np\nfloat(np.linalg.norm(np.array([3.0, 4.0])))",
        "import os\nos.getcwd()",
        "open('data.txt').read()",
        "open('answer.txt', 'w').write('42')",
        "print('to stdout'); import sys; print('to stderr', file=sys.stderr)",
        "1 / 0",
        "'still alive after an error'",
    ]
    out = run(base_policy, workdir, cells)
    assert [o.status for o in out] == ["ok", "ok", "ok", "ok", "ok", "error", "ok"]
    assert out[0].result == "5.0"
    assert out[1].result == repr(SANDBOX_WORKDIR)
    assert out[2].result == repr("hello from the submission\n")
    assert (workdir / "answer.txt").read_text() == "42"
    assert out[4].stdout == "to stdout\n" and out[4].stderr == "to stderr\n"
    assert out[5].ename == "ZeroDivisionError" and out[5].error.startswith("ZeroDivisionError")
    assert out[6].result == repr("still alive after an error")


def test_kernel_starts_without_the_debugger_but_looks_launched_as_usual(
        base_policy: SandboxPolicy, workdir: Path) -> None:
    """The launcher skips ipykernel's debugger; the notebook sees ``-m ipykernel_launcher``'s argv and path."""
    cells = [
        "import json, sys\n"
        "print(json.dumps({'argv0': sys.argv[0], 'argv': sys.argv[1:2], 'path': '' in sys.path,\n"
        "                  'debugger': hasattr(get_ipython().kernel, 'debugger'),\n"
        "                  'debugpy': 'debugpy' in sys.modules}))",
        "import debugpy\nprint(json.dumps({'imported': debugpy.__name__}))",
    ]
    out = run(base_policy, workdir, cells)
    seen = as_json(out[0])
    assert seen["argv0"].endswith("ipykernel_launcher.py") and seen["argv"] == ["-f"] and seen["path"]
    assert not seen["debugger"] and not seen["debugpy"]
    assert as_json(out[1]) == {"imported": "debugpy"}


def test_hardening_of_the_kernel_process(base_policy: SandboxPolicy, workdir: Path) -> None:
    cell = TRY + """
import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
def syscall(nr, *args):
    if libc.syscall(nr, *args) == -1:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return 0
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
print(json.dumps({
    "uid": os.getuid(), "caps": status["CapEff"].strip(), "nnp": status["NoNewPrivs"].strip(),
    "seccomp": status["Seccomp"].strip(), "hostname": socket.gethostname(),
    "userns": attempt(lambda: syscall(272, 0x10000000)),
    "userfaultfd": attempt(lambda: syscall(323, 0)),
    "ptrace": attempt(lambda: syscall(101, 16, 1, 0, 0)),
    "mount": attempt(lambda: syscall(165, b"none", b"/tmp", b"tmpfs", 0, 0)),
    "pid": os.getpid(),
}))
"""
    seen = as_json(run(base_policy, workdir, [cell])[0])
    assert seen["caps"] == "0000000000000000" and seen["nnp"] == "1"
    assert seen["hostname"] == "sandbox"
    assert seen["pid"] < 10  # a fresh pid namespace
    assert seen["userns"].startswith("PermissionError") or seen["userns"].startswith("OSError")
    if os.geteuid() == 0:
        assert seen["uid"] != 0
    if probe_isolation(base_policy).seccomp:
        assert seen["seccomp"] == "2"
        for name in ("userns", "userfaultfd", "ptrace", "mount"):
            assert seen[name] == "PermissionError:1", (name, seen[name])


# ----------------------------------------------------------------------------- network


@pytest.fixture
def tcp_server() -> Iterator[tuple[int, list[str]]]:
    """A TCP server on the host's 127.0.0.1 that records every connection it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, addr = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(str(addr))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=2):  # the server is reachable from the host
        pass
    deadline = time.monotonic() + 2
    while not accepted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert accepted, "control connection from the host was not accepted"
    accepted.clear()
    try:
        yield port, accepted
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()


def test_no_network_no_host_sockets_no_dns(
    base_policy: SandboxPolicy, workdir: Path, tcp_server: tuple[int, list[str]]
) -> None:
    port, accepted = tcp_server
    cell = TRY + f"""
import socket
def tcp(host, port):
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, port))
    finally:
        s.close()
def unix(path):
    s = socket.socket(socket.AF_UNIX); s.settimeout(3)
    try:
        s.connect(path)
    finally:
        s.close()
print(json.dumps({{
    "host_server": attempt(lambda: tcp("127.0.0.1", {port})),
    "postgres_tcp": attempt(lambda: tcp("127.0.0.1", 5432)),
    "postgres_unix": attempt(lambda: unix({PG_SOCKET!r})),
    "pg_socket_visible": os.path.exists({PG_SOCKET!r}),
    "run_visible": os.path.exists("/run") or os.path.exists("/var/run"),
    "dns": attempt(lambda: socket.getaddrinfo("example.com", 443)),
    "outside": attempt(lambda: tcp("1.1.1.1", 443)),
    "interfaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]),
}}))
"""
    seen = as_json(run(base_policy, workdir, [cell])[0])
    assert seen["host_server"].startswith("ConnectionRefusedError"), seen
    assert seen["postgres_tcp"].startswith("ConnectionRefusedError"), seen
    assert seen["postgres_unix"].startswith("FileNotFoundError"), seen
    assert seen["pg_socket_visible"] is False and seen["run_visible"] is False
    assert seen["dns"].startswith("gaierror"), seen
    assert not seen["outside"].startswith("ok"), seen
    assert seen["interfaces"] == ["lo"]
    assert accepted == [], "the sandbox reached the host's TCP server"
    if not os.path.exists(PG_SOCKET):
        skip_or_fail(f"{PG_SOCKET} does not exist on this machine: hidden-socket check only ran vacuously")


# ----------------------------------------------------------------------------- filesystem


def test_filesystem_view_is_the_workdir_only(base_policy: SandboxPolicy, workdir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-learner"
    other.mkdir()
    (other / "answers.ipynb").write_text("another learner's work")
    repo = ROOT
    portal_venv = repo / ".venv"
    cell = TRY + f"""
def write(path):
    with open(path, "w") as fh:
        fh.write("x")
def listdir(path):
    return os.listdir(path)
print(json.dumps({{
    "courses": attempt(lambda: listdir({str(repo / "courses")!r})),
    "academy": attempt(lambda: listdir({str(repo / "academy")!r})),
    "repo": attempt(lambda: listdir({str(repo)!r})),
    "portal_venv": attempt(lambda: listdir({str(portal_venv)!r})),
    "root": attempt(lambda: listdir("/root")),
    "other": attempt(lambda: open({str(other / "answers.ipynb")!r}).read()),
    "other_dir": attempt(lambda: listdir({str(other)!r})),
    "shadow": attempt(lambda: open("/etc/shadow").read()),
    "etc": sorted(os.listdir("/etc")),
    "postgres_data": attempt(lambda: listdir("/var/lib/postgresql")),
    "write_usr": attempt(lambda: write("/usr/pwned")),
    "write_etc": attempt(lambda: write("/etc/pwned")),
    "write_root": attempt(lambda: write("/pwned")),
    "write_venv": attempt(lambda: write({base_policy.python!r} + "-pwned")),
    "write_startup": attempt(lambda: write(os.path.expanduser("~/.ipython-pwned"))),
    "write_workdir": attempt(lambda: write("created-in-sandbox.txt")),
    "write_tmp": attempt(lambda: write("/tmp/in-sandbox-tmp")),
}}))
"""
    seen = as_json(run(base_policy, workdir, [cell])[0])
    for key in ("courses", "academy", "portal_venv", "root", "other", "other_dir", "postgres_data"):
        assert seen[key].startswith(("FileNotFoundError", "PermissionError")), (key, seen[key])
    assert seen["repo"] == "ok:['.venv-lab']" or seen["repo"].startswith("FileNotFoundError"), seen["repo"]
    assert seen["shadow"].startswith(("FileNotFoundError", "PermissionError"))
    assert "shadow" not in seen["etc"] and "hostname" not in seen["etc"]
    for key in ("write_usr", "write_etc", "write_root", "write_venv"):
        assert seen[key].startswith(("OSError:30", "PermissionError", "FileNotFoundError")), (key, seen[key])
    assert seen["write_startup"].startswith("ok") and seen["write_tmp"].startswith("ok")  # private tmpfs
    assert seen["write_workdir"].startswith("ok")
    assert (workdir / "created-in-sandbox.txt").read_text() == "x"
    assert not Path("/tmp/in-sandbox-tmp").exists() and not Path("/usr/pwned").exists()


# ----------------------------------------------------------------------------- secrets


def test_worker_secrets_are_invisible(
    base_policy: SandboxPolicy, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    cell = TRY + """
dump = {"environ": dict(os.environ), "files": {}}
for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["self"]:
    for name in ("environ", "cmdline"):
        path = f"/proc/{pid}/{name}"
        try:
            dump["files"][path] = open(path, "rb").read().decode("utf-8", "replace")
        except OSError as exc:
            dump["files"][path] = type(exc).__name__
dump["pid1_environ"] = attempt(lambda: open("/proc/1/environ", "rb").read())
dump["ppid_environ"] = attempt(lambda: open(f"/proc/{os.getppid()}/environ", "rb").read())
print(json.dumps(dump))
"""
    out = run(base_policy, workdir, [cell])[0]
    for canary in CANARIES.values():
        assert canary not in out.stdout and canary not in out.stderr
    seen = as_json(out)
    assert not set(seen["environ"]) & set(CANARIES)
    allowed = {
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "TMPDIR", "MPLBACKEND", "PYTHONDONTWRITEBYTECODE",
        "PYDEVD_DISABLE_FILE_VALIDATION", "JUPYTER_PLATFORM_DIRS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
        "PWD",  # set by bwrap --chdir
        "TERM", "CLICOLOR", "CLICOLOR_FORCE", "FORCE_COLOR", "PAGER", "GIT_PAGER",  # set by ipykernel
        "PYDEVD_USE_FRAME_EVAL",
    }  # fmt: skip
    assert set(seen["environ"]) <= allowed, sorted(seen["environ"])
    assert seen["environ"]["HOME"] == "/home/learner"


# ----------------------------------------------------------------------------- signals and processes


def test_killing_the_parent_or_everyone_does_not_reach_the_worker(base_policy: SandboxPolicy, workdir: Path) -> None:
    sentinel = subprocess.Popen(["sleep", "60"])  # a process of the worker's, like the worker itself
    try:
        cells = [
            TRY + "print(json.dumps({'ppid': os.getppid(), 'kill_ppid': attempt(lambda: os.kill(os.getppid(), 9))}))",
            TRY + "print(json.dumps({'kill_all': attempt(lambda: os.kill(-1, 9))}))",
            TRY + f"print(json.dumps({{'kill_worker': attempt(lambda: os.kill({os.getpid()}, 9)),"
            f" 'kill_sentinel': attempt(lambda: os.kill({sentinel.pid}, 9))}}))",
            "'kernel still alive'",
        ]
        out = run(base_policy, workdir, cells)
        assert as_json(out[0])["ppid"] == 1  # the sandbox's own init, not the worker
        assert as_json(out[0])["kill_ppid"].startswith("PermissionError")
        assert out[1].status in {"ok", "error"}
        assert all(not v.startswith("ok") for v in as_json(out[2]).values())  # no such pid in the namespace
        assert out[3].result == repr("kernel still alive")
        assert sentinel.poll() is None, "kill(-1) inside the sandbox reached a host process"
    finally:
        sentinel.kill()
        sentinel.wait()
