"""Cards in a plain browser: Stripe Checkout and YooKassa for the /pay/<id> page, their
webhooks and the verify fallback (routes.py)."""

from bot.web.cards.routes import CARDS, CardCheckouts, setup_card_checkout

__all__ = ["CARDS", "CardCheckouts", "setup_card_checkout"]
