"""Lab launch speed: the portal's "Open lab" against a bare JupyterHub start, and a class arriving at once.

Run from the repository root with the portal's environment::

    PATH=.venv/bin:$PATH .venv/bin/python bench/labs.py [--learners 10] [--class-size 30] [--spread 5.0]
                                                        [--timeout 180] [--json]

What it does, in one run (one temporary directory, removed at the end, with every server stopped):

Starts the real portal (Werkzeug, threaded, in this process) and the real JupyterHub with
configurable-http-proxy and the local spawner on free loopback ports (``tests.labs.labstack.lab_stack``,
no course switched to a GPU profile).  Every launch is course ``ml-quality``, CPU profile.

1. Sequential, ``--learners`` of each kind, interleaved (portal, bare, portal, bare, ...) after one
   untimed warm-up of each, every server stopped (and gone from the hub) before the next launch:

   * portal: a signed-in learner's ``POST /labs/open/<course>`` for assignment
     ``01-linear-regression`` (the CSRF token is fetched before the clock starts), then
     ``GET /labs/<id>/status`` every 50 ms until ``running``, then the contents API
     ``GET {hub}/user/<name>/api/contents/<notebook>`` (service token) until it answers 200.
     The portal's time therefore includes creating the hub user and copying the notebook.
   * bare: for another hub user (created before the clock starts), ``POST
     /hub/api/users/NAME/server`` with the signed options the hub requires, then ``GET
     /hub/api/users/NAME`` every 50 ms until ``servers[""].ready``, then the same contents GET
     (the home folder) until 200.

   Both clocks stop when the notebook server answers through the proxy.  During a portal launch a
   watcher thread also polls the hub every 50 ms for the server's ``ready``, to split the portal's
   overhead into "before the hub has a ready server" and "after".  Target: the portal's median at
   most max(15 %, 500 ms) above the bare median.
2. A class of ``--class-size`` learners, each with its own portal session, clicking "Open lab"
   spread evenly over ``--spread`` seconds (threads), each following its status every 0.4 s as
   the launch page does, until the notebook is reachable or ``--timeout``.  Counts succeeded,
   failed (the lab failed or a request errored) and hung (neither by the timeout); the slowest
   launch-to-reachable time.  Target: all ready, none failed.

The portal runs in this process, so the benchmark's own threads share its interpreter (and GIL);
they sleep nearly all the time.  With ``--json`` the last line of standard output is one JSON
object holding every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from machine import busy_since, cpu_times, loadavg  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COURSE = "ml-quality"
ASSIGNMENT = "01-linear-regression"
PROFILE = "cpu"
POLL_SECONDS = 0.05  # sequential part: status / hub polling
PAGE_POLL_SECONDS = 0.4  # the class: what academy/web/static/js/academy.js does while a lab starts
OVERHEAD_SHARE = 0.15  # the issue's target: the portal adds at most 15 % or 500 ms, whichever is larger
OVERHEAD_FLOOR_S = 0.5
STOP_TIMEOUT = 60.0
COHORT_CAPACITY = 60  # tests.labs.labstack.lab_stack's cohort
FINAL_STATES = ("failed", "stopped", "cancelled")

Say = Callable[[str], None]


# --- one launch -------------------------------------------------------------------------


@dataclass
class Launch:
    """One launch, timed from the start request; every ``*_s`` is seconds after it (None: not reached)."""

    kind: str  # "portal" or "bare"
    hub_user: str
    outcome: str = "pending"  # ready | failed | hung
    error: str | None = None
    request_s: float | None = None  # the start request answered
    hub_ready_s: float | None = None  # the hub's API says the server is ready
    running_s: float | None = None  # portal: the status says running (bare: = hub_ready_s)
    reachable_s: float | None = None  # the contents API answered 200 through the proxy
    polls: int = 0  # status (portal) or hub (bare) requests until running / ready
    poll_request_s: list[float] = field(default_factory=list)  # how long each of those took
    lab_path: str | None = None  # portal: /labs/<id>

    @property
    def ok(self) -> bool:
        return self.outcome == "ready"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["poll_request_s"] = [round(x, 4) for x in self.poll_request_s]
        for key in ("request_s", "hub_ready_s", "running_s", "reachable_s"):
            data[key] = None if data[key] is None else round(data[key], 4)
        return data


class Deadline:
    def __init__(self, seconds: float, stop: threading.Event) -> None:
        self.end = time.monotonic() + seconds
        self.stop = stop

    def passed(self) -> bool:
        return self.stop.is_set() or time.monotonic() > self.end


def _sleep_until(moment: float, stop: threading.Event) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        stop.wait(delay)


def _contents_ok(stack: Any, hub_user: str, path: str) -> bool:
    try:
        return stack.contents(hub_user, path, params={"content": 0}).status_code == 200
    except requests.RequestException:
        return False


def _wait_reachable(stack: Any, launch: Launch, path: str, t0: float, deadline: Deadline, poll: float) -> None:
    while not deadline.passed():
        if _contents_ok(stack, launch.hub_user, path):
            launch.reachable_s = time.monotonic() - t0
            launch.outcome = "ready"
            return
        time.sleep(poll)
    launch.outcome, launch.error = "hung", f"the notebook {path or '(home)'} did not answer 200 in time"


def _hub_server(stack: Any, hub_user: str) -> dict[str, Any] | None:
    user = stack.hub_api("GET", f"/users/{hub_user}").json()
    return (user.get("servers") or {}).get("")


def _watch_hub_ready(stack: Any, launch: Launch, t0: float, done: threading.Event) -> threading.Thread:
    """Record when the hub's API first says the server is ready (the portal's side of a launch)."""

    def watch() -> None:
        while not done.is_set():
            try:
                server = _hub_server(stack, launch.hub_user)
            except (requests.RequestException, ValueError):
                server = None
            if server and server.get("ready"):
                launch.hub_ready_s = time.monotonic() - t0
                return
            done.wait(POLL_SECONDS)

    thread = threading.Thread(target=watch, name=f"watch-{launch.hub_user}", daemon=True)
    thread.start()
    return thread


def portal_launch(stack: Any, session: requests.Session, hub_user: str, csrf_token: str, *, poll: float,
                  timeout: float, stop: threading.Event, watch_hub: bool = False) -> Launch:
    """"Open lab" as the browser does it: the POST, the status polls, then the notebook through the proxy."""
    launch = Launch("portal", hub_user)
    assignment_id = stack.assignment_ids[ASSIGNMENT]
    data = {"csrf_token": csrf_token, "assignment_id": str(assignment_id)}
    url = f"{stack.portal_url}/labs/open/{stack.course_ids[COURSE]}"
    deadline = Deadline(timeout, stop)
    done = threading.Event()
    t0 = time.monotonic()
    watcher = _watch_hub_ready(stack, launch, t0, done) if watch_hub else None
    try:
        try:
            response = session.post(url, data=data, allow_redirects=False, timeout=60)
        except requests.RequestException as exc:
            launch.outcome, launch.error = "failed", f"POST /labs/open: {exc.__class__.__name__}"
            return launch
        launch.request_s = time.monotonic() - t0
        location = urlsplit(response.headers.get("Location", "")).path
        if response.status_code != 303 or not location.startswith("/labs/"):
            launch.outcome = "failed"
            launch.error = f"POST /labs/open answered {response.status_code} -> {location or '-'}"
            return launch
        launch.lab_path = location
        body: dict[str, Any] = {}
        while not deadline.passed():
            started = time.monotonic()
            try:
                answer = session.get(f"{stack.portal_url}{location}/status", timeout=60)
                body = answer.json() if answer.status_code == 200 else {"state": f"HTTP {answer.status_code}"}
            except (requests.RequestException, ValueError) as exc:
                body = {"state": f"error {exc.__class__.__name__}"}
            launch.poll_request_s.append(time.monotonic() - started)
            launch.polls += 1
            if body.get("state") == "running":
                launch.running_s = time.monotonic() - t0
                break
            if body.get("state") in FINAL_STATES:
                launch.outcome = "failed"
                launch.error = f"lab {body.get('state')}: {body.get('message')} ({_lab_error(stack, location)})"
                return launch
            time.sleep(poll)
        else:
            launch.outcome = "hung"
            launch.error = f"status still {body.get('state')!r} ({body.get('message')}) after {timeout:g} s"
            return launch
        lab_url = str(body.get("url") or "")
        notebook = lab_url.split("/lab/tree/", 1)[1] if "/lab/tree/" in lab_url else ""
        _wait_reachable(stack, launch, notebook, t0, deadline, poll)
        return launch
    finally:
        done.set()
        if watcher is not None:
            watcher.join(timeout=5)


def _lab_error(stack: Any, lab_path: str) -> str:
    """The failure recorded on the lab session (the status JSON only carries the learner's message)."""
    from academy.extensions import db
    from academy.labs.models import LabSession

    try:
        lab_id = int(lab_path.rstrip("/").rsplit("/", 1)[1])
        with stack.app.app_context():
            row = db.session.get(LabSession, lab_id)
            reason = f"{row.stop_reason}: {row.error}" if row is not None else "no such lab"
            db.session.remove()
        return reason
    except Exception as exc:  # noqa: BLE001 - informative only
        return f"unknown ({exc.__class__.__name__})"


def bare_launch(stack: Any, hub_user: str, *, timeout: float, stop: threading.Event) -> Launch:
    """``POST /hub/api/users/NAME/server`` with a signed grant, then ready, then the contents API."""
    from academy.labs.launch import grant

    launch = Launch("bare", hub_user)
    settings = stack.app.config["ACADEMY_SETTINGS"]
    options = {"profile": PROFILE, "device": "", "session": "0",
               "grant": grant(settings, hub_user, PROFILE, "", 0)}
    deadline = Deadline(timeout, stop)
    t0 = time.monotonic()
    try:
        response = stack.hub_api("POST", f"/users/{hub_user}/server", json=options)
    except requests.RequestException as exc:
        launch.outcome, launch.error = "failed", f"POST server: {exc.__class__.__name__}"
        return launch
    launch.request_s = time.monotonic() - t0
    if response.status_code not in (201, 202):
        launch.outcome, launch.error = "failed", f"POST server answered {response.status_code} {response.text[:200]}"
        return launch
    while not deadline.passed():
        started = time.monotonic()
        try:
            server = _hub_server(stack, hub_user)
        except (requests.RequestException, ValueError):
            server = {"pending": "unknown"}
        launch.poll_request_s.append(time.monotonic() - started)
        launch.polls += 1
        if server and server.get("ready"):
            launch.hub_ready_s = launch.running_s = time.monotonic() - t0
            break
        if not server and time.monotonic() - t0 > 3:
            launch.outcome, launch.error = "failed", "the server went away while starting (spawn failed)"
            return launch
        time.sleep(POLL_SECONDS)
    else:
        launch.outcome, launch.error = "hung", f"not ready after {timeout:g} s"
        return launch
    _wait_reachable(stack, launch, "", t0, deadline, POLL_SECONDS)
    return launch


# --- stopping ---------------------------------------------------------------------------


def wait_gone(stack: Any, hub_user: str, timeout: float = STOP_TIMEOUT) -> bool:
    """True once the hub has no server for ``hub_user`` (not even a stopping one)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if not _hub_server(stack, hub_user):
                return True
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.1)
    return False


def stop_portal_lab(stack: Any, session: requests.Session, launch: Launch) -> None:
    """The learner's "Stop" (the portal's route), falling back to the hub's DELETE."""
    if launch.lab_path:
        with contextlib.suppress(requests.RequestException, AssertionError):
            token = stack.csrf(session, launch.lab_path)
            session.post(f"{stack.portal_url}{launch.lab_path}/stop", data={"csrf_token": token},
                         allow_redirects=False, timeout=60)
    with contextlib.suppress(requests.RequestException):
        if _hub_server(stack, launch.hub_user):
            stack.hub_api("DELETE", f"/users/{launch.hub_user}/server")


def stop_everything(stack: Any, say: Say) -> None:
    """Whatever still runs on the hub is stopped, and waited for."""
    try:
        users = stack.hub_api("GET", "/users", params={"state": "active"}).json()
    except (requests.RequestException, ValueError):
        return
    names = [u["name"] for u in users if (u.get("servers") or {}).get("")]
    if not names:
        return
    say(f"stopping {len(names)} server(s) still on the hub ...")
    for name in names:
        with contextlib.suppress(requests.RequestException):
            stack.hub_api("DELETE", f"/users/{name}/server")
    for name in names:
        wait_gone(stack, name, timeout=30)


def _kill_leftovers(tmp: Path) -> int:
    """Processes of this run that outlived the hub (their working directory is in ``tmp``): by pid."""
    own, uid, found = os.getpid(), os.getuid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            if entry.stat().st_uid != uid or not Path(os.readlink(entry / "cwd")).is_relative_to(tmp):
                continue
        except OSError:
            continue
        found.append(int(entry.name))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        if sig == signal.SIGTERM and found:
            time.sleep(2.0)
    return len(found)


# --- the two measurements -----------------------------------------------------------------


@dataclass
class Learner:
    email: str
    hub_user: str
    session: requests.Session
    csrf: str = ""


def make_learners(stack: Any, prefix: str, count: int) -> list[Learner]:
    learners = []
    for i in range(count):
        email = f"{prefix}-{i + 1:02d}@bench.example.kr"
        user_id = stack.make_learner(email)
        session = stack.portal_session(email)
        learners.append(Learner(email, f"u{user_id}", session))
    return learners


def _assignment_csrf(stack: Any, learner: Learner) -> str:
    return stack.csrf(learner.session, f"/assignments/{stack.assignment_ids[ASSIGNMENT]}")


def _bare_user(stack: Any, name: str) -> str:
    response = stack.hub_api("POST", f"/users/{name}")
    if response.status_code not in (201, 409):
        raise RuntimeError(f"cannot create hub user {name}: {response.status_code} {response.text[:200]}")
    return name


def sequential(stack: Any, args: argparse.Namespace, stop: threading.Event, say: Say) -> dict[str, Any]:
    """Part 1: portal and bare launches, one at a time, interleaved; one untimed warm-up of each."""
    count = args.learners
    learners = make_learners(stack, "seq", count + 1)
    bare_names = [_bare_user(stack, f"bare{i:02d}") for i in range(count + 1)]
    runs: dict[str, list[Launch]] = {"portal": [], "bare": []}
    warmup: dict[str, Launch] = {}
    for i in range(count + 1):
        label = "warm-up" if i == 0 else f"{i}/{count}"
        learner = learners[i]
        learner.csrf = _assignment_csrf(stack, learner)
        portal = portal_launch(stack, learner.session, learner.hub_user, learner.csrf, poll=POLL_SECONDS,
                               timeout=args.timeout, stop=stop, watch_hub=True)
        say(f"  [{label}] portal {learner.hub_user}: {_describe(portal)}")
        stop_portal_lab(stack, learner.session, portal)
        if not wait_gone(stack, portal.hub_user):
            say(f"  warning: {portal.hub_user}'s server did not go away in {STOP_TIMEOUT:g} s")
        bare = bare_launch(stack, bare_names[i], timeout=args.timeout, stop=stop)
        say(f"  [{label}] bare   {bare.hub_user}: {_describe(bare)}")
        with contextlib.suppress(requests.RequestException):
            stack.hub_api("DELETE", f"/users/{bare.hub_user}/server")
        if not wait_gone(stack, bare.hub_user):
            say(f"  warning: {bare.hub_user}'s server did not go away in {STOP_TIMEOUT:g} s")
        if i == 0:
            warmup = {"portal": portal, "bare": bare}
        else:
            runs["portal"].append(portal)
            runs["bare"].append(bare)
        if stop.is_set():
            raise KeyboardInterrupt
    report = summarize_sequential(runs, warmup)
    spawns = hub_spawn_times(stack)
    for kind, launches in runs.items():
        report[kind]["hub_spawn_median_s"] = _median([spawns.get(x.hub_user) for x in launches if x.ok])
    return report


def hub_spawn_times(stack: Any) -> dict[str, float]:
    """The hub's own view: "User NAME took S seconds to start" in its log, per hub user."""
    times: dict[str, float] = {}
    try:
        text = stack.hub.log_path.read_text(errors="replace")
    except OSError:
        return times
    for name, seconds in re.findall(r"User (\S+) took ([0-9.]+) seconds to start", text):
        times[name] = float(seconds)
    return times


def _describe(launch: Launch) -> str:
    if not launch.ok:
        return f"{launch.outcome.upper()}: {launch.error}"
    parts = [f"reachable {launch.reachable_s:.2f} s", f"request {_fmt(launch.request_s, '.3f')} s",
             f"hub ready {_fmt(launch.hub_ready_s, '.2f')} s"]
    if launch.kind == "portal":
        parts.append(f"status running {_fmt(launch.running_s, '.2f')} s")
    return ", ".join(parts) + f", {launch.polls} polls"


def percentile(values: list[float], share: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize_sequential(runs: dict[str, list[Launch]], warmup: dict[str, Launch]) -> dict[str, Any]:
    report: dict[str, Any] = {"launches": {k: [x.to_json() for x in v] for k, v in runs.items()},
                              "warmup": {k: v.to_json() for k, v in warmup.items()}}
    for kind, launches in runs.items():
        good = [x for x in launches if x.ok]
        totals = [x.reachable_s for x in good if x.reachable_s is not None]
        report[kind] = {
            "count": len(launches), "ready": len(good),
            "failed": sum(x.outcome == "failed" for x in launches), "hung": sum(x.outcome == "hung" for x in launches),
            "median_s": _median(totals), "p90_s": percentile(totals, 0.9),
            "min_s": min(totals, default=None), "max_s": max(totals, default=None),
            "request_median_s": _median([x.request_s for x in good]),
            "hub_ready_median_s": _median([x.hub_ready_s for x in good]),
            "running_median_s": _median([x.running_s for x in good]),
            "polls_median": _median([float(x.polls) for x in good]),
            "poll_request_median_s": _median([s for x in good for s in x.poll_request_s]),
            # The last status poll is the one that copies the notebook (portal) before answering "running".
            "last_poll_median_s": _median([x.poll_request_s[-1] for x in good if x.poll_request_s]),
            "ready_to_reachable_median_s": _median([x.reachable_s - x.running_s for x in good
                                                    if x.reachable_s is not None and x.running_s is not None]),
        }
    portal, bare = report["portal"]["median_s"], report["bare"]["median_s"]
    if portal is not None and bare is not None and bare > 0:
        allowed = max(OVERHEAD_SHARE * bare, OVERHEAD_FLOOR_S)
        report["ratio"] = portal / bare
        report["overhead_s"] = portal - bare
        report["allowed_overhead_s"] = allowed
        p90p, p90b = report["portal"]["p90_s"], report["bare"]["p90_s"]
        report["p90_ratio"] = p90p / p90b if p90p and p90b else None
        report["meets_target"] = (portal - bare <= allowed and report["portal"]["failed"] == 0
                                  and report["portal"]["hung"] == 0)
        # Where the portal's time goes, medians of each portal launch's own stages.
        good = [x for x in runs["portal"] if x.ok]
        report["portal_stages_median_s"] = {
            "launch_request": _median([x.request_s for x in good]),
            "request_to_hub_ready": _median([x.hub_ready_s - x.request_s for x in good
                                             if x.hub_ready_s is not None and x.request_s is not None]),
            "hub_ready_to_status_running": _median([x.running_s - x.hub_ready_s for x in good
                                                    if x.running_s is not None and x.hub_ready_s is not None]),
            "status_running_to_reachable": report["portal"]["ready_to_reachable_median_s"],
        }
    else:
        report["meets_target"] = False
    return report


def class_launch(stack: Any, args: argparse.Namespace, stop: threading.Event, say: Say) -> dict[str, Any]:
    """Part 2: ``--class-size`` learners click "Open lab" within ``--spread`` seconds."""
    size = args.class_size
    learners = make_learners(stack, "class", size)
    for learner in learners:
        learner.csrf = _assignment_csrf(stack, learner)  # the assignment page was loaded before the click
    results: list[Launch | None] = [None] * size
    begin = time.monotonic() + 1.0
    offsets = [args.spread * i / (size - 1) if size > 1 else 0.0 for i in range(size)]

    def one(i: int) -> None:
        learner = learners[i]
        _sleep_until(begin + offsets[i], stop)
        if stop.is_set():
            return
        try:
            results[i] = portal_launch(stack, learner.session, learner.hub_user, learner.csrf,
                                       poll=PAGE_POLL_SECONDS, timeout=args.timeout, stop=stop)
        except Exception as exc:  # noqa: BLE001 - one learner's crash is a failed launch, not a crashed run
            results[i] = Launch("portal", learner.hub_user, outcome="failed", error=repr(exc))

    threads = [threading.Thread(target=one, args=(i,), name=f"learner-{i}", daemon=True) for i in range(size)]
    say(f"  {size} learners click within {args.spread:g} s; each waits up to {args.timeout:g} s ...")
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(timeout=0.5)  # short joins: Ctrl-C reaches the main thread
    if stop.is_set():
        raise KeyboardInterrupt
    launches = [r or Launch("portal", learners[i].hub_user, outcome="hung", error="never launched")
                for i, r in enumerate(results)]
    for launch in launches:
        if not launch.ok:
            say(f"  {launch.hub_user}: {launch.outcome.upper()}: {launch.error}")
    on_hub = _ready_on_hub(stack, {x.hub_user for x in launches})
    say(f"  stopping the class's {len(launches)} labs ...")
    t_stop = time.monotonic()
    for learner, launch in zip(learners, launches, strict=True):
        stop_portal_lab(stack, learner.session, launch)
    gone = sum(wait_gone(stack, x.hub_user) for x in launches)
    stop_seconds = time.monotonic() - t_stop

    good = [x for x in launches if x.ok]
    totals = [x.reachable_s for x in good if x.reachable_s is not None]
    slowest = max(good, key=lambda x: x.reachable_s or 0.0, default=None)
    return {
        "size": size, "spread_s": args.spread, "timeout_s": args.timeout, "poll_s": PAGE_POLL_SECONDS,
        "ready": len(good), "failed": sum(x.outcome == "failed" for x in launches),
        "hung": sum(x.outcome == "hung" for x in launches),
        "ready_on_hub_before_stop": on_hub,
        "slowest_s": slowest.reachable_s if slowest else None, "slowest_user": slowest.hub_user if slowest else None,
        "median_s": _median(totals), "p90_s": percentile(totals, 0.9),
        "request_median_s": _median([x.request_s for x in launches if x.request_s is not None]),
        "request_max_s": max((x.request_s for x in launches if x.request_s is not None), default=None),
        "stopped": gone, "stop_all_s": stop_seconds,
        "meets_target": len(good) == size,
        "launches": [x.to_json() for x in launches],
    }


def _ready_on_hub(stack: Any, names: set[str]) -> int | None:
    try:
        users = stack.hub_api("GET", "/users", params={"state": "ready"}).json()
    except (requests.RequestException, ValueError):
        return None
    return sum(1 for u in users if u["name"] in names and ((u.get("servers") or {}).get("") or {}).get("ready"))


# --- the run ------------------------------------------------------------------------------


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - informative only
        return None


def run(args: argparse.Namespace, tmp: Path, stop: threading.Event, say: Say) -> dict[str, Any]:
    from tests.labs.labstack import lab_stack

    load_before = loadavg()
    before = cpu_times()
    time.sleep(2.0)
    background = busy_since(before)  # what else this machine is doing: the figures are only as clean as this
    report: dict[str, Any] = {
        "benchmark": "labs", "cpus": os.cpu_count() or 1, "course": COURSE, "assignment": ASSIGNMENT,
        "profile": PROFILE, "learners": args.learners, "poll_s": POLL_SECONDS,
        "spawn_limit": int(os.environ.get("ACADEMY_HUB_SPAWN_LIMIT") or 40),
        "jupyterhub_version": _version("jupyterhub"), "background_cpu_busy": background,
        "loadavg_before": load_before, "sequential": None, "class": None,
    }
    say(f"starting the portal and JupyterHub in {tmp} ...")
    t_start = time.monotonic()
    with lab_stack(tmp, gpu_devices=None, gpu_course=None) as stack:
        report["stack_start_s"] = time.monotonic() - t_start
        try:
            if args.learners:
                say(f"sequential: {args.learners} portal launches and {args.learners} bare starts, interleaved, "
                    f"after one warm-up of each ...")
                report["sequential"] = sequential(stack, args, stop, say)
            if args.class_size:
                say(f"class: {args.class_size} learners ...")
                report["class"] = class_launch(stack, args, stop, say)
        finally:
            stop.set()  # the class's threads (if interrupted) stop polling
            stop_everything(stack, say)
    report["loadavg_after"] = loadavg()
    return report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(report: dict[str, Any]) -> str:
    """The readable summary."""
    out = [f"Lab launch benchmark: course {report['course']} ({report['profile']} profile), assignment "
           f"{report['assignment']}; JupyterHub {report['jupyterhub_version']} with the local spawner, spawn limit "
           f"{report['spawn_limit']}; {report['cpus']} CPUs",
           f"machine CPU busy before the run (other work, 2 s): {_fmt(report['background_cpu_busy'], '.0%')}; load "
           f"average before/after: {report['loadavg_before']} / {report.get('loadavg_after')}; portal + hub up in "
           f"{_fmt(report.get('stack_start_s'), '.1f')} s"]
    seq = report["sequential"]
    if seq:
        out.append("")
        out.append(f"sequential, launch request to notebook reachable (contents API 200 through the proxy), "
                   f"{report['learners']} of each, interleaved, polled every {report['poll_s'] * 1000:.0f} ms:")
        out.append(f"{'kind':<8} {'ready':>7} {'median':>8} {'p90':>8} {'min':>8} {'max':>8} {'request':>8} "
                   f"{'hub ready':>9} {'polls':>6} {'poll req':>8} {'warm-up':>8}")
        for kind in ("portal", "bare"):
            row, warm = seq[kind], seq["warmup"].get(kind, {})
            out.append(f"{kind:<8} {row['ready']:>3}/{row['count']:<3} {_fmt(row['median_s'], '.2f'):>8} "
                       f"{_fmt(row['p90_s'], '.2f'):>8} {_fmt(row['min_s'], '.2f'):>8} {_fmt(row['max_s'], '.2f'):>8} "
                       f"{_fmt(row['request_median_s'], '.3f'):>8} {_fmt(row['hub_ready_median_s'], '.2f'):>9} "
                       f"{_fmt(row['polls_median'], '.0f'):>6} {_fmt(row['poll_request_median_s'], '.3f'):>8} "
                       f"{_fmt(warm.get('reachable_s'), '.2f'):>8}")
        out.append("  (seconds, medians; request: the start request answered; hub ready: the hub's API says ready; "
                   "poll req: one status / hub poll)")
        if "ratio" in seq:
            verdict = "met" if seq["meets_target"] else "NOT met"
            out.append(f"portal / bare: median {seq['ratio']:.3f}x, p90 {_fmt(seq['p90_ratio'], '.3f')}x; the portal "
                       f"adds {seq['overhead_s']:+.3f} s (median), allowed {seq['allowed_overhead_s']:.3f} s "
                       f"(max({OVERHEAD_SHARE:.0%}, {OVERHEAD_FLOOR_S * 1000:.0f} ms)): target: {verdict}")
            stages = seq["portal_stages_median_s"]
            out.append(f"  portal stages (medians): launch request {_fmt(stages['launch_request'], '.3f')} s, then "
                       f"hub ready after {_fmt(stages['request_to_hub_ready'], '.3f')} s, status running "
                       f"{_fmt(stages['hub_ready_to_status_running'], '.3f')} s after hub ready (the last status "
                       f"request, which copies the notebook, took {_fmt(seq['portal']['last_poll_median_s'], '.3f')} "
                       f"s), reachable {_fmt(stages['status_running_to_reachable'], '.3f')} s after running")
            out.append(f"  bare: ready to reachable {_fmt(seq['bare']['ready_to_reachable_median_s'], '.3f')} s; "
                       f"spawn time in the hub's log (median): portal "
                       f"{_fmt(seq['portal'].get('hub_spawn_median_s'), '.3f')} s, bare "
                       f"{_fmt(seq['bare'].get('hub_spawn_median_s'), '.3f')} s")
        else:
            out.append("portal / bare: no ratio (a side has no successful launch): target: NOT met")
        for kind in ("portal", "bare"):
            row = seq[kind]
            if row["failed"] or row["hung"]:
                out.append(f"  {kind}: {row['failed']} failed, {row['hung']} hung")
    cls = report["class"]
    if cls:
        out.append("")
        verdict = "met" if cls["meets_target"] else "NOT met"
        out.append(f"class: {cls['size']} learners launching within {cls['spread_s']:g} s (status polled every "
                   f"{cls['poll_s']:g} s as the launch page does, timeout {cls['timeout_s']:g} s)")
        out.append(f"  succeeded {cls['ready']}, failed {cls['failed']}, hung {cls['hung']}; slowest launch to "
                   f"reachable {_fmt(cls['slowest_s'], '.2f')} s ({cls['slowest_user'] or '-'}), median "
                   f"{_fmt(cls['median_s'], '.2f')} s, p90 {_fmt(cls['p90_s'], '.2f')} s")
        out.append(f"  launch request median {_fmt(cls['request_median_s'], '.3f')} s, max "
                   f"{_fmt(cls['request_max_s'], '.3f')} s; ready on the hub before stopping: "
                   f"{cls['ready_on_hub_before_stop']}; stopped {cls['stopped']}/{cls['size']} in "
                   f"{cls['stop_all_s']:.1f} s")
        out.append(f"  target (all {cls['size']} ready, none failed): {verdict}")
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learners", type=int, default=10,
                        help="sequential launches of each kind, portal and bare (default 10; 0 skips the part)")
    parser.add_argument("--class-size", type=int, default=30,
                        help="learners launching together (default 30; 0 skips the part)")
    parser.add_argument("--spread", type=float, default=5.0,
                        help="seconds over which the class's launches are spread (default 5.0)")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds one launch may take to be reachable before it counts as hung (default 180)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object, last line")
    args = parser.parse_args(argv)
    if args.learners < 0 or args.class_size < 0:
        parser.error("--learners and --class-size must be 0 or more")
    if args.learners + 1 + args.class_size > COHORT_CAPACITY:
        parser.error(f"--learners + 1 + --class-size must be at most {COHORT_CAPACITY} (the cohort of "
                     f"tests.labs.labstack.lab_stack; more would be wait-listed)")
    if args.spread < 0:
        parser.error("--spread must be 0 or more")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


@contextlib.contextmanager
def _cleanup(stop: threading.Event) -> Iterator[Path]:
    """A private temporary directory; on the way out (error, Ctrl-C, SIGTERM) nothing of the run survives."""
    base = tempfile.gettempdir()
    tmp = Path(tempfile.mkdtemp(prefix="acbench-labs-", dir=base if len(base) < 40 else "/tmp")).resolve()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in previous:
        signal.signal(sig, interrupted)
    try:
        yield tmp
    finally:
        stop.set()  # the class's threads stop polling
        # Cleaning up must not be interrupted half-way by a second Ctrl-C.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        try:
            leftovers = _kill_leftovers(tmp)
            if leftovers:
                print(f"killed {leftovers} process(es) of the run that outlived the hub", file=sys.stderr)
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tests.labs.labstack import missing_parts

    reason = missing_parts()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per portal request
    stop = threading.Event()
    try:
        with _cleanup(stop) as tmp:
            report = run(args, tmp, stop, say)
    except KeyboardInterrupt:
        print("interrupted; the hub, every lab server and the temporary directory were removed", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the hub not starting and the like: say what, after cleaning up
        print(f"error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    print(table(report), flush=True)
    if args.json:
        print(json.dumps(report, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
