"""Settings read from ``ACADEMY_*`` environment variables (and a ``.env`` file).

Every setting has a safe default for the embedded mode, so a fresh clone runs with
no configuration at all.  Production mode (``ACADEMY_ENV=production``) refuses to
start with a missing or default secret key, or with a database or data directory
left implicit by accident.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_SECRET_MARKERS = {"", "change-me", "changeme", "dev", "secret", "default"}


class ConfigurationError(RuntimeError):
    """The configuration cannot be used; the message says which variable to fix."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    return value.lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    value = _env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {value!r}") from exc


def _check_gpu_devices(value: str | None) -> str | None:
    """``ACADEMY_GPU_DEVICES`` as given, once it parses; ConfigurationError naming the bad entry otherwise."""
    from academy.labs.gpu import parse_configured

    if value is not None:
        try:
            parse_configured(value)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
    return value


def _secret_file(path: Path) -> str:
    """Read a generated secret, creating it (mode 0600) on first use; safe against a racing creator."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    return path.read_text().strip()


@dataclass
class Settings:
    """The portal's settings, one field per documented environment variable."""

    env: str = "development"
    secret_key: str | None = None
    data_dir: Path = field(default_factory=lambda: Path("instance").resolve())
    database_url: str | None = None
    broker_url: str | None = None
    hub_url: str | None = None
    hub_api_token: str | None = None
    courses_dir: Path = field(default_factory=lambda: Path("courses").resolve())
    base_url: str = "http://127.0.0.1:5000"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_sender: str = "AI 새마을 아카데미 <noreply@academy.local>"
    ratelimit_storage_url: str = "memory://"
    login_rate_limit: str = "10 per minute"
    password_reset_max_age: int = 3600
    max_upload_bytes: int = 16 * 1024 * 1024
    job_lease_seconds: int = 60
    sweep_seconds: float = 15.0
    grading_workers: int = 0  # 0: one per core
    hub_public_url: str | None = None
    hub_client_secret: str | None = None
    lab_profiles_file: Path = field(default_factory=lambda: (_PROJECT_DIR / "hub_config" / "profiles.toml"))
    gpu_devices: str | None = None  # None: detect through NVML; "0,1" or "0:H200:143771,1:H200:143771": a fixed list
    gpu_reserve_mb: int = 1024  # MiB of each GPU held back from shared seats (the driver's and CUDA's own use)
    grading_gpu_profile: str = "gpu-shared"  # the lab profile whose seat a GPU course's grading job takes
    gpu_device_root: str = "/dev"  # where the NVIDIA device files are (another folder only in tests)
    lab_spawn_timeout: int = 120
    lab_queue_ttl_seconds: int = 600
    lab_quota_warning_minutes: int = 10
    at_risk_margin_percent: int = 25  # how far below the cohort's median progress a learner counts as behind
    oidc_access_token_seconds: int = 600
    #: reverse proxies in front of the portal whose X-Forwarded-For/-Proto/-Host headers are trusted
    trusted_proxies: int = 0

    @classmethod
    def from_env(cls) -> Settings:
        """Build settings from ``ACADEMY_*`` variables.

        Raises ConfigurationError when a value is malformed.
        """
        env = (_env("ACADEMY_ENV", "development") or "development").lower()
        if env not in {"development", "production"}:
            raise ConfigurationError(f"ACADEMY_ENV must be 'development' or 'production', got {env!r}")
        data_dir = Path(_env("ACADEMY_DATA_DIR", "instance") or "instance").resolve()
        gpu_reserve_mb = _env_int("ACADEMY_GPU_RESERVE_MB", 1024)
        if gpu_reserve_mb < 0:
            raise ConfigurationError(f"ACADEMY_GPU_RESERVE_MB must be 0 or more (MiB), got {gpu_reserve_mb}")
        return cls(
            env=env,
            secret_key=_env("ACADEMY_SECRET_KEY"),
            data_dir=data_dir,
            database_url=_env("ACADEMY_DATABASE_URL"),
            broker_url=_env("ACADEMY_BROKER_URL"),
            hub_url=_env("ACADEMY_HUB_URL"),
            hub_api_token=_env("ACADEMY_HUB_API_TOKEN"),
            courses_dir=Path(_env("ACADEMY_COURSES_DIR", "courses") or "courses").resolve(),
            base_url=_env("ACADEMY_BASE_URL", "http://127.0.0.1:5000") or "",
            smtp_host=_env("ACADEMY_SMTP_HOST"),
            smtp_port=_env_int("ACADEMY_SMTP_PORT", 25),
            smtp_user=_env("ACADEMY_SMTP_USER"),
            smtp_password=_env("ACADEMY_SMTP_PASSWORD"),
            smtp_starttls=_env_bool("ACADEMY_SMTP_STARTTLS", False),
            mail_sender=_env("ACADEMY_MAIL_SENDER", cls.mail_sender) or cls.mail_sender,
            ratelimit_storage_url=_env("ACADEMY_RATELIMIT_STORAGE_URL", "memory://") or "memory://",
            login_rate_limit=_env("ACADEMY_LOGIN_RATE_LIMIT", "10 per minute") or "10 per minute",
            password_reset_max_age=_env_int("ACADEMY_PASSWORD_RESET_MAX_AGE", 3600),
            max_upload_bytes=_env_int("ACADEMY_MAX_UPLOAD_BYTES", 16 * 1024 * 1024),
            job_lease_seconds=_env_int("ACADEMY_JOB_LEASE_SECONDS", 60),
            sweep_seconds=float(_env_int("ACADEMY_SWEEP_SECONDS", 15)),
            grading_workers=_env_int("ACADEMY_GRADING_WORKERS", 0),
            hub_public_url=_env("ACADEMY_HUB_PUBLIC_URL"),
            hub_client_secret=_env("ACADEMY_HUB_CLIENT_SECRET"),
            lab_profiles_file=Path(
                _env("ACADEMY_LAB_PROFILES", str(_PROJECT_DIR / "hub_config" / "profiles.toml")) or ""
            ).resolve(),
            gpu_devices=_check_gpu_devices(_env("ACADEMY_GPU_DEVICES")),
            gpu_reserve_mb=gpu_reserve_mb,
            grading_gpu_profile=_env("ACADEMY_GRADING_GPU_PROFILE", "gpu-shared") or "gpu-shared",
            gpu_device_root=_env("ACADEMY_GPU_DEVICE_ROOT", "/dev") or "/dev",
            lab_spawn_timeout=_env_int("ACADEMY_LAB_SPAWN_TIMEOUT", 120),
            lab_queue_ttl_seconds=_env_int("ACADEMY_LAB_QUEUE_TTL_SECONDS", 600),
            lab_quota_warning_minutes=_env_int("ACADEMY_LAB_QUOTA_WARNING_MINUTES", 10),
            at_risk_margin_percent=_env_int("ACADEMY_AT_RISK_MARGIN_PERCENT", 25),
            oidc_access_token_seconds=_env_int("ACADEMY_OIDC_ACCESS_TOKEN_SECONDS", 600),
            trusted_proxies=_env_int("ACADEMY_TRUSTED_PROXIES", 0),
        )

    @property
    def production(self) -> bool:
        return self.env == "production"

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: the configured one, or a SQLite file in the data directory."""
        if self.database_url:
            url = self.database_url
            # Accept the common libpq-style scheme and use psycopg 3.
            if url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url[len("postgres://") :]
            elif url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            return url
        return f"sqlite:///{self.data_dir / 'academy.sqlite3'}"

    @property
    def labs_enabled(self) -> bool:
        """Labs need a hub to drive: ``ACADEMY_HUB_URL`` (``academy demo`` sets it for its own hub)."""
        return bool(self.hub_url)

    @property
    def hub_browser_url(self) -> str:
        """The hub's address as browsers reach it (defaults to the address the portal uses)."""
        return (self.hub_public_url or self.hub_url or "").rstrip("/")

    def resolved_hub_secret(self, name: str) -> str:
        """The hub service token (``api_token``) or OAuth client secret (``client_secret``).

        Taken from ``ACADEMY_HUB_API_TOKEN`` / ``ACADEMY_HUB_CLIENT_SECRET``; in development a
        random one is kept in the data directory so the portal and the hub it starts agree.
        """
        value = self.hub_api_token if name == "api_token" else self.hub_client_secret
        variable = "ACADEMY_HUB_API_TOKEN" if name == "api_token" else "ACADEMY_HUB_CLIENT_SECRET"
        if value:
            if self.production and (value.lower() in DEFAULT_SECRET_MARKERS or len(value) < 32):
                raise ConfigurationError(f"{variable} must be a random value of at least 32 characters in production")
            return value
        if self.production:
            raise ConfigurationError(f"{variable} must be set in production when ACADEMY_HUB_URL is set")
        return _secret_file(self.data_dir / f"hub_{name}")

    def resolved_secret_key(self) -> str:
        """Return the signing key, generating one into the data directory in development.

        Raises ConfigurationError in production when the key is missing or a known default.
        """
        key = self.secret_key
        if self.production:
            if key is None or key.lower() in DEFAULT_SECRET_MARKERS or len(key) < 32:
                raise ConfigurationError(
                    "ACADEMY_SECRET_KEY must be set to a random value of at least 32 characters "
                    "in production (for example: python -c 'import secrets; print(secrets.token_hex(32))')"
                )
            return key
        if key:
            return key
        return _secret_file(self.data_dir / "secret_key")

    def flask_config(self) -> dict[str, Any]:
        """The Flask configuration mapping derived from these settings."""
        url = self.resolved_database_url()
        _check_gpu_devices(self.gpu_devices)  # set after from_env by create_app's overrides too
        if self.production and self.hub_url:
            self.resolved_hub_secret("api_token")
            self.resolved_hub_secret("client_secret")
        engine_options: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            engine_options = {"connect_args": {"timeout": 30}}
        return {
            "ACADEMY_SETTINGS": self,
            "SECRET_KEY": self.resolved_secret_key(),
            "SQLALCHEMY_DATABASE_URI": url,
            "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
            "MAX_CONTENT_LENGTH": self.max_upload_bytes,
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            "SESSION_COOKIE_SECURE": self.production,
            "REMEMBER_COOKIE_HTTPONLY": True,
            "REMEMBER_COOKIE_SAMESITE": "Lax",
            "REMEMBER_COOKIE_SECURE": self.production,
            "REMEMBER_COOKIE_DURATION": 14 * 24 * 3600,
            "WTF_CSRF_TIME_LIMIT": None,
            "RATELIMIT_STORAGE_URI": self.ratelimit_storage_url,
            "RATELIMIT_HEADERS_ENABLED": True,
            "BABEL_DEFAULT_LOCALE": "ko",
            "BABEL_DEFAULT_TIMEZONE": "Asia/Seoul",
            "ACADEMY_COURSES_DIR": str(self.courses_dir),
            "ACADEMY_DATA_DIR": str(self.data_dir),
            "ACADEMY_JOB_LEASE_SECONDS": self.job_lease_seconds,
        }
