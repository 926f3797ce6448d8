"""Tables and sections of the generic report layout (plans, sync results, validation, ...)."""

from __future__ import annotations

import pandas as pd

from ._cells import frame_cells
from ._chart import COLORS, bars, color

__all__ = ["table", "section", "chart_of", "COLORS"]


def table(frame: pd.DataFrame, *, caption: str = "", kinds=None, labels=None, widths=None, cells=None,
          more: str = "") -> dict:
    """A table for the ``table`` macro; every row of ``frame`` is in it."""
    columns, rows = frame_cells(frame, kinds=kinds, labels=labels, widths=widths,
                                cells=cells(frame) if callable(cells) else cells)
    return {"caption": caption, "columns": columns, "rows": rows, "more": more}


def section(label: str, frame: pd.DataFrame, *, open: bool = True, columns=None, cells=None, chip: str | None = None,
            **options) -> dict:
    """A collapsible section holding one sortable, filterable table (of ``columns`` of ``frame``;
    ``cells(frame)`` may give ready cells for some of them)."""
    ready = cells(frame) if callable(cells) else cells
    shown = frame if columns is None else frame[list(columns)]
    return {"label": label, "color": chip or color(label), "n": len(frame), "open": open,
            "table": table(shown, cells=ready, **options)}


def chart_of(counts: pd.Series, *, label: str) -> dict:
    """A bar chart of a Series of counts indexed by name."""
    return bars([(str(k), int(v)) for k, v in counts.items()], label=label)
