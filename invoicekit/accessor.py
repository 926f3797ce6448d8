"""The ``.ik`` pandas accessor: what an analyst does every day with ``InvoiceSet.invoices``.

Importing :mod:`invoicekit` registers it on every DataFrame::

    s = ik.read_local("data/samples/device_a.sqlite")
    inv = s.invoices

    inv.ik.live()                         # live invoices only: tombstones (deleted_at set) left out
    inv.ik.deleted()                      # the tombstones
    inv.ik.totals()                       # exact totals of live invoices by currency and month
    inv.ik.totals(by=("currency", "year"), float=True)  # the same per year, float64 to plot
    inv.ik.money(float=True).describe()   # money columns as float64: describe(), plot(), hist()
    inv.ik.as_float()                     # the whole frame, every decimal column as float64
    inv.ik.describe()                     # describe() of live money, one block per currency
    inv.ik.live().ik.lines()              # one row per line item, with its invoice's columns
    inv.ik.lines().ik.totals(value="line_total", by=("currency", "description"))

Money stays exact (``decimal128``, summed as ``decimal128(38, 2)`` so that no sum overflows)
unless a method is asked for floats (``float=True``, :meth:`InvoiceAccessor.as_float`):
floats are for plotting and descriptive statistics, never for totals you report.

Periods (``"day"``, ``"week"`` (starting Monday), ``"month"``, ``"quarter"``, ``"year"``) in
``by`` are taken from ``created_at`` (``on=`` picks another timestamp column), in UTC, and
come out as the period's first instant (``timestamp[us, tz=UTC]``), so they sort and plot.
Totals never add up different currencies: a frame holding several currencies needs
``"currency"`` in ``by`` (a :class:`~invoicekit.errors.UsageError` says so).

Every method returns a new DataFrame and leaves the frame it was called on unchanged;
filters (``live``, ``deleted``) keep the frame's index, so results align with the input.
The accessor works on any frame with the columns a method needs (an invoices frame, a
lines frame, a filtered or joined one); a missing column is a ``UsageError`` naming it.
:meth:`InvoiceSet.live() <invoicekit.schema.InvoiceSet.live>` gives a whole set (invoices,
lines, problems) without its tombstones.

>>> import pandas as pd, pyarrow as pa
>>> from decimal import Decimal
>>> import invoicekit
>>> inv = pd.DataFrame({
...     "id": ["a", "b", "c"], "currency": ["EUR", "EUR", "EUR"],
...     "total": pd.array([Decimal("10.10"), Decimal("0.20"), Decimal("5.00")],
...                       dtype=pd.ArrowDtype(pa.decimal128(12, 2))),
...     "created_at": pd.to_datetime(["2024-01-03", "2024-01-30", "2024-02-01"], utc=True),
...     "deleted_at": pd.to_datetime([None, None, "2024-02-02"], utc=True)})
>>> t = inv.ik.totals()
>>> [(str(m.date()), str(v)) for m, v in zip(t["month"], t["total"])]
[('2024-01-01', '10.30')]
>>> inv.ik.money(float=True)["total"].tolist()
[10.1, 0.2, 5.0]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import UsageError

__all__ = ["InvoiceAccessor", "PERIODS", "LINE_JOIN_COLUMNS"]

#: period names ``by`` accepts, computed from a timestamp column (``on=``)
PERIODS = ("day", "week", "month", "quarter", "year")

#: the invoice columns :meth:`InvoiceAccessor.lines` puts beside each line (those present)
LINE_JOIN_COLUMNS = ("invoice_number", "client_name", "currency", "created_at", "deleted_at")

_LINE_COLUMNS = ("line_no", "description", "quantity", "unit_price", "line_total")
_SUM_PRECISION = 38


def _arrow_type(dtype) -> pa.DataType | None:
    return dtype.pyarrow_dtype if isinstance(dtype, pd.ArrowDtype) else None


def _is_decimal(dtype) -> bool:
    t = _arrow_type(dtype)
    return t is not None and pa.types.is_decimal(t)


@pd.api.extensions.register_dataframe_accessor("ik")
class InvoiceAccessor:
    """``frame.ik``: live invoices, money as floats on request, exact totals, line items (module doc)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    # -- checks -------------------------------------------------------------------------
    def _need(self, *columns: str, method: str) -> None:
        missing = [c for c in columns if c not in self._frame.columns]
        if missing:
            raise UsageError(f".ik.{method}(): the frame lacks column(s) {', '.join(missing)}; expected the "
                             "invoices of an InvoiceSet (read_local(path).invoices) or a frame with those columns",
                             reason="missing_column")

    def _live_unless(self, include_deleted: bool) -> pd.DataFrame:
        if include_deleted or "deleted_at" not in self._frame.columns:
            return self._frame
        return self.live()

    # -- tombstones ---------------------------------------------------------------------
    def live(self) -> pd.DataFrame:
        """The rows whose ``deleted_at`` is null (live invoices; tombstones left out), index kept."""
        self._need("deleted_at", method="live")
        return self._frame[self._frame["deleted_at"].isna().to_numpy()]

    def deleted(self) -> pd.DataFrame:
        """The tombstones: rows whose ``deleted_at`` is set, index kept."""
        self._need("deleted_at", method="deleted")
        return self._frame[self._frame["deleted_at"].notna().to_numpy()]

    # -- money ----------------------------------------------------------------------------
    @property
    def decimal_columns(self) -> list[str]:
        """The exact (decimal) columns: money and quantities."""
        return [c for c, d in self._frame.dtypes.items() if _is_decimal(d)]

    @property
    def money_columns(self) -> list[str]:
        """The money columns: decimals with two places (``total``, ``unit_price``, ``line_total``, sums)."""
        return [c for c, d in self._frame.dtypes.items() if _is_decimal(d) and _arrow_type(d).scale == 2]

    def as_float(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """A copy with the decimal ``columns`` (default: all of them) as float64 (null -> NaN),
        every other column unchanged: for plotting and statistics, never for totals."""
        columns = self.decimal_columns if columns is None else list(columns)
        self._need(*columns, method="as_float")
        out = self._frame.copy(deep=False)
        for c in columns:
            out[c] = self._frame[c].astype("float64")
        return out

    def money(self, *, float: bool = False) -> pd.DataFrame:  # noqa: A002 - the option reads as what it does
        """The money columns only (index kept): exact decimals, or float64 with ``float=True``
        (``inv.ik.money(float=True).describe()``, ``.plot()``, ``.hist()``)."""
        columns = self.money_columns
        if not columns:
            raise UsageError(".ik.money(): the frame has no money column (decimal128 with two places, such as "
                             "total, unit_price, line_total)", reason="missing_column")
        return self.as_float(columns)[columns] if float else self._frame[columns]

    def describe(self, *, by: str | None = "currency", include_deleted: bool = False) -> pd.DataFrame:
        """``describe()`` of the money columns as float64, of live invoices unless
        ``include_deleted``; one block per ``by`` value (default ``currency``, when the frame
        has it: statistics across currencies mean nothing). ``by=None`` describes all together."""
        frame = self._live_unless(include_deleted)
        money = frame.ik.money(float=True)
        if by is None or (by == "currency" and "currency" not in frame.columns):
            return money.describe()
        if by not in frame.columns:
            raise UsageError(f".ik.describe(): by={by!r} is not a column of the frame", reason="missing_column")
        return money.groupby(frame[by], dropna=False, sort=True).describe()

    # -- totals ---------------------------------------------------------------------------
    def _key(self, frame: pd.DataFrame, name: str, on: str) -> pa.Array:
        if name in PERIODS and name not in frame.columns:
            stamps = pa.array(frame[on])
            if not pa.types.is_timestamp(stamps.type):
                raise UsageError(f".ik.totals(): on={on!r} is not a timestamp column", reason="bad_column")
            if stamps.type.tz is not None:
                stamps = stamps.cast(pa.timestamp(stamps.type.unit, tz="UTC"))
            return pc.floor_temporal(stamps, unit=name, week_starts_monday=True)
        if name not in frame.columns:
            raise UsageError(f".ik.totals(): by={name!r} is neither a column of the frame nor one of the periods "
                             f"{', '.join(PERIODS)}", reason="missing_column")
        return pa.array(frame[name])

    def _currencies_apart(self, frame: pd.DataFrame, by: Sequence[str]) -> None:
        if "currency" in by or "currency" not in frame.columns:
            return
        found = pc.unique(pa.array(frame["currency"]).drop_null())
        if len(found) > 1:
            shown = ", ".join(sorted(found.to_pylist()))
            raise UsageError(f".ik.totals(): the frame holds {len(found)} currencies ({shown}); totals never add "
                             "different currencies: put 'currency' in by", reason="mixed_currencies")

    def totals(self, *, by: Sequence[str] | str = ("currency", "month"), value: str = "total",
               on: str = "created_at", include_deleted: bool = False,
               float: bool = False) -> pd.DataFrame:  # noqa: A002
        """Exact sums of ``value`` per group of ``by`` (columns and/or periods of ``on``), of
        live invoices unless ``include_deleted``; one row per group, sorted by ``by``, with
        the count of rows summed (``invoices``, or ``lines`` for a lines frame) and the sum
        as ``decimal128(38, scale)``, or float64 with ``float=True``. One Arrow group-by."""
        by = [by] if isinstance(by, str) else list(by)
        if not by:
            raise UsageError(".ik.totals(): by must name at least one column or period", reason="bad_usage")
        frame = self._live_unless(include_deleted)
        frame.ik._need(value, *([on] if set(by) & set(PERIODS) else []), method="totals")
        if not _is_decimal(frame[value].dtype):
            raise UsageError(f".ik.totals(): {value!r} is not an exact (decimal) column; totals are exact",
                             reason="bad_column")
        self._currencies_apart(frame, by)
        wide = pa.decimal128(_SUM_PRECISION, _arrow_type(frame[value].dtype).scale)
        count = "lines" if "line_no" in frame.columns else "invoices"
        table = pa.table({**{k: self._key(frame, k, on) for k in by}, "__v": pa.array(frame[value]).cast(wide)})
        grouped = table.group_by(by, use_threads=False).aggregate([([], "count_all"), ("__v", "sum")])
        grouped = grouped.rename_columns([count if c == "count_all" else value if c == "__v_sum" else c
                                          for c in grouped.column_names])
        grouped = grouped.select([*by, count, value]).sort_by([(k, "ascending") for k in by])
        out = grouped.to_pandas(types_mapper=pd.ArrowDtype)
        out[count] = out[count].astype(pd.ArrowDtype(pa.int64()))
        if float:
            out[value] = out[value].astype("float64")
        return out

    # -- line items -----------------------------------------------------------------------
    def lines(self, lines: pd.DataFrame | None = None, *,
              columns: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per line item of these invoices, beside the invoice's ``columns`` (default
        :data:`LINE_JOIN_COLUMNS`, those the frame has): ``invoice_id``, the columns, then
        ``line_no``, ``description``, ``quantity``, ``unit_price``, ``line_total``.

        Without ``lines`` the frame's own ``line_items`` text is parsed (the parser the
        loaders use, one DuckDB pass over just these rows), so a filtered frame gets just
        its lines and an id present twice (two devices) keeps each row's own items. With
        ``lines`` (``InvoiceSet.lines``) those are joined on ``invoice_id`` instead."""
        frame = self._frame
        if columns is None:
            columns = [c for c in LINE_JOIN_COLUMNS if c in frame.columns]
        columns = [c for c in columns if c != "id"]
        self._need("id", *columns, method="lines")
        head = frame[["id", *columns]].rename(columns={"id": "invoice_id"})
        if lines is not None:
            if not isinstance(lines, pd.DataFrame) or "invoice_id" not in lines.columns:
                raise UsageError(".ik.lines(lines): expected a lines frame (InvoiceSet.lines) with invoice_id",
                                 reason="bad_usage")
            return head.merge(lines, on="invoice_id", how="inner", sort=False).reset_index(drop=True)
        self._need("line_items", method="lines")
        parsed = _explode(frame)
        positions = parsed.column("invoice_id").cast(pa.int64()).to_numpy()
        out = head.iloc[positions].reset_index(drop=True)
        for name in _LINE_COLUMNS:
            out[name] = parsed.column(name).to_pandas(types_mapper=pd.ArrowDtype)
        return out


def _explode(frame: pd.DataFrame) -> pa.Table:
    """The lines of ``frame``'s ``line_items``, keyed by row position (as text, in ``invoice_id``)
    and sorted by position and line number."""
    from ._normalize import explode_lines

    n = len(frame)
    optional = {name: pa.array(frame[name]) if name in frame.columns else pa.nulls(n, kind)
                for name, kind in (("source", pa.string()), ("source_row", pa.int64()))}
    items = pa.table({
        "id": pa.array(np.arange(n, dtype=np.int64)).cast(pa.string()),
        "line_items": pa.array(frame["line_items"]).cast(pa.string()),
        "source": optional["source"].cast(pa.string()),
        "source_row": optional["source_row"].cast(pa.int64()),
    })
    lines, _problems = explode_lines(items)  # the set's problems report what does not parse
    order = pc.sort_indices(pa.table({"p": lines.column("invoice_id").cast(pa.int64()),
                                      "l": lines.column("line_no")}),
                            sort_keys=[("p", "ascending"), ("l", "ascending")])
    return lines.take(order)

