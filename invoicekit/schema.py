"""The canonical invoice data model: :class:`InvoiceSet` and its column types.

An ``InvoiceSet`` holds two pandas DataFrames whose columns are all
pyarrow-backed (``pd.ArrowDtype``), so they move to and from DuckDB and Arrow
without copies and money stays exact:

``invoices`` (one row per invoice)
    ===============  ==========================  ===============================================
    column           dtype                        meaning
    ===============  ==========================  ===============================================
    id               string                       globally unique id (UUID text on devices)
    invoice_number   string                       human invoice number
    client_name      string                       parsed from ``client_data``
    client_email     string                       parsed from ``client_data``
    client_address   string                       parsed from ``client_data``
    client_tax_id    string                       parsed from ``client_data``
    client_data      string                       client JSON text exactly as stored (checksummed)
    line_items       string                       line-item JSON text exactly as stored (checksummed)
    currency         string                       ISO 4217 code
    total            decimal128(12, 2)            invoice total, exact
    created_at       timestamp[us, tz=UTC]        creation time
    modified_at      timestamp[us, tz=UTC]        last modification
    version          int64                        optimistic-concurrency version, starts at 1
    sync_status      string                       pending / syncing / synced / conflict / error
    checksum         string                       stored SHA-256 hex (see :mod:`invoicekit.integrity`)
    deleted_at       timestamp[us, tz=UTC]        tombstone time; null while the invoice lives
    source           string                       file or URL the row was read from
    source_row       int64                        row in that source (SQLite rowid, 1-based line)
    ===============  ==========================  ===============================================

``lines`` (one row per line item)
    ``invoice_id`` string, ``line_no`` int32 (1-based position in ``line_items``),
    ``description`` string, ``quantity`` decimal128(12, 3), ``unit_price`` decimal128(12, 2),
    ``line_total`` decimal128(12, 2) = quantity x unit_price rounded half away from zero
    to the cent.

Money is never float64: amounts are ``decimal128`` with two decimal places, which is
what both the offline schema (``DECIMAL(10,2)``) and the central one (``NUMERIC(12,2)``)
hold.  ``problems`` lists what the loader could not parse (see
:func:`invoicekit.validate`).
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._html import frame_html, page
from .errors import UsageError

__all__ = ["InvoiceSet", "INVOICE_SCHEMA", "LINE_SCHEMA", "PROBLEM_SCHEMA", "MONEY", "QUANTITY"]

MONEY = pa.decimal128(12, 2)
QUANTITY = pa.decimal128(12, 3)
TS = pa.timestamp("us", tz="UTC")

INVOICE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("invoice_number", pa.string()),
        ("client_name", pa.string()),
        ("client_email", pa.string()),
        ("client_address", pa.string()),
        ("client_tax_id", pa.string()),
        ("client_data", pa.string()),
        ("line_items", pa.string()),
        ("currency", pa.string()),
        ("total", MONEY),
        ("created_at", TS),
        ("modified_at", TS),
        ("version", pa.int64()),
        ("sync_status", pa.string()),
        ("checksum", pa.string()),
        ("deleted_at", TS),
        ("source", pa.string()),
        ("source_row", pa.int64()),
    ]
)

LINE_SCHEMA = pa.schema(
    [
        ("invoice_id", pa.string()),
        ("line_no", pa.int32()),
        ("description", pa.string()),
        ("quantity", QUANTITY),
        ("unit_price", MONEY),
        ("line_total", MONEY),
    ]
)

PROBLEM_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("source_row", pa.int64()),
        ("id", pa.string()),
        ("rule", pa.string()),
        ("field", pa.string()),
        ("value", pa.string()),
        ("message", pa.string()),
    ]
)


def to_frame(table: pa.Table, schema: pa.Schema) -> pd.DataFrame:
    """Arrow table -> DataFrame with exactly ``schema``'s columns and ArrowDtypes."""
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise UsageError(f"table lacks column(s) {missing}; expected {schema.names}")
    table = table.select(schema.names).cast(schema)
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def to_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """DataFrame -> Arrow table cast to ``schema`` (raises naming missing columns)."""
    missing = [n for n in schema.names if n not in frame.columns]
    if missing:
        raise UsageError(f"frame lacks column(s) {missing}; expected {schema.names}")
    table = pa.Table.from_pandas(frame[schema.names], preserve_index=False)
    return table.cast(schema)


def empty(schema: pa.Schema) -> pd.DataFrame:
    """An empty DataFrame with ``schema``'s columns and dtypes."""
    return to_frame(schema.empty_table(), schema)


def merge_problems(*tables: pa.Table, sources: pa.ChunkedArray | pa.Array | None = None) -> pd.DataFrame:
    """Problem tables stacked in the loaders' order: by source, source row, field.

    ``sources`` (the rows' sources, in the set's order) orders the sources by first
    appearance instead of by name, as stacked sets keep them (a set's own sources, e.g. a
    store and its ``#sync_queue``, appear in name order)."""
    merged = pa.concat_tables([t.select(PROBLEM_SCHEMA.names).cast(PROBLEM_SCHEMA) for t in tables])
    keys = [("source", "ascending"), ("source_row", "ascending"), ("field", "ascending")]
    if sources is not None and merged.num_rows:
        order = pc.unique(sources)  # in order of first appearance
        rank = pc.fill_null(pc.index_in(merged.column("source"), value_set=order), len(order))
        merged = merged.append_column("_rank", rank)
        keys.insert(0, ("_rank", "ascending"))
    merged = merged.sort_by(keys)  # a stable sort
    return to_frame(merged, PROBLEM_SCHEMA)


def _mask(n: int, rows) -> pa.Array:
    """A boolean mask of ``n`` rows, true at ``rows``."""
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return pa.array(mask)


def _rebuild(invoices, lines, problems, base, pending) -> "InvoiceSet":
    return InvoiceSet(invoices, lines, problems, base, pending_lines=pending)


def _disjoint_sources(tables: list[pa.Table]) -> bool:
    """No ``source`` value is in two of ``tables`` (one store read twice is)."""
    if len(tables) < 2:
        return True
    distinct = [pc.unique(t.column("source")) for t in tables]
    return pc.count_distinct(pa.chunked_array(distinct, pa.string()), mode="all").as_py() == sum(map(len, distinct))


class _Deferred:
    """A value made on first use, once, under a lock; the sets derived from one set share it."""

    __slots__ = ("_make", "_value", "_lock")

    def __init__(self, make) -> None:
        self._make, self._value, self._lock = make, None, threading.Lock()

    @property
    def pending(self) -> bool:
        return self._make is not None

    def get(self):
        with self._lock:
            if self._make is not None:
                self._value = self._make()
                self._make = None  # dropped: what it captured (e.g. raw rows) is freed
            return self._value


class InvoiceSet:
    """Invoices and their line items, in the canonical column types (see module doc).

    Build one with a loader (:func:`invoicekit.read_local`, :func:`invoicekit.read_central`),
    from :mod:`invoicekit.samples`, or with :meth:`from_frames`. An ``InvoiceSet`` is
    immutable and nothing in the toolkit mutates one: every step returns a new one.

    Loaders defer the ``lines`` frame: it is parsed from the ``line_items`` text (captured
    when the set was loaded) on first access of :attr:`lines` or :attr:`problems`, once,
    and :meth:`lines_of` parses just the invoices asked for. The result is the same as an
    eager parse; only its cost moves to where it is needed.
    """

    __slots__ = ("invoices", "_lines", "_problems", "_pending", "_lock", "_base")

    def __init__(self, invoices: pd.DataFrame, lines: pd.DataFrame | None = None,
                 problems: pd.DataFrame | None = None, base: "InvoiceSet | None" = None, *,
                 pending_lines: pa.Table | None = None) -> None:
        if lines is not None and pending_lines is not None:
            raise UsageError("give lines or pending_lines, not both")
        set_ = object.__setattr__
        set_(self, "invoices", invoices)
        set_(self, "_lines", lines if lines is not None or pending_lines is not None else empty(LINE_SCHEMA))
        set_(self, "_problems", problems if problems is not None else empty(PROBLEM_SCHEMA))
        #: (id, line_items, source, source_row) still to explode into lines, or None
        set_(self, "_pending", pending_lines)
        set_(self, "_lock", threading.Lock())
        #: the last-synced snapshot (see :attr:`base`): an InvoiceSet, None, or a _Deferred one
        set_(self, "_base", base)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"InvoiceSet is immutable (cannot set {name!r})")

    def _state(self) -> tuple:
        """(invoices, lines, problems, base, pending) read together, never half-resolved
        (a deferred base is passed on as it is, to be made once for every set sharing it)."""
        with self._lock:
            return self.invoices, self._lines, self._problems, self._base, self._pending

    def __reduce__(self):  # pickle, copy and deepcopy (the lock is not part of the state)
        invoices, lines, problems, _, pending = self._state()
        return _rebuild, (invoices, None if pending is not None else lines, problems, self.base, pending)

    @property
    def base(self) -> "InvoiceSet | None":
        """The last-synced snapshot of each invoice, where the store records one (the toolkit's
        own offline stores do, in ``invoicekit_base``); reconcile uses it for exact three-way
        comparisons. ``None`` for stores that record none. A loader may defer it: its rows
        are read with the store's, and parsed on first access, once (thread-safe)."""
        base = self._base
        return base.get() if isinstance(base, _Deferred) else base

    @property
    def base_deferred(self) -> bool:
        """True while the base snapshot waits to be parsed."""
        return isinstance(self._base, _Deferred) and self._base.pending

    def _resolve(self) -> None:
        with self._lock:
            if self._pending is None:
                return
            from ._normalize import explode_lines

            lines, problems = explode_lines(self._pending)
            object.__setattr__(self, "_lines", to_frame(lines, LINE_SCHEMA))
            object.__setattr__(self, "_problems", merge_problems(to_table(self._problems, PROBLEM_SCHEMA), problems,
                                                                 sources=self._pending.column("source")))
            object.__setattr__(self, "_pending", None)

    @property
    def lines(self) -> pd.DataFrame:
        """One row per line item (parsed on first access when the loader deferred it)."""
        if self._pending is not None:
            self._resolve()
        return self._lines

    @property
    def problems(self) -> pd.DataFrame:
        """What the loader could not parse: source, source_row, id, rule, field, value, message."""
        if self._pending is not None:
            self._resolve()
        return self._problems

    @property
    def lines_deferred(self) -> bool:
        """True while the line items wait to be parsed."""
        return self._pending is not None

    def lines_of(self, ids) -> pa.Table:
        """The lines (Arrow, :data:`LINE_SCHEMA`) of the invoices in ``ids`` only: a deferred
        set parses just those invoices' ``line_items``."""
        if isinstance(ids, (pa.Array, pa.ChunkedArray)) and pa.types.is_string(ids.type):
            ids = pc.unique(ids.drop_null())  # Arrow ids stay Arrow (no Python strings)
            if isinstance(ids, pa.ChunkedArray):
                ids = ids.combine_chunks()
        else:
            if isinstance(ids, (set, frozenset)):
                ids = list(ids)
            ids = pa.array(pd.Series(ids, dtype="object").dropna().astype(str).unique(), pa.string())
        pending = self._pending
        if pending is None:
            table = self.lines_table()
            return table.filter(pc.is_in(table.column("invoice_id"), value_set=ids))
        from ._normalize import explode_lines

        # the problems are not wanted here (the set's own come from a full parse)
        lines, _ = explode_lines(pending.filter(pc.is_in(pending.column("id"), value_set=ids)), problems=False)
        return lines.select(LINE_SCHEMA.names).cast(LINE_SCHEMA)

    def _lines_at(self, rows, ids: pa.ChunkedArray | pa.Array) -> pa.Table:
        """:meth:`lines_of` the invoices at ``rows`` (positions in :attr:`invoices`), given
        ``ids``, the invoices' id column, where the ids at ``rows`` are on no other row. A
        deferred set whose line items wait in its invoices' own rows and order (as the loaders
        keep them) picks those rows by position, without looking the ids up."""
        pending = self._pending
        whole = ids if isinstance(ids, pa.ChunkedArray) else pa.chunked_array([ids])
        if (pending is None or pending.num_rows != len(ids) or len(self.invoices) != len(ids)
                or not pending.column("id").equals(whole)):
            return self.lines_of(pc.filter(ids, _mask(len(ids), rows)))
        from ._normalize import explode_lines

        lines, _ = explode_lines(pending.filter(_mask(len(ids), rows)), problems=False)
        return lines.select(LINE_SCHEMA.names).cast(LINE_SCHEMA)

    def _shown_counts(self) -> tuple[int, int]:
        """(lines, problems) for display, without parsing deferred line items: a deferred set
        counts its lines from the JSON arrays' lengths (one DuckDB pass, no numbers parsed),
        and its problems are the loader's plus line-item text that is no JSON array (problems
        inside the items, such as a non-numeric quantity, appear once they are parsed)."""
        _, lines, problems, _, pending = self._state()
        if pending is None:
            return len(lines), len(problems)
        from . import _duck

        con = _duck.connect(p=pending.select(["line_items"]))
        try:
            n, bad = con.sql(
                "WITH v AS (SELECT line_items, CASE WHEN json_valid(line_items) THEN line_items END AS j FROM p) "
                "SELECT coalesce(sum(CASE WHEN json_type(j) = 'ARRAY' THEN json_array_length(j) END), 0), "
                "count(*) FILTER (WHERE line_items IS NOT NULL AND coalesce(json_type(j), '') <> 'ARRAY') "
                "FROM v").fetchall()[0]
        finally:
            con.close()
        return int(n), len(problems) + int(bad)  # text that is no JSON array is a problem already

    def _lines_note(self) -> str:
        return " (not parsed yet)" if self.lines_deferred else ""

    def with_base(self, base: "InvoiceSet | None | Callable[[], InvoiceSet | None]") -> "InvoiceSet":
        """The same set with ``base`` as its last-synced snapshot; a function returning one
        defers it (called on the first access of :attr:`base`, once)."""
        invoices, lines, problems, _, pending = self._state()
        if callable(base) and not isinstance(base, InvoiceSet):
            base = _Deferred(base)
        return _rebuild(invoices, None if pending is not None else lines, problems, base, pending)

    def with_invoices(self, invoices: pd.DataFrame) -> "InvoiceSet":
        """The same set (lines, problems, base; deferred lines stay deferred) with ``invoices``
        as its invoices frame, e.g. the same rows with some columns replaced."""
        _, lines, problems, base, pending = self._state()
        return _rebuild(invoices, None if pending is not None else lines, problems, base, pending)

    def live(self) -> "InvoiceSet":
        """The same set without its tombstones (invoices whose ``deleted_at`` is set), their
        lines and problems left out too; deferred lines stay deferred. For analysis: sync
        and reconcile take the whole set, whose tombstones are deletions to pass on."""
        invoices, lines, problems, base, pending = self._state()
        dead = invoices["deleted_at"].notna().to_numpy()
        if not dead.any():
            return self
        live = invoices[~dead].reset_index(drop=True)
        # ids only tombstones hold (an id live in another source keeps its lines)
        gone = pa.array(pd.Index(invoices.loc[dead, "id"].dropna().astype(str)).difference(
            pd.Index(live["id"].dropna().astype(str))), pa.string())
        if pending is not None:
            pending = pending.filter(pc.invert(pc.is_in(pending.column("id"), value_set=gone)))
        else:
            lines = lines[~lines["invoice_id"].isin(gone.to_pylist()).to_numpy()].reset_index(drop=True)
        problems = problems[~problems["id"].isin(gone.to_pylist()).to_numpy()].reset_index(drop=True)
        return _rebuild(live, None if pending is not None else lines, problems, base, pending)

    def totals(self, *, by=("currency", "month"), include_deleted: bool = False, float: bool = False
               ) -> pd.DataFrame:  # noqa: A002
        """Exact totals of the live invoices by currency and month (``by`` takes columns and
        the periods day/week/month/quarter/year): ``self.invoices.ik.totals(...)``, see
        :mod:`invoicekit.accessor`."""
        from . import accessor  # noqa: F401 - registers .ik

        return self.invoices.ik.totals(by=by, include_deleted=include_deleted, float=float)

    @classmethod
    def from_arrow(
        cls, invoices: pa.Table, lines: pa.Table, problems: pa.Table | None = None
    ) -> "InvoiceSet":
        """Build from Arrow tables carrying (at least) the canonical columns."""
        probs = to_frame(problems, PROBLEM_SCHEMA) if problems is not None else empty(PROBLEM_SCHEMA)
        return cls(to_frame(invoices, INVOICE_SCHEMA), to_frame(lines, LINE_SCHEMA), probs)

    @classmethod
    def from_frames(
        cls, invoices: pd.DataFrame, lines: pd.DataFrame, problems: pd.DataFrame | None = None
    ) -> "InvoiceSet":
        """Build from DataFrames, casting every column to its canonical dtype."""
        return cls.from_arrow(
            to_table(invoices, INVOICE_SCHEMA),
            to_table(lines, LINE_SCHEMA),
            None if problems is None else to_table(problems, PROBLEM_SCHEMA),
        )

    @classmethod
    def concat(cls, sets: Iterable["InvoiceSet"]) -> "InvoiceSet":
        """Stack several sets (e.g. one per device) into one; ids are not deduplicated.

        Deferred line items stay deferred (when every set defers them and no source is in
        two sets), and so do deferred bases: the result equals the eager stack."""
        sets = list(sets)
        if not sets:
            return cls(empty(INVOICE_SCHEMA), empty(LINE_SCHEMA))
        states = [s._state() for s in sets]
        bases = [state[3] for state in states if state[3] is not None]
        if any(isinstance(b, _Deferred) for b in bases):
            def stacked() -> "InvoiceSet | None":
                made = [m for m in (b.get() if isinstance(b, _Deferred) else b for b in bases) if m is not None]
                return cls.concat(made) if made else None

            base = _Deferred(stacked)
        else:
            base = cls.concat(bases) if bases else None
        invoices = pd.concat([state[0] for state in states], ignore_index=True)
        pending = [state[4] for state in states]
        if (all(p is not None for p in pending) and all(p.schema.equals(pending[0].schema) for p in pending)
                and _disjoint_sources(pending)):
            return cls(invoices, None, pd.concat([state[2] for state in states], ignore_index=True), base,
                       pending_lines=pa.concat_tables(pending))
        return cls(
            invoices,
            pd.concat([s.lines for s in sets], ignore_index=True),
            pd.concat([s.problems for s in sets], ignore_index=True),
            base=base,
        )

    def invoices_table(self) -> pa.Table:
        """The invoices as an Arrow table in :data:`INVOICE_SCHEMA`."""
        return to_table(self.invoices, INVOICE_SCHEMA)

    def lines_table(self) -> pa.Table:
        """The lines as an Arrow table in :data:`LINE_SCHEMA`."""
        return to_table(self.lines, LINE_SCHEMA)

    def __len__(self) -> int:
        return len(self.invoices)

    def summary(self) -> pd.DataFrame:
        """Counts and exact totals per currency (live invoices; tombstones counted apart)."""
        inv = self.invoices
        live = inv[inv["deleted_at"].isna()]
        if live.empty:
            out = pd.DataFrame({"currency": [], "invoices": [], "total": [], "first": [], "last": []})
        else:
            wide = pd.ArrowDtype(pa.decimal128(38, 2))  # sums of many 12-digit totals overflow 12 digits
            out = (
                live.assign(total=live["total"].astype(wide))
                .groupby("currency", dropna=False)
                .agg(
                    invoices=("id", "size"),
                    total=("total", "sum"),
                    first=("created_at", "min"),
                    last=("created_at", "max"),
                )
                .reset_index()
            )
        out.attrs["deleted"] = int(inv["deleted_at"].notna().sum())
        out.attrs["lines"], out.attrs["problems"] = self._shown_counts()
        out.attrs["lines_parsed"] = not self.lines_deferred
        return out

    def _repr_html_(self) -> str:
        s = self.summary()
        head = (
            f"<b>InvoiceSet</b>: {len(self.invoices):,} invoices "
            f"({s.attrs['deleted']:,} deleted), {s.attrs['lines']:,} lines{self._lines_note()}, "
            f"{s.attrs['problems']:,} load problems"
        )
        return head + frame_html(s) + frame_html(self.invoices.head(5), caption="first invoices")

    def to_html(self, path: str) -> None:
        """Write a standalone HTML page with the summary and the first rows."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page("InvoiceSet", self._repr_html_()))

    def __repr__(self) -> str:
        lines, problems = self._shown_counts()
        return (
            f"InvoiceSet({len(self.invoices):,} invoices, {lines:,} lines{self._lines_note()}, "
            f"{problems:,} problems)"
        )
