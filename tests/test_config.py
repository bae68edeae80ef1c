"""Configuration: environment variables, safe defaults, and production refusing default secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from academy import create_app
from academy.config import ConfigurationError, Settings


def test_defaults_are_embedded_sqlite_in_development(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ACADEMY_ENV", "ACADEMY_DATABASE_URL", "ACADEMY_SECRET_KEY", "ACADEMY_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACADEMY_DATA_DIR", str(tmp_path))
    settings = Settings.from_env()
    assert settings.env == "development"
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'academy.sqlite3'}"
    assert settings.broker_url is None


def test_development_generates_and_keeps_a_secret_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ACADEMY_SECRET_KEY", raising=False)
    monkeypatch.setenv("ACADEMY_DATA_DIR", str(tmp_path))
    first = Settings.from_env().resolved_secret_key()
    second = Settings.from_env().resolved_secret_key()
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("secret", [None, "change-me", "dev", "short-but-not-default"])
def test_production_refuses_missing_or_default_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secret: str | None
) -> None:
    monkeypatch.setenv("ACADEMY_ENV", "production")
    monkeypatch.setenv("ACADEMY_DATA_DIR", str(tmp_path))
    if secret is None:
        monkeypatch.delenv("ACADEMY_SECRET_KEY", raising=False)
    else:
        monkeypatch.setenv("ACADEMY_SECRET_KEY", secret)
    with pytest.raises(ConfigurationError, match="ACADEMY_SECRET_KEY"):
        create_app()
    assert not (tmp_path / "secret_key").exists()


def test_production_with_a_real_secret_sets_secure_cookies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACADEMY_ENV", "production")
    monkeypatch.setenv("ACADEMY_SECRET_KEY", "k" * 48)
    monkeypatch.setenv("ACADEMY_DATA_DIR", str(tmp_path))
    app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["REMEMBER_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_postgres_urls_use_psycopg3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACADEMY_DATABASE_URL", "postgresql://u:p@db.internal:5432/academy")
    assert Settings.from_env().resolved_database_url() == "postgresql+psycopg://u:p@db.internal:5432/academy"


def test_malformed_integer_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACADEMY_SMTP_PORT", "twenty-five")
    with pytest.raises(ConfigurationError, match="ACADEMY_SMTP_PORT"):
        Settings.from_env()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    from sqlalchemy import text

    from academy.extensions import db

    app = create_app({"secret_key": "w" * 40, "data_dir": tmp_path, "database_url": None})
    with app.app_context():
        assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'academy.sqlite3'}"
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        db.engine.dispose()


def test_gpu_inventory_with_memory_and_the_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACADEMY_GPU_RESERVE_MB", raising=False)
    monkeypatch.setenv("ACADEMY_GPU_DEVICES", "0:NVIDIA H200:143771,1:NVIDIA H200:143771")
    settings = Settings.from_env()
    assert settings.gpu_devices == "0:NVIDIA H200:143771,1:NVIDIA H200:143771" and settings.gpu_reserve_mb == 1024
    monkeypatch.setenv("ACADEMY_GPU_RESERVE_MB", "2048")
    assert Settings.from_env().gpu_reserve_mb == 2048


@pytest.mark.parametrize("value, complaint", [
    ("0:NVIDIA H200:143771,1:NVIDIA H200:lots", "'1:NVIDIA H200:lots'"),
    ("0:NVIDIA H200:0", "'0:NVIDIA H200:0'"),
    ("0,0", "listed twice"),
])
def test_malformed_gpu_inventory_stops_the_portal_naming_the_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                   value: str, complaint: str) -> None:
    monkeypatch.setenv("ACADEMY_GPU_DEVICES", value)
    with pytest.raises(ConfigurationError, match=complaint) as refused:
        Settings.from_env()
    assert "ACADEMY_GPU_DEVICES" in str(refused.value)
    monkeypatch.delenv("ACADEMY_GPU_DEVICES")
    with pytest.raises(ConfigurationError, match=complaint):  # handed to the factory (as tests and `demo` do)
        create_app({"secret_key": "g" * 40, "data_dir": tmp_path, "gpu_devices": value})


@pytest.mark.parametrize("value", ["-1", "a lot"])
def test_gpu_reserve_must_be_a_whole_number_of_mib(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ACADEMY_GPU_RESERVE_MB", value)
    with pytest.raises(ConfigurationError, match="ACADEMY_GPU_RESERVE_MB"):
        Settings.from_env()
