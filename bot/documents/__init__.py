"""Invoices as documents: a plain model (`model.py`) and its PDF (`pdf.py`)."""
