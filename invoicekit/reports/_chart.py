"""Inline SVG bar charts, computed here and drawn by the ``chart`` macro (no JavaScript)."""

from __future__ import annotations

__all__ = ["bars", "COLORS"]

#: one colour per status, kind and outcome across every report
COLORS = {
    "same": "#6e7781", "central_only": "#8250df", "local_only": "#1a7f37", "local_ahead": "#0969da",
    "central_ahead": "#1b7c83", "conflict": "#cf222e", "deleted_local": "#bc4c00", "deleted_central": "#9a6700",
    "push": "#0969da", "pull": "#1b7c83", "flag_conflict": "#cf222e", "quarantine": "#bc4c00",
    "applied": "#1a7f37", "already_applied": "#6e7781", "not_needed": "#8c959f", "local_changed": "#bc4c00",
    "skipped": "#8c959f", "error": "#cf222e", "warning": "#9a6700", "failed": "#cf222e", "rendered": "#1a7f37",
    "skip": "#8250df", "merge": "#0969da", "review": "#9a6700", "keep_both": "#1a7f37",
}
_DEFAULT = "#57606a"


def color(name: str) -> str:
    """The colour of a status, kind or outcome."""
    return COLORS.get(name, _DEFAULT)


def bars(items: list[tuple[str, int]], *, label: str, width: int = 560, left: int = 130) -> dict:
    """Geometry of a horizontal bar chart of ``(name, count)`` items (counts are integers)."""
    span = width - left - 70
    top = max((n for _, n in items), default=0) or 1
    rows = [{"label": name, "text": f"{n:,}", "y": 4 + 22 * i, "w": round(span * n / top, 1) if n else 0,
             "color": color(name)} for i, (name, n) in enumerate(items)]
    return {"bars": rows, "width": width, "left": left, "height": 8 + 22 * len(rows), "label": label}
