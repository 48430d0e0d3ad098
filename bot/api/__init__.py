"""The seller HTTP API (/api/v1): tokens, invoices, balance, stats, webhook settings and
callback history. `setup_api` mounts it on the app that also serves the pay page."""

from bot.api.routes import ApiConfig, mount_api, setup_api

__all__ = ["ApiConfig", "mount_api", "setup_api"]
