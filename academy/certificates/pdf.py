"""The certificate as a PDF: Korean and English on one A4 page, Pretendard embedded, a QR code.

Drawn with ReportLab from what the certificate row states (never from the live catalogue), so
the same certificate always gives the same text.  The font is the Pretendard TrueType build
vendored from the npm registry (``static/vendor/pretendard/ttf``); ReportLab embeds the subset
of glyphs used.  The QR code holds the public verification address.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
from dataclasses import dataclass
from pathlib import Path

from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from academy.certificates.credential import ISSUER_NAME

FONT_DIR = Path(__file__).resolve().parent.parent / "web" / "static" / "vendor" / "pretendard" / "ttf"
REGULAR, BOLD = "Pretendard", "Pretendard-Bold"
NAVY = colors.HexColor("#12355b")
GREY = colors.HexColor("#5a6270")
_fonts_lock = threading.Lock()


@dataclass(frozen=True)
class PdfText:
    """Everything printed on the certificate (plain values)."""

    code: str
    kind: str  # "course" or "track"
    holder_name: str
    title_ko: str
    title_en: str
    track_title_ko: str
    track_title_en: str
    hours: float
    competencies: tuple[tuple[str, str], ...]
    completed_on: dt.date
    issued_on: dt.date
    verify_url: str


def _register_fonts() -> None:
    with _fonts_lock:
        registered = pdfmetrics.getRegisteredFontNames()
        if REGULAR not in registered:
            pdfmetrics.registerFont(TTFont(REGULAR, str(FONT_DIR / "Pretendard-Regular.ttf")))
        if BOLD not in registered:
            pdfmetrics.registerFont(TTFont(BOLD, str(FONT_DIR / "Pretendard-Bold.ttf")))


def _korean_date(day: dt.date) -> str:
    return f"{day.year}년 {day.month}월 {day.day}일"


def _english_date(day: dt.date) -> str:
    return f"{day.day} {day.strftime('%B')} {day.year}"


def _fit(canvas: Canvas, text: str, font: str, size: float, width: float) -> float:
    """The largest font size up to ``size`` at which ``text`` fits in ``width``."""
    while size > 7 and pdfmetrics.stringWidth(text, font, size) > width:
        size -= 0.5
    return size


def _centred(canvas: Canvas, text: str, y: float, font: str, size: float, colour: colors.Color = colors.black,
             width: float | None = None) -> None:
    page_width = landscape(A4)[0]
    size = _fit(canvas, text, font, size, width or page_width - 60 * mm)
    canvas.setFont(font, size)
    canvas.setFillColor(colour)
    canvas.drawCentredString(page_width / 2, y, text)


def render(text: PdfText) -> bytes:
    """The PDF of one certificate."""
    _register_fonts()
    buffer = io.BytesIO()
    width, height = landscape(A4)
    canvas = Canvas(buffer, pagesize=(width, height), invariant=True, pageCompression=1)
    what_ko = "과정" if text.kind == "course" else "트랙"
    canvas.setTitle(f"수료증 · Certificate of Completion — {text.holder_name} — {text.title_ko}")
    canvas.setAuthor(f"{ISSUER_NAME['ko']} ({ISSUER_NAME['en']})")
    canvas.setSubject(f"{text.title_ko} / {text.title_en}")
    canvas.setCreator("AI Saemaul Academy")

    # frame
    canvas.setStrokeColor(NAVY)
    canvas.setLineWidth(3)
    canvas.rect(12 * mm, 12 * mm, width - 24 * mm, height - 24 * mm)
    canvas.setLineWidth(0.8)
    canvas.rect(15 * mm, 15 * mm, width - 30 * mm, height - 30 * mm)

    y = height - 34 * mm
    _centred(canvas, f"{ISSUER_NAME['ko']} · {ISSUER_NAME['en']}", y, REGULAR, 12, GREY)
    y -= 18 * mm
    _centred(canvas, "수 료 증", y, BOLD, 34, NAVY)
    y -= 10 * mm
    _centred(canvas, "Certificate of Completion", y, REGULAR, 15, NAVY)
    y -= 20 * mm
    _centred(canvas, text.holder_name, y, BOLD, 26)
    y -= 13 * mm
    hours = f"{text.hours:g}"
    _centred(canvas, f"위 사람은 「{text.title_ko}」 {what_ko}({hours}시간)을 수료하였기에 이 증서를 드립니다.",
             y, REGULAR, 13)
    y -= 7 * mm
    what_en = "course" if text.kind == "course" else "track"
    _centred(canvas, f"has completed the {what_en} “{text.title_en}” ({hours} hours).", y, REGULAR, 11, GREY)
    y -= 9 * mm
    if text.kind == "course":
        _centred(canvas, f"트랙 Track: {text.track_title_ko} · {text.track_title_en}", y, REGULAR, 10.5, GREY)
        y -= 6.5 * mm
    _centred(canvas, f"수료일 Completed on: {_korean_date(text.completed_on)} · {_english_date(text.completed_on)}",
             y, REGULAR, 10.5, GREY)

    # competencies
    if text.competencies:
        y -= 11 * mm
        canvas.setFont(BOLD, 10.5)
        canvas.setFillColor(NAVY)
        left = 40 * mm
        canvas.drawString(left, y, "습득 역량 Competencies")
        canvas.setFont(REGULAR, 9.5)
        canvas.setFillColor(colors.black)
        for ko, en in text.competencies[:8]:
            y -= 5.5 * mm
            line = f"• {ko} — {en}"
            size = _fit(canvas, line, REGULAR, 9.5, width - 2 * left - 45 * mm)
            canvas.setFont(REGULAR, size)
            canvas.drawString(left + 3 * mm, y, line)

    # issuer and verification
    bottom = 26 * mm
    canvas.setFont(BOLD, 12)
    canvas.setFillColor(NAVY)
    canvas.drawString(30 * mm, bottom + 12 * mm, f"{ISSUER_NAME['ko']}장")
    canvas.setFont(REGULAR, 9)
    canvas.setFillColor(GREY)
    canvas.drawString(30 * mm, bottom + 6 * mm,
                      f"발급일 Issued: {_korean_date(text.issued_on)} · {_english_date(text.issued_on)}")
    canvas.drawString(30 * mm, bottom, f"확인 코드 Verification code: {text.code}")
    canvas.drawString(30 * mm, bottom - 5 * mm, f"진위 확인 Verify: {text.verify_url}")

    qr_size = 30 * mm
    widget = QrCodeWidget(text.verify_url, barLevel="M")
    x0, y0, x1, y1 = widget.getBounds()
    drawing = Drawing(qr_size, qr_size, transform=[qr_size / (x1 - x0), 0, 0, qr_size / (y1 - y0), 0, 0])
    drawing.add(widget)
    renderPDF.draw(drawing, canvas, width - 30 * mm - qr_size, bottom - 7 * mm)

    canvas.showPage()
    canvas.save()
    return buffer.getvalue()
