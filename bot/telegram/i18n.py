"""Russian and English texts, chosen by the user's Telegram language; English is the fallback.

Texts are HTML (the bot's parse mode): values that come from people (titles, usernames, item
ids) are escaped by the callers before they are put in."""

from __future__ import annotations

from typing import Final

LANGUAGES: Final = ("en", "ru")
DEFAULT: Final = "en"

# key -> (English, Russian)
TEXTS: Final[dict[str, tuple[str, str]]] = {
    # --- general ----------------------------------------------------------------------------
    "start.welcome": (
        "👋 <b>paybot</b> — sell and get paid in Telegram.\n\n"
        "<b>Sellers</b>\n/invoice — issue an invoice "
        "(or <code>/invoice 12.50 Coffee beans</code>)\n"
        "/invoices — your invoices, cancel one\n/api — a token for the HTTP API\n\n"
        "<b>Everyone</b>\n/balance — balance and how to top up\n/inventory — what you bought\n"
        "/history — balance movements\n\n"
        "💵 <b>Liquid $</b> is your balance here: pay any invoice from it in one tap; sellers "
        "are paid in it. Top it up by sending TON with your personal comment: /balance shows "
        "the comment, the wallet link and the rate.",
        "👋 <b>paybot</b> — продавайте и получайте оплату в Telegram.\n\n"
        "<b>Продавцам</b>\n/invoice — выставить счёт (или <code>/invoice 12.50 Кофе</code>)\n"
        "/invoices — ваши счета, отмена\n/api — токен для HTTP API\n\n"
        "<b>Всем</b>\n/balance — баланс и пополнение\n/inventory — ваши покупки\n"
        "/history — движения по балансу\n\n"
        "💵 <b>Liquid $</b> — ваш баланс здесь: любой счёт оплачивается с него в одно касание, "
        "продавцы получают оплату на него же. Пополняется переводом TON с вашим личным "
        "комментарием: /balance покажет комментарий, ссылку для кошелька и курс.",
    ),
    "start.bad_link": (
        "This link is not valid. Ask the seller for a new one.",
        "Эта ссылка недействительна. Попросите у продавца новую.",
    ),
    "unknown": (
        "I did not understand that. /help lists what I can do.",
        "Не понял. Список команд — /help.",
    ),
    "stale_button": (
        "This button is outdated. Open the invoice again.",
        "Эта кнопка устарела. Откройте счёт заново.",
    ),
    "error.generic": (
        "Something went wrong on our side. Please try again in a minute.",
        "Что-то пошло не так на нашей стороне. Попробуйте ещё раз через минуту.",
    ),
    "cmd.start": ("Start and help", "Начало и помощь"),
    "cmd.invoice": ("Issue an invoice", "Выставить счёт"),
    "cmd.invoices": ("My invoices", "Мои счета"),
    "cmd.balance": ("Balance and top-up", "Баланс и пополнение"),
    "cmd.inventory": ("My purchases", "Мои покупки"),
    "cmd.history": ("Balance history", "История баланса"),
    "cmd.api": ("HTTP API token", "Токен HTTP API"),
    "cmd.cancel": ("Stop the current step", "Прервать текущий шаг"),
    # --- ledger errors (by LedgerError.code) --------------------------------------------------
    "err.invoice_not_found": (
        "No invoice with this id. Check the link.",
        "Счёта с таким номером нет. Проверьте ссылку.",
    ),
    "err.invoice_not_payable": ("This invoice cannot be paid.", "Этот счёт нельзя оплатить."),
    "err.invoice_already_paid": (
        "This invoice has already been paid.",
        "Этот счёт уже оплачен.",
    ),
    "err.invoice_cancelled": (
        "This invoice was cancelled by the seller.",
        "Продавец отменил этот счёт.",
    ),
    "err.invoice_expired": (
        "This invoice has expired.",
        "Срок действия счёта истёк.",
    ),
    "err.own_invoice": ("You cannot pay your own invoice.", "Нельзя оплатить собственный счёт."),
    "err.insufficient_funds": (
        "Not enough money: the invoice is {needed}, your balance is {available}. "
        "Top up with /balance.",
        "Недостаточно средств: счёт на {needed}, на балансе {available}. "
        "Пополнить — /balance.",
    ),
    "err.idempotency_key_reused": (
        "This button was already used for another payment. Open the invoice again.",
        "Эта кнопка уже использована для другого платежа. Откройте счёт заново.",
    ),
    "err.invalid_amount": ("The amount is not valid.", "Сумма указана неверно."),
    "err.not_invoice_seller": (
        "Only the seller can do this with the invoice.",
        "Это может сделать только продавец.",
    ),
    "err.invalid_invoice": ("The invoice data is not valid.", "Данные счёта неверны."),
    "err.claim_not_found": (
        "This claim link is not valid.", "Ссылка на получение недействительна."
    ),
    "err.claim_already_used": (
        "This item was already claimed by someone else.",
        "Эту покупку уже получил кто-то другой.",
    ),
    "err.tag_taken": (
        "This purchase is already linked to another Telegram account.",
        "Эта покупка уже привязана к другому аккаунту Telegram.",
    ),
    "err.unknown_tag": (
        "This payment reference is not known for this invoice.",
        "Такой метки плательщика у этого счёта нет.",
    ),
    "err.invalid_guest_key": (
        "This claim link is not valid.", "Ссылка на получение недействительна."
    ),
    "err.too_many_tokens": (
        "You already have the maximum number of active API tokens. Revoke one first.",
        "У вас уже максимум активных API-токенов. Сначала отзовите один.",
    ),
    "err.user_not_found": ("Unknown user.", "Неизвестный пользователь."),
    "err.ledger_error": ("The operation could not be completed.", "Операция не выполнена."),
    # --- amounts and titles -------------------------------------------------------------------
    "amount.not_number": (
        "“{text}” is not an amount. Send digits, like <code>12.50</code>.",
        "«{text}» — не сумма. Напишите цифрами, например <code>12.50</code>.",
    ),
    "amount.not_positive": (
        "The amount must be greater than zero.",
        "Сумма должна быть больше нуля.",
    ),
    "amount.decimals": (
        "{currency} has at most {places} digits after the point.",
        "У {currency} не больше {places} знаков после точки.",
    ),
    "amount.too_large": ("The amount is too large.", "Слишком большая сумма."),
    "amount.ambiguous": (
        "“{text}” could mean {whole} or {thousands}. Write a thousand as <code>1000</code> or "
        "<code>1 000</code>, and cents with {places} digits: <code>12.50</code>.",
        "«{text}» можно прочесть и как {whole}, и как {thousands}. Тысячу пишите "
        "<code>1000</code> или <code>1 000</code>, копейки — {places} знаками: "
        "<code>12,50</code>.",
    ),
    "title.empty": (
        "The title is empty. Send a few words.", "Название пустое. Напишите пару слов."
    ),
    "title.too_long": (
        "The title is too long: {length} characters, at most {max}.",
        "Название слишком длинное: {length} символов, можно не больше {max}.",
    ),
    "item.bad": (
        "The item id is one word of at most {max} characters.",
        "Id товара — одно слово, не длиннее {max} символов.",
    ),
    # --- /invoice -----------------------------------------------------------------------------
    "form.title": (
        "🧾 New invoice. What are you selling? Send the title.\n/cancel to stop.",
        "🧾 Новый счёт. Что продаёте? Пришлите название.\n/cancel — отменить.",
    ),
    "form.amount": (
        "How much, in {currency}? For example <code>12.50</code>.",
        "Сколько, в {currency}? Например <code>12.50</code>.",
    ),
    "form.kind": ("Who can pay it?", "Кто может оплатить?"),
    "form.kind.one_time": ("One buyer (one-time)", "Один покупатель (разовый)"),
    "form.kind.multi_use": ("Many buyers (multi-use)", "Много покупателей (многоразовый)"),
    "form.expiry": (
        "How long is it valid? Tap or send e.g. <code>12h</code> or <code>3d</code>.",
        "Сколько действует? Нажмите или напишите, например, <code>12h</code> или <code>3d</code>.",
    ),
    "form.expiry.bad": (
        "Send a duration from 1 hour up to a year, like <code>12h</code> or <code>3d</code>.",
        "Укажите срок от 1 часа до года, например <code>12h</code> или <code>3d</code>.",
    ),
    "form.item": (
        "Item id to grant the buyer (optional). Send it or tap Skip.",
        "Id товара, который получит покупатель (необязательно). Пришлите или нажмите «Пропустить».",
    ),
    "form.skip": ("Skip", "Пропустить"),
    "form.cancelled": ("Invoice not created.", "Счёт не создан."),
    "form.nothing": ("Nothing to cancel.", "Нечего отменять."),
    "form.text_only": ("Please send text.", "Пришлите, пожалуйста, текст."),
    "form.oneline.usage": (
        "Usage: <code>/invoice 12.50 Coffee beans</code> — amount first, then the title. "
        "Or just /invoice for step by step.",
        "Формат: <code>/invoice 12.50 Кофе</code> — сначала сумма, потом название. "
        "Или просто /invoice — по шагам.",
    ),
    "hours": ("{n} h", "{n} ч"),
    "days": ("{n} d", "{n} дн"),
    # --- invoice views ------------------------------------------------------------------------
    "invoice.created": (
        "🧾 <b>Invoice {number}</b> is ready\n{title} — <b>{amount}</b>{ton}\n{kind} · valid until "
        "{expires}{item}\n\nPay page: {url}\nIn Telegram: {deep}\nTON: each buyer gets a comment "
        "of their own on the pay page or in the bot; a bare <code>{comment}</code> also pays, "
        "but then nobody can prove the purchase is theirs (the operator hands it over)."
        "\n\nSend the link or show this QR. I will tell you the moment it is paid.",
        "🧾 <b>Счёт {number}</b> готов\n{title} — <b>{amount}</b>{ton}\n{kind} · действует до "
        "{expires}{item}\n\nСтраница оплаты: {url}\nВ Telegram: {deep}\nTON: каждый покупатель "
        "получит свой комментарий на странице оплаты или в боте; просто <code>{comment}</code> "
        "тоже оплатит счёт, но тогда никто не докажет, что покупка его (передаёт "
        "оператор).\n\nОтправьте ссылку или покажите QR. "
        "Я сообщу, как только его оплатят.",
    ),
    "invoice.card": (
        "🧾 <b>{title}</b>\nAmount: <b>{amount}</b>{ton}\nSeller: {seller}\nStatus: {status}\n"
        "Invoice {number}",
        "🧾 <b>{title}</b>\nСумма: <b>{amount}</b>{ton}\nПродавец: {seller}\nСтатус: {status}\n"
        "Счёт {number}",
    ),
    "invoice.yours": (
        "This is your invoice. Share it: {url}",
        "Это ваш счёт. Поделитесь ссылкой: {url}",
    ),
    "invoice.open_web": ("Pay page: {url}", "Страница оплаты: {url}"),
    "invoice.kind.one_time": ("One-time", "Разовый"),
    "invoice.kind.multi_use": ("Multi-use", "Многоразовый"),
    "invoice.item": ("\nGrants: {item}", "\nВыдаёт: {item}"),
    "status.pending": ("⏳ waiting for payment", "⏳ ожидает оплаты"),
    "status.paid": ("✅ paid", "✅ оплачен"),
    "status.cancelled": ("✖ cancelled", "✖ отменён"),
    "status.expired": ("⌛ expired", "⌛ истёк"),
    "btn.pay_balance": ("💳 Pay {amount} from balance", "💳 Оплатить {amount} с баланса"),
    "btn.pay_ton": ("💎 Pay with TON", "💎 Оплатить в TON"),
    "btn.mini_app": ("📱 Open in Mini App", "📱 Открыть в мини-приложении"),
    "btn.share": ("📤 Share", "📤 Поделиться"),
    "btn.open_page": ("🔗 Pay page", "🔗 Страница оплаты"),
    "btn.confirm": ("✅ Confirm payment", "✅ Подтвердить оплату"),
    "btn.back": ("← Back", "← Назад"),
    "btn.wallet": ("👛 Open in wallet", "👛 Открыть в кошельке"),
    "btn.top_up": ("➕ How to top up", "➕ Как пополнить"),
    "share.text": ("Pay for “{title}”: {amount}", "Оплата «{title}»: {amount}"),
    # --- paying -------------------------------------------------------------------------------
    "pay.confirm": (
        "Pay <b>{amount}</b> for <b>{title}</b>?\nYour balance: {balance}",
        "Оплатить <b>{amount}</b> за <b>{title}</b>?\nВаш баланс: {balance}",
    ),
    "pay.short": (
        "Not enough money for <b>{title}</b>: it is {amount}, your balance is {balance}.\n\n"
        "{top_up}",
        "Не хватает средств на <b>{title}</b>: счёт на {amount}, на балансе {balance}.\n\n{top_up}",
    ),
    "pay.done": (
        "✅ <b>Paid</b> {amount} for <b>{title}</b>.{granted}\nBalance now: {balance}",
        "✅ <b>Оплачено</b> {amount} за <b>{title}</b>.{granted}\nБаланс: {balance}",
    ),
    "pay.done.alert": ("Paid ✅", "Оплачено ✅"),
    "pay.replayed.alert": (
        "Already paid with this button — you were charged once.",
        "Уже оплачено этой кнопкой — списание было одно.",
    ),
    "pay.retry": (
        "We could not confirm the payment yet. Tap Confirm again: you will not be charged twice.",
        "Не удалось подтвердить оплату. Нажмите «Подтвердить» ещё раз: дважды не спишется.",
    ),
    "pay.granted": ("\nYou received: {items}", "\nВы получили: {items}"),
    "pay.ton": (
        "💎 Pay <b>{ton}</b> for <b>{title}</b>\nTo: <code>{address}</code>\n"
        "Comment (required): <code>{comment}</code>\n\nWallet link: {link}\n"
        "The invoice turns paid as soon as the transfer is seen on chain.",
        "💎 Оплатите <b>{ton}</b> за <b>{title}</b>\nАдрес: <code>{address}</code>\n"
        "Комментарий (обязательно): <code>{comment}</code>\n\nСсылка для кошелька: {link}\n"
        "Счёт станет оплаченным, как только перевод появится в сети.",
    ),
    "pay.ton.unavailable": (
        "TON payments are not available for this invoice.",
        "Оплата в TON для этого счёта недоступна.",
    ),
    "grant.item": ("🎁 {id}", "🎁 {id}"),
    "grant.achievement": ("🏆 {id}", "🏆 {id}"),
    # --- claims -------------------------------------------------------------------------------
    "claim.done": ("🎁 It is yours now:{granted}", "🎁 Теперь это ваше:{granted}"),
    "claim.nothing": (" the payment (no item attached).", " оплата (без товара)."),
    "claim.bound": (
        "✅ Linked to your Telegram account. Pay with the comment <code>{comment}</code> and the "
        "purchase comes to you here (see /inventory).",
        "✅ Привязано к вашему аккаунту Telegram. Оплатите с комментарием <code>{comment}</code>, "
        "и покупка придёт вам сюда (см. /inventory).",
    ),
    # --- /invoices ----------------------------------------------------------------------------
    "invoices.title": ("Your invoices:", "Ваши счета:"),
    "invoices.empty": (
        "You have no invoices yet. Issue one with /invoice.",
        "Счетов пока нет. Выставить — /invoice.",
    ),
    "invoices.line": ("{number} · {title} · {amount} · {status}",
                      "{number} · {title} · {amount} · {status}"),
    "invoices.uses": (" ({uses} paid)", " (оплат: {uses})"),
    "invoices.by": (" · by {payer}", " · оплатил {payer}"),
    "btn.cancel_invoice": ("✖ Cancel {number}", "✖ Отменить {number}"),
    "btn.cancel_yes": ("Yes, cancel it", "Да, отменить"),
    "btn.older": ("Older →", "Раньше →"),
    "cancel.confirm": (
        "Cancel {number} “{title}”? Nobody will be able to pay it.",
        "Отменить {number} «{title}»? Его больше нельзя будет оплатить.",
    ),
    "cancel.done": ("Invoice {number} cancelled.", "Счёт {number} отменён."),
    # --- balance, inventory, history ----------------------------------------------------------
    "balance": ("💰 Balance: <b>{amount}</b>", "💰 Баланс: <b>{amount}</b>"),
    "balance.other": ("\nAlso: {amount}", "\nЕщё: {amount}"),
    "balance.liquid": (
        "\n<i>Liquid $ is paybot's own money: invoices are paid from it in one tap and sales "
        "are credited to it. You add to it with TON, as below.</i>",
        "\n<i>Liquid $ — внутренние деньги paybot: счета оплачиваются с них в одно касание, "
        "продажи зачисляются на них же. Пополнить можно через TON, как описано ниже.</i>",
    ),
    "top_up": (
        "To top up, send TON to <code>{address}</code> with the comment "
        "<code>{comment}</code> (yours alone; without it the money cannot be matched).{rate}"
        "\nWallet link: {link}",
        "Чтобы пополнить, отправьте TON на <code>{address}</code> с комментарием "
        "<code>{comment}</code> (он только ваш; без него платёж не найти).{rate}"
        "\nСсылка для кошелька: {link}",
    ),
    "top_up.rate": (" 1 TON = {rate} {symbol}.", " 1 TON = {rate} {symbol}."),
    "top_up.unavailable": (
        "Top-ups by TON are not configured yet. Your personal comment is <code>{comment}</code>.",
        "Пополнение через TON пока не настроено. Ваш личный комментарий: <code>{comment}</code>.",
    ),
    "inventory.title": ("🎒 Your purchases:", "🎒 Ваши покупки:"),
    "inventory.empty": ("Nothing here yet.", "Пока пусто."),
    "inventory.line": ("{what} — {date}", "{what} — {date}"),
    "inventory.bought": ("{what} — {deal} · {date}", "{what} — {deal} · {date}"),
    "history.guest": ("guest", "гость"),
    "history.title": ("📜 Latest movements ({symbol}):", "📜 Последние движения ({symbol}):"),
    "history.empty": ("No movements yet.", "Движений пока нет."),
    "history.pending": (" (being applied)", " (зачисляется)"),
    "kind.invoice_payment": ("invoice payment", "оплата счёта"),
    "kind.external_payment": ("payment received", "поступление оплаты"),
    "kind.deposit": ("top-up", "пополнение"),
    "kind.adjustment": ("adjustment", "корректировка"),
    "kind.excess": ("overpayment", "переплата"),
    "kind.suspense": ("held transfer", "задержанный перевод"),
    "kind.release": ("released transfer", "выпущенный перевод"),
    # --- /api ---------------------------------------------------------------------------------
    "api.token": (
        "🔑 Your API token (shown once; keep it secret):\n<code>{token}</code>\n"
        "Send it as <code>Authorization: Bearer …</code>.",
        "🔑 Ваш API-токен (показывается один раз, храните в секрете):\n<code>{token}</code>\n"
        "Передавайте его в заголовке <code>Authorization: Bearer …</code>.",
    ),
    "api.list": (
        "🔑 <b>API tokens</b> for the HTTP API ({count} of {max} active):",
        "🔑 <b>API-токены</b> для HTTP API (активных: {count} из {max}):",
    ),
    "api.none": (
        "🔑 You have no API tokens. A token lets your shop's backend issue invoices over the "
        "HTTP API.",
        "🔑 У вас нет API-токенов. Токен позволяет бэкенду вашего магазина выставлять счета "
        "через HTTP API.",
    ),
    "api.line": ("• <code>{hint}…</code> — created {created}, last used {used}",
                 "• <code>{hint}…</code> — создан {created}, использован {used}"),
    "api.never": ("never", "ни разу"),
    "api.full": (
        "That is the most you may hold: revoke one below to get a new one.",
        "Больше держать нельзя: отзовите один ниже, чтобы получить новый.",
    ),
    "api.revoke_confirm": (
        "Revoke <code>{hint}…</code>? Requests with it stop working within seconds; this "
        "cannot be undone.",
        "Отозвать <code>{hint}…</code>? Запросы с ним перестанут работать через несколько "
        "секунд; отменить это нельзя.",
    ),
    "api.revoked": ("Token {hint}… revoked.", "Токен {hint}… отозван."),
    "api.not_active": (
        "That token is not active any more.",
        "Этот токен уже не действует.",
    ),
    "btn.api_new": ("➕ New token", "➕ Новый токен"),
    "btn.api_revoke": ("✖ Revoke {hint}…", "✖ Отозвать {hint}…"),
    "btn.api_revoke_yes": ("Yes, revoke it", "Да, отозвать"),
    "api.unavailable": (
        "API tokens are not available yet.",
        "API-токены пока недоступны.",
    ),
    # --- notifications ------------------------------------------------------------------------
    "notify.seller": (
        "💰 <b>Paid:</b> {title} ({number}) — <b>{amount}</b>\nBy {payer}, {method}.",
        "💰 <b>Оплачено:</b> {title} ({number}) — <b>{amount}</b>\nПлательщик: {payer}, {method}.",
    ),
    "notify.buyer": (
        "🧾 <b>Receipt:</b> {title} ({number}) — {amount}, {method}.{granted}",
        "🧾 <b>Чек:</b> {title} ({number}) — {amount}, {method}.{granted}",
    ),
    "notify.guest": ("a guest without a Telegram account", "гость без аккаунта Telegram"),
    "notify.guest_contact": ("a guest ({contact})", "гость ({contact})"),
    "notify.credited": (
        "💳 <b>Balance credited:</b> +{amount} ({why}).",
        "💳 <b>Баланс пополнен:</b> +{amount} ({why}).",
    ),
    "credit.deposit": ("TON deposit", "пополнение в TON"),
    "credit.excess": ("overpayment returned to your balance", "переплата зачислена на баланс"),
    "credit.other": ("credited by the operator", "зачислено оператором"),
    "method.internal": ("from balance", "с баланса"),
    "method.ton": ("by TON transfer", "переводом TON"),
    "method.manual": ("manual payment", "ручной платёж"),
}


def language_of(code: str | None) -> str:
    """'ru', 'ru-RU' -> 'ru'; anything unsupported or missing -> English."""
    lang = (code or DEFAULT).split("-")[0].lower()
    return lang if lang in LANGUAGES else DEFAULT


class Translator:
    """`tr("key", name=value)` in one language. Missing keys show the key (never crash)."""

    __slots__ = ("_index", "lang")

    def __init__(self, lang: str) -> None:
        self.lang = language_of(lang)
        self._index = LANGUAGES.index(self.lang)

    def __call__(self, key: str, /, **values: object) -> str:
        pair = TEXTS.get(key)
        text = pair[self._index] if pair else key
        return text.format(**values) if values else text


_TRANSLATORS: Final = {lang: Translator(lang) for lang in LANGUAGES}


def translator(code: str | None) -> Translator:
    return _TRANSLATORS[language_of(code)]
