"""A local stand-in for the Telegram Bot API: `POST /bot<token>/<method>` answering
`{"ok": true, "result": ...}` like api.telegram.org, keeping each chat's messages so tests can
assert what a person would see, and able to fail on demand (403 bot blocked, 429 retry_after,
400 message too long, a method the server lacks). Channels and groups (`add_chat`) keep their
members, join requests and invite links, with the bot an administrator or not. Payments: the
invoices the bot sent (`sendInvoice`, `createInvoiceLink`), the buyer's side as updates
(`pre_checkout_update`, `successful_payment_update`) and the bot's Telegram Stars account
(`refundStarPayment`, `getStarTransactions`), field for field as the Bot API documents them.

Point a Bot at it with TelegramAPIServer.from_base(standin.url); push updates for getUpdates
polling with `post_update`. Also used by bench/bot.py."""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

JSON_FIELDS = {
    "reply_markup", "commands", "link_preview_options", "allowed_updates", "scope", "entities",
    "caption_entities", "reply_parameters", "prices", "suggested_tip_amounts", "menu_button",
}
TRUE_METHODS = {
    "setmycommands", "deletewebhook", "setwebhook", "answercallbackquery", "deletemessage",
    "setchatmenubutton", "close", "logout",
}
BOT_USER = {"id": 4242, "is_bot": True, "first_name": "paybot", "username": "paybot_test_bot"}
CHAT_METHODS = {
    "getchat", "getchatmember", "createchatinvitelink", "approvechatjoinrequest",
    "declinechatjoinrequest", "banchatmember", "unbanchatmember",
}
# ChatMemberAdministrator's rights, as getChatMember lists them (Bot API "ChatMemberAdministrator")
ADMIN_RIGHTS = (
    "can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members",
    "can_promote_members", "can_change_info", "can_invite_users", "can_post_stories",
    "can_edit_stories", "can_delete_stories", "can_send_welcome_messages",
)
IN_CHAT = ("creator", "administrator", "member", "restricted")
PRE_CHECKOUT_SECONDS = 10  # Telegram's limit for answerPreCheckoutQuery


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes]


@dataclass
class ChatMessage:
    """One message in a chat, as the person sees it now (edits applied)."""

    chat_id: int
    message_id: int
    from_bot: bool
    text: str | None = None  # HTML as sent
    caption: str | None = None
    photo: bytes | None = None
    document: bytes | None = None
    document_name: str | None = None
    reply_markup: dict[str, Any] | None = None
    invoice: dict[str, Any] | None = None  # Bot API Invoice (a sendInvoice message)
    edits: int = 0

    @property
    def plain(self) -> str:
        """The text or caption without markup, as it reads on screen."""
        raw = self.text if self.text is not None else (self.caption or "")
        return html.unescape(re.sub(r"<[^>]+>", "", raw))

    @property
    def buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [b for row in rows for b in row]

    @property
    def button_texts(self) -> list[str]:
        return [b["text"] for b in self.buttons]

    def button(self, label: str) -> dict[str, Any]:
        found = [b for b in self.buttons if label in b["text"]]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} buttons match {label!r}: {self.button_texts}")
        return found[0]

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": self.message_id, "date": int(time.time()),
            "chat": {"id": self.chat_id, "type": "private", "first_name": "Test"},
        }
        if self.from_bot:
            out["from"] = BOT_USER
        if self.text is not None:
            out["text"] = self.text
        if self.caption is not None:
            out["caption"] = self.caption
        if self.photo is not None:
            out["photo"] = [{"file_id": f"photo{self.message_id}", "file_unique_id":
                             f"u{self.message_id}", "width": 320, "height": 320}]
        if self.document is not None:  # Bot API Document: file ids, file_name, mime_type, size
            out["document"] = {"file_id": f"doc{self.message_id}",
                               "file_unique_id": f"d{self.message_id}",
                               "file_name": self.document_name,
                               "mime_type": "application/pdf"
                               if (self.document_name or "").endswith(".pdf")
                               else "application/octet-stream",
                               "file_size": len(self.document)}
        if self.invoice is not None:
            out["invoice"] = self.invoice
        if self.reply_markup:
            out["reply_markup"] = self.reply_markup
        return out


@dataclass
class StandInInvoice:
    """An invoice the bot made: sent to a chat (`sendInvoice`) or as a link
    (`createInvoiceLink`), with what Telegram keeps of it."""

    title: str
    description: str
    payload: str
    currency: str
    prices: list[dict[str, Any]]  # LabeledPrice: label, amount (minor units)
    provider_token: str  # "" for Telegram Stars
    subscription_period: int | None = None  # createInvoiceLink, Stars only
    chat_id: int | None = None  # sendInvoice
    message_id: int | None = None
    link: str | None = None  # createInvoiceLink

    @property
    def total_amount(self) -> int:
        return sum(int(p["amount"]) for p in self.prices)


@dataclass
class Failure:
    status: int
    description: str
    method: str | None = None  # lower-case method name; None: any
    chat_id: int | None = None  # None: any chat
    retry_after: int | None = None
    times: int | None = 1  # None: for ever

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.chat_id is None or str(params.get("chat_id")) == str(self.chat_id)


@dataclass
class StandInChat:
    """A channel or group: who is in it (user id -> ChatMember status), pending join requests
    (user id -> ChatJoinRequest), its invite links, and the bot's own rights there."""

    id: int
    title: str
    type: str = "channel"  # channel | supergroup | group
    bot_rights: dict[str, bool] | None = None  # None: the bot is not an administrator
    username: str | None = None  # a public one: reachable as "@username" too
    members: dict[int, str] = field(default_factory=dict)
    join_requests: dict[int, dict[str, Any]] = field(default_factory=dict)
    invite_links: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type, "title": self.title}
        if self.username:
            out["username"] = self.username
        return out

    def can(self, right: str) -> bool:
        return bool(self.bot_rights and self.bot_rights.get(right))


@dataclass
class BotApiStandIn:
    token: str = "123456:TEST-token-for-the-stand-in"
    calls: list[ApiCall] = field(default_factory=list)
    chats: dict[int, dict[int, ChatMessage]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    missing_methods: set[str] = field(default_factory=set)
    uploads: dict[str, bytes] = field(default_factory=dict)  # files people sent: file_id -> bytes
    channels: dict[int, StandInChat] = field(default_factory=dict)  # channels and groups by id
    invoices: list[StandInInvoice] = field(default_factory=list)  # sendInvoice/createInvoiceLink
    # the bot's Stars account: StarTransaction objects in chronological order, as sent
    star_transactions: list[dict[str, Any]] = field(default_factory=list)
    pre_checkout_answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # by query id
    url: str = ""

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._new_update = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._answered = asyncio.Condition()
        # Stars charges: telegram_payment_charge_id -> (payer's user id, amount, refunded)
        self._star_charges: dict[str, list[Any]] = {}
        # editUserStarSubscription: charge id -> is_canceled, as the bot last set it
        self.star_subscriptions_canceled: dict[str, bool] = {}

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def reset(self) -> None:
        self.calls.clear()
        self.failures.clear()
        self.missing_methods.clear()
        self.channels.clear()
        self.invoices.clear()
        self.star_transactions.clear()
        self._star_charges.clear()
        self.pre_checkout_answers.clear()

    # --- test controls -----------------------------------------------------------------------
    def fail(self, status: int, description: str, *, method: str | None = None,
             chat_id: int | None = None, retry_after: int | None = None,
             times: int | None = 1) -> None:
        self.failures.append(Failure(status, description, method.lower() if method else None,
                                     chat_id, retry_after, times))

    def block(self, chat_id: int) -> None:
        """The person blocked the bot: every send to them is refused from now on."""
        self.fail(403, "Forbidden: bot was blocked by the user", chat_id=chat_id, times=None)

    def user_message(self, chat_id: int, text: str) -> ChatMessage:
        msg = ChatMessage(chat_id, next(self._ids), from_bot=False, text=text)
        self.chats.setdefault(chat_id, {})[msg.message_id] = msg
        return msg

    def user_file(self, data: bytes) -> str:
        """A file a person sends (a photo, a document): its file_id for the update; the bot
        gets it back with getFile and a download, as from Telegram."""
        file_id = f"upload{next(self._ids)}"
        self.uploads[file_id] = data
        return file_id

    async def _file(self, request: web.Request) -> web.Response:
        data = self.uploads.get(request.match_info["path"].removeprefix("files/"))
        if request.match_info["token"] != self.token or data is None:
            return web.Response(status=404)
        return web.Response(body=data)

    def post_update(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates (polling tests); returns its update_id."""
        update = {"update_id": next(self._update_ids), **update}
        self._updates.append(update)
        self._new_update.set()
        return update["update_id"]

    def messages(self, chat_id: int, *, from_bot: bool = True) -> list[ChatMessage]:
        return [m for m in self.chats.get(chat_id, {}).values() if m.from_bot == from_bot]

    def calls_of(self, method: str, since: int = 0) -> list[ApiCall]:
        return [c for c in self.calls[since:] if c.method == method.lower()]

    # --- the API -----------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"].lower()
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        file_names: dict[str, str] = {}
        for key, value in (await request.post()).items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
                file_names[key] = value.filename
            elif key in JSON_FIELDS:
                params[key] = json.loads(value)
            else:
                params[key] = value
        self.calls.append(ApiCall(method, params, files))
        for rule in self.failures:
            if rule.matches(method, params):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.failures.remove(rule)
                return _error(rule.status, rule.description, rule.retry_after)
        if method in self.missing_methods:
            return _error(404, "Not Found: method not found")
        if method == "getupdates":
            return _ok(await self._get_updates(params))
        if method == "getme":
            return _ok(BOT_USER)
        if method == "getfile" and params.get("file_id") in self.uploads:
            file_id = params["file_id"]
            return _ok({"file_id": file_id, "file_unique_id": f"u{file_id}",
                        "file_size": len(self.uploads[file_id]), "file_path": f"files/{file_id}"})
        if method in TRUE_METHODS:
            return _ok(True)
        if method in CHAT_METHODS:
            return self._chat_method(method, params)
        if method in ("sendmessage", "sendphoto", "senddocument"):
            return _ok(self._send(method, params, files, file_names))
        if method in ("editmessagetext", "editmessagereplymarkup", "editmessagecaption"):
            return self._edit(method, params)
        if method in ("sendinvoice", "createinvoicelink"):
            return self._invoice(method, params)
        if method == "answerprecheckoutquery":
            return await self._answer_pre_checkout(params)
        if method == "refundstarpayment":
            return self._refund_star_payment(params)
        if method == "getstartransactions":
            return self._get_star_transactions(params)
        if method == "edituserstarsubscription":
            return self._edit_star_subscription(params)
        return _error(404, "Not Found: method not found")

    def _send(self, method: str, params: dict[str, Any], files: dict[str, bytes],
              names: dict[str, str] | None = None) -> dict:
        names = names or {}
        chat_id = int(params["chat_id"])
        msg = ChatMessage(chat_id, next(self._ids), from_bot=True,
                          reply_markup=params.get("reply_markup"))
        if method == "sendmessage":
            msg.text = params["text"]
        elif method == "senddocument":
            document = str(params.get("document", ""))
            name = document.removeprefix("attach://")
            msg.document = files.get(name) if document.startswith("attach://") else None
            msg.document_name = names.get(name)
            msg.caption = params.get("caption")
        else:
            photo = str(params.get("photo", ""))
            # Uploads arrive as a form file named by `attach://<name>`.
            msg.photo = files.get(photo.removeprefix("attach://")) if photo.startswith(
                "attach://") else photo.encode()
            msg.caption = params.get("caption")
        self.chats.setdefault(chat_id, {})[msg.message_id] = msg
        return msg.to_api()

    def _edit(self, method: str, params: dict[str, Any]) -> web.Response:
        chat = self.chats.get(int(params.get("chat_id", 0)), {})
        msg = chat.get(int(params.get("message_id", 0)))
        if msg is None:
            return _error(400, "Bad Request: message to edit not found")
        markup = params.get("reply_markup")
        if method == "editmessagetext":
            if msg.text is None:
                return _error(400, "Bad Request: there is no text in the message to edit")
            new = (params["text"], markup)
            if new == (msg.text, msg.reply_markup):
                return _error(400, "Bad Request: message is not modified: specified new "
                                   "message content and reply markup are exactly the same")
            msg.text, msg.reply_markup = new
        elif method == "editmessagecaption":
            msg.caption, msg.reply_markup = params.get("caption"), markup
        else:
            if markup == msg.reply_markup:
                return _error(400, "Bad Request: message is not modified")
            msg.reply_markup = markup
        msg.edits += 1
        return _ok(msg.to_api())

    # --- payments (test controls) ------------------------------------------------------------
    def invoices_in(self, chat_id: int) -> list[StandInInvoice]:
        """The invoices sent to a chat with sendInvoice, oldest first."""
        return [i for i in self.invoices if i.chat_id == chat_id]

    def invoice_of_link(self, link: str) -> StandInInvoice:
        [found] = [i for i in self.invoices if i.link == link]
        return found

    def pre_checkout_update(self, user: dict[str, Any], invoice: StandInInvoice, *,
                            currency: str | None = None, total_amount: int | None = None,
                            payload: str | None = None) -> dict[str, Any]:
        """The buyer pressed Pay in the invoice: the `pre_checkout_query` update (Bot API
        PreCheckoutQuery: id, from, currency, total_amount, invoice_payload). Feed or post it,
        then `await pre_checkout_answer(id)`."""
        query = {"id": f"pcq{next(self._ids)}", "from": user,
                 "currency": currency or invoice.currency,
                 "total_amount": invoice.total_amount if total_amount is None else total_amount,
                 "invoice_payload": invoice.payload if payload is None else payload}
        return {"pre_checkout_query": query}

    async def pre_checkout_answer(self, query_id: str) -> dict[str, Any]:
        """The bot's answerPreCheckoutQuery for the query: {"ok": bool, "error_message"?}.
        Waits for it up to Telegram's limit (10 s: later the buyer's payment fails), else
        AssertionError."""
        try:
            async with asyncio.timeout(PRE_CHECKOUT_SECONDS), self._answered:
                await self._answered.wait_for(lambda: query_id in self.pre_checkout_answers)
        except TimeoutError:
            raise AssertionError(f"pre_checkout_query {query_id} not answered") from None
        return self.pre_checkout_answers[query_id]

    def successful_payment_update(
        self, user: dict[str, Any], invoice: StandInInvoice | None = None, *,
        currency: str | None = None, total_amount: int | None = None,
        payload: str | None = None, charge_id: str | None = None,
        provider_charge_id: str | None = None, is_first_recurring: bool = True,
    ) -> dict[str, Any]:
        """Telegram took the money: the service message with `successful_payment` (Bot API
        SuccessfulPayment) in the buyer's chat with the bot. `invoice` None: a forged or foreign
        one (pass currency, total_amount, payload). Stars: the bot's account gains the incoming
        StarTransaction (whether or not the update ever reaches the bot). The same update
        again (a redelivery) is the same dict: keep and feed it twice."""
        if invoice is None and (currency is None or total_amount is None or payload is None):
            raise ValueError("without an invoice pass currency, total_amount and payload")
        currency = currency or (invoice.currency if invoice else "")
        amount = total_amount if total_amount is not None else (
            invoice.total_amount if invoice else 0)
        payload = payload if payload is not None else (invoice.payload if invoice else "")
        stars = currency == "XTR"
        n = next(self._ids)
        charge = charge_id or (f"stxStandIn{n:08d}" if stars else f"tgcharge_{n:08d}")
        paid: dict[str, Any] = {
            "currency": currency, "total_amount": amount, "invoice_payload": payload,
            "telegram_payment_charge_id": charge,
            # Stars have no payment provider: Telegram sends an empty provider id
            "provider_payment_charge_id": provider_charge_id if provider_charge_id is not None
            else ("" if stars else f"ch_standin_{n:08d}"),
        }
        period = invoice.subscription_period if invoice else None
        if period:
            paid.update(subscription_expiration_date=int(time.time()) + period,
                        is_recurring=True, is_first_recurring=is_first_recurring)
        if stars:
            self.star_payment(user, amount, payload, charge, subscription_period=period)
        chat = {"id": user["id"], "type": "private", "first_name": user.get("first_name", "")}
        message = {"message_id": next(self._ids), "date": int(time.time()), "chat": chat,
                   "from": user, "successful_payment": paid}
        return {"message": message}

    def star_payment(self, user: dict[str, Any], amount: int, payload: str, charge_id: str, *,
                     subscription_period: int | None = None) -> dict[str, Any]:
        """An incoming StarTransaction: a user paid the bot's invoice in Stars."""
        source: dict[str, Any] = {"type": "user", "transaction_type": "invoice_payment",
                                  "user": user, "invoice_payload": payload}
        if subscription_period:
            source["subscription_period"] = subscription_period
        tx = {"id": charge_id, "amount": amount, "date": int(time.time()), "source": source}
        self.star_transactions.append(tx)
        self._star_charges[charge_id] = [user, amount, False]
        return tx

    # --- payments (the API) ------------------------------------------------------------------
    def _invoice(self, method: str, params: dict[str, Any]) -> web.Response:
        prices = params.get("prices") or []
        currency = str(params.get("currency", ""))
        token = str(params.get("provider_token") or "")
        if not prices or any(int(p.get("amount", 0)) <= 0 for p in prices):
            return _error(400, "Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID")
        if currency == "XTR":
            if token:
                return _error(400, "Bad Request: PAYMENT_PROVIDER_INVALID")
            if len(prices) != 1:
                return _error(400, "Bad Request: STARS_INVOICE_INVALID")
        elif not token:
            return _error(400, "Bad Request: PAYMENT_PROVIDER_INVALID")
        period = params.get("subscription_period")
        if period is not None and (method != "createinvoicelink" or currency != "XTR"
                                   or int(period) != 2592000):
            return _error(400, "Bad Request: SUBSCRIPTION_PERIOD_INVALID")
        invoice = StandInInvoice(
            title=str(params.get("title", "")), description=str(params.get("description", "")),
            payload=str(params.get("payload", "")), currency=currency, prices=prices,
            provider_token=token, subscription_period=int(period) if period else None)
        if not 1 <= len(invoice.title) <= 32 or not 1 <= len(invoice.description) <= 255:
            return _error(400, "Bad Request: invoice title or description length is invalid")
        if not 1 <= len(invoice.payload.encode()) <= 128:
            return _error(400, "Bad Request: INVOICE_PAYLOAD_INVALID")
        if method == "createinvoicelink":
            invoice.link = f"https://t.me/$standin{next(self._ids):06d}"
            self.invoices.append(invoice)
            return _ok(invoice.link)
        invoice.chat_id = int(params["chat_id"])
        msg = ChatMessage(invoice.chat_id, next(self._ids), from_bot=True,
                          reply_markup=params.get("reply_markup"),
                          invoice={"title": invoice.title, "description": invoice.description,
                                   "start_parameter": str(params.get("start_parameter") or ""),
                                   "currency": currency,
                                   "total_amount": invoice.total_amount})
        invoice.message_id = msg.message_id
        self.chats.setdefault(invoice.chat_id, {})[msg.message_id] = msg
        self.invoices.append(invoice)
        return _ok(msg.to_api())

    async def _answer_pre_checkout(self, params: dict[str, Any]) -> web.Response:
        query_id = str(params.get("pre_checkout_query_id", ""))
        ok = params.get("ok") in ("true", True)
        if not query_id.startswith("pcq") or query_id in self.pre_checkout_answers:
            return _error(400, "Bad Request: QUERY_ID_INVALID")
        if not ok and not params.get("error_message"):
            return _error(400, "Bad Request: error_message must be non-empty")
        answer: dict[str, Any] = {"ok": ok}
        if not ok:
            answer["error_message"] = params["error_message"]
        async with self._answered:
            self.pre_checkout_answers[query_id] = answer
            self._answered.notify_all()
        return _ok(True)

    def _refund_star_payment(self, params: dict[str, Any]) -> web.Response:
        charge_id = str(params.get("telegram_payment_charge_id", ""))
        charge = self._star_charges.get(charge_id)
        if charge is None or charge[0]["id"] != _int(params.get("user_id")):
            return _error(400, "Bad Request: CHARGE_NOT_FOUND")
        if charge[2]:
            return _error(400, "Bad Request: CHARGE_ALREADY_REFUNDED")
        charge[2] = True
        # a refund is an outgoing transaction with the original's id, the user its receiver
        self.star_transactions.append({
            "id": charge_id, "amount": charge[1], "date": int(time.time()),
            "receiver": {"type": "user", "transaction_type": "invoice_payment",
                         "user": charge[0]}})
        return _ok(True)

    def _edit_star_subscription(self, params: dict[str, Any]) -> web.Response:
        """editUserStarSubscription: cancel (is_canceled) or re-enable a user's Stars
        subscription, named by its payment's charge id."""
        charge_id = str(params.get("telegram_payment_charge_id", ""))
        charge = self._star_charges.get(charge_id)
        if charge is None or charge[0]["id"] != _int(params.get("user_id")):
            return _error(400, "Bad Request: CHARGE_ID_INVALID")
        canceled = str(params.get("is_canceled", "")).lower() in ("true", "1")
        self.star_subscriptions_canceled[charge_id] = canceled
        return _ok(True)

    def _get_star_transactions(self, params: dict[str, Any]) -> web.Response:
        offset = _int(params.get("offset", 0))
        limit = _int(params.get("limit", 100))
        if offset < 0 or not 1 <= limit <= 100:
            return _error(400, "Bad Request: LIMIT_INVALID")
        return _ok({"transactions": self.star_transactions[offset:offset + limit]})

    # --- channels and groups (test controls) -------------------------------------------------
    def add_chat(self, chat_id: int, title: str = "Channel", *, type: str = "channel",
                 admin: bool = True, username: str | None = None,
                 **rights: bool) -> StandInChat:
        """A channel or group. With `admin` the bot is an administrator with every right
        except those passed as False (`can_invite_users=False`); without it, just not one."""
        chat = StandInChat(chat_id, title, type, username=username)
        self.channels[chat_id] = chat
        self.set_bot_rights(chat_id, admin, **rights)
        return chat

    def set_bot_rights(self, chat_id: int, admin: bool = True, **rights: bool) -> None:
        chat = self.channels[chat_id]
        chat.bot_rights = {r: rights.get(r, True) for r in ADMIN_RIGHTS} if admin else None
        chat.members[BOT_USER["id"]] = "administrator" if admin else "left"

    def member_status(self, chat_id: int, user_id: int) -> str:
        """creator | administrator | member | restricted | left | kicked, as getChatMember."""
        return self.channels[chat_id].members.get(user_id, "left")

    def members(self, chat_id: int) -> set[int]:
        """Who is in the chat now (the bot included when it is an administrator)."""
        return {u for u, s in self.channels[chat_id].members.items() if s in IN_CHAT}

    def join_request(self, chat_id: int, user: dict[str, Any],
                     invite_link: str | None = None, bio: str | None = None) -> dict[str, Any]:
        """A person asks to join through a link that `creates_join_request`: the pending
        request is kept and the `chat_join_request` update is returned, to feed or post."""
        chat = self.channels[chat_id]
        request: dict[str, Any] = {"chat": chat.to_api(), "from": user,
                                   "user_chat_id": user["id"], "date": int(time.time())}
        if bio is not None:
            request["bio"] = bio
        if invite_link is not None:
            request["invite_link"] = chat.invite_links.get(invite_link) or {
                "invite_link": invite_link, "creator": BOT_USER, "creates_join_request": True,
                "is_primary": False, "is_revoked": False}
        chat.join_requests[user["id"]] = request
        return {"chat_join_request": request}

    # --- channels and groups (the API) -------------------------------------------------------
    def _chat_method(self, method: str, params: dict[str, Any]) -> web.Response:
        ref = str(params.get("chat_id", ""))
        chat = self.channels.get(_int(ref)) or next(
            (c for c in self.channels.values()
             if c.username and ref.lower() == f"@{c.username.lower()}"), None)
        if chat is None:
            return _error(400, "Bad Request: chat not found")
        if method == "getchat":
            return _ok({**chat.to_api(), "accent_color_id": 0, "max_reaction_count": 11,
                        "accepted_gift_types": {"unlimited_gifts": False,
                                                "limited_gifts": False,
                                                "unique_gifts": False,
                                                "premium_subscription": False,
                                                "gifts_from_channels": False}})
        user_id = _int(params.get("user_id"))
        if method == "getchatmember":
            if user_id != BOT_USER["id"] and chat.bot_rights is None:
                return _error(400, "Bad Request: member list is inaccessible")
            return _ok(self._chat_member(chat, user_id))
        if method == "createchatinvitelink":
            return self._create_invite_link(chat, params)
        right = "can_invite_users" if "joinrequest" in method else "can_restrict_members"
        if not chat.can(right):
            return _error(400, "Bad Request: not enough rights to restrict/unrestrict chat "
                               "member" if right == "can_restrict_members" else
                          "Bad Request: CHAT_ADMIN_REQUIRED")
        if method in ("approvechatjoinrequest", "declinechatjoinrequest"):
            if chat.join_requests.pop(user_id, None) is None:
                return _error(400, "Bad Request: HIDE_REQUESTER_MISSING")
            if method == "approvechatjoinrequest":
                chat.members[user_id] = "member"
            return _ok(True)
        status = chat.members.get(user_id, "left")
        if status in ("creator", "administrator") and user_id != BOT_USER["id"]:
            return _error(400, "Bad Request: user is an administrator of the chat")
        if method == "banchatmember":
            chat.members[user_id] = "kicked"
        elif status == "kicked" or params.get("only_if_banned") not in ("true", True):
            # unbanChatMember: after it the user is not in the chat but may join again
            chat.members[user_id] = "left"
        return _ok(True)

    def _chat_member(self, chat: StandInChat, user_id: int) -> dict[str, Any]:
        status = chat.members.get(user_id, "left")
        user = BOT_USER if user_id == BOT_USER["id"] else {
            "id": user_id, "is_bot": False, "first_name": "Test"}
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "administrator":
            rights = chat.bot_rights if user_id == BOT_USER["id"] else None
            member.update({"can_be_edited": False, "is_anonymous": False,
                           **{r: bool(rights and rights.get(r)) for r in ADMIN_RIGHTS}})
            if chat.type == "channel":
                member.update(can_post_messages=True, can_edit_messages=True)
        elif status == "creator":
            member["is_anonymous"] = False
        elif status == "kicked":
            member["until_date"] = 0  # for ever
        return member

    def _create_invite_link(self, chat: StandInChat, params: dict[str, Any]) -> web.Response:
        if not chat.can("can_invite_users"):
            return _error(400, "Bad Request: not enough rights to manage chat invite links")
        approval = params.get("creates_join_request") in ("true", True)
        name = params.get("name")
        if approval and params.get("member_limit") is not None:
            return _error(400, "Bad Request: member limit can't be specified for links "
                               "requiring administrator approval")
        if name is not None and len(name) > 32:
            return _error(400, "Bad Request: invite link name is too long")
        link: dict[str, Any] = {
            "invite_link": f"https://t.me/+standin{chat.id & 0xffff:x}x{next(self._ids)}",
            "creator": BOT_USER, "creates_join_request": approval, "is_primary": False,
            "is_revoked": False,
        }
        if name is not None:
            link["name"] = name
        for key in ("expire_date", "member_limit"):
            if params.get(key) is not None:
                link[key] = int(params[key])
        chat.invite_links[link["invite_link"]] = link
        return _ok(link)

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset", 0))
        timeout = float(params.get("timeout", 0))
        deadline = time.monotonic() + timeout
        while True:
            due = [u for u in self._updates if u["update_id"] >= offset]
            self._updates = due  # confirmed updates are forgotten, as Telegram does
            if due or time.monotonic() >= deadline:
                return due[:100]
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), deadline - time.monotonic())
            except TimeoutError:
                pass


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)
