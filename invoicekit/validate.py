"""Validation: every broken rule of an :class:`InvoiceSet`, with the offending rows.

Rules (``rule`` column of the report):

================  ==============================================================
unparseable_json  ``client_data`` is not a JSON object / ``line_items`` not an array;
                  for ``client_data`` (stored as ``jsonb``) as PostgreSQL reads JSON:
                  ``NaN``/``Infinity``, trailing commas and numbers beyond ``numeric``'s
                  digits (131072 before the point, 16383 after) are not JSON
not_numeric       total, quantity or unit price missing, not a number, or too precise
out_of_range      a number the central store cannot hold: a total, unit price or line
                  total (quantity x unit price, rounded) beyond ``NUMERIC(12,2)``
                  (±9999999999.99), a quantity beyond ``NUMERIC(12,3)`` (±999999999.999);
                  field ``total`` or ``line_items[n].quantity|unit_price|line_total``
bad_timestamp     a timestamp that does not parse, or one outside years 1 to 9999 UTC
                  (``0001-01-01`` to ``9999-12-31 23:59:59.999999``: what the central
                  store's clients can read back)
nul_character     a NUL character (``\x00``) in id, invoice_number, currency, checksum,
                  client_data or line_items text, or in a line's description
                  (``line_items[n].description``, from a ``\u0000`` escape); in
                  ``client_data`` the escape ``\u0000`` too (PostgreSQL's ``text`` holds
                  no NUL, its ``jsonb`` refuses the escape)
missing_required  id, invoice_number, client name, currency, total or created_at empty
                  (a tombstone needs only its id)
negative_amount   a negative quantity or unit price
total_mismatch    ``total`` differs from the sum of the line totals
unknown_currency  ``currency`` is not an ISO 4217 code
duplicate_id      the same id on more than one row
bad_version       version missing, below 1 or above 2147483647 (the central ``INTEGER``)
bad_sync_status   sync_status outside pending/syncing/synced/conflict/error
================  ==============================================================

A set that passes every rule is one the central store can hold (see
:mod:`invoicekit.io._central_sql`). The load-time rules come from ``InvoiceSet.problems``
(the loader saw the raw text: ``unparseable_json``, ``not_numeric``, ``out_of_range``,
``bad_timestamp``; the canonical field is then null and the row kept); the others are
computed here over whole columns in DuckDB (``bad_timestamp`` again for a set built from
frames whose timestamps lie outside the range).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import _duck
from ._args import as_invoice_set
from ._normalize import IN_TIMESTAMP_RANGE, MAX_VERSION, NUL_ESCAPE, TIMESTAMP_COLUMNS
from .errors import ValidationError
from .schema import PROBLEM_SCHEMA, InvoiceSet, to_frame

__all__ = ["validate", "ValidationReport", "RULES", "SYNC_STATUSES"]

RULES = (
    "unparseable_json", "not_numeric", "out_of_range", "bad_timestamp", "nul_character", "missing_required",
    "negative_amount", "total_mismatch", "unknown_currency", "duplicate_id", "bad_version", "bad_sync_status",
)
SYNC_STATUSES = ("pending", "syncing", "synced", "conflict", "error")


@lru_cache(maxsize=1)
def iso_currencies() -> frozenset[str]:
    """ISO 4217 currency codes known to Babel (CLDR)."""
    from babel.numbers import list_currencies

    return frozenset(list_currencies())


_REQUIRED = {
    "id": "id", "invoice_number": "invoice_number", "client_name": "client_data.name",
    "currency": "currency", "total": "total", "created_at": "created_at",
}


#: the invoice columns the central store keeps as ``text`` (which holds no NUL character)
NUL_FIELDS = ("id", "invoice_number", "client_data", "line_items", "currency", "checksum")
_NUL_SHOWN = "replace(left({col}, 80), chr(0), '\\x00')"  # the value, its NULs made visible


def _nul_sql(raw: tuple[str, ...], *, descriptions: bool) -> list[str]:
    """nul_character: a NUL in the text columns ``raw`` (those that may hold one), the JSON
    escape ``\\u0000`` in client_data (always looked for: its column is also stored as
    jsonb) and, with ``descriptions``, a NUL in a line's description."""
    rows = [
        f"""SELECT source, source_row, id, 'nul_character', '{col}', {_NUL_SHOWN.format(col=col)},
                   '{col} contains a NUL character, which the central store cannot hold (PostgreSQL text)'
            FROM inv WHERE contains({col}, chr(0))"""
        for col in raw if col != "client_data"
    ]
    where = f"contains(client_data, '\\u0000') AND regexp_matches(client_data, '{NUL_ESCAPE}')"
    shown = _NUL_SHOWN.format(col="client_data")
    rows.append(f"""SELECT source, source_row, id, 'nul_character', 'client_data', {shown},
                   'client_data contains a NUL character or the JSON escape \\u0000, which the central store '
                   || 'cannot hold (PostgreSQL text holds no NUL, jsonb refuses the escape)'
            FROM inv WHERE {"contains(client_data, chr(0)) OR " if "client_data" in raw else ""}({where})""")
    if descriptions:
        rows.append(f"""
    SELECT i.source, i.source_row, l.invoice_id, 'nul_character', 'line_items[' || l.line_no || '].description',
           {_NUL_SHOWN.format(col="l.description")},
           'description contains a NUL character (a \\u0000 escape in line_items), which the central '
           || 'store cannot hold (PostgreSQL text)'
    FROM lines l JOIN single i ON i.id = l.invoice_id WHERE contains(l.description, chr(0))""")
    return rows


def _timestamp_range_sql(columns: tuple[str, ...]) -> list[str]:
    """bad_timestamp for parsed timestamps outside the central store's range (the loader
    reports and nulls those it reads; this catches sets built from frames)."""
    return [
        f"""SELECT source, source_row, id, 'bad_timestamp', '{col}', CAST({col} AS VARCHAR),
                   '{col} ' || CAST({col} AS VARCHAR) || ' is outside years 1 to 9999 UTC, '
                   || 'which the central store and its clients hold'
            FROM inv WHERE NOT ({col} {IN_TIMESTAMP_RANGE})"""
        for col in columns
    ]


def _may_hold_nul(column: pa.ChunkedArray) -> bool:
    """False when no value of the string ``column`` holds a NUL: its data buffers have no
    zero byte (one vectorised pass; a zero byte outside the values only costs the exact check)."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return True
    for chunk in column.chunks:
        data = chunk.buffers()[2]
        if data is not None and data.size and np.frombuffer(data, np.uint8).min() == 0:
            return True
    return False


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: :data:`~invoicekit._normalize.TIMESTAMP_RANGE` in microseconds since the epoch
_TIMESTAMP_US = tuple((t.replace(tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)
                      for t in (datetime.min, datetime.max))


def _outside_range(column: pa.ChunkedArray) -> bool:
    """True when a timestamp of ``column`` lies outside the central store's range."""
    low_high = pc.min_max(column.cast(pa.int64()))
    low, high = low_high["min"].as_py(), low_high["max"].as_py()
    return low is not None and (low < _TIMESTAMP_US[0] or high > _TIMESTAMP_US[1])


def _storable_sql(inv: pa.Table, lines: pa.Table) -> str:
    """The rules on what the central store cannot hold, for the columns that may break them:
    a quick vectorised look over each column leaves out the checks a clean set cannot fail."""
    raw = tuple(col for col in NUL_FIELDS if _may_hold_nul(inv.column(col)))
    parts = _nul_sql(raw, descriptions=_may_hold_nul(lines.column("description")))
    parts += _timestamp_range_sql(tuple(col for col in TIMESTAMP_COLUMNS if _outside_range(inv.column(col))))
    return "".join(" UNION ALL " + part for part in parts)


def _rules_sql(storable: str = "") -> str:


    missing = " UNION ALL ".join(
        f"""SELECT source, source_row, id, 'missing_required', '{field}', NULL,
                   '{field} is required but empty'
            FROM inv i WHERE ({"true" if col == "id" else "deleted_at IS NULL"})
              AND ({col} IS NULL {"" if col in ("total", "created_at") else "OR trim(" + col + ") = ''"})
              AND NOT EXISTS (SELECT 1 FROM loaded p WHERE p.source IS NOT DISTINCT FROM i.source
                              AND p.source_row IS NOT DISTINCT FROM i.source_row
                              AND (p.field = '{field}'
                                   OR (p.field = 'client_data' AND '{field}' = 'client_data.name')))"""
        for col, field in _REQUIRED.items()
    )
    statuses = ", ".join(f"'{s}'" for s in SYNC_STATUSES)
    # line-based rules need an unambiguous invoice for each line: ids on several rows
    # (e.g. after concatenating stores) are reported as duplicate_id and skipped here
    return f"""
    WITH single AS (SELECT * FROM inv WHERE id IN (SELECT id FROM inv GROUP BY id HAVING count(*) = 1))
    {missing}
    UNION ALL
    SELECT i.source, i.source_row, l.invoice_id, 'negative_amount', 'line_items[' || l.line_no || '].quantity',
           CAST(l.quantity AS VARCHAR), 'quantity is negative'
    FROM lines l JOIN single i ON i.id = l.invoice_id WHERE l.quantity < 0
    UNION ALL
    SELECT i.source, i.source_row, l.invoice_id, 'negative_amount', 'line_items[' || l.line_no || '].unit_price',
           CAST(l.unit_price AS VARCHAR), 'unit price is negative'
    FROM lines l JOIN single i ON i.id = l.invoice_id WHERE l.unit_price < 0
    UNION ALL
    SELECT i.source, i.source_row, i.id, 'total_mismatch', 'total', CAST(i.total AS VARCHAR),
           'total ' || CAST(i.total AS VARCHAR) || ' != sum of line totals ' || CAST(s.lines_total AS VARCHAR)
    FROM single i JOIN (SELECT invoice_id, sum(line_total) AS lines_total, count(*) - count(line_total) AS unparsed
                     FROM lines GROUP BY invoice_id) s ON s.invoice_id = i.id
    WHERE s.unparsed = 0 AND i.total IS NOT NULL AND i.total <> s.lines_total
    UNION ALL
    SELECT source, source_row, id, 'total_mismatch', 'total', CAST(total AS VARCHAR),
           'total ' || CAST(total AS VARCHAR) || ' but the invoice has no line items'
    FROM single i WHERE total IS NOT NULL AND total <> 0
      AND line_items IS NOT NULL AND NOT EXISTS (SELECT 1 FROM lines l WHERE l.invoice_id = i.id)
      AND NOT EXISTS (SELECT 1 FROM loaded p WHERE p.source IS NOT DISTINCT FROM i.source
                      AND p.source_row IS NOT DISTINCT FROM i.source_row AND p.field = 'line_items')
    UNION ALL
    SELECT source, source_row, id, 'unknown_currency', 'currency', currency,
           'currency ' || currency || ' is not an ISO 4217 code'
    FROM inv WHERE currency IS NOT NULL AND trim(currency) <> '' AND currency NOT IN (SELECT code FROM iso)
    UNION ALL
    SELECT source, source_row, id, 'duplicate_id', 'id', id,
           'id appears ' || count(*) OVER (PARTITION BY id) || ' times'
    FROM inv WHERE id IS NOT NULL QUALIFY count(*) OVER (PARTITION BY id) > 1
    UNION ALL
    SELECT source, source_row, id, 'bad_version', 'version', CAST(version AS VARCHAR),
           'version must be an integer from 1 to {MAX_VERSION} (the central store''s INTEGER)'
    FROM inv WHERE version IS NULL OR version < 1 OR version > {MAX_VERSION}
    UNION ALL
    SELECT source, source_row, id, 'bad_sync_status', 'sync_status', sync_status,
           'sync_status must be one of {", ".join(SYNC_STATUSES)}'
    FROM inv WHERE sync_status IS NULL OR sync_status NOT IN ({statuses})
    {storable}
    """


@dataclass(frozen=True)
class ValidationReport:
    """Every broken rule, one row per (offending row, rule, field)."""

    problems: pd.DataFrame
    n_invoices: int

    @property
    def ok(self) -> bool:
        """True when no rule is broken."""
        return self.problems.empty

    def summary(self) -> pd.DataFrame:
        """Count of problems and of distinct invoices per rule."""
        if self.problems.empty:
            return pd.DataFrame({"rule": [], "problems": [], "invoices": []})
        return (
            self.problems.groupby("rule")
            .agg(problems=("rule", "size"), invoices=("id", "nunique"))
            .reset_index()
        )

    def raise_for_problems(self, *, context: str = "") -> None:
        """Raise :class:`~invoicekit.errors.ValidationError` carrying the problems, if any."""
        if not self.ok:
            raise ValidationError(self.problems, context=context)

    def _repr_html_(self) -> str:
        """The compact report: counts by rule and the first problems."""
        from .reports import validation_html

        return validation_html(self, standalone=False)

    def to_html(self, path: str) -> None:
        """Write the complete report: every problem by rule, filter and sort (works offline)."""
        from .reports import validation_html, write

        write(path, validation_html(self))

    def __repr__(self) -> str:
        return f"ValidationReport({self.n_invoices:,} invoices, {len(self.problems):,} problems)"


def validate(invoice_set: InvoiceSet, *, strict: bool = False) -> ValidationReport:
    """Check ``invoice_set`` against every rule (see module doc); never mutates it.

    With ``strict=True`` a :class:`~invoicekit.errors.ValidationError` carrying the
    problems is raised instead of returning a report that has any. ``invoice_set`` may
    also be a store path or URL (loaded for you).
    """
    invoice_set = as_invoice_set(invoice_set, func="validate", param="invoice_set")
    iso = pa.table({"code": pa.array(sorted(iso_currencies()), pa.string())})
    loaded = pa.Table.from_pandas(invoice_set.problems, preserve_index=False).cast(PROBLEM_SCHEMA)
    inv, lines = invoice_set.invoices_table(), invoice_set.lines_table()
    con = _duck.connect(inv=inv, lines=lines, loaded=loaded, iso=iso)
    try:
        computed = _duck.arrow(con, _rules_sql(_storable_sql(inv, lines)) + " UNION ALL SELECT * FROM loaded"
                               + " ORDER BY source, source_row, rule, field")
    finally:
        con.close()
    problems = to_frame(computed.rename_columns(PROBLEM_SCHEMA.names).cast(PROBLEM_SCHEMA), PROBLEM_SCHEMA)
    report = ValidationReport(problems=problems, n_invoices=len(invoice_set))
    if strict:
        report.raise_for_problems()
    return report
