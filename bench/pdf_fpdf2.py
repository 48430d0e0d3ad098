"""The invoice drawn with fpdf2: the first renderer tried, kept for `python -m bench.documents`
(about ten times slower than typst in that benchmark, same design).
Needs the pdf-bench extra (fpdf2, which brings Pillow)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Final

from fpdf import FPDF
from fpdf.enums import Align, TableBordersLayout, XPos, YPos
from fpdf.fonts import FontFace
from PIL import Image

from bot.documents.labels import day, label
from bot.documents.model import InvoiceDocument
from bot.qr import qr_png

FONTS: Final = Path(__file__).parents[1] / "bot" / "documents" / "fonts"
FONT: Final = "DejaVu"
MARGIN: Final = 15.0  # mm
INK: Final = (33, 37, 41)
MUTED: Final = (108, 117, 125)
RULE: Final = (222, 226, 230)
HEAD_FILL: Final = (241, 243, 245)
STAMP_COLOURS: Final = {"PAID": (25, 135, 84), "VOID": (200, 35, 51)}
QR_SIZE: Final = 34.0  # mm: scans from a printed page and from a phone screen
LOGO_BOX: Final = (50.0, 22.0)  # mm: the logo fits in this box, its proportions kept


def render_fpdf2(doc: InvoiceDocument) -> bytes:
    """The invoice document as PDF bytes (A4, the document's language)."""
    pdf = _Invoice(doc)
    pdf.add_page()
    pdf.header_block()
    pdf.parties()
    pdf.lines_table()
    pdf.totals()
    pdf.payment()
    return bytes(pdf.output())


class _Invoice(FPDF):
    def __init__(self, doc: InvoiceDocument) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.doc = doc
        self.lang = doc.language
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(auto=True, margin=MARGIN + 5)
        self.set_creation_date(doc.created_at)
        self.set_title(f"{self.t('doc.invoice')} {doc.number}")
        self.set_author(doc.seller.name)
        self.set_lang(doc.language)
        self.add_font(FONT, "", str(FONTS / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(FONTS / "DejaVuSans-Bold.ttf"))
        self.set_text_color(*INK)

    def t(self, key: str) -> str:
        return label(self.lang, key)

    def footer(self) -> None:
        self.set_y(-MARGIN)
        self.set_font(FONT, "", 7.5)
        self.set_text_color(*MUTED)
        self.cell(0, 4, f"{self.t('doc.invoice')} {self.doc.number} · {self.page_no()}/{{nb}}",
                  align=Align.R)
        self.set_text_color(*INK)

    def header_block(self) -> None:
        doc = self.doc
        top = self.get_y()
        logo_bottom = top
        if doc.seller.logo is not None:
            with Image.open(BytesIO(doc.seller.logo)) as image:
                pixels_w, pixels_h = image.size
            scale = min(LOGO_BOX[0] / pixels_w, LOGO_BOX[1] / pixels_h)  # left-aligned, to fit
            self.image(BytesIO(doc.seller.logo), x=MARGIN, y=top, w=pixels_w * scale,
                       h=pixels_h * scale)
            logo_bottom = top + pixels_h * scale
        right = self.w - MARGIN
        self.set_xy(right - 90, top)
        self.set_font(FONT, "B", 20)
        self.cell(90, 9, self.t("doc.invoice"), align=Align.R,
                  new_x=XPos.LEFT, new_y=YPos.NEXT)
        self.set_font(FONT, "B", 11)
        self.set_x(right - 90)
        self.cell(90, 6, f"{self.t('doc.number')} {doc.number}", align=Align.R,
                  new_x=XPos.LEFT, new_y=YPos.NEXT)
        self.set_font(FONT, "", 9)
        rows = [(self.t("doc.issued"), day(self.lang, doc.issued_on))]
        if doc.due_on is not None:
            rows.append((self.t("doc.due"), day(self.lang, doc.due_on)))
        for name, value in rows:
            self.set_x(right - 90)
            self.set_text_color(*MUTED)
            self.cell(55, 5, name, align=Align.R)
            self.set_text_color(*INK)
            self.cell(35, 5, value, align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_y(max(self.get_y(), logo_bottom) + 6)
        self.rule()

    def rule(self) -> None:
        self.set_draw_color(*RULE)
        self.set_line_width(0.3)
        self.line(MARGIN, self.get_y(), self.w - MARGIN, self.get_y())
        self.ln(5)

    def parties(self) -> None:
        doc = self.doc
        top = self.get_y()
        half = (self.w - 2 * MARGIN - 10) / 2
        buyer = [doc.buyer.company]
        if doc.buyer.tax_id:
            buyer.append(f"{self.t('doc.tax_id')}: {doc.buyer.tax_id}")
        ends = []
        for x, title, name, details in (
            (MARGIN, self.t("doc.seller"), doc.seller.name, doc.seller.details),
            (MARGIN + half + 10, self.t("doc.buyer"), doc.buyer.name,
             "\n".join(part for part in buyer if part)),
        ):
            self.set_xy(x, top)
            self.set_font(FONT, "B", 7.5)
            self.set_text_color(*MUTED)
            self.cell(half, 5, title.upper(), new_x=XPos.LEFT, new_y=YPos.NEXT)
            self.set_text_color(*INK)
            self.set_font(FONT, "B", 10.5)
            self.multi_cell(half, 5.5, name, new_x=XPos.LEFT, new_y=YPos.NEXT)
            if details:
                self.set_font(FONT, "", 8.5)
                self.multi_cell(half, 4.3, details, new_x=XPos.LEFT, new_y=YPos.NEXT)
            ends.append(self.get_y())
        self.set_y(max(ends) + 7)

    def lines_table(self) -> None:
        self.set_font(FONT, "", 8.5)
        heading = FontFace(family=FONT, emphasis="BOLD", size_pt=8, color=MUTED,
                           fill_color=HEAD_FILL)
        show_discount = any(line.discount for line in self.doc.lines)
        show_tax = any(line.tax for line in self.doc.lines)
        columns = [("doc.description", 64, "LEFT"), ("doc.quantity", 16, "RIGHT"),
                   ("doc.unit_price", 26, "RIGHT")]
        if show_discount:
            columns.append(("doc.discount", 20, "RIGHT"))
        if show_tax:
            columns.append(("doc.tax", 18, "RIGHT"))
        columns.append(("doc.amount", 28, "RIGHT"))
        self.set_draw_color(*RULE)
        with self.table(
            col_widths=[width for _, width, _ in columns],
            text_align=[align for _, _, align in columns],
            headings_style=heading, borders_layout=TableBordersLayout.HORIZONTAL_LINES,
            line_height=5, padding=(1.6, 1.5), first_row_as_headings=True,
            repeat_headings=1,
        ) as table:
            table.row([self.t(key) for key, _, _ in columns])
            for line in self.doc.lines:
                cells = [line.description, line.quantity, line.unit_price]
                if show_discount:
                    cells.append(line.discount)
                if show_tax:
                    cells.append(line.tax)
                cells.append(line.amount)
                table.row(cells)
        self.ln(4)

    def totals(self) -> None:
        right = self.w - MARGIN
        width = 80.0
        for row in self.doc.totals:
            if self.will_page_break(7):
                self.add_page()
            if row.strong:
                self.set_draw_color(*INK)
                self.set_line_width(0.4)
                self.line(right - width, self.get_y() + 0.5, right, self.get_y() + 0.5)
                self.ln(1.5)
            self.set_font(FONT, "B" if row.strong else "", 11 if row.strong else 9)
            height = 7 if row.strong else 5.5
            self.set_x(right - width)
            self.cell(width - 32, height, row.label, align=Align.R)
            self.cell(32, height, row.amount, align=Align.R,
                      new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(8)

    def payment(self) -> None:
        pay = self.doc.payment
        needed = QR_SIZE + 14
        if self.will_page_break(needed):
            self.add_page()
        self.rule()
        self.set_font(FONT, "B", 11)
        self.cell(0, 6, self.t("doc.how_to_pay"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1)
        top = self.get_y()
        self.image(BytesIO(qr_png(pay.pay_url)), x=MARGIN, y=top, w=QR_SIZE, h=QR_SIZE)
        self.set_font(FONT, "", 7)
        self.set_text_color(*MUTED)
        self.set_xy(MARGIN, top + QR_SIZE)
        self.cell(QR_SIZE, 4, self.t("doc.scan"), align=Align.C)
        self.set_text_color(*INK)
        x = MARGIN + QR_SIZE + 8
        width = self.w - MARGIN - x
        self.set_xy(x, top + 1)
        self.item(x, width, self.t("doc.pay_online"), pay.pay_url, link=pay.pay_url)
        if pay.ton_address:
            self.item(x, width, self.t("doc.ton"), pay.ton_address)
            if pay.ton_comment:
                self.item(x, width, self.t("doc.ton_comment"), pay.ton_comment)
        if pay.bank_details:
            self.item(x, width, self.t("doc.bank"), pay.bank_details)
        self.set_y(max(self.get_y(), top + QR_SIZE + 5))

    def item(self, x: float, width: float, title: str, text: str, link: str = "") -> None:
        self.set_x(x)
        self.set_font(FONT, "B", 7.5)
        self.set_text_color(*MUTED)
        self.cell(width, 4.5, title.upper(), new_x=XPos.LEFT, new_y=YPos.NEXT)
        self.set_text_color(*INK)
        self.set_font(FONT, "", 9)
        self.multi_cell(width, 4.6, text, link=link, new_x=XPos.LEFT, new_y=YPos.NEXT)
        self.ln(1.5)

    def header(self) -> None:
        """Called by fpdf2 at each new page: the stamp goes under the page's content."""
        if self.doc.stamp is None:
            return
        text = self.t(f"doc.stamp.{self.doc.stamp}")
        cx, cy = self.w / 2, self.h / 2
        with self.local_context(fill_opacity=0.16):
            self.set_font(FONT, "B", 96 if len(text) <= 8 else 64)
            self.set_text_color(*STAMP_COLOURS[self.doc.stamp])
            with self.rotation(40, x=cx, y=cy):
                self.text(cx - self.get_string_width(text) / 2, cy + 12, text)
        self.set_xy(MARGIN, MARGIN)
