"""Tables of figures as CSV (UTF-8 with a BOM, so Excel reads Korean) and XLSX (openpyxl).

A cell a spreadsheet would read as a formula (text starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return: a company named ``=HYPERLINK(...)``) is written with a leading apostrophe,
so it stays text (OWASP's advice on CSV injection); numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Table:
    """A titled table: header cells and rows of plain values."""

    name: str  # file name stem, ASCII
    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]


def safe(value: Any) -> Any:
    """``value`` as a spreadsheet should store it: text that looks like a formula gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def to_csv(table: Table) -> bytes:
    """The table as CSV, UTF-8 with a byte-order mark."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([safe(h) for h in table.header])
    for row in table.rows:
        writer.writerow([safe(v) for v in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(table: Table) -> bytes:
    """The table as an XLSX workbook of one sheet, every text cell stored as text (never a formula).

    Written row by row (openpyxl's write-only mode): tens of thousands of cells in well under a
    second, where building the whole sheet in memory first took many seconds.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    header = [safe(h) for h in table.header]
    rows = [[safe(v) for v in row] for row in table.rows]
    widths = [len(str(h)) for h in header]
    for row in rows:
        for i, value in enumerate(row):
            if i < len(widths):
                widths[i] = max(widths[i], len(str(value)))
            else:
                widths.append(len(str(value)))
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=table.name[:31])
    for i, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(i)].width = min(max(10, width * 1.6), 60)
    bold = Font(bold=True)
    cells = []
    for value in header:
        cell = WriteOnlyCell(sheet, value=value)
        cell.font = bold
        cells.append(cell)
    sheet.append(cells)
    for row in rows:
        sheet.append(row)  # text never starts like a formula here: ``safe`` saw to it
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


MIMETYPES = {"csv": "text/csv; charset=utf-8",
             "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def encode(table: Table, fmt: str) -> tuple[bytes, str]:
    """The table as ``fmt`` (``csv`` or ``xlsx``): its bytes and their media type."""
    return (to_csv(table) if fmt == "csv" else to_xlsx(table)), MIMETYPES[fmt]
