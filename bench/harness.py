"""What the benchmarks share: the portal's command, a gunicorn of the app, signed-in sessions, timing.

Imported by the scripts beside it (``bench/stats.py``, ``bench/gradebook.py``), which run from the
repository root with the portal's environment (``.venv/bin/python bench/<name>.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
PG_ADMIN_URL = os.environ.get("ACADEMY_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def academy(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[float, str]:
    """Run ``academy ARGS``; returns (seconds, standard output)."""
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "academy"), *args], env=env, input=stdin, capture_output=True, text=True,
                          cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"academy {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stdout


# --- building the academy -----------------------------------------------------------------------------------------



def pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def pg_execute(sql: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()



def in_the_app(env: dict[str, str], code: str, what: str) -> Any:
    """Run ``code`` with the portal's Python in ``env``; returns the JSON its last line prints."""
    done = subprocess.run([str(BIN / "python"), "-c", code], env=env, capture_output=True, text=True, cwd=ROOT,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{what}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])



@contextlib.contextmanager
def gunicorn(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level",
                                "warning", "wsgi:app"], env=env, cwd=ROOT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            if process.poll() is not None:
                raise SystemExit("gunicorn exited")
            time.sleep(0.2)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def signed_in(base: str, email: str, password: str) -> requests.Session:
    browser = requests.Session()
    form = browser.get(base + "/login").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form) or re.search(
        r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', form)
    assert token, "no CSRF token on the login form"
    answer = browser.post(base + "/login", data={"email": email, "password": password, "csrf_token": token.group(1)},
                          allow_redirects=False)
    if answer.status_code != 302:
        raise SystemExit(f"could not sign in as {email}: {answer.status_code}")
    return browser


def timed(browser: requests.Session, url: str) -> float:
    started = time.perf_counter()
    answer = browser.get(url, allow_redirects=False)  # a redirect (to sign in, to consent) is not the page
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise SystemExit(f"GET {url} answered {answer.status_code} {answer.headers.get('Location', '')}")
    return elapsed


def colds_and_warm(visits: list[tuple[requests.Session, str]], repeat: int) -> dict[str, float]:
    """The first request of each of several views of one kind (each a different value, so each is new to the
    server): their median ("cold", one stall of the machine does not decide it) and the slowest; then the median
    of ``repeat`` more requests of the first view ("warm")."""
    colds = [timed(browser, url) for browser, url in visits]
    browser, url = visits[0]
    warm = [timed(browser, url) for _ in range(repeat)]
    return {"cold_ms": round(statistics.median(colds), 1), "cold_max_ms": round(max(colds), 1),
            "colds": len(colds), "warm_ms": round(statistics.median(warm), 1)}


def cold_and_warm(browser: requests.Session, url: str, repeat: int) -> dict[str, float]:
    """The first request of one view ("cold") and the median of ``repeat`` more ("warm")."""
    return colds_and_warm([(browser, url)], repeat)
