"""Progress bars for long writes: a widget in Jupyter, a text bar in a terminal (tqdm)."""

from __future__ import annotations

from tqdm.auto import tqdm

#: writes of at least this many rows show a bar unless the caller says ``progress=False``
SHOW_FROM_ROWS = 100_000


def bar(*, total: int, desc: str, progress: bool | None, unit: str = "row") -> tqdm:
    """A bar over ``total`` units; shown when ``progress`` is True, or when it is None and
    ``total`` reaches :data:`SHOW_FROM_ROWS` (small writes stay quiet)."""
    show = progress if progress is not None else total >= SHOW_FROM_ROWS
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not show)
