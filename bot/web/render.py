"""HTML for the pay page and its error pages: `string.Template` files with escaped values.

No template engine: the pages are two small files, every value goes through `html.escape`,
and the page data for the script is JSON that cannot close its <script> element."""

from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from aiohttp import web

from bot.documents.labels import day
from bot.web.i18n import TEXTS, plural_script, t, tn

HERE = Path(__file__).parent
STATIC_PREFIX = "/static/pay"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The Mini App runs inside Telegram's clients; Telegram Web frames it.
    "Content-Security-Policy": (
        # TON Connect's UI injects its own <style>, shows wallets' icons and talks to the
        # wallets' bridges (any https origin, listed by the wallets): styles, images and
        # connections beyond 'self'; scripts stay 'self' and Telegram's.
        "default-src 'none'; script-src 'self' https://telegram.org; "
        # blob: the Mini App's charts, fetched with its init data and shown from memory.
        "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: https:; "
        "connect-src 'self' https:; base-uri 'none'; "
        # The card form's answer redirects to the provider's checkout page.
        "form-action 'self' https://checkout.stripe.com https://yoomoney.ru; "
        "frame-ancestors 'self' https://web.telegram.org https://*.telegram.org"
    ),
}


@cache
def _template_text(name: str) -> str:
    return (HERE / "templates" / name).read_text(encoding="utf-8")


def _template(name: str) -> Template:
    return Template(_template_text(name))


class FastTemplate:
    """A `$name` template split once into literal text and slots, with some values fixed in
    advance. Filling it is one join: the pay page is the hot path, and `string.Template` spends
    most of the page's render time in its regular expression callbacks."""

    def __init__(self, text: str, fixed: dict[str, str]) -> None:
        pieces = _PLACEHOLDER.split(text)  # literal, name, literal, name, ..., literal
        self._parts: list[str] = [pieces[0]]
        self._slots: list[str] = []
        for name, literal in zip(pieces[1::2], pieces[2::2], strict=True):
            if name in fixed:
                self._parts[-1] += fixed[name] + literal
            else:
                self._slots.append(name)
                self._parts.append(literal)

    @property
    def slots(self) -> frozenset[str]:
        return frozenset(self._slots)

    def fill(self, values: dict[str, str]) -> str:
        out = [self._parts[0]]
        for name, literal in zip(self._slots, self._parts[1:], strict=True):
            out.append(values[name])  # KeyError: a slot without a value is a bug
            out.append(literal)
        return "".join(out)


_PLACEHOLDER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class Static:
    """The page's CSS and JS (and the texts as a script), read once, served with a content hash
    for long caching. Also keeps the page template pre-filled per language."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        # static/vendor/: libraries installed by scripts/vendor.sh (absent until it ran).
        files = [*(HERE / "static").iterdir(), *(HERE / "static" / "vendor").glob("*.js")]
        sources = {p.name: p.read_bytes() for p in sorted(files) if p.is_file()}
        # Both languages' texts (and plural rules) for the script, so it can follow the
        # Telegram user's language; a static file rather than part of every page.
        sources["texts.js"] = (
            "window.PAYBOT_TEXTS=" + script_json(TEXTS) + ";\n"
            "window.PAYBOT_PLURAL=" + plural_script() + ";\n").encode()
        for name, body in sources.items():
            ctype = {"css": "text/css", "js": "text/javascript"}.get(name.rsplit(".", 1)[-1])
            if ctype:
                self.files[name] = (body, ctype, hashlib.sha256(body).hexdigest()[:12])
        self.page_templates: dict[str, FastTemplate] = {}

    def url(self, name: str) -> str:
        return f"{STATIC_PREFIX}/{name}?v={self.files[name][2]}"

    def page_template(self, lang: str) -> FastTemplate:
        """pay.html with everything that depends only on the language filled in."""
        cached = self.page_templates.get(lang)
        if cached is None:
            fixed = {f"t_{k}": _e(t(lang, k)) for k in _PAGE_KEYS}
            fixed.update(lang=lang, css_url=_e(self.url("pay.css")),
                         js_url=_e(self.url("pay.js")), texts_url=_e(self.url("texts.js")))
            cached = FastTemplate(_template_text("pay.html"), fixed)
            self.page_templates[lang] = cached
        return cached

    async def handle(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, ctype, version = found
        cache = ("public, max-age=31536000, immutable" if request.query.get("v") == version
                 else "public, max-age=300")
        return web.Response(body=body, content_type=ctype, charset="utf-8",
                            headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"})


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _hidden(hide: bool) -> str:
    return " hidden" if hide else ""


def script_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no '<', '>' or '&' can end it."""
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def format_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


_PAGE_KEYS = (
    "amount", "status", "seller", "valid_until", "paid_heading", "claim_heading", "claim_text",
    "claim_button", "claimed", "own_invoice_note", "pay_balance", "pay_ton", "topup",
    "guest_heading", "guest_scan", "qr_alt", "comment", "copy", "comment_hint", "ton_amount",
    "address", "open_wallet", "open_tonkeeper", "ton_unavailable", "login_hint", "login_pay",
    "footer", "contact_heading", "contact_hint", "contact_label", "contact_save", "bind_button",
    "bound", "due_date", "pdf_link", "draft_text",
)


def document_parts(view: dict[str, Any]) -> tuple[str, str]:
    """(lines, totals) of the invoice as HTML, the figures of its PDF; empty for a plain
    one-line invoice with nothing paid yet (its title and amount already say it all)."""
    doc = view["document"]
    lines, totals = doc["lines"], doc["totals"]
    line_html = ""
    if len(lines) > 1 or any(line["discount"] or line["tax"] for line in lines):
        line_html = "".join(
            '<li><span class="what">' + _e(line["description"]) + '</span>'
            '<span class="sum">' + _e(line["amount"]) + '</span>'
            '<span class="how">' + _e(" · ".join(part for part in (
                f'{line["quantity"]} × {line["unit_price"]}', line["discount"], line["tax"])
                if part)) + '</span></li>'
            for line in lines)
    total_html = ""
    if len(totals) > 1:
        total_html = "".join(
            f'<tr class="{_e(row["key"])}{" strong" if row["strong"] else ""}">'
            f'<th scope="row">{_e(row["label"])}</th><td>{_e(row["amount"])}</td></tr>'
            for row in totals)
    return line_html, total_html


def pay_page(view: dict[str, Any], claim: dict[str, Any] | None, lang: str, static: Static,
             bot_username: str, poll_ms: int, payer: dict[str, Any] | None = None) -> str:
    """The page; `payer` is the guest browser's own tag, contact and Telegram proof link
    (None for a visitor without a guest cookie)."""
    status = view["status"]
    pending = status == "pending"
    ton = view["pay_ton"]
    seller = view["seller"]["username"]
    data = {"invoice": view, "claim": claim, "payer": payer, "lang": lang,
            "bot": bot_username, "poll_ms": poll_ms}
    contact = (payer or {}).get("contact")
    bound = bool((payer or {}).get("bound"))
    lines_html, totals_html = document_parts(view)
    # Once part is paid, the big figure is what is left to pay.
    main = view["amount_due"] if status in ("pending", "draft") else view["amount"]
    due = view["due_at"]
    values = {
        "page_title": _e(t(lang, "page_title", title=view["title"])),
        "status": _e(status),
        "status_text": _e(t(lang, f"status_{status}")),
        "number": _e(view["number"]),
        "title": _e(view["title"]),
        "description": _e(view["description"]),
        "description_hidden": _hidden(not view["description"]),
        "amount": _e(main["display"]),
        "lines_html": lines_html,
        "lines_hidden": _hidden(not lines_html),
        "totals_html": totals_html,
        "totals_hidden": _hidden(not totals_html),
        "due_hidden": _hidden(due is None or status not in ("pending", "draft")),
        "due_iso": _e(due or ""),
        "due_text": _e(day(lang, datetime.fromisoformat(due).date()) if due else ""),
        "overdue": " overdue" if view["overdue"] else "",
        "draft_hidden": _hidden(status != "draft"),
        "pdf_url": _e(view["links"]["pdf"]),
        "ton_amount": _e(view["ton"]["display"] if view["ton"] else ""),
        "ton_amount_hidden": _hidden(view["ton"] is None),
        "seller": _e(f"@{seller}" if seller else "—"),
        "expires_iso": _e(view["expires_at"]),
        "expires_hidden": _hidden(not pending),
        "expires_text": _e(format_time(datetime.fromisoformat(view["expires_at"]))),
        "uses_text": _e(tn(lang, "uses", view["uses"], uses=view["uses"])),
        "uses_hidden": _hidden(view["kind"] != "multi_use"),
        "received_text": _e(t(lang, "received", amount=(view["ton_received"] or {})
                              .get("display", ""))),
        "received_hidden": _hidden(view["ton_received"] is None),
        "paid_hidden": _hidden(status != "paid"),
        "ton_hidden": _hidden(ton is None),
        "ton_unavailable_hidden": _hidden(ton is not None or not pending),
        "login_hidden": _hidden(not pending),
        "qr_svg": _e(view["links"]["qr_svg"]),
        "comment": _e(view["comment"]),
        "ton_value": _e(view["ton"]["text"] if view["ton"] else ""),
        "address": _e(ton["address"] if ton else ""),
        "ton_link": _e(ton["ton"] if ton else "#"),
        "tonkeeper_link": _e(ton["tonkeeper"] if ton else "#"),
        "login_url": _e(view["links"]["login"]),
        "claim_hidden": _hidden(claim is None),
        "claim_url": _e((claim or {}).get("url", "#")),
        "claim_link_hidden": _hidden(not (claim or {}).get("url")),
        "claimed_hidden": _hidden(not (claim or {}).get("claimed")),
        "contact_hidden": _hidden(payer is None or not pending),
        "contact_url": _e(f"/pay/{view['id']}/contact"),
        "contact_value": _e(contact or ""),
        "contact_saved": _e(t(lang, "contact_saved", contact=contact) if contact else ""),
        "contact_saved_hidden": _hidden(not contact),
        "bind_url": _e((payer or {}).get("bind_url", "#")),
        "bind_hidden": _hidden(bound),
        "bound_hidden": _hidden(not bound),
        "topup_url": _e(f"https://t.me/{bot_username}"),
        "card_forms": card_forms(view, lang),
        "card_hidden": _hidden(not view["pay_card"]),
        "data_json": script_json(data),
    }
    return static.page_template(lang).fill(values)


def card_forms(view: dict[str, Any], lang: str) -> str:
    """"Pay by card" per configured currency: a plain form POST (no script needed), answered
    with a redirect to the provider's checkout (bot/web/cards/)."""
    action = _e(view["links"]["card"])
    forms = []
    for offer in view["pay_card"]:
        label = t(lang, "pay_card_amount", amount=offer["amount"]["display"])
        forms.append(f'<form method="post" action="{action}" class="card-form">'
                     f'<input type="hidden" name="currency" value="{_e(offer["currency"])}">'
                     f'<button type="submit" class="btn">{_e(label)}</button></form>')
    return "".join(forms)


def error_page(lang: str, static: Static, *, heading: str, message: str,
               status: str = "", number: str = "") -> str:
    return _template("error.html").substitute(
        lang=lang,
        css_url=_e(static.url("pay.css")),
        heading=_e(heading),
        message=_e(message),
        status=_e(status),
        status_text=_e(t(lang, f"status_{status}") if status else ""),
        badge_hidden=_hidden(not status),
        number=_e(number),
        footer=_e(t(lang, "footer")),
    )


def html_response(body: str, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8",
        headers={"Cache-Control": "no-cache, private", **SECURITY_HEADERS, **(headers or {})},
    )
