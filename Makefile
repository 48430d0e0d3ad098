# Two commands on a fresh machine: `make run` starts paybot, `make test` runs every test.
# Each creates the virtualenv it needs; nothing has to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint bench messages vendor clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP) vendor
	$(BIN)/paybot run

# No Telegram token needed: a seller, a buyer and two invoices in ./.data-demo, then the pay pages.
demo: $(STAMP) vendor
	$(BIN)/paybot demo

test: $(STAMP) vendor
	$(BIN)/ruff check .
	$(BIN)/pytest

# The pay page's browser libraries (TON Connect's UI) from npm, served by paybot itself (no CDN):
# installed from web/package-lock.json into bot/web/static/vendor/; skipped when up to date.
vendor:
	bash scripts/vendor.sh

bench: $(STAMP)
	$(BIN)/python -m bench.ledger

# Texts: the keys used in the code -> bot/locales/messages.pot, merged into each language's .po
# (new keys arrive empty, unused ones become #~ entries; tests/test_i18n.py names what is missing).
messages: $(STAMP)
	$(BIN)/python -m bot.locales.extract

clean-venv:
	rm -rf $(VENV)
