"""TON Connect: a connected wallet pays the invoice after one confirmation.

GET  /tonconnect-manifest.json  the app as the wallet shows it (url, name, icon), as TON
                                Connect requires; GET /tonconnect-icon.png its 180×180 icon
POST /pay/<id>/tonconnect       body {"asset": "TON" | "USDT", "owner": "<the wallet's address>"}
  → 200 {"validUntil", "network", "from"?, "messages": [{"address", "amount", "payload"}]}: the
    `sendTransaction` request, for this payer's comment (`INV-<id>-<tag>`: the Mini App user's
    tag, or the guest browser's, from its cookie). TON: the due quote to the shop, the comment
    cell as payload (the page has it already in `invoice.tonconnect`). USDT (Liquid $ invoices,
    1:1): a TEP-74 jetton `transfer` to the buyer's OWN jetton wallet (the master's
    `get_wallet_address(owner)`, asked through the composition root's `jetton_wallet_of`),
    `usdt_due` to the shop, the excess back to the buyer, forward 1 nanoton with the comment.
  Refusals (nothing changes): 400 bad body, unknown asset, malformed owner; 401 bad init
  data; 403 no guest cookie and no init data (no tag: the payment would name nobody), or the
  seller's own invoice; 404 unknown invoice; 409 paid, or the asset does not pay this invoice;
  410 closed; 503 the chain did not tell the buyer's jetton wallet (try again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from pytoniq_core.boc.address import Address

from bot.web.auth import AuthError
from bot.web.i18n import normalize, request_language, t
from bot.web.view import payer_comment, ton_connect_message, ton_links, usdt_offer
from ledger.errors import (
    InvoiceAlreadyPaid,
    InvoiceCancelled,
    InvoiceDraft,
    InvoiceExpired,
    InvoiceNotFound,
    InvoiceUncollectible,
    InvoiceVoid,
    LedgerError,
    OwnInvoice,
)
from watchers.ton_links import (
    JETTON_ATTACHED_NANO,
    jetton_transfer_payload,
    normalize_address,
)

if TYPE_CHECKING:
    from bot.web.guard import PageGuard
    from bot.web.routes import PayPages

log = logging.getLogger(__name__)

# (jetton master, owner), both raw `0:hex` -> the owner's jetton wallet (any form); None or an
# exception when the chain cannot tell now. Given by the composition root (watchers/jettons.py).
JettonWalletOf = Callable[[str, str], Awaitable[str | None]]

VALID_SECONDS: Final = 300  # the wallet refuses to send the request after this
RETRY_AFTER: Final = 2
WALLET_SECONDS: Final = 5.0  # the buyer is waiting; past this, "try again"
WALLETS_KEPT: Final = 10_000  # (master, owner) -> jetton wallet: fixed by the master's code
ADDRESS_MAX: Final = 100  # longer than any address form
ICON: Final = Path(__file__).parent / "static" / "tonconnect-icon.png"
_CLOSED: Final[dict[str, type[LedgerError]]] = {
    "paid": InvoiceAlreadyPaid, "cancelled": InvoiceCancelled, "expired": InvoiceExpired,
    "draft": InvoiceDraft, "void": InvoiceVoid, "uncollectible": InvoiceUncollectible,
}


def wallet_address(raw: str, testnet: bool) -> str:
    """A contract's address as TON Connect's message wants it: friendly, bounceable (a jetton
    wallet exists, and a bounce returns the TON), test-only on testnet."""
    return Address(raw).to_str(is_user_friendly=True, is_url_safe=True, is_bounceable=True,
                               is_test_only=testnet)


class TonConnect:
    def __init__(self, pages: PayPages, jetton_wallet_of: JettonWalletOf | None) -> None:
        self.pages = pages
        self.jetton_wallet_of = jetton_wallet_of
        cfg = pages.cfg
        name = f"@{cfg.bot_username}" if cfg.bot_username else "paybot"
        self.manifest_body = json.dumps({
            "url": cfg.public_url, "name": name,
            "iconUrl": f"{cfg.public_url}/tonconnect-icon.png",
        }).encode()
        self.icon = ICON.read_bytes()
        self._wallets: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def _jetton_wallet(self, master_raw: str, owner_raw: str) -> str | None:
        """The owner's jetton wallet (raw), asked of the chain once per (master, owner): a
        jetton wallet's address is a function of the two and never changes. None when the
        chain does not tell within WALLET_SECONDS."""
        key = (master_raw, owner_raw)
        hit = self._wallets.get(key)
        if hit is not None:
            self._wallets.move_to_end(key)
            return hit
        assert self.jetton_wallet_of is not None
        try:
            async with asyncio.timeout(WALLET_SECONDS):
                wallet = await self.jetton_wallet_of(master_raw, owner_raw)
            if not wallet:
                return None
            found = normalize_address(wallet)
        except Exception:  # slow, down or garbage: nothing was asked of the buyer's wallet yet
            log.warning("no jetton wallet for %s: the chain did not answer", owner_raw,
                        exc_info=True)
            return None
        self._wallets[key] = found
        while len(self._wallets) > WALLETS_KEPT:
            self._wallets.popitem(last=False)
        return found

    async def manifest(self, request: web.Request) -> web.Response:
        # Wallets fetch it from their own origin: it must be readable cross-origin.
        return web.Response(body=self.manifest_body, content_type="application/json",
                            headers={"Access-Control-Allow-Origin": "*",
                                     "Cache-Control": "public, max-age=3600"})

    async def icon_png(self, request: web.Request) -> web.Response:
        return web.Response(body=self.icon, content_type="image/png",
                            headers={"Access-Control-Allow-Origin": "*",
                                     "Cache-Control": "public, max-age=86400"})

    async def message(self, request: web.Request) -> web.Response:
        pages = self.pages
        cfg = pages.cfg
        lang = request_language(request)
        try:
            viewer = pages._viewer(request)
        except AuthError as exc:
            return pages._auth_error(exc, lang)
        if viewer is not None:
            lang = normalize(viewer.language) or lang
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return pages._error(400, "bad_request", t(lang, "err_bad_request"))
        asset, owner = body.get("asset"), body.get("owner")
        if asset not in ("TON", "USDT"):
            return pages._error(400, "unsupported_asset", t(lang, "err_asset"))
        owner_raw = None
        if owner is not None or asset == "USDT":  # USDT goes from the owner's jetton wallet
            if not isinstance(owner, str) or not 0 < len(owner) <= ADDRESS_MAX:
                return pages._error(400, "invalid_address", t(lang, "err_bad_address"))
            try:
                owner_raw = normalize_address(owner)
            except ValueError:
                return pages._error(400, "invalid_address", t(lang, "err_bad_address"))
        try:
            invoice = (await pages.ledger.invoice(request.match_info["invoice_id"])).invoice
        except InvoiceNotFound as exc:
            return pages._ledger_error(exc, lang)
        status = invoice.effective_status()
        if status != "pending":
            return pages._ledger_error(_CLOSED.get(status, InvoiceExpired)(), lang)
        # The comment names the payer: the Mini App user, else this browser's guest tag.
        if viewer is not None:
            user = await pages.buyers.get(viewer.telegram_id, viewer.username, viewer.language)
            if user.id == invoice.seller_id:
                return pages._ledger_error(OwnInvoice(), lang)
            tag = await pages.user_tags.get(invoice.public_id, user.id)
        else:
            guest = pages._guest(request, invoice)
            if guest is None:
                return pages._error(403, "no_guest_cookie", t(lang, "err_no_guest"))
            tag = guest.tag
        comment = payer_comment(invoice, tag)
        answer: dict[str, Any] = {"validUntil": int(time.time()) + VALID_SECONDS,
                                  "network": cfg.ton_network}
        if owner_raw is not None:
            answer["from"] = owner_raw  # the wallet refuses a request for another account
        if asset == "TON":
            links = ton_links(invoice, cfg, tag)
            if links is None:
                return pages._error(409, "asset_unavailable", t(lang, "err_asset"))
            answer["messages"] = [
                ton_connect_message(links["address"], invoice.ton_due or 0, comment)]
            return web.json_response(answer, headers={"Cache-Control": "no-store"})
        offer = usdt_offer(invoice, cfg, tag)
        if offer is None or self.jetton_wallet_of is None or cfg.ton_address is None:
            return pages._error(409, "asset_unavailable", t(lang, "err_asset"))
        assert owner_raw is not None
        wallet_raw = await self._jetton_wallet(normalize_address(offer["master"]), owner_raw)
        if wallet_raw is None:
            return pages._error(503, "retry", t(lang, "err_retry"),
                                headers={"Retry-After": str(RETRY_AFTER)})
        payload = jetton_transfer_payload(offer["amount"]["minor"], cfg.ton_address, owner_raw,
                                          comment)
        answer["messages"] = [{"address": wallet_address(wallet_raw, cfg.ton_network == "-3"),
                               "amount": str(JETTON_ATTACHED_NANO), "payload": payload}]
        return web.json_response(answer, headers={"Cache-Control": "no-store"})


def setup_tonconnect(app: web.Application, pages: PayPages, guard: PageGuard,
                     jetton_wallet_of: JettonWalletOf | None = None) -> TonConnect:
    """Mount the manifest, its icon and the sendTransaction route on `app`."""
    tc = TonConnect(pages, jetton_wallet_of)
    r = app.router
    r.add_get("/tonconnect-manifest.json", tc.manifest)
    r.add_get("/tonconnect-icon.png", tc.icon_png)
    r.add_post("/pay/{invoice_id}/tonconnect",
               guard.wrap(tc.message, json_api=True, kind="read"))
    return tc
