"""Reconcile an offline store against the central store: what is new, changed, deleted, in conflict.

``reconcile(local, central)`` joins the two :class:`~invoicekit.schema.InvoiceSet`\\ s on
invoice id (DuckDB, ids and row positions only), lines the central and base rows up with
the local ones by position, and classifies each id in one vectorised pass over the aligned
columns. Content means the checksummed payload (invoice number, client JSON, line-item
JSON, total) plus currency and whether the invoice is deleted; content is compared
exactly, field by field, not through the stored checksums (a stale or tampered checksum
cannot hide a difference).

How an id present on both sides is classified, in this order:

1. same content and same version: ``same``.
2. **With a base** (the toolkit's own stores record the last-synced snapshot of every
   invoice, ``local.base``): the local side *changed* when its content or version
   differs from the base, likewise the central side. Changed on the local side only:
   ``local_ahead`` (``deleted_local`` when the change is a deletion); on the central
   side only: ``central_ahead`` (``deleted_central``); on both: ``conflict``, unless both
   arrived at the same content, in which case the side with the higher version is ahead.
3. **Without a base** (stores written by other software), versions, ``sync_status`` and
   ``modified_at`` decide, following the devices' rule that an offline edit bumps the
   version by one and marks the row ``pending``:

   * same content, different versions: the higher version is ahead;
   * local ``pending`` (any status but ``synced``) and central version below the local
     one: the edit was made on top of central's version: ``local_ahead`` /
     ``deleted_local``;
   * local ``pending`` and central version at or above the local one: central moved too:
     ``conflict``;
   * local ``synced`` and central version above the local one: ``central_ahead`` /
     ``deleted_central``, unless the local row was modified after the central one
     (``modified_at``), an edit the device never queued: ``conflict``;
   * local ``synced`` and central version below the local one: central lost a version
     this device saw synced (e.g. a restore): ``local_ahead``;
   * local ``synced``, same version, different content: ``conflict``;
   * a local tombstone at central's version holding exactly central's live content: the
     device deleted that version and queued the row as it was: ``deleted_local`` (it is
     pushed one version up).

Ids only on the device are ``local_only`` (``deleted_local`` if already tombstoned); ids
only in the central store are ``central_only`` (the device does not hold them, which is
normal: devices hold a subset).

**Scope.** Given the central store itself (a URL, Engine, ``CentralStore`` or the path of
a central SQLite file), ``reconcile`` fetches only the invoices the device holds
(``read_central(url, ids=...)``): the statuses and field differences of those ids are the
ones a full read gives, and central-only invoices are out of scope (``scope="device"``,
said by the summary, repr and reports). ``scope="all"`` reads the whole central store and
reports them, as an :class:`~invoicekit.schema.InvoiceSet` given as ``central`` always does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import _duck
from ._args import _is_central_sqlite, as_invoice_set
from .errors import UsageError
from .schema import INVOICE_SCHEMA, LINE_SCHEMA, InvoiceSet, to_frame

__all__ = ["reconcile", "Reconciliation", "STATUSES", "IN_SYNC", "SCOPES"]

STATUSES = (
    "same", "local_only", "central_only", "local_ahead", "central_ahead", "conflict",
    "deleted_local", "deleted_central",
)
#: statuses that need no action (a device not holding a central invoice is normal)
IN_SYNC = ("same", "central_only")

_CONTENT = ("invoice_number", "client_data", "line_items", "total", "currency")

#: what a reconciliation covers: ``all`` (every id of both sides) or ``device`` (the ids the
#: local side holds; central-only invoices were not fetched)
SCOPES = ("all", "device")
#: statuses a ``device``-scope reconciliation cannot see
OUT_OF_SCOPE = {"all": (), "device": ("central_only",)}
_SCOPE_NOTE = ("out of scope: only the device's invoices were fetched from the central store "
               "(scope='device'); reconcile(..., scope='all') reads it all and counts them")


def _eq(a: str, b: str, *, deleted: bool = True) -> str:
    """SQL: sides ``a`` and ``b`` hold the same content (``f.{a}{b}_same``: every column of
    :data:`_CONTENT` IS NOT DISTINCT FROM, computed by :func:`_same_content`) and, with
    ``deleted``, are alike deleted or not; never NULL."""
    same = f"f.{a}{b}_same"
    return f"({same} AND (({a}.deleted_at IS NULL) = ({b}.deleted_at IS NULL)))" if deleted else same


def _on(side: str, col: str) -> str:
    return f"CASE WHEN {side}._present THEN {side}.{col} END"


# The status is computed over three *aligned* relations, one row per invoice id on each:
# ``l`` (local), ``c`` (central), ``b`` (base), where ``_present`` says whether that side has
# the id (see ``_aligned``; a side with none of the ids is an empty relation, which the
# positional join pads with NULLs). Aligning by position (a join of ids only, then a gather)
# avoids a hash join that would carry every content column of one side in its table. The
# content comparisons come in ``f`` (``lc_same``, ``lb_same``, ``cb_same``, see
# ``_same_content``): the aligned sides hold only the small columns (versions, times), and
# the large text columns are compared slice by slice, never gathered whole.
_STATUS_SQL = f"""
WITH j AS (
  SELECT coalesce(l._present, false) AS in_local, coalesce(c._present, false) AS in_central,
    coalesce(b._present, false) AS has_base,
    {_on('l', 'version')} AS local_version, {_on('c', 'version')} AS central_version,
    {_on('b', 'version')} AS base_version,
    {_on('l', 'sync_status')} AS local_sync_status,
    {_on('l', 'modified_at')} AS local_modified_at, {_on('c', 'modified_at')} AS central_modified_at,
    {_on('l', 'deleted_at')} AS local_deleted_at, {_on('c', 'deleted_at')} AS central_deleted_at,
    {_on('b', 'deleted_at')} AS base_deleted_at,
    {_eq('l', 'c')} AS lc_eq,
    -- a deletion that carries the version it deletes: the local tombstone holds exactly the
    -- live central row's content at the same version (devices queue the row as it was)
    l.deleted_at IS NOT NULL AND c.deleted_at IS NULL AND l.version = c.version
      AND {_eq('l', 'c', deleted=False)} AS deletes_central,
    coalesce(b._present, false) AND NOT ({_eq('l', 'b')} AND l.version = b.version) AS local_changed,
    coalesce(b._present, false) AND NOT ({_eq('c', 'b')} AND c.version = b.version) AS central_changed,
    o._ord AS _ord
  FROM ao o POSITIONAL JOIN al l POSITIONAL JOIN ac c POSITIONAL JOIN ab b POSITIONAL JOIN af f
), k AS (
  SELECT *, coalesce(local_sync_status, '') <> 'synced' AS dirty FROM j
)
SELECT
  CASE
    WHEN NOT in_central THEN CASE WHEN local_deleted_at IS NOT NULL THEN 'deleted_local' ELSE 'local_only' END
    WHEN NOT in_local THEN 'central_only'
    WHEN lc_eq AND local_version = central_version THEN 'same'
    WHEN lc_eq THEN CASE WHEN central_version > local_version THEN 'central_ahead' ELSE 'local_ahead' END
    WHEN has_base AND local_changed AND central_changed THEN 'conflict'
    WHEN has_base AND local_changed THEN
      CASE WHEN local_deleted_at IS NOT NULL AND base_deleted_at IS NULL THEN 'deleted_local' ELSE 'local_ahead' END
    WHEN has_base AND central_changed THEN
      CASE WHEN central_deleted_at IS NOT NULL AND base_deleted_at IS NULL THEN 'deleted_central'
           ELSE 'central_ahead' END
    WHEN has_base THEN 'conflict'
    WHEN deletes_central THEN 'deleted_local'
    WHEN dirty AND central_version < local_version THEN
      CASE WHEN local_deleted_at IS NOT NULL AND central_deleted_at IS NULL THEN 'deleted_local' ELSE 'local_ahead' END
    WHEN dirty THEN 'conflict'
    WHEN central_version > local_version AND local_modified_at > central_modified_at THEN 'conflict'
    WHEN central_version > local_version THEN
      CASE WHEN central_deleted_at IS NOT NULL AND local_deleted_at IS NULL THEN 'deleted_central'
           ELSE 'central_ahead' END
    WHEN central_version < local_version THEN 'local_ahead'
    ELSE 'conflict'
  END AS status,
  CASE
    WHEN NOT in_central THEN 'only in the offline store'
    WHEN NOT in_local THEN 'only in the central store'
    WHEN lc_eq AND local_version = central_version THEN 'identical'
    WHEN lc_eq THEN 'same content, versions ' || local_version || ' (local) and ' || central_version || ' (central)'
    WHEN has_base AND local_changed AND central_changed THEN 'both sides changed since base v' || base_version
    WHEN has_base AND local_changed THEN 'local changed since base v' || base_version || ', central did not'
    WHEN has_base AND central_changed THEN 'central changed since base v' || base_version || ', local did not'
    WHEN has_base THEN 'differs from central although neither side differs from base v' || base_version
    WHEN deletes_central THEN 'no base: local deletion of central v' || central_version || ' as it is'
    WHEN dirty AND central_version < local_version THEN
      'no base: local ' || coalesce(local_sync_status, 'NULL') || ' v' || local_version
        || ' edited over central v' || central_version
    WHEN dirty THEN
      'no base: local ' || coalesce(local_sync_status, 'NULL') || ' v' || local_version
        || ' but central is at v' || central_version
    WHEN central_version > local_version AND local_modified_at > central_modified_at THEN
      'no base: local synced v' || local_version || ' was modified after central v' || central_version
    WHEN central_version > local_version THEN
      'no base: central v' || central_version || ' over local synced v' || local_version
    WHEN central_version < local_version THEN
      'no base: central v' || central_version || ' is behind local synced v' || local_version
    ELSE 'no base: same version v' || local_version || ', different content'
  END AS reason,
  _ord
FROM k
"""

# positions only: which central and base row goes with each local row, and which central
# rows have no local row
_POSITIONS_SQL = """
SELECT l._pos AS lp, c._pos AS cp, b._pos AS bp
FROM loc l FULL OUTER JOIN cen c ON l.id = c.id LEFT JOIN bas b ON b.id = coalesce(l.id, c.id)
"""
_SIDE_COLUMNS = ["id", "invoice_number", "client_data", "line_items", "total", "currency", "version", "checksum",
                 "modified_at", "deleted_at"]
_LOCAL_COLUMNS = [*_SIDE_COLUMNS, "source", "sync_status"]

#: the invoice-level fields of the diff: (field name, column, its text as the diff shows it)
_INVOICE_FIELDS = (
    ("invoice_number", "invoice_number", "{s}.invoice_number"), ("client.name", "client_name", "{s}.client_name"),
    ("client.email", "client_email", "{s}.client_email"), ("client.address", "client_address", "{s}.client_address"),
    ("client.tax_id", "client_tax_id", "{s}.client_tax_id"), ("currency", "currency", "{s}.currency"),
    ("total", "total", "CAST({s}.total AS VARCHAR)"), ("deleted_at", "deleted_at", "CAST({s}.deleted_at AS VARCHAR)"),
)
#: the columns the invoice-level fields read
_FIELD_COLUMNS = ["id", *(column for _, column, _ in _INVOICE_FIELDS)]


def _differs(local: str, central: str, base: str, has_base: str) -> str:
    """SQL: a (base, local, central) triple differs: local and central differ, or (with a base)
    either differs from the base. Values are compared in their own types (exact decimals and
    times: equal exactly when their text is)."""
    return (f"({local} IS DISTINCT FROM {central} OR ({has_base} AND ({local} IS DISTINCT FROM {base} "
            f"OR {central} IS DISTINCT FROM {base})))")


def _changed(side: str, base: str, has_base: str) -> str:
    return f"{has_base} AND {side} IS DISTINCT FROM {base}"


def _field_rows(field: str, value: str, col: str, source: str, where: str) -> str:
    """One SELECT (from ``source``, rows matching ``where``) of the diff rows of one field:
    ``value`` is the SQL of a side's value as the diff shows it, ``col`` the column compared
    (``{s}`` stands for the side: ``b``, ``l``, ``c``). Values are compared in their own type
    (exact decimals and times, equal exactly when their text is), shown as text."""
    l_, c_, b_ = (col.format(s=s) for s in ("l", "c", "b"))
    return (f"SELECT id, {field} AS field, {value.format(s='b')} AS base, {value.format(s='l')} AS local, "
            f"{value.format(s='c')} AS central, {_changed(l_, b_, 'has_base')} AS local_changed, "
            f"{_changed(c_, b_, 'has_base')} AS central_changed\n"
            f"FROM {source} WHERE {where + ' AND ' if where else ''}{_differs(l_, c_, b_, 'has_base')}")


# One row per (id, field) that differs among base, local and central, for the invoices needing
# action, ordered by id and field. Invoice-level fields come from ``inv``: the busy invoices'
# rows on each side lined up by position (``b_total``, ``l_total``, ``c_total``, ..., and
# has_base); line items from the lines of the invoices whose line-item text differs
# (``ll``/``cl``/``bl``, see ``_keyed``), matched by identity: description and occurrence
# (``line``: the invoice and description as one integer shared by the three sides, ``occ``:
# the line's rank among the invoice's lines of that description, by line_no), both parts of a
# line at once. A side lacking an invoice or a line has NULL values there.
_FIELD_ROWS = "\nUNION ALL\n".join(
    [_field_rows(f"'{name}'", text.replace("{s}.", "{s}_"), f"{{s}}_{column}", "inv", "id IS NOT NULL")
     for name, column, text in _INVOICE_FIELDS]
    + [_field_rows(f"'lines[' || key || '].{part}'", f"CAST({{s}}_{v} AS VARCHAR)", f"{{s}}_{v}", "lines", "")
       for part, v in (("quantity", "q"), ("unit_price", "p"))])
_FIELDS_SQL = f"""
WITH lines AS (
  SELECT coalesce(l.invoice_id, c.invoice_id, b.invoice_id) AS id,
         coalesce(l.description || '#' || l.occ, c.description || '#' || c.occ,
                  b.description || '#' || b.occ) AS key,
         coalesce(l.has_base, c.has_base, b.has_base) AS has_base,
         b.quantity AS b_q, l.quantity AS l_q, c.quantity AS c_q,
         b.unit_price AS b_p, l.unit_price AS l_p, c.unit_price AS c_p
  FROM ll l
  FULL OUTER JOIN cl c ON c.line = l.line AND c.occ = l.occ
  FULL OUTER JOIN bl b ON b.line = coalesce(l.line, c.line) AND b.occ = coalesce(l.occ, c.occ)
)
{_FIELD_ROWS}
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class Reconciliation:
    """Result of :func:`reconcile`.

    ``status``: one row per invoice id (status, reason, versions, checksums, times on
    each side), in the local set's row order, then the central-only invoices in the
    central set's order. ``fields``: one row per (id, field) that differs among base, local and
    central, for ids needing action; line items appear as ``lines[<description>#<n>].quantity``
    / ``.unit_price`` (a line's identity is its description and occurrence).
    ``local``/``central`` are the inputs, kept for :func:`invoicekit.resolve` (a central
    store given by URL: the invoices fetched from it).

    ``scope``: ``"all"`` (both sides compared whole) or ``"device"`` (only the local ids were
    fetched from the central store: there are no ``central_only`` rows, and the summary,
    repr and reports say that central-only invoices are out of scope).

    ``pushdown``: set when the comparison was pushed down into the central store (see
    :func:`reconcile`). ``central`` then holds only the central rows of the ids held on both
    sides whose keys differ (every row :func:`invoicekit.resolve` may pull or merge); the
    ``same`` and ``central_only`` ids were not fetched, their central keys are in ``status``,
    and the central-only rows come after the local ones in id order.
    """

    status: pd.DataFrame
    fields: pd.DataFrame
    local: InvoiceSet
    central: InvoiceSet
    scope: str = "all"
    #: what a comparison pushed down into the central store moved
    #: (:class:`~invoicekit.io.pushdown.PushdownStats`); None when both sides were compared whole
    pushdown: Any = None

    def summary(self) -> pd.DataFrame:
        """Invoices per status (every status listed, zeros included). In ``device`` scope a
        ``note`` column marks ``central_only`` as out of scope (its count is not known)."""
        counts = self.status["status"].value_counts()
        frame = pd.DataFrame({"status": list(STATUSES), "invoices": [int(counts.get(s, 0)) for s in STATUSES]})
        if self.scope != "all":
            frame["note"] = ["" if s not in OUT_OF_SCOPE[self.scope] else _SCOPE_NOTE for s in STATUSES]
        return frame

    def counts(self) -> dict[str, int]:
        """Invoices per status as a plain dict (statuses out of scope left out)."""
        summary = self.summary()
        return {s: n for s, n in zip(summary["status"], summary["invoices"]) if s not in OUT_OF_SCOPE[self.scope]}

    @property
    def differs(self) -> bool:
        """True when any invoice needs action (a status outside :data:`IN_SYNC`)."""
        return bool((~self.status["status"].isin(IN_SYNC)).any())

    def of(self, status: str) -> pd.DataFrame:
        """The status rows with one status."""
        if status not in STATUSES:
            raise UsageError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        return self.status[self.status["status"] == status].reset_index(drop=True)

    def _repr_html_(self) -> str:
        """The compact report (summary, statistics, the first invoices needing action)."""
        from .reports import reconcile_html

        return reconcile_html(self, standalone=False)

    def to_html(self, path: str) -> None:
        """Write the complete HTML report: every invoice, side by side, filter and sort (works offline)."""
        from .reports import reconcile_html, write

        write(path, reconcile_html(self))

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v:,}" for k, v in self.counts().items() if v)
        if self.scope != "all":
            parts += f"{'; ' if parts else ''}scope={self.scope}: central-only invoices out of scope"
        return f"Reconciliation({parts})"


def _unique_ids(con, table: str, side: str) -> None:
    dup = _duck.arrow(con, f"SELECT id, count(*) AS n FROM {table} GROUP BY id HAVING count(*) > 1 ORDER BY id")
    if dup.num_rows:
        raise UsageError(
            f"{side} set has {dup.num_rows} id(s) on several rows (e.g. {dup.column('id')[0].as_py()!r}); "
            "reconcile each store on its own or drop the duplicates first"
        )


def _numbered(s: InvoiceSet) -> pa.Table:
    """The invoices with their position (``_pos``): the status keeps the stores' row order."""
    table = s.invoices_table()
    return table.append_column("_pos", pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _aligned(table: pa.Table, pos: np.ndarray) -> pa.Table | None:
    """Rows of ``table`` at ``pos``, null where ``pos`` is -1 (that side has no such id),
    with ``_present``; None when no position is present."""
    present = pos >= 0
    if table.num_rows == 0 or not present.any():
        return None
    return _take(table, pos).append_column("_present", pa.array(present))


def _none(table: pa.Table) -> pa.Table:
    """An empty relation of ``table``'s columns and ``_present`` (the positional join pads it with NULLs)."""
    return table.slice(0, 0).append_column("_present", pa.array([], pa.bool_()))


def _take_column(column: pa.ChunkedArray | pa.Array, pos: np.ndarray, present: np.ndarray,
                 plans: dict | None = None) -> pa.Array:
    """``column`` at ``pos`` (null where not ``present``). Arrow's take of a chunked array
    concatenates it whole first: a column of several chunks is concatenated only when most of
    it is wanted, else taken from chunk by chunk (``plans`` keeps the plan of each chunk
    layout, for the other columns of a table)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if len(chunks) > 1 and len(pos) * 2 >= len(column):
        chunks = [column.combine_chunks()]
    if len(chunks) == 1:
        return chunks[0].take(pa.array(pos) if present.all() else pa.array(pos, mask=~present))
    if not present.any():
        return pa.nulls(len(pos), column.type)
    layout = tuple(len(chunk) for chunk in chunks)
    plan = plans.get(layout) if plans is not None else None
    if plan is None:
        starts = np.cumsum([0, *layout])
        wanted = pos[present]
        chunk_of = np.searchsorted(starts, wanted, side="right") - 1
        in_order = bool((chunk_of[1:] >= chunk_of[:-1]).all())
        order = np.arange(len(wanted)) if in_order else np.argsort(chunk_of, kind="stable")
        bounds = np.searchsorted(chunk_of[order], np.arange(len(chunks) + 1))
        picks = [(k, pa.array(wanted[order[bounds[k]:bounds[k + 1]]] - starts[k]))
                 for k in range(len(chunks)) if bounds[k + 1] > bounds[k]]
        back = None  # the rows by chunk are the rows in order (the positions run chunk by chunk)
        if not (in_order and present.all()):
            back = np.zeros(len(pos), dtype=np.int64)
            back[np.flatnonzero(present)[order]] = np.arange(len(wanted), dtype=np.int64)
            back = pa.array(back) if present.all() else pa.array(back, mask=~present)
        plan = picks, back
        if plans is not None:
            plans[layout] = plan
    picks, back = plan
    parts = [chunks[k].take(index) for k, index in picks]
    gathered = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
    return gathered if back is None else gathered.take(back)  # by chunk: put back in order


def _take(table: pa.Table, pos: np.ndarray) -> pa.Table:
    """Rows of ``table`` at ``pos`` (-1: a row of nulls), column by column (see :func:`_take_column`)."""
    present, plans = pos >= 0, {}
    return pa.table({name: _take_column(table.column(name), pos, present, plans) for name in table.column_names})


def _versions(side: pa.Table | pa.ChunkedArray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A side's ``n`` aligned versions and whether each is known (not NULL; a side with no rows
    at all has none)."""
    if isinstance(side, pa.Table):
        side = side.column("version")
    if side is None:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    return side.fill_null(0).to_numpy(), pc.is_valid(side).to_numpy(zero_copy_only=False)


def _same_of(equal, a, b) -> pa.Array:
    """Per row, ``a IS NOT DISTINCT FROM b`` (never null), from ``equal``: ``a = b``."""
    return pc.or_kleene(equal, pc.and_(pc.is_null(a), pc.is_null(b))).fill_null(False)


#: rows compared at a time: the large text columns are gathered a slice at a time (memory reused)
_SLICE = 1 << 16


def _same_content(sides: dict[str, tuple[pa.Table, np.ndarray | None]], pairs: list[tuple[str, str]], n: int,
                  *, lines: bool = False) -> dict[tuple[str, ...], np.ndarray]:
    """For each pair ``(a, b)`` of ``sides`` (name: the table and the position of its row for
    each of ``n`` rows, -1 a row of NULLs as the positional join pads, None its rows in
    order), per row whether the two hold the same content: every column of :data:`_CONTENT`
    IS NOT DISTINCT FROM. The rows are gathered a slice at a time, once for every pair.
    ``lines``: also ``(a, b, "line_items")``, whether the line-item texts are equal (SQL ``=``,
    false where either is NULL)."""
    out = {pair: np.zeros(n, dtype=bool) for pair in pairs}
    if lines:
        out.update({(*pair, "line_items"): np.zeros(n, dtype=bool) for pair in pairs})

    def compare(i: int) -> None:
        j = min(n, i + _SLICE)
        rows = {name: table.slice(i, j - i) if pos is None else _take(table, pos[i:j])
                for name, (table, pos) in sides.items()}
        for a, b in pairs:
            same = None
            for name in _CONTENT:
                equal = pc.equal(rows[a].column(name), rows[b].column(name))
                if lines and name == "line_items":
                    out[a, b, name][i:j] = equal.fill_null(False).to_numpy(zero_copy_only=False)
                column = _same_of(equal, rows[a].column(name), rows[b].column(name))
                same = column if same is None else pc.and_(same, column)
            out[a, b][i:j] = same.to_numpy(zero_copy_only=False)

    starts = range(0, n, _SLICE)
    if len(starts) < 2:
        for i in starts:
            compare(i)
        return out
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2, thread_name_prefix="invoicekit-reconcile") as pool:  # Arrow releases the GIL
        for done in [pool.submit(compare, i) for i in starts]:
            done.result()
    return out


#: the columns of ``Reconciliation.status``
STATUS_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("status", pa.string()), ("reason", pa.string()),
    ("local_version", pa.int64()), ("central_version", pa.int64()), ("base_version", pa.int64()),
    ("local_checksum", pa.string()), ("central_checksum", pa.string()), ("base_checksum", pa.string()),
    ("local_modified_at", pa.timestamp("us", "UTC")), ("central_modified_at", pa.timestamp("us", "UTC")),
    ("local_deleted_at", pa.timestamp("us", "UTC")), ("central_deleted_at", pa.timestamp("us", "UTC")),
    ("has_base", pa.bool_()),
])


def _rows_at(table: pa.Table, positions: np.ndarray) -> pa.Table:
    """The rows of ``table`` at ``positions`` (distinct), in table order: a filter works
    chunk by chunk where a take of a few rows would first concatenate whole columns."""
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[positions] = True
    return table.filter(pa.array(mask))


def _repeats(side: pa.Table, other: np.ndarray, mine: np.ndarray) -> bool:
    """Whether ``side`` holds an id on several rows, from the join's positions: such an id
    matched on the other side repeats the other side's row (``other``); unmatched, its rows
    are among ``side``'s unmatched rows, which are few and checked directly."""
    hit = other >= 0
    if hit.any() and np.bincount(other[hit]).max() > 1:
        return True
    lone = mine[(mine >= 0) & ~hit]
    ids = _rows_at(side.select(["id"]), lone).column("id")
    return pc.count_distinct(ids, mode="all").as_py() != len(lone)


#: each side's own columns in the status (``local_version``, ``central_checksum``, ...)
_SIDE_OWN = ("version", "checksum", "modified_at", "deleted_at")


def _nulls(side: str, name: str, n: int) -> pa.Array:
    return pa.nulls(n, STATUS_SCHEMA.field(f"{side}_{name}").type)


def _status(con, loc: pa.Table, cen: pa.Table, bas: pa.Table
            ) -> tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray, bool]:
    """The status rows: the local ids in the local order, then the central-only ids in the
    central order (both by construction, no sort of the result); and, per local row, the
    position of its central and base rows (-1: none) and whether its line-item text equals
    central's (SQL ``=``: false where either is NULL or central has no row); and whether no id
    of either side is on several base rows.

    Only ``status`` and ``reason`` need SQL (over the aligned sides); every other column is
    a side's own column, put in place by Arrow; a central-only id is always ``central_only``.
    """
    pos = _duck.arrow(con, _POSITIONS_SQL)
    lp, cp, bp = (pos.column(c).fill_null(-1).to_numpy() for c in ("lp", "cp", "bp"))
    n_local = loc.num_rows
    mine = lp >= 0
    if _repeats(loc, cp, lp) or _repeats(cen, lp, cp):  # an id on several rows: say which
        _unique_ids(con, "loc", "local")
        _unique_ids(con, "cen", "central")
        _unique_ids(con, "bas", "base")
        raise AssertionError("reconcile: repeated positions without repeated ids")  # pragma: no cover
    c_of_l = np.full(n_local, -1, dtype=np.int64)
    b_of_l = np.full(n_local, -1, dtype=np.int64)
    c_of_l[lp[mine]], b_of_l[lp[mine]] = cp[mine], bp[mine]
    only = np.argsort(cp[~mine], kind="stable")
    c_only, b_only = cp[~mine][only], bp[~mine][only]
    L = loc.select(_LOCAL_COLUMNS)  # used in place (chunks and all)
    C, B = cen.select(_SIDE_COLUMNS), bas.select(_SIDE_COLUMNS)

    ac, ab = _aligned(C.select(_SIDE_OWN), c_of_l), _aligned(B.select(_SIDE_OWN), b_of_l)
    # the content comparisons: local with central on every row; with the base only where the
    # status asks for them (both sides hold the id, it has a base, and the content or deletion
    # of local and central differ); NULL elsewhere, where no branch of the status reads them
    content = list(_CONTENT)
    lc = _same_content({"l": (L.select(content), None), "c": (C.select(content), c_of_l)}, [("l", "c")],
                       n_local, lines=True)
    lc_same = lc["l", "c"]
    gone = pc.is_null(L.column("deleted_at")).to_numpy(zero_copy_only=False)
    c_gone = (pc.is_null(ac.column("deleted_at")).to_numpy(zero_copy_only=False) if ac is not None
              else np.ones(n_local, dtype=bool))
    need = (c_of_l >= 0) & (b_of_l >= 0) & ~(lc_same & (gone == c_gone))
    # a side whose version differs from the base's changed whatever its content
    # (``NOT (x AND version = base version)`` is then true): its content is not compared
    (lv, lk), (cv, ck), (bv, bk) = (_versions(side, n_local) for side in (L.column("version"), ac, ab))
    flags = {"lc_same": pa.array(lc_same)}
    for pair, side, of_l, (version, known) in (("lb", L, None, (lv, lk)), ("cb", C, c_of_l, (cv, ck))):
        rows = np.flatnonzero(need & ~(known & bk & (version != bv)))
        same = np.zeros(n_local, dtype=bool)
        if len(rows):
            sides = {"a": (side.select(content), rows if of_l is None else of_l[rows]),
                     "b": (B.select(content), b_of_l[rows])}
            same[rows] = _same_content(sides, [("a", "b")], len(rows))["a", "b"]
        unknown = np.ones(n_local, dtype=bool)
        unknown[rows] = False
        flags[f"{pair}_same"] = pa.array(same, mask=unknown)
    flags = pa.table(flags)
    rels = {"ao": pa.table({"_ord": pa.array(np.arange(n_local, dtype=np.int64))}),
            "al": L.append_column("_present", pa.array(np.ones(n_local, dtype=bool))),
            "ac": ac if ac is not None else _none(C.select(_SIDE_OWN)),
            "ab": ab if ab is not None else _none(B.select(_SIDE_OWN)),
            "af": flags}
    for name, table in rels.items():
        con.register(name, table)
    try:
        decided = _duck.arrow(con, _STATUS_SQL)
    finally:
        for name in rels:
            con.unregister(name)
    order = decided.column("_ord").to_numpy()
    if len(order) > 1 and not (order[1:] > order[:-1]).all():  # pragma: no cover - defensive
        decided = decided.take(pc.sort_indices(decided.column("_ord")))
    local_rows = {
        "id": L.column("id"), "source": L.column("source"), "status": decided.column("status"),
        "reason": decided.column("reason"),
        **{f"{side}_{name}": source.column(name) if source is not None else _nulls(side, name, n_local)
           for side, source in (("local", L), ("central", ac), ("base", ab))
           for name in _SIDE_OWN if f"{side}_{name}" in STATUS_SCHEMA.names},
        "has_base": pa.array(b_of_l >= 0),
    }
    k = len(c_only)
    co, bo = _rows_at(C, c_only), _aligned(B.select(_SIDE_OWN), b_only)  # c_only ascends: table order is its order
    central_rows = {
        "id": co.column("id"), "source": pa.nulls(k, pa.string()),
        "status": pa.array(np.full(k, "central_only", dtype=object), pa.string()),
        "reason": pa.array(np.full(k, "only in the central store", dtype=object), pa.string()),
        **{f"{side}_{name}": source.column(name) if source is not None else _nulls(side, name, k)
           for side, source in (("local", None), ("central", co), ("base", bo))
           for name in _SIDE_OWN if f"{side}_{name}" in STATUS_SCHEMA.names},
        "has_base": pa.array(b_only >= 0),
    }
    parts = [pa.table({n: rows[n] for n in STATUS_SCHEMA.names}).cast(STATUS_SCHEMA)
             for rows in (local_rows, central_rows)]
    # no id of either side on several base rows (the join of positions repeats no row)
    base_distinct = pos.num_rows == n_local + int((~mine).sum())
    return pa.concat_tables(parts), c_of_l, b_of_l, lc["l", "c", "line_items"], base_distinct


def _central_store(value: Any) -> Any:
    """``value`` when it names a central store (URL, Engine, CentralStore, a central SQLite
    file's path as its URL), else None (an InvoiceSet, an offline store's path, a list)."""
    from sqlalchemy.engine import Engine

    from .io.central import CentralStore

    if isinstance(value, (CentralStore, Engine)):
        return value
    if isinstance(value, (str, os.PathLike)):
        text = os.fsdecode(os.fspath(value))
        if "://" in text:
            return text
        if _is_central_sqlite(text):
            return f"sqlite:///{os.path.abspath(text)}"
    return None


def _ids(s: InvoiceSet) -> pa.Array:
    """The distinct ids of ``s`` (nulls left out)."""
    return pc.unique(pa.array(s.invoices["id"], pa.string()).drop_null())


def _only(central: InvoiceSet, ids: pa.Array) -> InvoiceSet:
    """``central`` restricted to the invoices ``ids`` (itself when it holds no others)."""
    keep = pc.is_in(pa.array(central.invoices["id"], pa.string()), value_set=ids).fill_null(False)
    if pc.all(keep).as_py() is not False:
        return central
    return central.with_invoices(central.invoices[keep.to_numpy(zero_copy_only=False)].reset_index(drop=True))


def _offline_paths(value: Any) -> list[str] | None:
    """The offline store paths ``value`` names (a path, or a list of them), else None."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, (str, os.PathLike)) for v in values):
        return None
    paths = [os.fsdecode(os.fspath(v)) for v in values]
    if any("://" in p or _is_central_sqlite(p) for p in paths):
        return None
    return paths


def _device_sides(local: Any, store: Any) -> tuple[InvoiceSet, InvoiceSet]:
    """The local set and the central invoices it holds. A local side given as store paths is
    loaded while the central store is read for the ids those stores name (read in one query
    first); any id the loaded set holds beyond them is fetched after."""
    from .errors import InvoicekitError
    from .io.central import read_central
    from .io.local import held_ids

    paths = _offline_paths(local)
    guess = None
    if paths is not None:
        try:
            guess = pc.unique(pa.concat_arrays([held_ids(p) for p in paths]).drop_null())
        except InvoicekitError:  # loading the local side says what is wrong with it
            guess = None
    if guess is None:
        local = as_invoice_set(local, func="reconcile", param="local")
        return local, read_central(store, ids=_ids(local))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="invoicekit-reconcile") as pool:
        fetch = pool.submit(read_central, store, ids=guess)
        local = as_invoice_set(local, func="reconcile", param="local")
        central = fetch.result()
    ids = _ids(local)
    central = _only(central, ids)
    missing = pc.filter(ids, pc.invert(pc.is_in(ids, value_set=guess)))
    if len(missing):
        central = InvoiceSet.concat([central, read_central(store, ids=missing)])
    return local, central


def _sides(local: Any, central: Any, scope: str | None) -> tuple[InvoiceSet, InvoiceSet, str]:
    """Both sides to compare and the scope: a central store is read for the local ids only
    (``device``, its default) or whole (``all``); a set is compared whole (``all``, its
    default) or restricted to the local ids (``device``)."""
    store = _central_store(central)
    if store is None:
        local = as_invoice_set(local, func="reconcile", param="local")
        central = as_invoice_set(central, func="reconcile", param="central")
        scope = scope or "all"
        return local, central if scope == "all" else _only(central, _ids(local)), scope
    if (scope or "device") == "device":
        return (*_device_sides(local, store), "device")
    from .io.central import read_central

    local = as_invoice_set(local, func="reconcile", param="local")
    return local, read_central(store), "all"


def _padded(table: pa.Table, pos: np.ndarray) -> pa.Table:
    """``_aligned``, or :func:`_none` when no position is present."""
    rows = _aligned(table, pos)
    return rows if rows is not None else _none(table)


def _ranked(lines: pa.Table, ids: pa.Array) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """``lines`` (of invoices among ``ids``), each line's invoice as its row in ``ids``, and
    its occurrence: its rank among its invoice's lines of the same description by line_no (1
    for the first), which with the description identifies a line. Vectorised: a stable sort
    of integer codes (no window function)."""
    if lines.num_rows == 0:
        return lines, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    invoice = pc.index_in(lines.column("invoice_id"), value_set=ids).fill_null(-1).to_numpy().astype(np.int64)
    description = pc.dictionary_encode(lines.column("description").combine_chunks())
    code = description.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    group = (invoice + 1) * (len(description.dictionary) + 1) + code + 1
    # line numbers as SQL orders them: a NULL one after every number
    line_no = lines.column("line_no").cast(pa.int64()).fill_null(np.iinfo(np.int64).max).to_numpy()
    order = np.lexsort((line_no, group))
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    at = np.arange(len(order), dtype=np.int64)
    occ = np.empty(len(order), dtype=np.int64)
    occ[order] = at - np.maximum.accumulate(np.where(first, at, 0)) + 1
    return lines, invoice, occ


def _keyed(sides: dict[str, tuple[pa.Table, np.ndarray, np.ndarray]], has_base: np.ndarray) -> dict[str, pa.Table]:
    """Each side's ranked lines (see :func:`_ranked`) keyed by identity in integers the three
    sides share: ``line`` (the invoice and the description's code; NULL without a description,
    which matches nothing, as in SQL) and ``occ``; with their invoice's ``has_base``."""
    descriptions = pc.unique(pa.concat_arrays([pc.unique(t.column("description")).cast(pa.string())
                                               for t, _, _ in sides.values()])).drop_null()
    out = {}
    for name, (lines, invoice, occ) in sides.items():
        described = pc.index_in(lines.column("description"), value_set=descriptions)
        code = described.fill_null(0).to_numpy().astype(np.int64) if lines.num_rows else invoice
        known = pc.is_valid(described).to_numpy(zero_copy_only=False) if lines.num_rows else invoice >= 0
        out[name] = pa.table({
            "invoice_id": lines.column("invoice_id"), "description": lines.column("description"),
            "quantity": lines.column("quantity"), "unit_price": lines.column("unit_price"),
            "line": pa.array(invoice * (len(descriptions) + 1) + code, mask=~known), "occ": pa.array(occ),
            "has_base": pa.array(has_base[invoice]),
        })
    return out


def _fields(con, local: InvoiceSet, central: InvoiceSet, base: InvoiceSet, tables: tuple[pa.Table, pa.Table, pa.Table],
            status: pa.Table, aligned: tuple[np.ndarray, np.ndarray, np.ndarray, bool]) -> pa.Table:
    """The field differences of the invoices needing action (the local rows whose status is
    not in sync; central-only ids are): their rows on each side are picked by position, the
    compared columns only, and only the line items of invoices whose line-item text differs
    somewhere are parsed (equal text on every side holding the invoice parses to equal lines:
    no differing field); a deferred set parses just those. ``aligned``: per local row, the
    position of its central and base rows and whether its line-item text equals central's, and
    whether the base holds each id once (see :func:`_status`)."""
    loc, cen, bas = tables
    c_of_l, b_of_l, lines_same, base_distinct = aligned
    busy = pc.invert(pc.is_in(status.column("status").slice(0, len(local)),
                              value_set=pa.array(IN_SYNC + ("local_only",))))
    at = np.flatnonzero(busy.to_numpy(zero_copy_only=False))
    c_at, b_at = c_of_l[at], b_of_l[at]
    has_base = b_at >= 0
    # not the same line-item text on the local and central side (and the base, when there is
    # one): the base's text is compared where the local and central ones are equal
    same = lines_same[at]
    check = np.flatnonzero(same & has_base)
    if len(check):
        text = _rows_at(loc.select(["line_items"]), at[check]).column("line_items")
        base_text = _take(bas.select(["line_items"]), b_at[check]).column("line_items")
        same[check] = pc.equal(text, base_text).fill_null(False).to_numpy(zero_copy_only=False)
    lined = pa.table({"row": pa.array(at[~same]), "id": _rows_at(loc.select(["id"]), at[~same]).column("id"),
                      "has_base": pa.array(has_base[~same])})
    lined = lined.filter(pc.is_valid(lined.column("id")))
    ids = lined.column("id").combine_chunks()
    rows = lined.column("row").to_numpy()
    # the three sides' lines parsed (DuckDB), filtered (Arrow) and ranked (NumPy) at once, while
    # the invoice-level fields are gathered: the three sides' columns side by side
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3, thread_name_prefix="invoicekit-reconcile") as pool:
        # (ids held once: their lines are picked by row where they wait in the invoices' rows)
        b_rows = b_of_l[rows][b_of_l[rows] >= 0]
        made = {name: pool.submit(lambda pick: _ranked(pick(), ids), pick) for name, pick in (
            ("ll", lambda: local._lines_at(rows, loc.column("id"))), ("cl", lambda: central.lines_of(ids)),
            ("bl", lambda: base._lines_at(b_rows, bas.column("id")) if base_distinct else base.lines_of(ids)))}
        tl = _rows_at(loc.select(_FIELD_COLUMNS), at)
        tc, tb = _padded(cen.select(_FIELD_COLUMNS), c_at), _padded(bas.select(_FIELD_COLUMNS), b_at)
        inv = {"id": tl.column("id"), "has_base": pa.array(has_base)}
        for column in _FIELD_COLUMNS[1:]:
            for name, side in (("b", tb), ("l", tl), ("c", tc)):
                inv[f"{name}_{column}"] = (side.column(column) if side.num_rows
                                           else pa.nulls(len(at), side.schema.field(column).type))
        rels = _keyed({name: future.result() for name, future in made.items()},
                      lined.column("has_base").to_numpy(zero_copy_only=False))
    rels["inv"] = pa.table(inv)
    for name, table in rels.items():
        con.register(name, table)
    return _duck.arrow(con, _FIELDS_SQL)


def _compare(local: InvoiceSet, central: InvoiceSet, *, fields: bool) -> tuple[pa.Table, pa.Table]:
    """The status rows and field differences of ``local`` against ``central`` (the in-memory
    comparison: both sides whole, content compared field by field)."""
    base = local.base if local.base is not None else InvoiceSet(
        INVOICE_SCHEMA.empty_table().to_pandas(types_mapper=pd.ArrowDtype),
        LINE_SCHEMA.empty_table().to_pandas(types_mapper=pd.ArrowDtype),
    )
    loc, cen, bas = _numbered(local), _numbered(central), _numbered(base)
    con = _duck.connect(loc=loc, cen=cen, bas=bas)
    try:
        status, *aligned = _status(con, loc, cen, bas)
        if fields:
            diff = _fields(con, local, central, base, (loc, cen, bas), status, tuple(aligned))
        else:
            diff = pa.table({c: pa.array([], pa.string()) for c in ("id", "field", "base", "local", "central")})
            diff = diff.append_column("local_changed", pa.array([], pa.bool_()))
            diff = diff.append_column("central_changed", pa.array([], pa.bool_()))
    finally:
        con.close()
    return status, diff


def reconcile(local: InvoiceSet, central: Any, *, fields: bool = True, scope: str | None = None,
              pushdown: bool = False) -> Reconciliation:
    """Compare ``local`` (one or more offline stores) with ``central``; inputs are not mutated.

    Ids must be unique on each side. ``fields=False`` skips the field-level diff (the
    status is computed either way). See the module doc for how statuses are decided.
    Either side may also be a store path or URL, or a list of them (loaded for you).

    ``central`` given as the central store itself (URL, Engine, ``CentralStore``, a central
    SQLite file) is read for the local ids only (``scope="device"``, the default then): the
    same statuses and field differences for every id the device holds, without central-only
    invoices, which are out of scope. ``scope="all"`` reads it whole and reports them. An
    InvoiceSet is compared whole unless ``scope="device"``. A device given as its store
    file(s) is loaded while the central store is read for the ids the file names.

    ``pushdown=True`` (implies ``scope="all"``) pushes the whole-store comparison down into a
    PostgreSQL central store: the local keys (id, version, checksum, currency, times) are
    staged in the store, which returns only the ids that differ or that one side lacks; full
    central rows are fetched for the differing ids only (:mod:`invoicekit.io.pushdown`).
    Statuses and field differences are the full read's for every id, provided the stored
    checksums match their rows' content (the push-down trusts them; the full read compares
    content). It is not the default: on PostgreSQL 15 joining a million text ids in the
    server measured slower than reading the store whole (BENCHMARKS.md, session 12). A SQLite
    central store is always read whole.
    """
    if scope is not None and scope not in SCOPES:
        raise UsageError(f"reconcile: scope={scope!r} is not one of {', '.join(map(repr, SCOPES))}")
    store = _central_store(central)
    if pushdown and (store is None or scope == "device"):
        raise UsageError("reconcile: pushdown=True compares a whole central store given by URL, Engine or "
                         "CentralStore (scope='all'); got " + ("scope='device'" if store is not None else
                                                               f"central as {type(central).__name__}"))
    if store is not None and pushdown:
        local = as_invoice_set(local, func="reconcile", param="local")
        pushed = _pushed_down(local, store, fields=fields)
        if pushed is not None:
            return pushed
        scope = "all"
    local, central, scope = _sides(local, central, scope)
    status, diff = _compare(local, central, fields=fields)
    return Reconciliation(
        status=status.to_pandas(types_mapper=pd.ArrowDtype),
        fields=diff.to_pandas(types_mapper=pd.ArrowDtype),
        local=local,
        central=central,
        scope=scope,
    )


# -- the comparison pushed down into the central store (see invoicekit.io.pushdown) ----------------
def _distinct(loc: pa.Table) -> None:
    """The UsageError of the in-memory path when ``loc`` holds an id on several rows."""
    ids = loc.column("id")
    if pc.count_distinct(ids).as_py() != len(ids) - ids.null_count:
        con = _duck.connect(loc=loc.select(["id"]))
        try:
            _unique_ids(con, "loc", "local")
        finally:
            con.close()


def _keys_at(table: pa.Table, ids: pa.ChunkedArray | pa.Array) -> dict[str, pa.Array]:
    """``version`` and ``checksum`` of ``table``'s row for each of ``ids`` (null where it has
    none; the first row where it has several), and ``has``: whether it has one."""
    pos = _positions(table.column("id"), _flat(ids))
    return {"version": _flat(table.column("version").take(pos)),
            "checksum": _flat(table.column("checksum").take(pos)), "has": _flat(pc.is_valid(pos))}


def _flat(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _positions(table_ids: pa.ChunkedArray, ids: pa.Array) -> pa.Array:
    """For each of ``ids``, the first row of ``table_ids`` holding it (null: none). Few ids
    against a large table are hashed themselves and the table's ids looked up in them (a
    hash of 5,000 ids instead of one of a million: 0.35 s less for the central-only rows of
    a whole-store comparison)."""
    if len(ids) * 8 >= len(table_ids):
        return _flat(pc.index_in(ids, value_set=_flat(table_ids)))
    where = _flat(pc.index_in(table_ids, value_set=ids))  # per table row: its id's place in ids
    rows = np.flatnonzero(where.is_valid().to_numpy(zero_copy_only=False))
    slots = where.drop_null().to_numpy(zero_copy_only=False)
    pos = np.full(len(ids), -1, dtype=np.int64)
    pos[slots[::-1]] = rows[::-1]  # the last assignment wins: the first row of a repeated id
    return pa.array(pos, mask=pos < 0)


def _local_rows(loc: pa.Table, busy: pa.Array, part: pa.Table, base: dict[str, pa.Array]) -> pa.Table:
    """The status rows of every local row, in the local order: the rows compared in full
    (``busy``) take their status from ``part`` (in the same order); the others are ``same``,
    and central's own columns are the local ones, which the store compared equal."""
    n = loc.num_rows

    def mixed(same: pa.Array, name: str) -> pa.Array:
        return pc.replace_with_mask(_flat(same), busy, _flat(part.column(name)).cast(same.type))

    rows = {"id": loc.column("id"), "source": loc.column("source"),
            "status": mixed(pa.repeat("same", n), "status"), "reason": mixed(pa.repeat("identical", n), "reason"),
            **{f"local_{name}": loc.column(name) for name in _SIDE_OWN},
            **{f"central_{name}": mixed(_flat(loc.column(name)), f"central_{name}") for name in _SIDE_OWN},
            "base_version": mixed(base["version"], "base_version"),
            "base_checksum": mixed(base["checksum"], "base_checksum"), "has_base": mixed(base["has"], "has_base")}
    return pa.table({c: rows[c] for c in STATUS_SCHEMA.names}).cast(STATUS_SCHEMA)


def _central_only_rows(keys: pa.Table, base: pa.Table) -> pa.Table:
    """Status rows of the central-only ids from the keys the store returned, in id order."""
    keys = keys.sort_by("id")
    n, b = keys.num_rows, _keys_at(base, keys.column("id"))
    rows = {"id": keys.column("id"), "source": pa.nulls(n, pa.string()),
            "status": pa.repeat("central_only", n), "reason": pa.repeat("only in the central store", n),
            **{f"local_{name}": _nulls("local", name, n) for name in _SIDE_OWN},
            **{f"central_{name}": keys.column(name) for name in _SIDE_OWN},
            "base_version": b["version"], "base_checksum": b["checksum"], "has_base": b["has"]}
    return pa.table({c: rows[c] for c in STATUS_SCHEMA.names}).cast(STATUS_SCHEMA)


def _local_side(loc: pa.Table, base: pa.Table) -> dict[str, pa.Array]:
    """What the local side needs besides the store's answer (run while the store compares):
    the check that ids are distinct, and every local id's base keys."""
    _distinct(loc)
    return _keys_at(base, loc.column("id"))


def _pushed_down(local: InvoiceSet, store: Any, *, fields: bool) -> Reconciliation | None:
    """``reconcile(local, store, scope="all")`` with the comparison of keys done by the store;
    None when its backend cannot (the caller reads it whole). The local rows whose keys differ
    (or that the store lacks) are compared with their fetched central rows as a full read
    does; the others are ``same``; central-only ids come from the keys the store returned."""
    from concurrent.futures import ThreadPoolExecutor

    from .io.central import read_central
    from .io.pushdown import PushdownStats, compare_keys, local_keys, supports_pushdown

    if not supports_pushdown(store):
        return None
    loc = local.invoices_table()
    base = local.base.invoices_table() if local.base is not None else INVOICE_SCHEMA.empty_table()
    keys, unverifiable = local_keys(loc)
    with ThreadPoolExecutor(1, thread_name_prefix="invoicekit-pushdown") as pool:
        aside = pool.submit(_local_side, loc, base)
        diff = compare_keys(store, keys)
        base_keys = aside.result()
        mine = diff.filter(diff.column("in_local"))
        # rows compared in full: the ids the store returned, and rows without an id (never staged)
        busy = pc.or_(pc.is_in(loc.column("id"), value_set=mine.column("id")), pc.is_null(loc.column("id")))
        busy = _flat(busy)
        others = diff.filter(pc.invert(diff.column("in_local")))
        only = pool.submit(_central_only_rows, others, base)  # beside the fetch and the comparison
        central = read_central(store, ids=mine.filter(mine.column("in_central")).column("id"))
        part = local.with_invoices(to_frame(loc.filter(busy), INVOICE_SCHEMA))
        part_status, fields_diff = _compare(part, central, fields=fields)
        status = pa.concat_tables([_local_rows(loc, busy, part_status, base_keys), only.result()])
    stats = PushdownStats(staged=keys.num_rows, returned=diff.num_rows, central_only=others.num_rows,
                          fetched=len(central), unverifiable=unverifiable)
    return Reconciliation(status=status.to_pandas(types_mapper=pd.ArrowDtype),
                          fields=fields_diff.to_pandas(types_mapper=pd.ArrowDtype), local=local,
                          central=central, scope="all", pushdown=stats)
