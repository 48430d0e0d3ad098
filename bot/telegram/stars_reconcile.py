"""The Stars reconciliation job (issue 14, "verify without webhook"): every
JOBS_STARS_RECONCILE_SECONDS, read the bot's Telegram Star transactions after the ledger's cursor
(`getStarTransactions` lists them in chronological order, `offset` = how many to skip) and hand
them to the ledger, which settles an incoming payment whose `successful_payment` was missed,
completes the refunds Telegram shows as done, and tells the operator what does not match; then
ask Telegram again about the refunds still pending.

It needs the Bot, so it lives with the bot; the composition root schedules it. Telegram
unreachable: this run stops where it is and the next one goes on from the cursor."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import StarTransaction, TransactionPartnerUser
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.telegram.star_refunds import RETRY_AFTER_SECONDS, retry_pending_refunds
from ledger.core import Ledger
from ledger.rails import ReconcileReport, StarTx

log = logging.getLogger(__name__)

PAGE = 100  # getStarTransactions' largest page


def star_tx(tx: StarTransaction) -> StarTx | None:
    """The ledger's view of one transaction: a user's payment (source: a user) or a refund to a
    user (receiver: a user). Anything else (withdrawals, ads, gifts) is not the ledger's."""
    if isinstance(tx.source, TransactionPartnerUser):
        return StarTx(id=tx.id, amount=tx.amount, date=tx.date, incoming=True,
                      user_telegram_id=tx.source.user.id,
                      invoice_payload=tx.source.invoice_payload,
                      subscription_period=tx.source.subscription_period)
    if isinstance(tx.receiver, TransactionPartnerUser):
        return StarTx(id=tx.id, amount=tx.amount, date=tx.date, incoming=False,
                      user_telegram_id=tx.receiver.user.id,
                      invoice_payload=tx.receiver.invoice_payload, subscription_period=None)
    return None


async def reconcile_stars(ledger: Ledger, bot: Bot, *,
                          retry_after_seconds: int = RETRY_AFTER_SECONDS) -> ReconcileReport:
    """One run: page through the transactions not read yet, then retry the refunds pending
    for longer than `retry_after_seconds`. Telegram failing mid-way ends the run with what was
    read so far (the cursor keeps it)."""
    total = ReconcileReport()
    offset = await ledger.star_cursor()
    while True:
        try:
            page = (await bot.get_star_transactions(offset=offset, limit=PAGE)).transactions
        except (TelegramAPIError, TimeoutError, OSError) as exc:
            log.warning("getStarTransactions at %d failed (%s); next run goes on", offset, exc)
            return total
        txs = [t for t in map(star_tx, page) if t is not None]
        if txs:
            report = await ledger.reconcile_star_transactions(txs)
            total.seen += report.seen
            total.settled += report.settled
            total.completed_refunds += report.completed_refunds
            total.mismatches += report.mismatches
        if page:
            offset += len(page)
            await ledger.advance_star_cursor(offset)
        if len(page) < PAGE:
            break
    await retry_pending_refunds(ledger, bot, retry_after_seconds)
    if total.settled or total.completed_refunds or total.mismatches:
        log.info("stars: %d read, %d missed payment(s) settled, %d refund(s) completed, "
                 "%d mismatch(es)", total.seen, len(total.settled), total.completed_refunds,
                 len(total.mismatches))
    return total


async def stars_reconcile_job(ledger: Ledger, bot: Bot) -> None:
    """The scheduled run: whatever goes wrong is logged, never raised into the scheduler."""
    try:
        await reconcile_stars(ledger, bot)
    except asyncio.CancelledError:
        log.warning("stars reconciliation cancelled (shutdown); the next start goes on")
    except Exception:
        log.exception("stars reconciliation failed; the next run tries again")


def schedule_stars_reconcile(scheduler: AsyncIOScheduler, ledger: Ledger, bot: Bot, *,
                             interval_seconds: float, **job_options: Any) -> None:
    scheduler.add_job(stars_reconcile_job, "interval", seconds=interval_seconds,
                      args=[ledger, bot], id="stars_reconcile", **job_options)
