"""Callback data factories and the inline keyboards built from them.

Callback data carries only public ids and a verb; everything else is read again from the ledger
when the button is tapped, so an old message can never act on stale amounts or states."""

from __future__ import annotations

from typing import Literal

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo

from bot.telegram.config import BotConfig
from bot.telegram.i18n import Translator
from bot.telegram.links import pay_url, share_url, usable_in_button
from ledger.errors import InvalidAmount
from ledger.models import Invoice
from ledger.money import display_amount as money
from ledger.rails import STARS, STARS_MAX, STARS_MIN, convert


class PayCb(CallbackData, prefix="pay"):
    action: Literal["ask", "confirm", "back", "ton", "topup", "usdt"]
    invoice: str


class RailCb(CallbackData, prefix="rail"):
    """Pay an invoice by card (Telegram Payments) or with Stars: `currency` XTR = Stars."""

    invoice: str
    currency: str


class TopUpCb(CallbackData, prefix="tup"):
    """Top up the balance by card or Stars (XTR); amount in the ledger's minor units, 0: ask."""

    currency: str
    amount: int = 0


TOP_UP_AMOUNTS = (500, 1000, 2500, 5000)  # 5, 10, 25, 50 Liquid $


class CancelCb(CallbackData, prefix="cxl"):
    action: Literal["ask", "do", "back"]
    invoice: str


class DocCb(CallbackData, prefix="doc"):
    invoice: str  # send this invoice as a PDF document


class PageCb(CallbackData, prefix="invs"):
    before: int  # list invoices older than this internal id (0: the newest)


class FormCb(CallbackData, prefix="form"):
    field: Literal["kind", "expiry", "item", "extra", "tax"]
    value: str


class ActCb(CallbackData, prefix="act"):
    """The seller's buttons on an invoice card; `*_ask` asks to confirm, `*_do` does it."""

    action: Literal["record", "send", "void_ask", "void_do", "wo_ask", "wo_do", "back"]
    invoice: str


class StopCb(CallbackData, prefix="stop"):
    invoice: str  # the buyer opts out of reminders for this invoice


class SetCb(CallbackData, prefix="set"):
    field: Literal["legal_name", "legal_details", "bank_details", "logo", "tax", "days",
                   "overdue", "digest", "clear"]


EXPIRY_CHOICES_HOURS = (1, 24, 24 * 7, 24 * 30)


def _column(buttons: list[InlineKeyboardButton]) -> InlineKeyboardMarkup | None:
    # Built directly: aiogram's InlineKeyboardBuilder deep-copies every button (pydantic
    # models), which cost more than the database read on the /start pay_<id> path.
    return InlineKeyboardMarkup(inline_keyboard=[[b] for b in buttons]) if buttons else None


def _callback(text: str, data: CallbackData) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def invoice_card_keyboard(
    tr: Translator, cfg: BotConfig, invoice: Invoice, amount_text: str, *, payable: bool
) -> InlineKeyboardMarkup | None:
    if not payable:
        return None
    buttons = [_callback(tr("btn.pay_balance", amount=amount_text),
                         PayCb(action="ask", invoice=invoice.public_id))]
    if cfg.ton_destination and invoice.ton_amount:
        buttons.append(_callback(tr("btn.pay_ton"),
                                 PayCb(action="ton", invoice=invoice.public_id)))
    if cfg.ton_destination and cfg.usdt_master and invoice.usdt_due:  # Liquid $ 1:1
        buttons.append(_callback(tr("btn.pay_usdt"),
                                 PayCb(action="usdt", invoice=invoice.public_id)))
    buttons += rail_buttons(tr, cfg, invoice)
    url = pay_url(cfg, invoice.public_id)
    if usable_in_button(url):  # Web App buttons need a public https URL
        buttons.append(InlineKeyboardButton(text=tr("btn.mini_app"), web_app=WebAppInfo(url=url)))
    return _column(buttons)


def rail_buttons(tr: Translator, cfg: BotConfig, invoice: Invoice) -> list[InlineKeyboardButton]:
    """Card per currency with a Telegram Payments provider, and Stars when they have a rate
    and the amount due fits one Stars invoice (Telegram takes 1 to 10,000)."""
    public_id = invoice.public_id
    buttons = [_callback(tr("btn.pay_card", currency=currency),
                         RailCb(invoice=public_id, currency=currency))
               for currency in cfg.card_providers]
    if cfg.stars_enabled and _stars_fit(cfg, invoice):
        buttons.append(_callback(tr("btn.pay_stars"), RailCb(invoice=public_id, currency="XTR")))
    return buttons


def _stars_fit(cfg: BotConfig, invoice: Invoice) -> bool:
    rate = cfg.rail_rates[STARS] * (cfg.ton_rate if invoice.currency == "TON" else 1)
    try:
        stars = convert(invoice.amount_due, invoice.currency, rate, STARS)
    except InvalidAmount:
        return False
    return STARS_MIN <= stars <= STARS_MAX


def top_up_buttons(tr: Translator, cfg: BotConfig) -> list[InlineKeyboardButton]:
    buttons = [_callback(tr("btn.topup_card", currency=currency), TopUpCb(currency=currency))
               for currency in cfg.card_providers]
    if cfg.stars_enabled:
        buttons.append(_callback(tr("btn.topup_stars"), TopUpCb(currency="XTR")))
    return buttons


def balance_keyboard(
    tr: Translator, cfg: BotConfig, wallet_url: str | None
) -> InlineKeyboardMarkup | None:
    """Under the balance: the wallet for a TON deposit, then top-ups by card and Stars."""
    wallet = [InlineKeyboardButton(text=tr("btn.wallet"), url=wallet_url)] if wallet_url else []
    return _column(wallet + top_up_buttons(tr, cfg))


def top_up_amounts_keyboard(
    tr: Translator, cfg: BotConfig, currency: str
) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [_callback(money(amount, cfg.currency), TopUpCb(currency=currency, amount=amount))
         for amount in TOP_UP_AMOUNTS[:2]],
        [_callback(money(amount, cfg.currency), TopUpCb(currency=currency, amount=amount))
         for amount in TOP_UP_AMOUNTS[2:]],
    ])


def confirm_keyboard(tr: Translator, public_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr("btn.confirm"),
                              callback_data=PayCb(action="confirm", invoice=public_id).pack())],
        [InlineKeyboardButton(text=tr("btn.back"),
                              callback_data=PayCb(action="back", invoice=public_id).pack())],
    ])


def short_keyboard(tr: Translator, public_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr("btn.top_up"),
                              callback_data=PayCb(action="topup", invoice=public_id).pack())],
        [InlineKeyboardButton(text=tr("btn.back"),
                              callback_data=PayCb(action="back", invoice=public_id).pack())],
    ])


def seller_share_keyboard(
    tr: Translator, cfg: BotConfig, invoice: Invoice, share_text: str, deep: str
) -> InlineKeyboardMarkup | None:
    url = pay_url(cfg, invoice.public_id)
    public = usable_in_button(url)
    # The share sheet carries the page when it is public, else the t.me link (always works).
    buttons = [InlineKeyboardButton(text=tr("btn.share"),
                                    url=share_url(url if public else deep, share_text))]
    if public:
        buttons.append(InlineKeyboardButton(text=tr("btn.open_page"), url=url))
    buttons.append(_callback(tr("btn.pdf"), DocCb(invoice=invoice.public_id)))
    return _column(buttons + seller_action_buttons(tr, invoice))


def seller_action_buttons(tr: Translator, invoice: Invoice) -> list[InlineKeyboardButton]:
    """What the seller can do with an issued invoice: record money received elsewhere, send
    it to a client, void it or write it off. Only what its state allows (the ledger decides
    again when tapped)."""
    status = invoice.effective_status()
    public_id = invoice.public_id
    buttons = []
    if status == "pending" and invoice.kind == "one_time":
        buttons.append(_callback(tr("btn.record_payment"),
                                 ActCb(action="record", invoice=public_id)))
    if status in ("pending", "draft"):
        buttons.append(_callback(tr("btn.send_to_client"),
                                 ActCb(action="send", invoice=public_id)))
    if status in ("pending", "draft") and not invoice.amount_paid:
        buttons.append(_callback(tr("btn.void"), ActCb(action="void_ask", invoice=public_id)))
    if status in ("pending", "expired") and invoice.kind == "one_time" and invoice.amount_due:
        buttons.append(_callback(tr("btn.write_off"), ActCb(action="wo_ask", invoice=public_id)))
    return buttons


def seller_actions_keyboard(tr: Translator, invoice: Invoice) -> InlineKeyboardMarkup | None:
    return _column(seller_action_buttons(tr, invoice))


def confirm_action_keyboard(tr: Translator, action: Literal["void_do", "wo_do"],
                            public_id: str) -> InlineKeyboardMarkup:
    label = tr("btn.void_yes") if action == "void_do" else tr("btn.write_off_yes")
    return InlineKeyboardMarkup(inline_keyboard=[
        [_callback(label, ActCb(action=action, invoice=public_id))],
        [_callback(tr("btn.back"), ActCb(action="back", invoice=public_id))],
    ])


def form_extras(tr: Translator) -> list[list[InlineKeyboardButton]]:
    """The optional steps of /invoice, offered beside the question that comes anyway (one
    buyer or many), so the one-line invoice takes no extra step."""
    def button(extra: str) -> InlineKeyboardButton:
        return _callback(tr(f"form.extra.{extra}"), FormCb(field="extra", value=extra))

    return [[button("line"), button("discount")], [button("tax"), button("due")]]


def tax_default_keyboard(tr: Translator, name: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [_callback(tr("form.tax.use_default", name=name), FormCb(field="tax", value="default"))],
    ])


def reminder_keyboard(tr: Translator, invoice: Invoice, cfg: BotConfig,
                      amount_text: str) -> InlineKeyboardMarkup:
    """A reminder's buttons: pay, and stop these reminders."""
    pay = invoice_card_keyboard(tr, cfg, invoice, amount_text, payable=True)
    rows = list(pay.inline_keyboard) if pay is not None else []
    rows.append([_callback(tr("btn.stop_reminders"), StopCb(invoice=invoice.public_id))])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def settings_keyboard(tr: Translator, *, remind_overdue: bool,
                      overdue_digest: bool) -> InlineKeyboardMarkup:
    def button(field: str, text: str) -> InlineKeyboardButton:
        return InlineKeyboardButton(text=text, callback_data=SetCb(field=field).pack())

    def switch(on: bool) -> str:
        return tr("settings.on") if on else tr("settings.off")

    return InlineKeyboardMarkup(inline_keyboard=[
        [button("legal_name", tr("btn.settings.legal_name")),
         button("legal_details", tr("btn.settings.legal_details"))],
        [button("bank_details", tr("btn.settings.bank_details")),
         button("logo", tr("btn.settings.logo"))],
        [button("tax", tr("btn.settings.tax")), button("days", tr("btn.settings.days"))],
        [button("overdue", tr("btn.settings.overdue", state=switch(remind_overdue)))],
        [button("digest", tr("btn.settings.digest", state=switch(overdue_digest)))],
    ])


def clear_keyboard(tr: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr("btn.settings.clear"),
                              callback_data=SetCb(field="clear").pack())],
    ])


def wallet_keyboard(tr: Translator, wallet_url: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr("btn.wallet"), url=wallet_url)],
    ])


def invoices_keyboard(
    tr: Translator, invoices: list[Invoice], *, older_than: int | None
) -> InlineKeyboardMarkup | None:
    buttons = [_callback(tr("btn.cancel_invoice", number=inv.number),
                         CancelCb(action="ask", invoice=inv.public_id))
               for inv in invoices if inv.status == "pending"]
    if older_than is not None:
        buttons.append(_callback(tr("btn.older"), PageCb(before=older_than)))
    return _column(buttons)


def cancel_confirm_keyboard(tr: Translator, public_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr("btn.cancel_yes"),
                              callback_data=CancelCb(action="do", invoice=public_id).pack())],
        [InlineKeyboardButton(text=tr("btn.back"),
                              callback_data=CancelCb(action="back", invoice=public_id).pack())],
    ])


def kind_keyboard(tr: Translator, *, multi_use: bool = True
                  ) -> InlineKeyboardMarkup:
    """One buyer or many, and the optional extras; an invoice with lines is for one buyer."""
    kinds = ("one_time", "multi_use") if multi_use else ("one_time",)
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr(f"form.kind.{kind}"),
                              callback_data=FormCb(field="kind", value=kind).pack())]
        for kind in kinds
    ] + form_extras(tr))


def expiry_keyboard(tr: Translator) -> InlineKeyboardMarkup:
    row = [_callback(tr("hours", n=hours) if hours < 48 else tr("days", n=hours // 24),
                     FormCb(field="expiry", value=str(hours)))
           for hours in EXPIRY_CHOICES_HOURS]
    return InlineKeyboardMarkup(inline_keyboard=[row])


def skip_keyboard(tr: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr("form.skip"),
                              callback_data=FormCb(field="item", value="-").pack())],
    ])


class ApiCb(CallbackData, prefix="api"):
    action: Literal["new", "ask", "revoke", "list"]
    token: int = 0  # api_tokens.id; revoking checks it is the tapping seller's own


def api_tokens_keyboard(
    tr: Translator, tokens: list[tuple[int, str]], *, can_issue: bool
) -> InlineKeyboardMarkup | None:
    """/api: a new token (below the limit), and one revoke button per active token."""
    buttons = [_callback(tr("btn.api_new"), ApiCb(action="new"))] if can_issue else []
    buttons += [_callback(tr("btn.api_revoke", hint=hint), ApiCb(action="ask", token=token_id))
                for token_id, hint in tokens]
    return _column(buttons)


def api_revoke_keyboard(tr: Translator, token_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [_callback(tr("btn.api_revoke_yes"), ApiCb(action="revoke", token=token_id))],
        [_callback(tr("btn.back"), ApiCb(action="list"))],
    ])


# --- subscriptions: the seller's /plans, the buyer's plan card and /subscriptions -------------

TRIAL_CHOICES_DAYS = (0, 7, 14, 30)


class PlanCb(CallbackData, prefix="plan"):
    """The seller's plan buttons; `archive_ask` asks to confirm, `archive_do` does it."""

    action: Literal["new", "archive_ask", "archive_do", "list"]
    plan: str = ""  # a plan's public id


class PlanFormCb(CallbackData, prefix="pform"):
    field: Literal["trial", "item", "channel"]
    value: str  # trial: days; item, channel: "-" (skip)


class SubCb(CallbackData, prefix="sub"):
    """A period tapped on a plan card: subscribe for `months`."""

    plan: str
    months: int


class SubsCb(CallbackData, prefix="subs"):
    """The buyer's /subscriptions buttons; `*_ask` asks to confirm, `*_do` does it."""

    action: Literal["end_ask", "end_do", "now_ask", "now_do", "list"]
    sub: str = ""  # a subscription's public id


def plans_keyboard(tr: Translator, archivable: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    """/plans: a new plan, and an archive button per active plan ((public id, name))."""
    buttons = [_callback(tr("btn.plan_new"), PlanCb(action="new"))]
    buttons += [_callback(tr("btn.plan_archive", name=name[:40]),
                          PlanCb(action="archive_ask", plan=public_id))
                for public_id, name in archivable]
    return InlineKeyboardMarkup(inline_keyboard=[[b] for b in buttons])


def plan_created_keyboard(tr: Translator, public_id: str, share: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=tr("btn.share"), url=share)],
        [_callback(tr("btn.plan_archive_short"), PlanCb(action="archive_ask", plan=public_id))],
    ])


def plan_archive_keyboard(tr: Translator, public_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [_callback(tr("btn.plan_archive_yes"), PlanCb(action="archive_do", plan=public_id))],
        [_callback(tr("btn.back"), PlanCb(action="list"))],
    ])


def trial_keyboard(tr: Translator) -> InlineKeyboardMarkup:
    row = [_callback(tr("plan.trial.none") if days == 0 else tr("days", n=days),
                     PlanFormCb(field="trial", value=str(days)))
           for days in TRIAL_CHOICES_DAYS]
    return InlineKeyboardMarkup(inline_keyboard=[row])


def plan_skip_keyboard(tr: Translator, field: Literal["item", "channel"]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [_callback(tr("form.skip"), PlanFormCb(field=field, value="-"))],
    ])


def plan_card_keyboard(tr: Translator, public_id: str,
                       periods: list[tuple[int, str]]) -> InlineKeyboardMarkup | None:
    """One button per period offered: (months, its label)."""
    return _column([_callback(label, SubCb(plan=public_id, months=months))
                    for months, label in periods])


def subscriptions_keyboard(
    tr: Translator, live: list[tuple[str, str, bool]]
) -> InlineKeyboardMarkup | None:
    """/subscriptions: per live subscription ((public id, plan name, cancelling at period end
    already)), cancel at period end (unless it is already) and cancel now."""
    rows = []
    for public_id, name, ending in live:
        short = name[:30]
        if not ending:
            rows.append([_callback(tr("btn.sub_cancel_end", name=short),
                                   SubsCb(action="end_ask", sub=public_id))])
        rows.append([_callback(tr("btn.sub_cancel_now", name=short),
                               SubsCb(action="now_ask", sub=public_id))])
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def subscription_cancel_keyboard(tr: Translator, public_id: str, *,
                                 at_period_end: bool) -> InlineKeyboardMarkup:
    action: Literal["end_do", "now_do"] = "end_do" if at_period_end else "now_do"
    return InlineKeyboardMarkup(inline_keyboard=[
        [_callback(tr("btn.sub_cancel_yes"), SubsCb(action=action, sub=public_id))],
        [_callback(tr("btn.back"), SubsCb(action="list"))],
    ])


class ChangeCb(CallbackData, prefix="subch"):
    """A subscriber changes plan: `pick` lists the choices, `ask` confirms one, `do` does it."""

    action: Literal["pick", "ask", "do"]
    sub: str  # the subscription's public id
    plan: str = ""  # the chosen plan's public id
    months: int = 0


def change_plan_button(tr: Translator, public_id: str, name: str) -> list[InlineKeyboardButton]:
    """The row /subscriptions adds under a live (active or trialing) subscription."""
    return [_callback(tr("btn.sub_change", name=name[:30]),
                      ChangeCb(action="pick", sub=public_id))]


def change_choices_keyboard(tr: Translator, public_id: str,
                            choices: list[tuple[str, int, str]]) -> InlineKeyboardMarkup:
    """One button per (plan public id, months, label) the subscription can change to."""
    rows = [[_callback(label, ChangeCb(action="ask", sub=public_id, plan=plan, months=months))]
            for plan, months, label in choices]
    rows.append([_callback(tr("btn.back"), SubsCb(action="list"))])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def change_confirm_keyboard(tr: Translator, public_id: str, plan: str,
                            months: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [_callback(tr("btn.sub_change_yes"),
                   ChangeCb(action="do", sub=public_id, plan=plan, months=months))],
        [_callback(tr("btn.back"), ChangeCb(action="pick", sub=public_id))],
    ])
