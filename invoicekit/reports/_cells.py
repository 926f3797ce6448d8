"""Display values for the reports: every column formatted in one vectorised pass.

A cell is a :class:`Cell` (``text`` shown, ``title`` on hover, ``v`` the sort key, ``cls``
CSS classes) or ``None`` for a missing value (the templates print an em dash). Money keeps
its exact decimal digits (thousands separated, never through float); quantities drop
trailing zeros; booleans read yes / no; checksums and ids are shortened with the full value
in ``title``; timestamps are UTC to the second with the full value in ``title``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Cell", "Parts", "column_parts", "cells_html", "escape_array", "column_cells", "frame_cells", "money_text",
           "with_suffix", "titled", "SHORT_HEX", "SHORT_ID"]

SHORT_HEX = 10  #: characters of a checksum shown before the ellipsis
SHORT_ID = 8  #: characters of a uuid shown before the ellipsis
ELLIPSIS = "\u2026"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Cell(NamedTuple):
    """One displayed value."""

    text: str
    title: str | None = None
    v: str | None = None
    cls: str = ""


def _arrow(values) -> pa.ChunkedArray | pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, pd.Series):
        if isinstance(values.dtype, pd.ArrowDtype):
            return pa.chunked_array([values.array.__arrow_array__()]) if len(values) else pa.array(
                [], values.dtype.pyarrow_dtype)
        values = values.astype(object).where(values.notna(), None)
        try:
            return pa.array(values.tolist(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed objects: shown as their text
            return pa.array([None if x is None else str(x) for x in values.tolist()], pa.string())
    return pa.array(values, from_pandas=True)


def _thousands(text: pa.Array) -> pa.Array:
    """``1234567.89`` -> ``1,234,567.89`` (one regex pass per group of three digits)."""
    for _ in range(7):  # int64 has at most 19 digits: six separators
        text = pc.replace_substring_regex(text, pattern=r"^(-?\d+)(\d{3})(,|\.|$)", replacement=r"\1,\2\3")
    return text


def _plain_decimal(text: pa.Array) -> pa.Array:
    """``2.500`` -> ``2.5``, ``3.000`` -> ``3`` (quantities)."""
    text = pc.replace_substring_regex(text, pattern=r"(\.\d*?)0+$", replacement=r"\1")
    return pc.replace_substring_regex(text, pattern=r"\.$", replacement="")


def _as_text(arr: pa.Array) -> pa.Array:
    """Any column as text: a cast where Arrow has one, else each value's ``str`` (nested values)."""
    try:
        return pc.cast(arr, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if x is None else str(x) for x in arr.to_pylist()], pa.string())


def _lists(*arrays) -> list[list]:
    return [a.to_pylist() if a is not None else None for a in arrays]


class Parts(NamedTuple):
    """A column's cells as arrays (for HTML built a column at a time): ``valid`` (False: a
    missing value), ``text``, ``title`` and ``v`` (None when the kind has none), ``cls``."""

    valid: pa.Array
    text: pa.Array
    title: pa.Array | None
    v: pa.Array | None
    cls: str


def column_parts(values, *, name: str = "", kind: str | None = None) -> Parts:
    """The cells of one column as arrays; see :func:`column_cells` for the kinds."""
    arr = _arrow(values)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    typ = arr.type
    kind = kind or _kind_of(arr, name)
    valid = pc.is_valid(arr)
    title = v = None
    cls = ""
    if kind == "bool":
        text = pc.if_else(arr, "yes", "no")
    elif kind == "chip":
        text = arr if pa.types.is_string(typ) or pa.types.is_large_string(typ) else pc.cast(arr, pa.string())
        v, cls = text, "chip"
    elif kind in ("money", "quantity", "int", "float"):
        cls = "num"
        raw = pc.cast(arr, pa.string())
        if kind == "float":
            raw = pc.cast(pc.round(arr, 6), pa.string())
        v = raw
        text = _thousands(_plain_decimal(raw) if kind == "quantity" else raw)
    elif kind == "ts":
        full = pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S") if pa.types.is_timestamp(typ) else pc.cast(arr, pa.string())
        text = pc.utf8_slice_codeunits(pc.replace_substring(full, "T", " "), 0, 19)
        title, v = pc.binary_join_element_wise(full, "Z", ""), full
    else:
        raw = arr if pa.types.is_string(typ) or pa.types.is_large_string(typ) else _as_text(arr)
        if kind in ("hex", "id"):
            keep = SHORT_HEX if kind == "hex" else SHORT_ID
            long = pc.greater(pc.utf8_length(raw), keep + 1)
            text = pc.if_else(long, pc.binary_join_element_wise(pc.utf8_slice_codeunits(raw, 0, keep), ELLIPSIS, ""),
                              raw)
            title, v = raw, raw
            cls = "mono"
        else:
            text = raw
    return Parts(valid, text, title, v, cls)


def column_cells(values, *, name: str = "", kind: str | None = None) -> list[Cell | None]:
    """The cells of one column. ``kind`` (``money``, ``quantity``, ``int``, ``bool``, ``ts``,
    ``hex``, ``id``, ``chip`` (a status), ``text``) is inferred from the type and the column name when not given."""
    parts = column_parts(values, name=name, kind=kind)
    valid = parts.valid.to_pylist()
    texts, titles, vs = _lists(parts.text, parts.title, parts.v)
    n = len(texts)
    titles = titles or [None] * n
    vs = vs or [None] * n
    cls = parts.cls
    return [Cell(t, ti, vv, cls) if ok else None for ok, t, ti, vv in zip(valid, texts, titles, vs)]


def escape_array(text: pa.Array) -> pa.Array:
    """Each value HTML-escaped as ``markupsafe.escape`` does it (``&<>'"``), a column at a time."""
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("'", "&#39;"), ('"', "&#34;")):
        text = pc.replace_substring(text, char, entity)
    return text


def _cat(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def cells_html(text: pa.Array, title: pa.Array, v: pa.Array, cls: pa.Array, *, extra: str = "") -> pa.Array:
    """``<td>`` elements, one per row, byte for byte what the ``td`` filter writes for the same
    cells (see ``_env._td``; not for chips), built a column at a time: ``text`` null is a missing
    value, ``title``, ``v`` null where a cell has none, ``cls`` the cell's classes ("" for none),
    ``extra`` a class added to every cell."""
    if extra:
        has = pc.match_substring_regex(cls, f"(^| ){extra}( |$)")
        cls = pc.if_else(has, cls, pc.utf8_trim_whitespace(_cat(cls, pa.scalar(" " + extra))))
    empty = pa.scalar("")
    cls_attr = pc.if_else(pc.equal(cls, ""), empty, _cat(pa.scalar(' class="'), escape_array(cls), pa.scalar('"')))
    v_attr = pc.fill_null(_cat(pa.scalar(' data-v="'), escape_array(v), pa.scalar('"')), "")
    body = escape_array(pc.fill_null(text, ""))
    titled_ = pc.fill_null(pc.not_equal(title, ""), False)
    body = pc.if_else(titled_, _cat(pa.scalar('<abbr title="'), escape_array(pc.fill_null(title, "")), pa.scalar('">'),
                                    body, pa.scalar("</abbr>")), body)
    cell = _cat(pa.scalar("<td"), cls_attr, v_attr, pa.scalar(">"), body, pa.scalar("</td>"))
    missing = f'<td class="{("na " + extra).strip()}">&mdash;</td>'
    return pc.if_else(pc.is_valid(text), cell, pa.scalar(missing))


def _kind_of(arr, name: str) -> str:
    typ = arr.type
    if pa.types.is_boolean(typ):
        return "bool"
    if pa.types.is_decimal(typ):
        return "quantity" if typ.scale > 2 else "money"
    if pa.types.is_integer(typ):
        return "int"
    if pa.types.is_floating(typ):
        return "float"
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return "ts"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        sample = [s for s in pc.drop_null(arr.slice(0, 50)).to_pylist()][:20]
        if sample and (name.endswith("checksum") or all(_HEX64.match(s) for s in sample)):
            return "hex"
        if sample and (name == "id" or name.endswith("_id")) and all(_UUID.match(s) for s in sample):
            return "id"
    return "text"


def frame_cells(frame: pd.DataFrame, *, kinds: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                widths: dict[str, str] | None = None, cells: dict[str, list] | None = None,
                ) -> tuple[list[dict], list[tuple]]:
    """(columns, rows) of a whole frame: ``columns`` as ``{"name", "num", "width"}`` dicts, ``rows``
    as tuples of cells (object columns of Decimals are shown exactly, as money). ``cells`` gives
    ready cells for some columns (e.g. from :func:`with_suffix` or :func:`titled`)."""
    kinds, labels, widths, ready = kinds or {}, labels or {}, widths or {}, cells or {}
    cols, per_col = [], []
    for name in frame.columns:
        series = frame[name]
        kind = kinds.get(name)
        cells = ready[name] if name in ready else column_cells(series, name=str(name), kind=kind)
        per_col.append(cells)
        num = kind in ("money", "quantity", "int", "float") or any(c is not None and "num" in c.cls for c in cells[:50])
        cols.append({"name": labels.get(name, str(name)), "num": num, "width": widths.get(name)})
    rows = list(zip(*per_col)) if per_col else []
    return cols, rows


def with_suffix(cells: list[Cell | None], suffix) -> list[Cell | None]:
    """The cells with a unit after each value (``1,234.50 EUR``), sort keys kept."""
    return [c if c is None else c._replace(text=f"{c.text} {s}" if isinstance(s, str) and s else c.text)
            for c, s in zip(cells, list(suffix))]


def titled(text, title, *, fallback=None) -> list[Cell | None]:
    """Cells showing ``text`` (or the shortened ``fallback`` where it is missing) with ``title`` on hover."""
    texts = column_cells(text, kind="text")
    titles = list(pd.Series(title).astype(object))
    backs = column_cells(fallback, kind="id") if fallback is not None else [None] * len(texts)
    return [(c or b)._replace(title=t if isinstance(t, str) else None) if (c or b) is not None else None
            for c, b, t in zip(texts, backs, titles)]


def money_text(amount) -> str:
    """An exact Decimal (or int) with thousands separators and its own digits."""
    return _thousands(pa.array([str(amount)])).to_pylist()[0]
