"""``academy demo`` stops cleanly: SIGTERM (a service manager, ``kill``) and SIGINT (Ctrl-C) end every process
it started, a learner's running lab and kernel included, and free its ports.  Both signals (and SIGHUP) go to
one handler: the full stop is run for SIGTERM, and Ctrl-C is sent while the demo starts.

The real command (the .venv's ``academy`` entry point, as ``make demo`` runs it) with its own data directory,
and ``--skip-solution-check``: grading every shipped solution is tests/curriculum's work (a cold cache made the
start take minutes), stopping is this file's;
the learner signs in to the portal over HTTP and opens a lab there, a kernel is started in that lab through
the hub, and then only the demo's own process is signalled, the hardest case: its children run in sessions
of their own, so nothing but the demo itself can stop them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from academy.demo import DEMO_ACCOUNTS
from academy.labs.hubprocess import free_ports
from tests.labs.labstack import missing_parts
from tests.support import ROOT, skip_or_fail

pytestmark = pytest.mark.slow

ACADEMY = ROOT / ".venv" / "bin" / "academy"
TOKEN, CLIENT_SECRET = "d" * 48, "e" * 48
#: What the demo runs once a learner works in a lab: (a name, a part of the command line that shows it).
EXPECTED = (("portal", "academy demo"), ("grading worker", "academy.cli worker"), ("hub", "jupyterhub -f"),
            ("proxy", "configurable-http-proxy"), ("idle culler", "jupyterhub_idle_culler"),
            ("lab server", "jupyterhub-singleuser"), ("kernel", "ipykernel_launcher"))
#: How long the demo may take to start (a cold start migrates, releases the courses and starts the hub).
START_TIMEOUT = 240.0
#: How long the test waits for every process to end after the signal; the demo's own bound is far shorter.
STOP_TIMEOUT = 30.0


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    output: Path
    portal_url: str
    hub_url: str = ""
    #: every process of the demo's tree seen so far: killed at the end if a test fails
    seen: set[psutil.Process] = field(default_factory=set)

    def log(self) -> str:
        return self.output.read_text(errors="replace")[-4000:]

    def kill_all(self) -> None:
        """Kill the demo and every process of its tree seen or still there: a failed test leaves nothing behind for
        the next one."""
        for proc in self.seen | set(_tree(self.process.pid)):
            with suppress(psutil.Error):
                proc.kill()
        with suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=30)


def start_demo(tmp_path: Path) -> Demo:
    """``academy demo`` started on a free port with its data under ``tmp_path`` (not waited for)."""
    portal_port = free_ports(1)[0]
    env = {key: value for key, value in os.environ.items() if not key.startswith("ACADEMY_")}
    env.update({"ACADEMY_DATA_DIR": str(tmp_path / "data"),
                "ACADEMY_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'academy.sqlite3'}",
                "ACADEMY_SECRET_KEY": "k" * 40, "ACADEMY_GRADING_WORKERS": "1", "ACADEMY_GPU_DEVICES": "",
                "ACADEMY_HUB_API_TOKEN": TOKEN, "ACADEMY_HUB_CLIENT_SECRET": CLIENT_SECRET})
    output = tmp_path / "demo.log"
    with open(output, "wb") as log:
        process = subprocess.Popen([str(ACADEMY), "demo", "--port", str(portal_port), "--skip-solution-check"],
                                   cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    return Demo(process=process, output=output, portal_url=f"http://127.0.0.1:{portal_port}")


@contextmanager
def running_demo(tmp_path: Path) -> Iterator[Demo]:
    """``academy demo`` on a free port with its data under ``tmp_path``; killed with its tree if a test fails."""
    demo = start_demo(tmp_path)
    process = demo.process
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(f"{demo.portal_url}/login"):
            assert process.poll() is None, f"the demo exited with {process.returncode}:\n{demo.log()}"
            assert time.monotonic() < deadline, f"the portal did not answer in {START_TIMEOUT:.0f} s:\n{demo.log()}"
            demo.seen.update(_tree(process.pid))
            time.sleep(0.5)
        found = re.search(r"labs: +JupyterHub (http://\S+?)/? ", demo.log())
        assert found, f"the demo started no hub:\n{demo.log()}"
        demo.hub_url = found.group(1)
        yield demo
    finally:
        demo.kill_all()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _tree(pid: int) -> list[psutil.Process]:
    """``pid`` and everything under it."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(proc: psutil.Process) -> bool:
    """Running, and the same process (not a new one with a reused pid); an exited zombie counts as gone."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _command(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:  # it ended just now
        return f"[{proc.name()}]"


def _listening_ports(tree: list[psutil.Process]) -> set[int]:
    ports = set()
    for proc in tree:
        with suppress(psutil.Error):
            ports |= {conn.laddr.port for conn in proc.net_connections(kind="tcp")
                      if conn.status == psutil.CONN_LISTEN}
    return ports


def _port_free(port: int) -> bool:
    """Nobody listens on ``port`` and a new server could bind it (as a restarted demo would)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _sign_in(demo: Demo, email: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{demo.portal_url}/login", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, "the login page has a CSRF token"
    response = session.post(f"{demo.portal_url}/login", allow_redirects=False, timeout=30,
                            data={"csrf_token": token.group(1), "email": email, "password": password})
    assert response.status_code == 302, response.text[:500]
    return session


def _open_lab(demo: Demo, session: requests.Session, database: Path) -> str:
    """"Open lab" on a CPU course's first assignment, as the learner does; returns the hub user's name."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        assignment_id, course_id = db.execute(
            "SELECT assignment.id, course.id FROM assignment JOIN course ON course.id = assignment.course_id "
            "WHERE course.lab_profile = 'cpu' ORDER BY course.id, assignment.id").fetchone()
    page = session.get(f"{demo.portal_url}/assignments/{assignment_id}", timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token and f"/labs/open/{course_id}" in page, "the assignment page offers the lab"
    response = session.post(f"{demo.portal_url}/labs/open/{course_id}", allow_redirects=False, timeout=60,
                            data={"csrf_token": token.group(1), "assignment_id": str(assignment_id)})
    assert response.status_code == 303 and "/labs/" in response.headers["Location"], response.text[:500]
    lab_path = response.headers["Location"].removeprefix(demo.portal_url)
    deadline = time.monotonic() + 120
    body: dict = {}
    while time.monotonic() < deadline:
        body = session.get(f"{demo.portal_url}{lab_path}/status", timeout=30).json()
        if body["finished"]:
            break
        time.sleep(0.3)
    assert body.get("state") == "running" and body.get("url"), f"{body}\n{demo.log()}"
    found = re.search(r"/user/([^/]+)/", body["url"])
    assert found, body["url"]
    return found.group(1)


def _start_kernel(demo: Demo, hub_user: str) -> None:
    """A kernel in the learner's lab (Jupyter Server's REST API through the hub, with the portal's token).

    The server answers once the kernel's process runs (its state stays "starting" until a client talks to it).
    """
    headers = {"Authorization": f"token {TOKEN}"}
    response = requests.post(f"{demo.hub_url}/user/{hub_user}/api/kernels", json={"name": "python3"},
                             headers=headers, timeout=60)
    assert response.status_code == 201, response.text[:500]


def test_the_stop_signals_share_one_handler() -> None:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP take the same path, so the full stop below is run for SIGTERM alone (a
    second full demo for Ctrl-C cost 80 s of the suite); Ctrl-C is also sent during the start, below."""
    from academy.demo import StopRequest

    stop = StopRequest()
    before = {signum: signal.getsignal(signum) for signum in StopRequest.SIGNALS}
    try:
        stop.install()
        handlers = {signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    assert handlers == {stop._handle}


def test_ctrl_c_during_the_start_ends_the_demo_by_that_signal(tmp_path: Path) -> None:
    """Ctrl-C while the demo migrates and loads the courses: it stops there, leaves no process behind, prints no
    traceback and ends by SIGINT, as a shell expects."""
    demo = start_demo(tmp_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Loading the courses" not in demo.log():
            assert demo.process.poll() is None, f"the demo exited with {demo.process.returncode}:\n{demo.log()}"
            assert time.monotonic() < deadline, demo.log()
            time.sleep(0.05)
        demo.seen.update(_tree(demo.process.pid))
        demo.process.send_signal(signal.SIGINT)
        assert demo.process.wait(timeout=STOP_TIMEOUT) == -signal.SIGINT, demo.log()
        log = demo.log()
        assert "portal:" not in log, f"the start had ended before the signal:\n{log}"
        assert "Traceback" not in log, log
        assert not [proc for proc in demo.seen if _alive(proc)], demo.log()
    finally:
        demo.kill_all()


def test_sigterm_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    signum = signal.SIGTERM
    reason = missing_parts()
    if reason:
        skip_or_fail(reason)
    email, _role, _name, password = DEMO_ACCOUNTS[0]
    with running_demo(tmp_path) as demo:
        session = _sign_in(demo, email, password)
        hub_user = _open_lab(demo, session, tmp_path / "data" / "academy.sqlite3")
        _start_kernel(demo, hub_user)

        tree = [proc for proc in _tree(demo.process.pid) if _alive(proc)]
        demo.seen.update(tree)
        commands = {proc.pid: _command(proc) for proc in tree}
        for name, marker in EXPECTED:  # the test covers every kind of process the demo runs
            assert any(marker in command for command in commands.values()), (name, commands)
        portal_port = int(demo.portal_url.rsplit(":", 1)[1])
        hub_port = int(demo.hub_url.rsplit(":", 1)[1])
        ports = _listening_ports(tree)
        assert {portal_port, hub_port} <= ports, (ports, commands)

        signalled = time.monotonic()
        demo.process.send_signal(signum)
        deadline = signalled + STOP_TIMEOUT
        left = tree
        while left and time.monotonic() < deadline:
            demo.process.poll()  # reap the demo itself: a zombie holds nothing, but counts as alive for psutil
            left = [proc for proc in left if _alive(proc)]
            time.sleep(0.1)
        took = time.monotonic() - signalled
        print(f"academy demo stopped everything in {took:.1f} s after {signum.name}")
        assert not left, f"still running {took:.1f} s after {signum.name}: " + "; ".join(
            f"{proc.pid} {commands[proc.pid]}" for proc in left) + f"\n{demo.log()}"
        busy = sorted(port for port in ports if not _port_free(port))
        assert not busy, f"ports still in use after {signum.name}: {busy}"
        # A conventional end: stopped by the signal it was sent, as a shell or service manager expects.
        assert demo.process.wait(timeout=5) in (-signum, 128 + signum), demo.log()


#: Run in a process of its own (a subreaper adopts orphans: not something the test process should become):
#: a leader starts a grandchild in a session of its own that ignores SIGTERM and then ends, orphaning it.
#: The stop must still find the grandchild (adopted), and a second signal must cut the grace short.
ORPHAN_SCRIPT = r"""
import os, signal, subprocess, sys, threading, time
from academy.processes import become_subreaper, descendants, stop_all_children

assert become_subreaper()
stubborn = ("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True)\n"
            "while True: signal.pause()")
leader_code = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {stubborn!r}], "
               "start_new_session=True, stdout=subprocess.PIPE); p.stdout.readline(); print(p.pid, flush=True)")
leader = subprocess.Popen([sys.executable, "-c", leader_code], start_new_session=True, stdout=subprocess.PIPE)
orphan = int(leader.stdout.readline())
print("orphan", orphan, flush=True)
leader.wait()
deadline = time.monotonic() + 30
while orphan not in [ref.pid for ref in descendants(os.getpid())]:
    assert time.monotonic() < deadline, "the orphan was not adopted"
    time.sleep(0.05)
hurry = threading.Event()
signal.signal(signal.SIGINT, lambda *_: hurry.set())
print("stopping", flush=True)
result = stop_all_children([leader], grace=600, hurry=hurry)
print("killed", *[pid for pid, _command in result.killed], flush=True)
print("left", *[ref.pid for ref in result.left], flush=True)
"""


def test_a_second_signal_kills_at_once_even_an_adopted_orphan() -> None:
    """The grace is 10 minutes here: only the second signal ("Ctrl-C again") can end the stop in time."""
    orphan = None
    with subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT], cwd=ROOT, stdout=subprocess.PIPE,
                          text=True) as script:
        try:
            assert script.stdout is not None
            first = script.stdout.readline().split()
            assert first[:1] == ["orphan"], first
            orphan = psutil.Process(int(first[1]))
            assert script.stdout.readline().strip() == "stopping"
            script.send_signal(signal.SIGINT)
            out, _ = script.communicate(timeout=60)
        finally:
            script.kill()
            if orphan is not None and _alive(orphan):
                orphan.kill()
    assert script.returncode == 0, out
    killed, left = (line.split()[1:] for line in out.splitlines())
    assert str(orphan.pid) in killed and left == [], out
    assert not _alive(orphan)
