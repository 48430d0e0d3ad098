"""Pay page texts in English and Russian. English is the fallback for every other language.

The same tables go to the browser (as JSON inside the page), so the script can switch to the
Telegram user's language without another request.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

LANGUAGES: Final = ("en", "ru")
DEFAULT: Final = "en"

TEXTS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "page_title": "Pay: {title}",
        "amount": "Amount",
        "in_ton": "In TON",
        "seller": "Seller",
        "status": "Status",
        "valid_until": "Valid until",
        "status_pending": "Awaiting payment",
        "status_paid": "Paid",
        "status_cancelled": "Cancelled",
        "status_expired": "Expired",
        "uses": "Paid {uses} times",
        "received": "Received on chain: {amount}",
        "pay_balance": "Pay from balance",
        "pay_ton": "Pay with TON",
        "your_balance": "Your balance: {amount}",
        "paid_by": "Paid by {who}",
        "paying": "Paying…",
        "paid_ok": "Payment complete. Thank you!",
        "paid_heading": "Paid — thank you!",
        "guest_heading": "Pay without logging in",
        "guest_scan": "Scan the QR code with any TON wallet, or open the link on this device.",
        "qr_alt": "QR code of the TON payment link",
        "address": "Address",
        "ton_amount": "Amount, TON",
        "comment": "Comment (required)",
        "comment_hint": "Send exactly this comment: it names this invoice and you, so the "
                        "purchase comes to you and nobody else.",
        "copy": "Copy",
        "copied": "Copied",
        "open_wallet": "Open in wallet",
        "open_tonkeeper": "Open in Tonkeeper",
        "login_heading": "Have Telegram?",
        "login_pay": "Log in and pay",
        "login_hint": "Continue in Telegram and pay from your balance in one tap.",
        "ton_unavailable": "Payment in TON is not available for this invoice.",
        "claim_heading": "Your purchase is waiting",
        "claim_text": "Open this link in Telegram to receive it. It is shown only in this "
                      "browser and works for one Telegram account: keep it private.",
        "claim_button": "Receive in Telegram",
        "claimed": "The purchase has been received.",
        "own_invoice_note": "This is your invoice: share the link with the buyer.",
        "not_found_title": "Invoice not found",
        "not_found_text": "There is no invoice with this link. Check the link or ask the "
                          "seller for a new one.",
        "cancelled_text": "The seller cancelled this invoice. Nothing can be paid here.",
        "expired_text": "This invoice has expired. Ask the seller for a new one.",
        "session_expired": "Your Telegram session has expired. Close the app and open it "
                           "again from the chat.",
        "err_auth": "Open this page from Telegram to pay from your balance.",
        "err_own_invoice": "You cannot pay your own invoice.",
        "err_already_paid": "This invoice has already been paid.",
        "err_cancelled": "The seller cancelled this invoice.",
        "err_expired": "This invoice has expired.",
        "err_not_found": "No invoice with this id.",
        "err_insufficient": "Not enough on your balance: it costs {needed}, you have "
                            "{available}. Top up in @{bot} with /balance.",
        "err_bad_request": "The request is not valid.",
        "err_rate_limited": "Too many requests. Wait a moment and try again.",
        "err_busy": "The service is busy. Try again in a few seconds.",
        "err_too_large": "The request is too large.",
        "err_too_slow": "The request took too long to arrive.",
        "err_unreadable": "The request could not be read.",
        "err_key_reused": "This payment attempt was already used for something else. "
                          "Try again.",
        "err_generic": "Something went wrong. Try again in a moment.",
        "err_retry": "We could not confirm the payment yet. Tap again: you will not be charged "
                     "twice.",
        "contact_heading": "Get your purchase by Telegram or e-mail",
        "contact_hint": "Leave a Telegram @username or an e-mail before paying: the seller "
                        "sees it with your payment. To receive the item in Telegram, open the "
                        "bot with the button: that proves the account is yours.",
        "contact_label": "@username or e-mail",
        "contact_save": "Save",
        "contact_saved": "Saved: {contact}",
        "bind_button": "Link my Telegram",
        "bound": "Linked to your Telegram account: the purchase goes there.",
        "err_contact": "Enter an e-mail address or a Telegram @username.",
        "err_unknown_tag": "This payer reference does not belong to this invoice.",
        "err_tag_taken": "This purchase is already linked to another Telegram account.",
        "err_no_guest": "Open the pay page in this browser first, then try again.",
        "topup": "Top up the balance",
        "try_again": "Try again",
        "footer": "Payments by paybot",
    },
    "ru": {
        "page_title": "Оплата: {title}",
        "amount": "Сумма",
        "in_ton": "В TON",
        "seller": "Продавец",
        "status": "Статус",
        "valid_until": "Действует до",
        "status_pending": "Ожидает оплаты",
        "status_paid": "Оплачен",
        "status_cancelled": "Отменён",
        "status_expired": "Истёк",
        "uses": "Оплат: {uses}",
        "received": "Получено в сети: {amount}",
        "pay_balance": "Оплатить с баланса",
        "pay_ton": "Оплатить в TON",
        "your_balance": "Ваш баланс: {amount}",
        "paid_by": "Оплатил(а): {who}",
        "paying": "Оплата…",
        "paid_ok": "Оплата прошла. Спасибо!",
        "paid_heading": "Оплачено — спасибо!",
        "guest_heading": "Оплата без входа",
        "guest_scan": "Отсканируйте QR-код любым TON-кошельком или откройте ссылку "
                      "на этом устройстве.",
        "qr_alt": "QR-код ссылки на оплату в TON",
        "address": "Адрес",
        "ton_amount": "Сумма, TON",
        "comment": "Комментарий (обязательно)",
        "comment_hint": "Отправьте именно этот комментарий: он называет счёт и вас, и покупка "
                        "достанется вам и никому другому.",
        "copy": "Копировать",
        "copied": "Скопировано",
        "open_wallet": "Открыть в кошельке",
        "open_tonkeeper": "Открыть в Tonkeeper",
        "login_heading": "Есть Telegram?",
        "login_pay": "Войти и оплатить",
        "login_hint": "Продолжите в Telegram и оплатите с баланса в одно касание.",
        "ton_unavailable": "Оплата в TON для этого счёта недоступна.",
        "claim_heading": "Ваша покупка ждёт вас",
        "claim_text": "Откройте эту ссылку в Telegram, чтобы получить покупку. Она видна "
                      "только в этом браузере и сработает для одного аккаунта Telegram: "
                      "никому её не показывайте.",
        "claim_button": "Получить в Telegram",
        "claimed": "Покупка получена.",
        "own_invoice_note": "Это ваш счёт: отправьте ссылку покупателю.",
        "not_found_title": "Счёт не найден",
        "not_found_text": "Счёта с такой ссылкой нет. Проверьте ссылку или попросите у "
                          "продавца новую.",
        "cancelled_text": "Продавец отменил этот счёт. Оплатить его нельзя.",
        "expired_text": "Срок действия счёта истёк. Попросите у продавца новый.",
        "session_expired": "Сессия Telegram устарела. Закройте приложение и откройте его "
                           "снова из чата.",
        "err_auth": "Откройте эту страницу в Telegram, чтобы оплатить с баланса.",
        "err_own_invoice": "Нельзя оплатить собственный счёт.",
        "err_already_paid": "Этот счёт уже оплачен.",
        "err_cancelled": "Продавец отменил этот счёт.",
        "err_expired": "Срок действия счёта истёк.",
        "err_not_found": "Счёта с таким номером нет.",
        "err_insufficient": "На балансе недостаточно средств: нужно {needed}, у вас "
                            "{available}. Пополните баланс в @{bot} командой /balance.",
        "err_bad_request": "Некорректный запрос.",
        "err_rate_limited": "Слишком много запросов. Подождите немного и попробуйте снова.",
        "err_busy": "Сервис перегружен. Попробуйте через несколько секунд.",
        "err_too_large": "Слишком большой запрос.",
        "err_too_slow": "Запрос пришёл слишком медленно.",
        "err_unreadable": "Не удалось прочитать запрос.",
        "err_key_reused": "Эта попытка оплаты уже использована для другого запроса. "
                          "Попробуйте ещё раз.",
        "err_generic": "Что-то пошло не так. Попробуйте ещё раз чуть позже.",
        "err_retry": "Не удалось подтвердить оплату. Нажмите ещё раз: дважды деньги не "
                     "спишутся.",
        "contact_heading": "Получить покупку в Telegram или по e-mail",
        "contact_hint": "Перед оплатой оставьте @имя в Telegram или e-mail: продавец увидит "
                        "его вместе с оплатой. Чтобы получить покупку в Telegram, откройте "
                        "бота по кнопке: так вы подтвердите, что аккаунт ваш.",
        "contact_label": "@имя или e-mail",
        "contact_save": "Сохранить",
        "contact_saved": "Сохранено: {contact}",
        "bind_button": "Привязать мой Telegram",
        "bound": "Привязано к вашему аккаунту Telegram: покупка придёт туда.",
        "err_contact": "Укажите адрес e-mail или @имя в Telegram.",
        "err_unknown_tag": "Эта метка плательщика не относится к этому счёту.",
        "err_tag_taken": "Эта покупка уже привязана к другому аккаунту Telegram.",
        "err_no_guest": "Сначала откройте страницу оплаты в этом браузере, затем повторите.",
        "topup": "Пополнить баланс",
        "try_again": "Попробовать снова",
        "footer": "Платежи через paybot",
    },
}


def normalize(code: str | None) -> str | None:
    """'ru-RU' -> 'ru'; None for languages we do not have."""
    lang = (code or "").strip().split("-")[0].split("_")[0].lower()
    return lang if lang in LANGUAGES else None


def from_accept_language(header: str | None) -> str:
    """The best supported language of an Accept-Language header, by quality."""
    best, best_q = DEFAULT, -1.0
    for position, part in enumerate((header or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        lang = normalize(tag)
        # Ties keep the first listed language; the position term only breaks them.
        if lang is not None and q - position * 1e-6 > best_q:
            best, best_q = lang, q - position * 1e-6
    return best


def request_language(request: web.Request) -> str:
    """?lang= wins (the Mini App passes the Telegram language), then Accept-Language."""
    return normalize(request.query.get("lang")) or from_accept_language(
        request.headers.get("Accept-Language")
    )


def t(lang: str, key: str, **params: object) -> str:
    table = TEXTS.get(lang, TEXTS[DEFAULT])
    text = table.get(key) or TEXTS[DEFAULT][key]
    return text.format(**params) if params else text
