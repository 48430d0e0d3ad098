"""The Mini App page (/app) and who-am-I (/app/api/me).

The page is the same for everyone and holds no data: the script (static/app.js) reads the
Telegram init data, asks /app/api/me which tabs this viewer gets (seller, buyer, operator) and
each tab asks its own JSON routes. Theme colours follow Telegram's theme parameters."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from bot.web.app.context import AppContext, Viewer, answer, view_route
from bot.web.i18n import request_language, t
from bot.web.render import _e, _template_text, html_response

# Files of the page, in order: the shell first, then a module per tab (each registers itself).
SCRIPTS: Final = ("texts.js", "app.js", "app-seller.js", "app-buyer.js", "app-operator.js")
STYLES: Final = ("app.css", "app-seller.css", "app-buyer.css", "app-operator.css")
# Views that open first when the Mini App is started with ?view= (the menu button, a link).
VIEWS: Final = ("seller", "buyer", "operator")


def page_html(ctx: AppContext, lang: str) -> str:
    scripts = "".join(f'<script src="{_e(ctx.static.url(name))}" defer></script>'
                      for name in SCRIPTS)
    styles = "".join(f'<link rel="stylesheet" href="{_e(ctx.static.url(name))}">'
                     for name in STYLES)
    text = _template_text("app.html")
    return (text.replace("$lang", _e(lang))
            .replace("$title", _e(t(lang, "app_title")))
            .replace("$loading", _e(t(lang, "app_loading")))
            .replace("$styles", styles)
            .replace("$scripts", scripts))


def setup(router: web.UrlDispatcher, ctx: AppContext) -> None:
    pages: dict[str, str] = {}

    async def page(request: web.Request) -> web.Response:
        lang = request_language(request)
        if lang not in pages:
            pages[lang] = page_html(ctx, lang)
        return html_response(pages[lang])

    async def me(request: web.Request, v: Viewer) -> web.Response:
        tabs = [*(["seller"] if v.seller else []), "buyer",
                *(["operator"] if v.operator else [])]
        return answer({"telegram_id": v.telegram_id, "lang": v.lang, "known": v.user_id is not None,
                       "roles": {"seller": v.seller, "buyer": True, "operator": v.operator},
                       "tabs": tabs})

    router.add_get("/app", ctx.guard.wrap(page, json_api=False, kind="read"))
    router.add_get("/app/api/me", view_route(ctx, me))
