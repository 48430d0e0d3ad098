"""Card and Telegram Stars payments inside the bot (Telegram Payments).

A tap on "Pay by card" / "Pay with Stars" (an invoice) or a top-up amount locks a quote in the
ledger and sends a Telegram invoice whose payload is the quote's token. Telegram then asks
(`pre_checkout_query`, answered within its 10 seconds, always) and, once the money is taken,
sends a `successful_payment` message: it is settled through the ledger exactly once per
`telegram_payment_charge_id` — paid, credited or, when the invoice was paid or closed meanwhile,
held for a refund (the ledger tells the operator)."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from html import escape
from typing import Any, Final

from aiogram import Bot, F, Router
from aiogram.types import CallbackQuery, LabeledPrice, Message, PreCheckoutQuery, Update

from bot.telegram.config import BotConfig
from bot.telegram.i18n import N_, Translator
from bot.telegram.keyboards import TOP_UP_AMOUNTS, RailCb, TopUpCb, top_up_amounts_keyboard
from bot.telegram.render import granted_line, money
from bot.telegram.views import refuse_unless_pending
from ledger.core import Ledger
from ledger.errors import LedgerError, OwnInvoice, QuoteNotFound
from ledger.models import Invoice, User
from ledger.rails import STARS, RailQuote, RailSettlement, format_provider_amount

log = logging.getLogger(__name__)
router: Final[Router] = Router(name=__name__)

# Telegram cancels the payment when the pre-checkout is not answered within 10 s: the ledger
# gets this long, the rest is left for the answer itself.
PRECHECK_DEADLINE = 6.0
TITLE_LIMIT, DESCRIPTION_LIMIT = 32, 255  # sendInvoice's limits
UNKNOWN_CARD_RAIL = "card:telegram"  # a card payment whose quote nobody knows

# Keys built at run time (ledger.rails.PRECHECK_REASONS, HOLD_REASONS), for extraction.
DYNAMIC: Final = (
    N_("rail.precheck.quote_unknown"), N_("rail.precheck.quote_expired"),
    N_("rail.precheck.amount_changed"), N_("rail.precheck.invoice_paid"),
    N_("rail.precheck.invoice_closed"), N_("rail.precheck.own_invoice"),
    N_("rail.precheck.subscription_ended"), N_("rail.held.unknown_quote"),
    N_("rail.held.amount_mismatch"), N_("rail.held.invoice_paid"),
    N_("rail.held.invoice_closed"), N_("rail.held.own_invoice"),
    N_("rail.held.subscription_ended"),
)


def price(minor: int, currency: str) -> str:
    """12.50 USD, 1250 JPY, 77 ⭐."""
    amount = format_provider_amount(minor, currency)
    return f"{amount} ⭐" if currency == STARS else f"{amount} {currency}"


def _rail(cfg: BotConfig, currency: str) -> tuple[str, str] | None:
    """(rail, provider token) for a currency offered now, None when it is not."""
    if currency == STARS:
        return ("stars", "") if cfg.stars_enabled else None
    card = cfg.card_providers.get(currency)
    return (f"card:{card[0]}", card[1]) if card else None


def _rate(cfg: BotConfig, currency: str, invoice: Invoice | None) -> Decimal:
    # Rates are per 1 LIQ; a TON invoice is priced at the bot's TON rate (LIQ per TON).
    rate = cfg.rail_rates[currency]
    return rate * cfg.ton_rate if invoice is not None and invoice.currency == "TON" else rate


async def _send_invoice(bot: Bot, chat_id: int, quote: RailQuote, token: str, title: str,
                        description: str) -> None:
    await bot.send_invoice(
        chat_id, title=title[:TITLE_LIMIT], description=description[:DESCRIPTION_LIMIT],
        payload=quote.token, currency=quote.currency, provider_token=token,
        prices=[LabeledPrice(label=title[:TITLE_LIMIT], amount=quote.amount)],
    )


def _chat(cb: CallbackQuery, user: User) -> int:
    return cb.message.chat.id if cb.message is not None else user.telegram_id


@router.callback_query(RailCb.filter())
async def pay_invoice(
    cb: CallbackQuery, callback_data: RailCb, bot: Bot, user: User, tr: Translator,
    ledger: Ledger, cfg: BotConfig,
) -> None:
    rail = _rail(cfg, callback_data.currency)
    if rail is None:  # an old button, or the provider was removed since
        await cb.answer(tr("rail.unavailable"), show_alert=True)
        return
    invoice = (await ledger.invoice(callback_data.invoice)).invoice
    refuse_unless_pending(invoice)  # the exact sentence ("already paid", "cancelled", ...)
    if invoice.seller_id == user.id:
        raise OwnInvoice(invoice.public_id)
    quote = await ledger.quote_rail(
        purpose="invoice", rail=rail[0], channel="telegram", currency=callback_data.currency,
        rate=_rate(cfg, callback_data.currency, invoice), invoice=invoice.public_id,
        user_id=user.id, ttl_seconds=cfg.quote_seconds)
    number = invoice.number or invoice.public_id
    title = invoice.title.strip() or tr("rail.invoice.title", number=number)
    description = tr("rail.invoice.description", title=invoice.title, number=number,
                     price=price(quote.amount, quote.currency),
                     amount=money(quote.ledger_amount, quote.ledger_currency),
                     minutes=cfg.quote_seconds // 60)
    await cb.answer()
    await _send_invoice(bot, _chat(cb, user), quote, rail[1], title, description)


@router.callback_query(TopUpCb.filter())
async def top_up(
    cb: CallbackQuery, callback_data: TopUpCb, bot: Bot, user: User, tr: Translator,
    ledger: Ledger, cfg: BotConfig,
) -> None:
    currency = callback_data.currency
    rail = _rail(cfg, currency)
    # only the amounts offered: a forged button changes nothing
    if rail is None or callback_data.amount not in (0, *TOP_UP_AMOUNTS):
        await cb.answer(tr("rail.unavailable"), show_alert=True)
        return
    if callback_data.amount == 0:  # which amount?
        how = tr("rail.topup.stars") if currency == STARS else tr("rail.topup.card",
                                                                   currency=currency)
        await cb.answer()
        await bot.send_message(_chat(cb, user), tr("rail.topup.choose", how=how),
                               reply_markup=top_up_amounts_keyboard(tr, cfg, currency))
        return
    quote = await ledger.quote_rail(
        purpose="topup", rail=rail[0], channel="telegram", currency=currency,
        rate=_rate(cfg, currency, None), topup_amount=callback_data.amount,
        topup_currency=cfg.currency, user_id=user.id, ttl_seconds=cfg.quote_seconds)
    amount = money(quote.ledger_amount, quote.ledger_currency)
    title = tr("rail.topup.title", amount=amount)
    description = tr("rail.topup.description", amount=amount,
                     price=price(quote.amount, quote.currency), minutes=cfg.quote_seconds // 60)
    await cb.answer()
    await _send_invoice(bot, _chat(cb, user), quote, rail[1], title, description)


@router.pre_checkout_query()
async def pre_checkout(query: PreCheckoutQuery, tr: Translator, ledger: Ledger,
                       user: User | None = None) -> None:
    """Still payable for exactly this amount? Always answered: a failure says "try again"
    (the buyer is not charged), never silence."""
    try:
        async with asyncio.timeout(PRECHECK_DEADLINE):
            check = await ledger.precheck_rail(
                query.invoice_payload, currency=query.currency, amount=query.total_amount,
                payer_id=user.id if user is not None else None)
    except Exception as exc:  # the database is down or slow: the buyer may try again
        log.warning("pre-checkout %s not checked (%s: %s)", query.id, type(exc).__name__,
                    str(exc)[:200])
        await query.answer(ok=False, error_message=tr("rail.precheck.retry"))
        return
    if check.ok:
        await query.answer(ok=True)
    else:
        await query.answer(ok=False, error_message=tr(f"rail.precheck.{check.reason}"))


async def _rail_of(ledger: Ledger, currency: str, token: str) -> str:
    """Stars are always the Stars rail (their charge id is what getStarTransactions lists);
    a card payment is its quote's provider, card:telegram when no quote says which."""
    if currency == STARS:
        return "stars"
    try:
        rail = (await ledger.rail_quote(token)).rail
    except QuoteNotFound:
        return UNKNOWN_CARD_RAIL
    return rail if rail.startswith("card:") else UNKNOWN_CARD_RAIL


@router.message(F.successful_payment)
async def paid(message: Message, user: User, tr: Translator, ledger: Ledger,
               cfg: BotConfig) -> None:
    """Telegram took the money: record and settle it once (a redelivered update replays).
    A failure propagates to errors.py, which tells the buyer `failure_text`."""
    payment = message.successful_payment
    assert payment is not None
    details: dict[str, Any] = payment.model_dump(mode="json", exclude_none=True)
    settled = await _settle(ledger, cfg, payment.currency, payment.total_amount,
                            payment.invoice_payload, payment.telegram_payment_charge_id,
                            payment.provider_payment_charge_id, user, details)
    await message.answer(await _outcome_text(ledger, tr, cfg, settled, payment.currency,
                                             payment.total_amount))


def failure_text(tr: Translator, update: Update) -> str | None:
    """What the buyer is told when a payment update could not be handled (the database is
    down: in the handler or before it): None for other updates."""
    if update.pre_checkout_query is not None:
        return tr("rail.precheck.retry")  # refused: the buyer is not charged
    payment = update.message.successful_payment if update.message is not None else None
    if payment is None:
        return None
    # Charged but not recorded: this line (and, for Stars, Telegram's transaction list that
    # the reconciliation job reads) keeps it; the buyer is told it is safe.
    log.error("successful_payment NOT recorded, settle it by hand: %s",
              payment.model_dump_json(exclude_none=True))
    return tr("rail.paid.pending", price=price(payment.total_amount, payment.currency))


async def _settle(ledger: Ledger, cfg: BotConfig, currency: str, amount: int, token: str,
                  reference: str, provider_reference: str, user: User,
                  details: dict[str, Any]) -> RailSettlement:
    """settle_rail_payment, retried while the database fails: it is idempotent per charge id,
    and Telegram does not send the update again once our runtime has taken it."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + cfg.settle_retry_seconds
    delay = 0.5
    while True:
        try:
            rail = await _rail_of(ledger, currency, token)
            return await ledger.settle_rail_payment(
                rail=rail, channel="telegram", reference=reference,
                provider_reference=provider_reference or None, token=token, currency=currency,
                amount=amount, payer_id=user.id, details=details)
        except LedgerError:
            raise
        except Exception as exc:
            if loop.time() + delay > give_up:
                raise
            log.warning("successful_payment %s not settled yet (%s: %s); retrying in %.1fs",
                        reference, type(exc).__name__, str(exc)[:200], delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)


async def _outcome_text(ledger: Ledger, tr: Translator, cfg: BotConfig, settled: RailSettlement,
                        currency: str, amount: int) -> str:
    paid_price = price(amount, currency)
    if settled.outcome == "topup":
        return tr("rail.topup.done", price=paid_price,
                  amount=money(settled.credited or 0, cfg.currency))
    if settled.outcome == "paid" and settled.invoice_public_id is not None:
        invoice = (await ledger.invoice(settled.invoice_public_id)).invoice
        return tr("rail.paid", price=paid_price, title=escape(invoice.title),
                  granted=granted_line(tr, invoice.payload))
    reason = settled.hold_reason or "unknown_quote"
    return tr("rail.held", price=paid_price, why=tr(f"rail.held.{reason}"))
