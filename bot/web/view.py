"""What the pay page shows, as plain data: the same dict renders the HTML and answers the JSON
API, so the page and its live updates can never disagree."""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.documents.figures import invoice_figures
from bot.links import Links, links_from_settings
from bot.settings import Settings
from bot.web.auth import CookieSigner
from ledger.errors import InvalidAmount
from ledger.models import Invoice, User, iso
from ledger.money import DECIMALS, display_amount, format_amount
from ledger.payers import tag_for_user
from ledger.purchases import Payer
from ledger.rails import STARS, STARS_MAX, STARS_MIN, convert, format_provider_amount
from ledger.users import ensure_user
from watchers.ton_links import (
    comment_payload,
    friendly_address,
    is_testnet_address,
    jetton_transfer_link,
    ton_transfer_link,
    tonkeeper_jetton_link,
    tonkeeper_link,
)


@dataclass(frozen=True, slots=True)
class RailOffer:
    """A way to pay by card or in Stars, as configured: the rail (`stars`, `card:<provider>`),
    the provider's currency and its rate (provider units per 1 Liquid $)."""

    rail: str
    currency: str
    rate: Decimal

    @property
    def provider(self) -> str:
        return self.rail.removeprefix("card:")


def telegram_rails(settings: Settings) -> tuple[RailOffer, ...]:
    """Telegram Payments (Mini App): a card per currency with a provider token, and Stars;
    only where a rate is configured (no rate, no price to lock)."""
    pay = settings.payments
    offers = [RailOffer(f"card:{card.provider}", currency, pay.rates[currency])
              for currency, card in sorted(pay.telegram_card.items()) if currency in pay.rates]
    if pay.stars_enabled:
        offers.append(RailOffer("stars", STARS, pay.rates[STARS]))
    return tuple(offers)


def web_cards(settings: Settings) -> tuple[RailOffer, ...]:
    """Cards in a plain browser (Stripe Checkout, YooKassa), per configured currency: only a
    provider with its keys set (bot/web/cards/ refuses the others) and a rate."""
    pay = settings.payments
    ready = {"stripe": pay.stripe_secret_key is not None,
             "yookassa": pay.yookassa_shop_id is not None and pay.yookassa_secret_key is not None}
    return tuple(RailOffer(f"card:{provider}", currency, pay.rates[currency])
                 for currency, provider in sorted(pay.web_card.items())
                 if currency in pay.rates and ready.get(provider))


def provider_money(minor: int, currency: str) -> dict[str, Any]:
    """An amount in a provider's currency: 963 Stars read "963 ⭐"; cents "12.50 USD"."""
    text = format_provider_amount(minor, currency)
    display = f"{text} ⭐" if currency == STARS else f"{text} {currency}"
    return {"minor": minor, "currency": currency, "text": text, "display": display}


def rail_rate(offer: RailOffer, ledger_currency: str, ton_rate: Decimal) -> Decimal:
    """Provider units per 1 unit of the invoice's currency: the configured rate is per 1 Liquid
    $; a TON invoice's unit is worth `ton_rate` Liquid $."""
    return offer.rate if ledger_currency == "LIQ" else offer.rate * ton_rate


@lru_cache(maxsize=4096)
def offer_amount(due: int, ledger_currency: str, offer: RailOffer,
                 ton_rate: Decimal) -> int | None:
    """What the quote will lock for `due` (the same rounding, up); None when it cannot be
    offered (Stars outside Telegram's bounds, less than one minor unit)."""
    try:
        minor = convert(due, ledger_currency, rail_rate(offer, ledger_currency, ton_rate),
                        offer.currency)
    except (InvalidAmount, KeyError):  # a currency the ledger does not take: not offered
        return None
    if minor < 1 or (offer.currency == STARS and not STARS_MIN <= minor <= STARS_MAX):
        return None
    return minor


def rail_offers(invoice: Invoice, offers: tuple[RailOffer, ...],
                ton_rate: Decimal) -> list[dict[str, Any]]:
    """The configured ways to pay `invoice` by card or Stars, each with the amount its quote
    will lock at today's rate (shown before paying); none once it cannot be paid."""
    due = invoice.amount_due
    if invoice.effective_status() != "pending" or due <= 0:
        return []
    found = []
    for offer in offers:
        minor = offer_amount(due, invoice.currency, offer, ton_rate)
        if minor is not None:
            found.append({"rail": offer.rail, "currency": offer.currency,
                          "provider": None if offer.rail == "stars" else offer.provider,
                          "amount": provider_money(minor, offer.currency)})
    return found


@dataclass(frozen=True, slots=True)
class PayConfig:
    """Everything the pay pages need from the settings, read once at start-up."""

    public_url: str
    links: Links  # shared with every edge; its bot_username follows getMe
    bot_token: str | None
    init_data_max_age: int
    ton_address: str | None  # friendly form, or None when TON payments are not configured
    signer: CookieSigner
    secure_cookies: bool
    rails: tuple[RailOffer, ...] = ()  # Telegram Payments: the Mini App's card and Stars
    web_cards: tuple[RailOffer, ...] = ()  # Stripe / YooKassa in a plain browser
    ton_rate: Decimal = Decimal(1)  # Liquid $ per TON: a TON invoice's card/Stars price
    usdt_master: str | None = None  # USDT's jetton master (bounceable), with a TON address
    # TON Connect can pay USDT: the composition root gave a way to find a buyer's jetton wallet
    usdt_connect: bool = False

    @property
    def bot_username(self) -> str:
        return self.links.bot_username

    @property
    def ton_network(self) -> str:
        """TON Connect's network id of the destination: testnet (-3) by its friendly form's
        test-only flag, else mainnet (-239); a wallet on the other network refuses to sign."""
        return "-3" if self.ton_address and is_testnet_address(self.ton_address) else "-239"

    @classmethod
    def from_settings(cls, settings: Settings, links: Links | None = None, *,
                      usdt_connect: bool = False) -> PayConfig:
        token = settings.telegram.bot_token
        token_text = token.get_secret_value() if token is not None else None
        address = settings.ton.destination_address
        if address:
            try:
                address = friendly_address(address)
            except ValueError as exc:
                raise ValueError(f"TON_DESTINATION_ADDRESS is not valid: {exc}") from None
        if settings.web.cookie_secret is not None:
            secret = settings.web.cookie_secret.get_secret_value().encode()
        elif token_text:
            secret = hashlib.sha256(b"paybot cookie key\0" + token_text.encode()).digest()
        else:  # nothing stable to derive from: cookies last as long as the process
            secret = secrets.token_bytes(32)
        public_url = settings.web.public_url.rstrip("/")
        return cls(
            public_url=public_url,
            links=links or links_from_settings(settings),
            bot_token=token_text,
            init_data_max_age=settings.web.init_data_max_age,
            ton_address=address or None,
            signer=CookieSigner(secret),
            secure_cookies=public_url.startswith("https://"),
            rails=telegram_rails(settings),
            web_cards=web_cards(settings),
            ton_rate=settings.ledger.ton_rate,
            usdt_master=(friendly_address(usdt, bounceable=True)
                         if address and (usdt := settings.ton.jettons.get("USDT")) else None),
            usdt_connect=usdt_connect,
        )


class KnownBuyers:
    """The user behind each Mini App Telegram id, so a payment does not write the users row
    (an upsert, a row lock and a commit of its own) every time.

    `ensure_user` runs again whenever the init data brings another username or language than
    the last time, so nothing it records goes stale; a user's id never changes. Bounded."""

    def __init__(self, engine: AsyncEngine, size: int = 100_000) -> None:
        self.engine = engine
        self.size = size
        self._items: OrderedDict[int, tuple[str | None, str | None, User]] = OrderedDict()

    async def get(self, telegram_id: int, username: str | None, language: str | None) -> User:
        hit = self._items.get(telegram_id)
        if hit is not None and hit[:2] == (username, language):
            self._items.move_to_end(telegram_id)
            return hit[2]
        user = await ensure_user(self.engine, telegram_id, username, language)
        self._items[telegram_id] = (username, language, user)
        self._items.move_to_end(telegram_id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return user


class UserTags:
    """The payer tag of each (invoice, Telegram user) that asked: chosen once by the ledger
    (`tag_for_user` is idempotent) and never changed, so a Mini App's status polls do not ask
    again. Bounded."""

    def __init__(self, engine: AsyncEngine, size: int = 100_000) -> None:
        self.engine = engine
        self.size = size
        self._items: OrderedDict[tuple[str, int], str] = OrderedDict()

    async def get(self, invoice_public_id: str, user_id: int) -> str:
        key = (invoice_public_id, user_id)
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        tag = (await tag_for_user(self.engine, invoice_public_id, user_id)).tag
        self._items[key] = tag
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return tag

    def peek(self, invoice_public_id: str, user_id: int) -> str | None:
        return self._items.get((invoice_public_id, user_id))


def money(minor: int, currency: str) -> dict[str, Any]:
    return {"minor": minor, "currency": currency, "text": format_amount(minor, currency),
            "display": display_amount(minor, currency)}


def any_money(minor: int, currency: str) -> dict[str, Any]:
    """An amount in a ledger currency, or in a provider's (card currencies, Stars) that the
    ledger also books (rails, suspense)."""
    return money(minor, currency) if currency in DECIMALS else provider_money(minor, currency)


def payer_comment(invoice: Invoice, tag: str | None) -> str:
    """The comment this payer sends: `INV-<id>-<tag>` names them too; bare without a tag."""
    return f"{invoice.comment}-{tag}" if tag else invoice.comment


def ton_links(invoice: Invoice, cfg: PayConfig, tag: str | None = None) -> dict[str, str] | None:
    """Wallet links for paying `invoice` in TON (with this payer's tag in the comment), or
    None when that is not possible."""
    nano = invoice.ton_due
    if cfg.ton_address is None or not nano:
        return None
    comment = payer_comment(invoice, tag)
    return dict(_wallet_links(cfg.ton_address, nano, comment))


@lru_cache(maxsize=4096)
def _wallet_links(address: str, nano: int, comment: str) -> tuple[tuple[str, str], ...]:
    # Each link re-parses and checksums the address: worth remembering on the hot page.
    return (("address", address), ("ton", ton_transfer_link(address, nano, comment)),
            ("tonkeeper", tonkeeper_link(address, nano, comment)))


@lru_cache(maxsize=4096)
def ton_connect_message(address: str, nano: int, comment: str) -> dict[str, str]:
    """TON Connect's `sendTransaction` message paying `nano` to the shop with the comment as
    its payload (the cell the watcher reads): the wallet asks only for a confirmation."""
    return {"address": address, "amount": str(nano), "payload": comment_payload(comment)}


def usdt_offer(invoice: Invoice, cfg: PayConfig, tag: str | None = None) -> dict[str, Any] | None:
    """Paying `invoice` in USDT (Liquid $ 1:1: `Invoice.usdt_due`): the amount, the wallet
    links (jetton transfer with this payer's comment) and whether TON Connect can send it;
    None when USDT does not pay it (a TON invoice, no USDT master or TON address)."""
    micro = invoice.usdt_due
    if cfg.ton_address is None or cfg.usdt_master is None or not micro or micro < 0:
        return None
    comment = payer_comment(invoice, tag)
    return {"amount": money(micro, "USDT"), "connect": cfg.usdt_connect,
            **dict(_usdt_links(cfg.ton_address, cfg.usdt_master, micro, comment))}


@lru_cache(maxsize=4096)
def _usdt_links(address: str, master: str, micro: int,
                comment: str) -> tuple[tuple[str, str], ...]:
    return (("master", master), ("ton", jetton_transfer_link(address, master, micro, comment)),
            ("tonkeeper", tonkeeper_jetton_link(address, master, micro, comment)))


def page_url(invoice: Invoice, cfg: PayConfig) -> str:
    return f"{cfg.public_url}/pay/{invoice.public_id}"


def qr_text(invoice: Invoice, cfg: PayConfig, tag: str | None = None) -> str:
    """The wallet link (with this payer's tag) while the invoice can be paid in TON; the page
    link otherwise (so an old QR of a paid invoice never sends money)."""
    links = ton_links(invoice, cfg, tag)
    if links is not None and invoice.effective_status() == "pending":
        return links["ton"]
    return page_url(invoice, cfg)


class FiguresCache:
    """The formatted lines and totals of recent invoice versions, by language: the pay page,
    its polls and the Mini App's payments show them on every answer. Bounded."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, int, int, str], dict[str, Any]] = OrderedDict()

    def get(self, invoice: Invoice, lang: str) -> dict[str, Any]:
        # A version fixes the lines and the total; what was paid is the rest of the picture.
        key = (invoice.public_id, invoice.version, invoice.amount_paid, lang)
        hit = self._items.get(key)
        if hit is None:
            hit = self._items[key] = invoice_figures(invoice, lang).as_json()
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return hit


FIGURES = FiguresCache()


def invoice_view(invoice: Invoice, seller_username: str | None, cfg: PayConfig,
                 tag: str | None = None, lang: str = "en") -> dict[str, Any]:
    """The invoice as the viewer holding payer tag `tag` sees it: their own comment in the
    copy field, the wallet links and the QR (the QR's URL names the tag); its lines and
    totals in `lang`, exactly as its PDF writes them (bot/documents/figures.py)."""
    status = invoice.effective_status()
    base = f"/pay/{invoice.public_id}"
    qr_query = f"?tag={tag}" if tag else ""
    return {
        "id": invoice.public_id,
        "number": invoice.number,
        "title": invoice.title,
        "description": invoice.description,
        "status": status,
        "kind": invoice.kind,
        "uses": invoice.uses,
        "max_uses": invoice.max_uses,
        "amount": money(invoice.amount, invoice.currency),
        "amount_paid": money(invoice.amount_paid, invoice.currency),
        "amount_due": money(invoice.amount_due, invoice.currency),
        "document": FIGURES.get(invoice, lang),
        # What is left to pay in TON (the quote, or its share still due once partly paid).
        "ton": money(nano, "TON") if (nano := invoice.ton_due) else None,
        "ton_received": money(invoice.ton_received, "TON") if invoice.ton_received else None,
        "seller": {"username": seller_username},
        "comment": payer_comment(invoice, tag),
        "created_at": invoice.created_at.isoformat(),
        "expires_at": invoice.expires_at.isoformat(),
        "paid_at": invoice.paid_at.isoformat() if invoice.paid_at else None,
        "issued_at": iso(invoice.issued_at),
        "due_at": iso(invoice.due_at),
        "overdue": invoice.overdue(),
        "pay_ton": (pay_ton := ton_links(invoice, cfg, tag) if status == "pending" else None),
        # TON Connect: the message a connected wallet is asked to sign (TON), and USDT's
        # jetton transfer, built for the buyer's own jetton wallet by POST links.tonconnect.
        "tonconnect": ({"network": cfg.ton_network, "message": ton_connect_message(
            pay_ton["address"], invoice.ton_due or 0, payer_comment(invoice, tag))}
            if pay_ton else None),
        "pay_usdt": usdt_offer(invoice, cfg, tag) if status == "pending" else None,
        # By card or in Stars, with the amount each will lock (shown before paying): the Mini
        # App's Telegram Payments, and a plain browser's card checkout.
        "pay_rails": rail_offers(invoice, cfg.rails, cfg.ton_rate),
        "pay_card": rail_offers(invoice, cfg.web_cards, cfg.ton_rate),
        "links": {
            "page": page_url(invoice, cfg),
            "login": f"https://t.me/{cfg.bot_username}?start=pay_{invoice.public_id}",
            "qr_png": f"{base}/qr.png{qr_query}",
            "qr_svg": f"{base}/qr.svg{qr_query}",
            "pdf": f"{base}/invoice.pdf",
            "status": f"{base}/status",
            "pay": f"{base}/pay",
            "invoice_link": f"{base}/invoice-link",
            "card": f"{base}/card",
            "tonconnect": f"{base}/tonconnect",
            "tonconnect_manifest": f"{cfg.public_url}/tonconnect-manifest.json",
        },
    }


def payer_display(who: User | Payer | None) -> str | None:
    """How the page names a person — the seller, or (to the invoice's parties only) who paid:
    @username, else their Telegram name, else a guest's contact; None when nobody is known.
    Plain text: the page escapes it."""
    if isinstance(who, Payer):
        if who.user is None:
            return who.contact
        who = who.user
    if who is None:
        return None
    if who.username:
        return f"@{who.username}"
    return who.full_name or f"#{who.telegram_id}"
