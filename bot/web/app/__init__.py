"""The Mini App's own place, /app (opened from the bot's menu button): the seller's dashboard,
the buyer's invoices and purchases, the operator's desk. One page (shell.py) with a tab per
role the viewer has; each tab's data comes from its module's JSON routes under /app/api/.

    GET /app                    the page (templates/app.html, static/app*.js, app*.css)
    GET /app/api/me             who is asking and which tabs they get
    /app/api/seller/...         seller.py
    /app/api/buyer/...          buyer.py
    /app/api/operator/...       operator.py
"""

from __future__ import annotations

from aiohttp import web

from bot.settings import Settings
from bot.web.app import buyer, operator, seller, shell
from bot.web.app.context import AppContext
from bot.web.guard import PageGuard
from bot.web.render import Static
from bot.web.view import PayConfig
from ledger.core import Ledger


def setup_mini_app(app: web.Application, ledger: Ledger, cfg: PayConfig, static: Static,
                   guard: PageGuard, settings: Settings) -> AppContext:
    ctx = AppContext(ledger=ledger, cfg=cfg, static=static, guard=guard,
                     operators=frozenset(settings.operator.telegram_ids))
    r = app.router
    shell.setup(r, ctx)
    seller.setup(r, ctx, settings)
    buyer.setup(r, ctx, settings)
    operator.setup(r, ctx, settings)
    return ctx
