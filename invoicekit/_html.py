"""Small shared HTML helpers for the result objects' ``_repr_html_`` and ``to_html``."""

from __future__ import annotations

import html

import pandas as pd

_STYLE = (
    "<style>body{font-family:system-ui,sans-serif;margin:2em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
    "th{background:#f3f3f3}caption{text-align:left;font-weight:bold}</style>"
)


def frame_html(frame: pd.DataFrame, *, caption: str = "", max_rows: int = 20) -> str:
    """Render a DataFrame as an HTML table (escaped), truncated to ``max_rows``."""
    shown = frame.head(max_rows)
    body = shown.to_html(index=False, escape=True, na_rep="", border=0)
    if caption:
        body = body.replace(">", f"><caption>{html.escape(caption)}</caption>", 1)
    more = "" if len(frame) <= max_rows else f"<p>… {len(frame) - max_rows:,} more rows</p>"
    return body + more


def page(title: str, body: str) -> str:
    """A standalone HTML document."""
    t = html.escape(title)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{t}</title>{_STYLE}</head>"
            f"<body><h1>{t}</h1>{body}</body></html>")
