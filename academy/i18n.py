"""Locale selection and the message catalogues (Korean first, English too)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import has_request_context, session
from flask_babel import get_locale
from flask_login import current_user

SUPPORTED_LOCALES = ("ko", "en")
DEFAULT_LOCALE = "ko"
DISPLAY_TIMEZONE = "Asia/Seoul"
TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"


def select_locale() -> str:
    """The signed-in user's saved language, else the one chosen in this session, else Korean.

    Outside a request (commands, jobs) the default, Korean, applies.
    """
    if not has_request_context():
        return DEFAULT_LOCALE
    if current_user and current_user.is_authenticated and current_user.locale in SUPPORTED_LOCALES:
        return current_user.locale
    chosen = session.get("lang")
    if chosen in SUPPORTED_LOCALES:
        return chosen
    return DEFAULT_LOCALE


def select_timezone() -> str:
    """Times are stored in UTC and always shown in Asia/Seoul."""
    return DISPLAY_TIMEZONE


def current_locale() -> str:
    """The active locale as a plain code ("ko" or "en")."""
    locale = get_locale()
    return locale.language if locale is not None else DEFAULT_LOCALE


def ensure_catalogs_compiled(translations_dir: Path = TRANSLATIONS_DIR) -> None:
    """Compile each ``messages.po`` whose ``.mo`` is missing or older.

    The compiled files are build products and not kept in git; compiling here means a
    plain ``pip install -e .`` still shows translated pages.
    """
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po_path in translations_dir.glob("*/LC_MESSAGES/messages.po"):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        with po_path.open("rb") as fh:
            catalog = read_po(fh, locale=po_path.parent.parent.name)
        # A file of this process's own, renamed into place: processes starting together (web
        # workers, test workers) each write a whole catalogue, and the last rename wins.
        fd, tmp = tempfile.mkstemp(prefix=".messages-", suffix=".mo", dir=mo_path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                write_mo(fh, catalog, use_fuzzy=False)
            os.chmod(tmp, 0o644)
            os.replace(tmp, mo_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
