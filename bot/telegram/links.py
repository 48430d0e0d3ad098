"""Every link the bot hands out: the pay page, t.me deep links, share links, wallet links."""

from __future__ import annotations

import ipaddress
from urllib.parse import quote, urlencode, urlsplit

from bot.telegram.config import BotConfig
from ledger.models import Invoice
from watchers.ton_links import (
    jetton_transfer_link,
    ton_transfer_link,
    tonkeeper_jetton_link,
    tonkeeper_link,
)


def pay_url(cfg: BotConfig, public_id: str) -> str:
    return f"{cfg.public_url}/pay/{public_id}"


def deep_link(cfg: BotConfig, payload: str) -> str:
    # Start parameters allow [A-Za-z0-9_-] up to 64 characters: pay_<13> and claim_<32> fit.
    return f"https://t.me/{cfg.bot_username}?start={payload}"


def pay_deep_link(cfg: BotConfig, public_id: str) -> str:
    return deep_link(cfg, f"pay_{public_id}")


def share_url(url: str, text: str) -> str:
    """Telegram's share sheet (works without inline mode being enabled for the bot)."""
    return "https://t.me/share/url?" + urlencode({"url": url, "text": text}, quote_via=quote)


def usable_in_button(url: str) -> bool:
    """Telegram rejects a whole message whose URL or Web App button points at localhost or a
    plain-http address, so such links go into the text only."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "https" or not host or host == "localhost":
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "." in host
    return False


def invoice_ton_links(cfg: BotConfig, invoice: Invoice,
                      comment: str | None = None) -> tuple[str, str] | None:
    """(ton://transfer link, Tonkeeper https link) for paying `invoice` with TON (with the
    payer's own `comment`, `INV-<id>-<tag>`, when given), or None when TON is not configured
    or the invoice has no TON quote. The amount is what is still due (a partly paid invoice
    asks for the rest)."""
    nano = invoice.ton_due
    if cfg.ton_destination is None or not nano:
        return None
    text = comment or invoice.comment
    return (
        ton_transfer_link(cfg.ton_destination, nano, text),
        tonkeeper_link(cfg.ton_destination, nano, text),
    )


def invoice_usdt_links(cfg: BotConfig, invoice: Invoice,
                       comment: str | None = None) -> tuple[str, str] | None:
    """(ton://transfer link, Tonkeeper https link) for paying `invoice` in USDT: the jetton
    transfer of what is still due (Liquid $ 1:1, `Invoice.usdt_due`) with the payer's comment
    as its forward payload; None without a USDT master or TON destination, or for an invoice
    USDT does not pay (one in TON)."""
    micro = invoice.usdt_due
    if cfg.ton_destination is None or cfg.usdt_master is None or not micro or micro < 0:
        return None
    text = comment or invoice.comment
    return (
        jetton_transfer_link(cfg.ton_destination, cfg.usdt_master, micro, text),
        tonkeeper_jetton_link(cfg.ton_destination, cfg.usdt_master, micro, text),
    )


def deposit_links(cfg: BotConfig, comment: str) -> tuple[str, str] | None:
    """Wallet links for a top-up of any amount (the sender chooses it; only the comment is set)."""
    if cfg.ton_destination is None:
        return None
    text = quote(comment, safe="")
    return (
        f"ton://transfer/{cfg.ton_destination}?text={text}",
        f"https://app.tonkeeper.com/transfer/{cfg.ton_destination}?text={text}",
    )
