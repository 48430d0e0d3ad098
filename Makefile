# Two commands on a fresh machine: `make run` starts paybot, `make test` runs every test.
# Each creates the virtualenv it needs; nothing has to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint bench clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/paybot run

# No Telegram token needed: a seller, a buyer and two invoices in ./.data-demo, then the pay pages.
demo: $(STAMP)
	$(BIN)/paybot demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench.ledger

clean-venv:
	rm -rf $(VENV)
