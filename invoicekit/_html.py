"""Shared HTML helpers for the result objects' ``_repr_html_`` and ``to_html``: every table in
the reports' look (see :mod:`invoicekit.reports`): values escaped, numbers right-aligned and
exact, booleans as yes / no, missing values as an em dash, checksums and ids shortened with
the full value on hover."""

from __future__ import annotations

import pandas as pd

__all__ = ["frame_html", "page"]


def frame_html(frame: pd.DataFrame, *, caption: str = "", max_rows: int = 20) -> str:
    """A DataFrame as an HTML table (escaped), the first ``max_rows`` rows and a note of the rest."""
    from .reports import frame_table

    return frame_table(frame, caption=caption, max_rows=max_rows)


def page(title: str, body: str) -> str:
    """A standalone HTML document around ``body`` (markup the caller built, values escaped)."""
    from .reports import page_html

    return page_html(title, body)
