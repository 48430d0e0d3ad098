"""/withdraw: money from the balance to the user's own TON wallet, in TON or USDT; and what
becomes of it, in /history and in notices.

`/withdraw <TON|USDT> <amount> <address>` is checked at once (asset, amount, address: the
ledger's canonical form and network), then confirmed with a button; the confirmation carries
an idempotency key kept in the conversation's state, so a double tap orders once. The ledger
debits the balance and orders the payout in one transaction (Ledger.request_withdrawal); the
hot wallet's sender sends it (watchers/payout_sender.py).
"""

from __future__ import annotations

import html
import secrets
from typing import Any, Final

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.settings import Settings
from bot.telegram.i18n import Translator
from ledger.addresses import check_destination, raw_form
from ledger.core import Ledger
from ledger.errors import UnsupportedAsset, WithdrawalLimit
from ledger.models import User
from ledger.money import display_amount as money
from ledger.money import parse_amount
from ledger.payouts import ASSETS, Payout, PayoutPolicy

router: Final[Router] = Router(name=__name__)

CONFIRM, CANCEL = "wd:ok", "wd:no"
STATE_KEY = "withdraw"
HISTORY_LIMIT = 10
PAYOUT_EVENTS: Final = frozenset({"payout.confirmed", "payout.rejected", "payout.failed"})


def N_(key: str) -> str:  # gettext's name: "extract this key, translate later"
    return key


COMMAND: Final = N_("cmd.withdraw")  # its line in the bot's command menu (runtime.COMMANDS)
# /history names a withdrawal's ledger movements by their kind (account.py: kind.<kind>).
KINDS: Final = (N_("kind.payout"), N_("kind.payout_return"))
# The refusals of payouts (bot/telegram/errors.py says err.<code>).
ERRORS: Final = (
    N_("err.payout_not_found"), N_("err.payout_not_pending"), N_("err.withdrawal_limit"),
    N_("err.invalid_address"), N_("err.wrong_network"), N_("err.own_address"),
    N_("err.unsupported_asset"), N_("err.payout_state_changed"), N_("err.no_refund_source"),
)
STATUS_KEYS: Final = {  # payout status -> how the user reads it
    "pending_approval": N_("payout.status.approval"), "queued": N_("payout.status.queued"),
    "signed": N_("payout.status.sending"), "sent": N_("payout.status.sending"),
    "confirmed": N_("payout.status.confirmed"), "failed": N_("payout.status.failed"),
    "rejected": N_("payout.status.rejected"),
}
NOTICES: Final = {"payout.confirmed": N_("notify.payout.confirmed"),
                  "payout.rejected": N_("notify.payout.rejected"),
                  "payout.failed": N_("notify.payout.failed")}


def payout_policy(settings: Settings) -> PayoutPolicy:
    """The settings' payout rules as the ledger takes them (read once, at start)."""
    dest = settings.ton.destination_address
    return PayoutPolicy(
        network=settings.ton.network,
        own_addresses=(raw_form(dest),) if dest else (),
        daily_limit=dict(settings.payouts.daily_limit),
        approval_above=dict(settings.payouts.approval_above),
        balance_currency=settings.ledger.currency,
        ton_rate=settings.ledger.ton_rate,
    )


def _keyboard(tr: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=tr("withdraw.btn.confirm"), callback_data=CONFIRM),
        InlineKeyboardButton(text=tr("withdraw.btn.cancel"), callback_data=CANCEL),
    ]])


@router.message(Command("withdraw"))
async def cmd_withdraw(message: Message, command: CommandObject, tr: Translator,
                       state: FSMContext, payout_policy: PayoutPolicy) -> None:
    parts = (command.args or "").split()
    if len(parts) != 3:
        limits = ", ".join(money(v, a) for a, v in sorted(payout_policy.daily_limit.items()))
        await message.answer(tr("withdraw.usage", limits=limits))
        return
    asset, amount_text, address = parts[0].upper(), parts[1], parts[2]
    if asset not in ASSETS or asset not in payout_policy.daily_limit:
        raise UnsupportedAsset(asset[:20])
    amount = parse_amount(amount_text, asset)
    dest = check_destination(address, network=payout_policy.network,
                             own=payout_policy.own_addresses)
    debit = payout_policy.debit_for(asset, amount)
    await state.update_data({STATE_KEY: {
        "asset": asset, "amount": amount, "address": dest.given,
        "key": "wd:" + secrets.token_urlsafe(16)}})
    await message.answer(
        tr("withdraw.confirm", amount=money(amount, asset), address=html.escape(dest.given),
           debit=money(debit, payout_policy.balance_currency)),
        reply_markup=_keyboard(tr))


@router.callback_query(F.data == CONFIRM)
async def on_confirm(query: CallbackQuery, user: User, tr: Translator, state: FSMContext,
                     ledger: Ledger, payout_policy: PayoutPolicy) -> None:
    request = (await state.get_data()).get(STATE_KEY)
    if not request:
        await query.answer(tr("withdraw.gone"), show_alert=True)
        return
    try:
        p = await ledger.request_withdrawal(user.id, request["asset"], int(request["amount"]),
                                            request["address"], payout_policy,
                                            key=request["key"])
    except WithdrawalLimit as e:
        await query.answer(tr("withdraw.limit", left=money(int(e.available or 0),
                                                          request["asset"])), show_alert=True)
        return
    await state.update_data({STATE_KEY: None})
    await query.answer()
    key = N_("withdraw.approval") if p.status == "pending_approval" else N_("withdraw.queued")
    text = tr(key, id=p.id, amount=money(p.amount, p.asset),
              address=html.escape(p.destination_given))
    if query.message is not None:
        await query.message.edit_text(text)  # type: ignore[union-attr]


@router.callback_query(F.data == CANCEL)
async def on_cancel(query: CallbackQuery, tr: Translator, state: FSMContext) -> None:
    await state.update_data({STATE_KEY: None})
    await query.answer()
    if query.message is not None:
        await query.message.edit_text(tr("withdraw.cancelled"))  # type: ignore[union-attr]


# --- what the user reads about payouts: /history's section, notices --------------------------


def history_lines(tr: Translator, items: list[Payout]) -> list[str]:
    """The user's withdrawals for /history (empty: nothing to add)."""
    if not items:
        return []
    out = ["", tr("history.payouts")]
    for p in items:
        out.append(tr("history.payout", date=p.created_at.strftime("%Y-%m-%d %H:%M"),
                      amount=money(p.amount, p.asset),
                      address=html.escape(_short(p.destination_given)),
                      status=tr(STATUS_KEYS[p.status])))
    return out


def _short(address: str) -> str:
    return address if len(address) <= 14 else f"{address[:6]}…{address[-6:]}"


def payout_notice(tr: Translator, event_type: str, p: dict[str, Any]) -> str:
    """The text of a payout.* outbox event for its user."""
    values = dict(id=int(p["payout_id"]), amount=money(int(p["amount"]), str(p["asset"])),
                  address=html.escape(str(p.get("destination") or "")),
                  tx=html.escape(str(p.get("tx_hash") or "")),
                  note=html.escape(str(p.get("note") or "")))
    return tr(NOTICES[event_type], **values)


def operator_payout_text(tr: Translator, p: dict[str, Any]) -> str:
    """An operator.payout event: one waits for approval, for money, or was not sent."""
    kind = str(p["kind"])
    payout_id = int(p["payout_id"])
    why = (tr("notify.operator.payout.approval", id=payout_id) if kind == "payout_approval"
           else tr("notify.operator.payout.funds", detail=html.escape(str(p.get("detail"))))
           if kind == "payout_funds"
           else tr("notify.operator.payout.not_sent", detail=html.escape(str(p.get("detail")))))
    return tr("notify.operator.payout", id=payout_id,
              amount=money(int(p["amount"]), str(p["asset"])), why=why)

