"""Validation: every broken rule of an :class:`InvoiceSet`, with the offending rows.

Rules (``rule`` column of the report):

================  ==============================================================
unparseable_json  ``client_data`` is not a JSON object / ``line_items`` not an array
not_numeric       total, quantity or unit price missing, not a number, or too precise
bad_timestamp     a timestamp that does not parse
missing_required  id, invoice_number, client name, currency, total or created_at empty
                  (a tombstone needs only its id)
negative_amount   a negative quantity or unit price
total_mismatch    ``total`` differs from the sum of the line totals
unknown_currency  ``currency`` is not an ISO 4217 code
duplicate_id      the same id on more than one row
bad_version       version missing or below 1
bad_sync_status   sync_status outside pending/syncing/synced/conflict/error
================  ==============================================================

The load-time rules come from ``InvoiceSet.problems`` (the loader saw the raw text);
the others are computed here over whole columns in DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pandas as pd
import pyarrow as pa

from . import _duck
from ._args import as_invoice_set
from ._html import frame_html, page
from .errors import ValidationError
from .schema import PROBLEM_SCHEMA, InvoiceSet, to_frame

__all__ = ["validate", "ValidationReport", "RULES", "SYNC_STATUSES"]

RULES = (
    "unparseable_json", "not_numeric", "bad_timestamp", "missing_required", "negative_amount",
    "total_mismatch", "unknown_currency", "duplicate_id", "bad_version", "bad_sync_status",
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


def _rules_sql() -> str:
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
           'version must be an integer >= 1'
    FROM inv WHERE version IS NULL OR version < 1
    UNION ALL
    SELECT source, source_row, id, 'bad_sync_status', 'sync_status', sync_status,
           'sync_status must be one of {", ".join(SYNC_STATUSES)}'
    FROM inv WHERE sync_status IS NULL OR sync_status NOT IN ({statuses})
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
        if self.ok:
            return f"<b>ValidationReport</b>: {self.n_invoices:,} invoices, no problems"
        return (
            f"<b>ValidationReport</b>: {self.n_invoices:,} invoices, "
            f"{len(self.problems):,} problems"
            + frame_html(self.summary(), caption="by rule")
            + frame_html(self.problems, caption="problems")
        )

    def to_html(self, path: str) -> None:
        """Write the report as a standalone HTML page."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page("Validation report", self._repr_html_()))

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
    con = _duck.connect(
        inv=invoice_set.invoices_table(), lines=invoice_set.lines_table(), loaded=loaded, iso=iso
    )
    try:
        computed = _duck.arrow(con, _rules_sql() + " UNION ALL SELECT * FROM loaded"
                               + " ORDER BY source, source_row, rule, field")
    finally:
        con.close()
    problems = to_frame(computed.rename_columns(PROBLEM_SCHEMA.names).cast(PROBLEM_SCHEMA), PROBLEM_SCHEMA)
    report = ValidationReport(problems=problems, n_invoices=len(invoice_set))
    if strict:
        report.raise_for_problems()
    return report
