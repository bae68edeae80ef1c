"""Logging with a request id on every line, so an error page's id finds its traceback."""

from __future__ import annotations

import logging

from flask import Flask, g, has_request_context


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to log records ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(g, "request_id", "-") if has_request_context() else "-"
        return True


def configure(app: Flask) -> None:
    """Attach a request-id-aware handler to the app's logger."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
    handler.addFilter(RequestIdFilter())
    app.logger.handlers[:] = [handler]
    app.logger.setLevel(logging.INFO)
    app.logger.propagate = False
