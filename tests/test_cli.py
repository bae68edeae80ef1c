"""The ``academy`` commands: init (idempotent), create-user, token create."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "academy.cli", *args], input=stdin, capture_output=True, text=True,
        env=env, cwd=ROOT, timeout=120,
    )


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACADEMY_")}
    env.update({"ACADEMY_DATA_DIR": str(data_dir), "ACADEMY_COURSES_DIR": str(ROOT / "courses")})
    return env


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """A data directory nothing has initialised."""
    return _env(tmp_path / "data")


@pytest.fixture(scope="module")
def _initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``academy init`` (migrations, courses, releases: the slow part) for the module."""
    data = tmp_path_factory.mktemp("cli") / "data"
    done = run(["init", "--skip-solution-check"], _env(data))  # solutions: tests/catalog/test_init_checks.py
    assert done.returncode == 0, done.stderr
    return data


@pytest.fixture
def initialised_env(_initialised: Path, tmp_path: Path) -> dict[str, str]:
    """A data directory ``academy init`` has set up: a copy of the module's, for this test alone."""
    shutil.copytree(_initialised, tmp_path / "data")
    return _env(tmp_path / "data")


def test_init_is_idempotent_and_loads_courses(initialised_env: dict[str, str]) -> None:
    """A second ``init`` over the first one's data directory changes nothing."""
    cli_env = initialised_env
    second = run(["init", "--skip-solution-check"], cli_env)
    assert second.returncode == 0, second.stderr
    assert "created 0" in second.stdout or "0 created" in second.stdout, second.stdout
    import sqlite3

    conn = sqlite3.connect(Path(cli_env["ACADEMY_DATA_DIR"]) / "academy.sqlite3")
    assert conn.execute("select count(*) from course").fetchone()[0] >= 2
    assert conn.execute("select version_num from alembic_version").fetchone()[0]


def test_create_user_reads_the_password_from_stdin(initialised_env: dict[str, str]) -> None:
    cli_env = initialised_env
    made = run(["create-user", "boss@example.kr", "--role", "admin"], cli_env, stdin="a-strong-pass-9\n")
    assert made.returncode == 0, made.stderr
    assert "admin boss@example.kr" in made.stdout
    again = run(["create-user", "boss@example.kr", "--role", "admin"], cli_env, stdin="a-strong-pass-9\n")
    assert again.returncode == 2 and "error:" in again.stderr and "Traceback" not in again.stderr
    weak = run(["create-user", "weak@example.kr"], cli_env, stdin="short\n")
    assert weak.returncode == 2


def test_token_create_prints_a_token_that_works(initialised_env: dict[str, str]) -> None:
    cli_env = initialised_env
    assert run(["create-user", "hr@example.kr"], cli_env, stdin="a-strong-pass-9\n").returncode == 0
    made = run(["token", "create", "hr@example.kr", "--scope", "profile:read"], cli_env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("acad_")
    probe = (
        "import os,json;from academy import create_app;app=create_app();"
        "c=app.test_client();r=c.get('/api/v1/me',headers={'Authorization':'Bearer '+os.environ['TOK']});"
        "print(json.dumps([r.status_code,r.get_json()]))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                            env={**cli_env, "TOK": token}, timeout=60)
    status, body = json.loads(result.stdout.strip().splitlines()[-1])
    assert status == 200 and body["email"] == "hr@example.kr"
    bad = run(["token", "create", "hr@example.kr", "--scope", "root"], cli_env)
    assert bad.returncode == 2


def test_flask_app_academy_offers_the_same_commands(cli_env: dict[str, str]) -> None:
    """`flask --app academy ...` finds the academy commands (entry points), though the factory imports no CLI."""
    from academy.cli import COMMANDS

    shown = subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "academy", "--help"],
                           capture_output=True, text=True, env=cli_env, cwd=ROOT, timeout=120)
    assert shown.returncode == 0, shown.stderr
    listed = {line.split()[0] for line in shown.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert {command.name for command in COMMANDS} <= listed
