"""HTML reports with one look: Jinja templates shipped in the package, autoescape on, CSS and a
small vanilla-JS filter and sort embedded (no CDN, no network: the files work offline).

``to_html`` writes the complete report (every row); ``_repr_html_`` uses the compact view
(summary, the first rows, a note saying how to get the rest) and carries no script.
"""

from __future__ import annotations

import os

from ._env import render

__all__ = ["reconcile_html", "plan_html", "sync_result_html", "validation_html", "duplicates_html", "render_html",
           "frame_table", "page_html", "write", "COMPACT_ROWS"]

#: rows a compact (notebook) view lists before its note
COMPACT_ROWS = 20


def reconcile_html(rec, *, standalone: bool = True, limit: int | None = None) -> str:
    """The reconcile report of ``rec``: complete when ``standalone`` (a page), else compact."""
    from ._reconcile import reconcile_context

    if not standalone and limit is None:
        limit = COMPACT_ROWS
    ctx = reconcile_context(rec, limit=limit)
    return render("reconcile.html", title="Reconciliation", name="Reconciliation", standalone=standalone,
                  script=standalone, **ctx)


def _generic(context: dict, standalone: bool) -> str:
    return render("generic.html", standalone=standalone, script=standalone, **context)


def plan_html(plan, *, standalone: bool = True, limit: int | None = None) -> str:
    """The report of a :class:`~invoicekit.sync.SyncPlan`: every operation when ``standalone``."""
    from ._sync import plan_context

    if not standalone and limit is None:
        limit = COMPACT_ROWS
    return _generic(plan_context(plan, limit=limit), standalone)


def sync_result_html(result, *, standalone: bool = True, limit: int | None = None) -> str:
    """The report of a :class:`~invoicekit.sync.SyncResult`: every operation when ``standalone``."""
    from ._sync import sync_result_context

    if not standalone and limit is None:
        limit = COMPACT_ROWS
    return _generic(sync_result_context(result, limit=limit), standalone)


def _context_html(name: str, obj, standalone: bool, limit: int | None) -> str:
    from . import _others

    if not standalone and limit is None:
        limit = COMPACT_ROWS
    return _generic(getattr(_others, f"{name}_context")(obj, limit=limit), standalone)


def validation_html(report, *, standalone: bool = True, limit: int | None = None) -> str:
    """The report of a :class:`~invoicekit.validate.ValidationReport`: every problem when ``standalone``."""
    return _context_html("validation", report, standalone, limit)


def duplicates_html(pairs, *, standalone: bool = True, limit: int | None = None) -> str:
    """The report of :class:`~invoicekit.dedupe.DuplicatePairs`: every pair when ``standalone``."""
    return _context_html("duplicates", pairs, standalone, limit)


def render_html(result, *, standalone: bool = True, limit: int | None = None) -> str:
    """The report of a :class:`~invoicekit.render.RenderResult`: every file when ``standalone``."""
    return _context_html("render", result, standalone, limit)


def frame_table(frame, *, caption: str = "", max_rows: int | None = None) -> str:
    """A DataFrame as one table in the reports' look (the first ``max_rows`` rows, then a note)."""
    from ._table import table

    shown = frame if max_rows is None else frame.head(max_rows)
    more = "" if len(shown) == len(frame) else f"\u2026 {len(frame) - len(shown):,} more rows"
    return render("frame.html", t=table(shown, caption=caption, more=more))


def page_html(title: str, body: str) -> str:
    """A standalone page in the reports' look around ``body`` (already-escaped markup)."""
    css = render("frame.html", t={"caption": "", "columns": [], "rows": [], "more": ""})
    style = css[css.index("<style>"):css.index("</style>") + len("</style>")]
    body = body.replace(style, "")  # each table carries the look for a notebook; a page needs it once
    return render("page.html", title=title, name=title, subtitle="", standalone=True, script=False, body=body)


def write(path: str | os.PathLike, html: str) -> None:
    """Write ``html`` to ``path`` (UTF-8)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(html)
