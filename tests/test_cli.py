"""The ``academy`` commands: init (idempotent), create-user, token create."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "academy.cli", *args], input=stdin, capture_output=True, text=True,
        env=env, cwd=ROOT, timeout=120,
    )


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACADEMY_")}
    env.update({"ACADEMY_DATA_DIR": str(tmp_path / "data"), "ACADEMY_COURSES_DIR": str(ROOT / "courses")})
    return env


def test_init_is_idempotent_and_loads_courses(cli_env: dict[str, str]) -> None:
    first = run(["init"], cli_env)
    assert first.returncode == 0, first.stderr
    second = run(["init"], cli_env)
    assert second.returncode == 0, second.stderr
    assert "created 0" in second.stdout or "0 created" in second.stdout, second.stdout
    import sqlite3

    conn = sqlite3.connect(Path(cli_env["ACADEMY_DATA_DIR"]) / "academy.sqlite3")
    assert conn.execute("select count(*) from course").fetchone()[0] >= 2
    assert conn.execute("select version_num from alembic_version").fetchone()[0]


def test_create_user_reads_the_password_from_stdin(cli_env: dict[str, str]) -> None:
    assert run(["init"], cli_env).returncode == 0
    made = run(["create-user", "boss@example.kr", "--role", "admin"], cli_env, stdin="a-strong-pass-9\n")
    assert made.returncode == 0, made.stderr
    assert "admin boss@example.kr" in made.stdout
    again = run(["create-user", "boss@example.kr", "--role", "admin"], cli_env, stdin="a-strong-pass-9\n")
    assert again.returncode == 2 and "error:" in again.stderr and "Traceback" not in again.stderr
    weak = run(["create-user", "weak@example.kr"], cli_env, stdin="short\n")
    assert weak.returncode == 2


def test_token_create_prints_a_token_that_works(cli_env: dict[str, str]) -> None:
    assert run(["init"], cli_env).returncode == 0
    assert run(["create-user", "hr@example.kr"], cli_env, stdin="a-strong-pass-9\n").returncode == 0
    made = run(["token", "create", "hr@example.kr", "--scope", "profile:read"], cli_env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("acad_")
    os.environ.update({})
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
