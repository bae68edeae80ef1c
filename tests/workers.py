"""Real `academy worker` processes for tests that need them (the grading queue, mail delivery).

Each worker runs in its own process group, so a test can SIGKILL one mid-job; its log is
kept under the test's folder and shown when a wait fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from flask import Flask

from academy.extensions import db
from tests.support import COURSES, ROOT


def worker_env(database_url: str, data_dir: Path, broker_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of an `academy worker` (and of the portal) for this database, data folder and broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACADEMY_")}
    env.update({
        "ACADEMY_DATABASE_URL": database_url,
        "ACADEMY_DATA_DIR": str(data_dir),
        "ACADEMY_COURSES_DIR": str(COURSES),
        "ACADEMY_SECRET_KEY": "q" * 40,
        "ACADEMY_JOB_LEASE_SECONDS": "4",
        "ACADEMY_SWEEP_SECONDS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        **extra,
    })
    if broker_url:
        env["ACADEMY_BROKER_URL"] = broker_url
    return env


class Workers:
    """`academy worker` processes, each in its own process group so it can be killed whole."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.procs, self.files = env, log_dir, [], []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.procs)}.log").open("wb")
        self.files.append(log)
        proc = subprocess.Popen([sys.executable, "-m", "academy.cli", "worker", "--concurrency", "1", *args],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        from academy.processes import stop_process

        for proc in self.procs:
            stop_process(proc)
        for log in self.files:
            log.close()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.log_dir.glob("worker-*.log")))


def portal_app(database_url: str, data_dir: Path, broker_url: str | None) -> Flask:
    """A portal app on the workers' database and data folder (for the test's own reads and writes)."""
    from academy import create_app

    return create_app({"TESTING": True, "secret_key": "q" * 40, "database_url": database_url,
                       "data_dir": data_dir, "courses_dir": COURSES, "broker_url": broker_url})


def dispose(app: Flask) -> None:
    """Close the app's database connections (before the database is dropped)."""
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
