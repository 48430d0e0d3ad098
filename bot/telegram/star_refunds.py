"""Refunding a Telegram Stars payment: one flow for the seller's button, the operator's
`paybot admin rails refund` and the reconciliation job.

The ledger reserves the money first (`begin_rail_refund`), Telegram is asked outside any
transaction (`refundStarPayment`), and the ledger then books what Telegram answered:

- ok, or 400 CHARGE_ALREADY_REFUNDED (an earlier attempt went through) -> `complete_rail_refund`;
- any other 400 (Telegram refuses this refund) -> `fail_rail_refund`: the reservation goes back;
- no answer (network, 5xx, 429, timeout) -> left pending: nobody knows whether Telegram did it,
  so the job asks again (`retry_pending_refunds`) until Telegram says ok or already refunded.
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest

from bot.telegram.i18n import N_
from ledger.core import Ledger
from ledger.rails import RailRefund

log = logging.getLogger(__name__)

ALREADY_REFUNDED = "CHARGE_ALREADY_REFUNDED"
RETRY_AFTER_SECONDS = 60  # a refund younger than this may still be in its first attempt
# The ledger's refusals, told as one sentence each (errors.py looks up err.<code>).
ERROR_TEXTS = (N_("err.refund_not_supported"), N_("err.already_refunded"),
               N_("err.rail_payment_not_found"), N_("err.refund_not_pending"))


async def refund_stars(ledger: Ledger, bot: Bot, rail_payment_id: int, *, seller_id: int | None,
                       actor_id: int | None, reason: str) -> RailRefund:
    """Refund a Stars payment: `seller_id` None is the operator. The ledger's refusals
    (RefundNotSupported for a card, AlreadyRefunded, InsufficientFunds, RailPaymentNotFound)
    propagate with nothing changed; the returned refund is `done`, `failed` or `pending`."""
    refund = await ledger.begin_rail_refund(rail_payment_id, seller_id=seller_id,
                                            actor_id=actor_id, reason=reason)
    return await ask_telegram(ledger, bot, refund)


async def ask_telegram(ledger: Ledger, bot: Bot, refund: RailRefund) -> RailRefund:
    """Ask Telegram to refund a begun refund and book the answer (see the module's doc)."""
    if refund.payer_telegram_id is None:  # nobody to refund to: give the reservation back
        return await ledger.fail_rail_refund(refund.id, "the payer's Telegram id is unknown")
    try:
        await bot.refund_star_payment(user_id=refund.payer_telegram_id,
                                      telegram_payment_charge_id=refund.reference)
    except TelegramBadRequest as exc:
        if ALREADY_REFUNDED in exc.message:
            return await ledger.complete_rail_refund(refund.id)
        log.warning("Telegram refused refund %s of %s: %s", refund.id, refund.reference,
                    exc.message)
        return await ledger.fail_rail_refund(refund.id, exc.message)
    except (TelegramAPIError, TimeoutError, OSError) as exc:  # network, 5xx, 429, 403 ...
        # Unknown whether Telegram refunded: the reservation stays, the job asks again.
        log.warning("refund %s of %s: no answer from Telegram (%s); left pending", refund.id,
                    refund.reference, exc)
        return refund
    return await ledger.complete_rail_refund(refund.id)


async def retry_pending_refunds(ledger: Ledger, bot: Bot,
                                older_than_seconds: int = RETRY_AFTER_SECONDS) -> int:
    """Ask Telegram again about every refund still pending; how many are finished now."""
    finished = 0
    for refund in await ledger.pending_rail_refunds(older_than_seconds=older_than_seconds):
        if refund.rail != "stars":
            continue
        try:
            done = await ask_telegram(ledger, bot, refund)
        except asyncio.CancelledError:
            raise
        except Exception:  # one refund's trouble must not stop the others
            log.exception("retrying refund %s failed", refund.id)
            continue
        finished += done.status != "pending"
    return finished
