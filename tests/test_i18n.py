"""The Korean and English message catalogues cover every user-facing string.

Messages are extracted from the current source the way ``make messages`` does it (the
method map from ``babel.cfg``, pybabel's default keywords plus ``_l`` and
``lazy_gettext``), so a new or changed ``_()`` in Python or a template fails here until
the catalogues are refreshed and translated.  No Flask app is created: this stays fast.
"""

from __future__ import annotations

import gettext
import io
import re
from functools import cache
from pathlib import Path

import pytest
from babel.messages import frontend
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from tests.support import ROOT

BABEL_CFG = ROOT / "babel.cfg"
TRANSLATIONS = ROOT / "academy" / "translations"
LOCALES = ("ko", "en")
HINT = "run `make messages` and translate"

# The Makefile's `pybabel extract -k _l -k lazy_gettext`: pybabel's defaults
# (_, gettext, ngettext, pgettext, ...) plus Flask-Babel's lazy helpers.
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}

# Top-level directories that hold no catalogue sources; skipped only to keep the walk
# fast (babel.cfg's patterns do not match their files anyway).
SKIPPED_DIRS = {"node_modules", "courses", "tests"}

# Messages whose Korean text may legitimately equal the English (brand names, codes).
# Keep this short: anything a Korean reader would read as a sentence gets translated.
IDENTICAL_IN_KOREAN: frozenset[str] = frozenset({"GPU", "GPU %(d)s", "%(mb)s MiB"})

# %(name)s, %(n)d, %(p).1f ...: the name and the conversion must survive translation.
PLACEHOLDER = re.compile(r"%\((\w+)\)[#0 +-]*\d*(?:\.\d+)?([diouxXeEfFgGcrsa])")
NUMERIC_CONVERSIONS = set("diouxXeEfFgGc")
LETTER = re.compile(r"[A-Za-z]")


@cache
def _mapping() -> tuple[list[tuple[str, str]], dict]:
    """babel.cfg's method map and options, read with pybabel's own parser."""
    parse = getattr(frontend, "parse_mapping_cfg", None) or frontend.parse_mapping
    with BABEL_CFG.open(encoding="utf-8") as fh:
        return parse(fh, str(BABEL_CFG))


def _walk(dirpath: str) -> bool:
    rel = Path(dirpath).relative_to(ROOT)
    return not (rel.name.startswith((".", "_")) or (len(rel.parts) == 1 and rel.name in SKIPPED_DIRS))


@cache
def extracted() -> dict[tuple[str, str | None], list[str]]:
    """Every (msgid, context) in the source, with the places it is used."""
    found: dict[tuple[str, str | None], list[str]] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        str(ROOT), *_mapping(), keywords=KEYWORDS, directory_filter=_walk
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        found.setdefault((msgid, context), []).append(f"{filename}:{lineno}")
    return found


@cache
def catalog(locale: str) -> Catalog:
    path = TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po"
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing: {HINT}"
    with path.open("rb") as fh:
        return read_po(fh, locale=locale)


def entries(locale: str) -> list[Message]:
    return [m for m in catalog(locale) if m.id]


def msgids(message: Message) -> tuple[str, ...]:
    return tuple(message.id) if isinstance(message.id, (list, tuple)) else (message.id,)


def msgstrs(message: Message) -> tuple[str, ...]:
    return tuple(message.string) if isinstance(message.string, (list, tuple)) else (message.string,)


def placeholders(text: str) -> set[tuple[str, str]]:
    return set(PLACEHOLDER.findall(text))


def test_extraction_finds_messages() -> None:
    """Guards the test itself: a broken method map would make everything pass vacuously."""
    files = {place.split(":")[0] for places in extracted().values() for place in places}
    assert any(f.endswith(".py") for f in files), "no messages extracted from Python files"
    assert any(f.endswith(".html") for f in files), "no messages extracted from templates"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_source_message_is_translated(locale: str) -> None:
    cat = catalog(locale)
    problems = []
    for (msgid, context), places in sorted(extracted().items(), key=lambda item: item[1][0]):
        message = cat.get(msgid, context)
        where = places[0]
        if message is None:
            problems.append(f"missing  {msgid!r}  ({where})")
        elif message.fuzzy:
            problems.append(f"fuzzy    {msgid!r}  ({where})")
        elif not all(msgstrs(message)) or len(msgstrs(message)) < (cat.num_plurals if message.pluralizable else 1):
            problems.append(f"empty    {msgid!r}  ({where})")
    assert not problems, (
        f"{len(problems)} message(s) not translated in {locale}/LC_MESSAGES/messages.po; {HINT}:\n  "
        + "\n  ".join(problems)
    )


@pytest.mark.parametrize("locale", LOCALES)
def test_no_fuzzy_entries(locale: str) -> None:
    fuzzy = [m.id for m in entries(locale) if m.fuzzy]
    assert not fuzzy, f"fuzzy entries in {locale} (check the translation, then drop the flag): {fuzzy}"


@pytest.mark.parametrize("locale", LOCALES)
def test_placeholders_survive_translation(locale: str) -> None:
    problems = []
    for message in entries(locale):
        expected: set[tuple[str, str]] = set().union(*(placeholders(i) for i in msgids(message)))
        for string in msgstrs(message):
            if not string:
                continue  # reported by the completeness test
            got = placeholders(string)
            # A plural form may leave out the count (Korean has one form); nothing may be invented.
            ok = got <= expected if message.pluralizable else got == expected
            if not ok:
                problems.append(f"{message.id!r}: expects {sorted(expected)}, {string!r} has {sorted(got)}")
                continue
            if expected:
                values = {name: 1 if conv in NUMERIC_CONVERSIONS else "x" for name, conv in expected}
                try:
                    string % values  # noqa: B018 - a stray or missing %% would raise here
                except (ValueError, TypeError, KeyError) as exc:
                    problems.append(f"{message.id!r}: {string!r} cannot be formatted ({exc})")
    assert not problems, f"placeholder mismatches in {locale}:\n  " + "\n  ".join(problems)


def test_korean_is_not_a_copy_of_english() -> None:
    copied = [
        m.id
        for m in entries("ko")
        if not m.pluralizable and m.string == m.id and LETTER.search(m.id) and m.id not in IDENTICAL_IN_KOREAN
    ]
    copied += [
        m.id[0]
        for m in entries("ko")
        if m.pluralizable and any(s in msgids(m) for s in msgstrs(m)) and m.id[0] not in IDENTICAL_IN_KOREAN
    ]
    assert not copied, (
        "the Korean catalogue holds English text (translate it, or add a brand or code name "
        f"to IDENTICAL_IN_KOREAN): {copied}"
    )


def test_allow_list_is_still_used() -> None:
    stale = IDENTICAL_IN_KOREAN - {msgid for msgid, _context in extracted()}
    assert not stale, f"IDENTICAL_IN_KOREAN names messages no longer in the source: {sorted(stale)}"


@pytest.mark.parametrize("locale", LOCALES)
def test_catalogue_compiles(locale: str) -> None:
    cat = catalog(locale)
    buf = io.BytesIO()
    write_mo(buf, cat, use_fuzzy=False)
    assert buf.tell() > 0
    buf.seek(0)
    compiled = gettext.GNUTranslations(buf)
    for message in entries(locale):
        if not message.pluralizable and message.string and not message.fuzzy and not message.context:
            assert compiled.gettext(message.id) == message.string, message.id


def test_processes_starting_together_compile_the_catalogues_once_each_without_tripping(tmp_path: Path) -> None:
    """Several portal processes (xdist workers, gunicorn workers) compile a changed catalogue at once."""
    import shutil
    import threading

    from academy.i18n import TRANSLATIONS_DIR, ensure_catalogs_compiled

    translations = tmp_path / "translations"
    shutil.copytree(TRANSLATIONS_DIR, translations, ignore=shutil.ignore_patterns("*.mo"))
    start, errors = threading.Barrier(8), []

    def compile_() -> None:
        start.wait()
        try:
            ensure_catalogs_compiled(translations)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=compile_) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(p.name for p in translations.rglob("*") if p.is_file() and p.suffix not in {".po"}) == [
        "messages.mo", "messages.mo", "messages.pot"]
    with (translations / "ko" / "LC_MESSAGES" / "messages.mo").open("rb") as fh:
        assert gettext.GNUTranslations(fh).gettext("Sign in") != "Sign in"
