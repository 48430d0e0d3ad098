"""The web half: the /pay/<id> page (Mini App and plain browser), its JSON API and QR images."""

from bot.web.routes import setup_pay_pages

__all__ = ["setup_pay_pages"]
