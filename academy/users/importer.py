"""Importing a company's employees from a CSV file.

The file may be UTF-8 (with or without BOM) or CP949, the encoding Korean Excel
writes.  Every row is checked first; if any row is rejected nothing is imported and
the report says, per row, why.  Each created account is sent an invitation: a mail saying that
their company registered them, with a link to choose their password (``services.send_invitation``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from academy.audit.services import record
from academy.users import reference
from academy.users.models import Role, User
from academy.users.passwords import unusable_password_hash
from academy.users.services import get_or_create_company, normalize_email, send_invitation

MAX_ROWS = 5000

# Accepted header names (English or Korean) for each column.
COLUMNS: dict[str, tuple[str, ...]] = {
    "email": ("email", "이메일", "e-mail", "전자우편"),
    "name": ("name", "이름", "성명"),
    "company_name": ("company_name", "company", "회사명", "회사"),
    "business_number": ("business_number", "사업자등록번호", "사업자번호"),
    "region": ("region", "지역", "시군"),
    "industry": ("industry", "업종"),
    "job_role": ("job_role", "직무"),
    "role": ("role", "역할"),
}
REQUIRED = ("email", "name", "company_name", "business_number")
# What the report calls each column (the same words as the registration form).
COLUMN_LABELS: dict[str, object] = {
    "email": _l("Email"),
    "name": _l("Name"),
    "company_name": _l("Company name"),
    "business_number": _l("Business registration number"),
    "region": _l("Region"),
    "industry": _l("Industry"),
    "job_role": _l("Job role"),
}
IMPORTABLE_ROLES = {Role.learner.value, Role.instructor.value}


@dataclass
class RowResult:
    line: int
    email: str
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class ImportReport:
    encoding: str | None = None
    rows: list[RowResult] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)
    created: int = 0

    @property
    def rejected(self) -> list[RowResult]:
        return [r for r in self.rows if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.file_errors and not self.rejected and bool(self.rows)


def decode_csv(data: bytes) -> tuple[str, str]:
    """Decode CSV bytes as UTF-8 (BOM allowed) or CP949; returns (text, encoding).

    Raises UnicodeDecodeError when neither fits.
    """
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp949"), "cp949"


def _label_index(table: dict[str, object]) -> dict[str, str]:
    """Map codes and their Korean and English labels (lower-cased) to codes."""
    index: dict[str, str] = {}
    for code, label in table.items():
        index[code.lower()] = code
        for locale in ("ko", "en"):
            with force_locale(locale):
                index[str(label).strip().lower()] = code
    return index


def _match_headers(header: list[str]) -> tuple[dict[str, int], list[str]]:
    positions: dict[str, int] = {}
    unknown: list[str] = []
    for i, raw in enumerate(header):
        name = raw.strip().lower()
        for key, aliases in COLUMNS.items():
            if name in aliases:
                positions[key] = i
                break
        else:
            if name:
                unknown.append(raw.strip())
    return positions, unknown


def import_employees(
    session: Session,
    data: bytes,
    *,
    actor: User | None,
    secret_key: str,
    invite_url_for: Callable[[str], str],
) -> ImportReport:
    """Check every row of an employee CSV and, only when all pass, create the accounts.

    Returns the report; the caller commits when ``report.ok`` and rolls back otherwise
    (the function itself adds nothing to the session unless every row is valid).  Each new
    person's invitation is queued in the outbox (sent after the commit); ``invite_url_for``
    turns an invitation token into the absolute URL of the set-password page.
    """
    report = ImportReport()
    try:
        text, report.encoding = decode_csv(data)
    except UnicodeDecodeError:
        report.file_errors.append(_("The file is neither UTF-8 nor CP949 text. Save it as CSV (UTF-8)."))
        return report
    if "\x00" in text:
        report.file_errors.append(_("The file is not a CSV text file."))
        return report
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        report.file_errors.append(_("The CSV file could not be read: %(error)s", error=str(exc)))
        return report
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        report.file_errors.append(_("The file is empty."))
        return report
    positions, unknown = _match_headers(rows[0])
    missing = [c for c in REQUIRED if c not in positions]
    if missing:
        report.file_errors.append(
            _("The header row lacks the columns: %(columns)s", columns=", ".join(missing))
        )
    if unknown:
        report.file_errors.append(_("Unknown columns in the header row: %(columns)s", columns=", ".join(unknown)))
    if len(rows) - 1 > MAX_ROWS:
        report.file_errors.append(_("At most %(n)d rows can be imported at once.", n=MAX_ROWS))
    if report.file_errors:
        return report
    if len(rows) == 1:
        report.file_errors.append(_("The file has a header row but no employees."))
        return report

    regions = _label_index(reference.REGIONS)
    regions.update({name.lower(): code for code, name in reference.REGION_NAMES_KO.items()})
    industries = _label_index(reference.INDUSTRIES)
    job_roles = _label_index(reference.JOB_ROLES)
    emails_in_file: dict[str, int] = {}
    existing = {
        e.lower() for e in session.scalars(select(func.lower(User.email)))
    }
    parsed: list[dict[str, str | None]] = []

    for offset, raw in enumerate(rows[1:], start=2):
        def cell(key: str, raw: list[str] = raw) -> str:
            i = positions.get(key)
            return raw[i].strip() if i is not None and i < len(raw) else ""

        result = RowResult(line=offset, email=cell("email"))
        values: dict[str, str | None] = {}
        for key in REQUIRED:
            if not cell(key):
                result.errors.append(_("'%(column)s' is empty.", column=str(COLUMN_LABELS[key])))
        email = cell("email")
        if email:
            try:
                email = normalize_email(validate_email(email, check_deliverability=False).normalized)
            except EmailNotValidError:
                result.errors.append(_("'%(value)s' is not a valid email address.", value=email))
            else:
                if email in existing:
                    result.errors.append(_("An account with this email already exists."))
                elif email in emails_in_file:
                    result.errors.append(
                        _("The same email is already on line %(line)d.", line=emails_in_file[email])
                    )
                else:
                    emails_in_file[email] = offset
        values["email"] = email
        if cell("business_number"):
            try:
                values["business_number"] = reference.normalize_business_number(cell("business_number"))
            except ValueError:
                result.errors.append(
                    _("'%(value)s' is not a valid business registration number.", value=cell("business_number"))
                )
        for key, index in (("region", regions), ("industry", industries), ("job_role", job_roles)):
            value = cell(key)
            if not value:
                values[key] = None
            elif value.lower() in index:
                values[key] = index[value.lower()]
            else:
                result.errors.append(_("Unknown %(column)s: '%(value)s'.", column=str(COLUMN_LABELS[key]), value=value))
        role = (cell("role") or Role.learner.value).lower()
        if role not in IMPORTABLE_ROLES:
            result.errors.append(_("Role must be learner or instructor, not '%(value)s'.", value=role))
        values["role"] = role
        values["name"] = cell("name")[:100]
        values["company_name"] = cell("company_name")
        report.rows.append(result)
        parsed.append(values)

    if not report.ok:
        return report

    for values in parsed:
        company = get_or_create_company(session, values["company_name"] or "", values["business_number"] or "")
        user = User(
            email=values["email"] or "",
            name=values["name"] or "",
            # An unusable password (no Argon2 hash matches it): the person sets their own
            # through the link, and thousands of rows import without thousands of hashes.
            password_hash=unusable_password_hash(),
            role=Role(values["role"]),
            company=company,
            region=values["region"],
            industry=values["industry"],
            job_role=values["job_role"],
        )
        session.add(user)
        session.flush()
        send_invitation(session, user, secret_key=secret_key, invite_url_for=invite_url_for, actor=actor)
        report.created += 1
    record(session, "user.import", actor=actor, target_type="company", target_id=None,
           created=report.created, encoding=report.encoding)
    return report
