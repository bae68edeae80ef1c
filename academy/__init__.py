"""AI Saemaul Academy portal: the application factory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from academy import deferred_imports

if TYPE_CHECKING:  # Flask is imported by create_app, so that importing academy.engine does not load it
    from flask import Flask

deferred_imports.defer()

__all__ = ["create_app"]


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Create the portal application.

    ``config`` overrides settings read from the environment (tests pass a database URL
    and a data directory this way).  Raises ``ConfigurationError`` when production mode
    is asked for with a default secret key.
    """
    from dotenv import load_dotenv
    from flask import Flask

    from academy.config import Settings

    load_dotenv(override=False)
    settings = Settings.from_env()
    overrides = dict(config or {})
    for key in ("env", "secret_key", "database_url", "broker_url", "base_url", "hub_url", "hub_public_url",
                "hub_api_token", "hub_client_secret", "gpu_devices", "lab_spawn_timeout", "lab_queue_ttl_seconds",
                "lab_quota_warning_minutes", "oidc_access_token_seconds", "trusted_proxies",
                "at_risk_margin_percent"):
        if key in overrides:
            setattr(settings, key, overrides.pop(key))
    for key in ("data_dir", "courses_dir", "lab_profiles_file"):
        if key in overrides:
            setattr(settings, key, Path(overrides.pop(key)).resolve())

    app = Flask(__name__, template_folder="web/templates", static_folder="web/static")
    app.config.from_mapping(settings.flask_config())
    app.config.update(overrides)
    if settings.trusted_proxies > 0:
        # Behind a TLS proxy: the request's scheme, host and client address are what the proxy saw
        # (OAuth refuses plain http, secure cookies and rate limits need the real client).
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    from academy import logging_setup

    logging_setup.configure(app)

    from academy.extensions import babel, csrf, db, limiter, login_manager, migrate
    from academy.i18n import ensure_catalogs_compiled, select_locale, select_timezone

    ensure_catalogs_compiled()

    from academy.web import errors, filters, security

    # First, so every response (a CSRF refusal or a rate-limit answer included) has a request id.
    security.init_app(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(_migrations_dir()), render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    limiter.init_app(app)
    login_manager.init_app(app)
    _configure_login(login_manager)

    errors.init_app(app)
    filters.init_app(app)

    from academy.oidc import server as oidc_server

    oidc_server.init_app(app)
    _register_blueprints(app)
    return app


def _migrations_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "migrations"


def _configure_login(login_manager: Any) -> None:
    from flask_babel import lazy_gettext as _l

    from academy.extensions import db
    from academy.users.models import User

    login_manager.login_view = "auth.login"
    login_manager.login_message = _l("Please sign in to see this page.")
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        try:
            user = db.session.get(User, int(user_id))
        except ValueError:
            return None
        return user if user is not None and user.active else None


def _register_blueprints(app: Flask) -> None:
    import academy.teaching.publish_views  # noqa: F401 - its routes are on the teaching blueprint
    from academy.admin.views import bp as admin_bp
    from academy.api.views import bp as api_bp
    from academy.catalog.views import bp as catalog_bp
    from academy.certificates.views import bp as certificates_bp
    from academy.companies.views import bp as companies_bp
    from academy.dashboard.views import bp as dashboard_bp
    from academy.enrollment.views import bp as enrollment_bp
    from academy.grading.views import bp as grading_bp
    from academy.inbox.views import bp as inbox_bp
    from academy.labs.views import bp as labs_bp
    from academy.oidc.views import bp as oidc_bp
    from academy.stats.views import bp as stats_bp
    from academy.teaching.views import bp as teaching_bp
    from academy.users.views import bp as auth_bp
    from academy.web.views import bp as web_bp

    for bp in (web_bp, auth_bp, catalog_bp, enrollment_bp, dashboard_bp, grading_bp, admin_bp, api_bp,
               oidc_bp, labs_bp, certificates_bp, stats_bp, companies_bp, teaching_bp, inbox_bp):
        app.register_blueprint(bp)
