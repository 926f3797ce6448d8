"""Build the checksummed payload (line-item JSON text, totals, checksums) from parsed lines.

The toolkit writes line items as Python's ``json.dumps`` writes a list of dicts with
default separators: ``[{"description": "x", "quantity": 2, "unit_price": 12.5}]``;
whole quantities as integers, prices as floats (``95.0``), as a device would.
"""

from __future__ import annotations

import pyarrow as pa

from . import _duck
from .integrity import checksum
from .schema import INVOICE_SCHEMA, LINE_SCHEMA, InvoiceSet

__all__ = ["rebuild", "client_json_sql"]

_REBUILD_SQL = """
WITH agg AS (
  SELECT invoice_id,
    '[' || string_agg('{"description": ' || to_json(description)::VARCHAR
                      || ', "quantity": ' || pyfloat(quantity, 3)
                      || ', "unit_price": ' || pyfloat(unit_price, 2) || '}', ', ' ORDER BY line_no) || ']'
      AS line_items,
    TRY_CAST(sum(line_total) AS DECIMAL(12,2)) AS total  -- NULL beyond NUMERIC(12,2): validation names it
  FROM ln GROUP BY invoice_id
)
SELECT inv.* REPLACE (agg.line_items AS line_items, agg.total AS total)
FROM inv JOIN agg ON agg.invoice_id = inv.id
"""

_PYFLOAT_MACRO = """
CREATE OR REPLACE TEMP MACRO pyfloat(x, scale) AS CASE
  WHEN scale = 3 AND x = trunc(x) THEN CAST(CAST(x AS BIGINT) AS VARCHAR)
  ELSE regexp_replace(regexp_replace(CAST(x AS VARCHAR), '0+$', ''), '\\.$', '.0') END
"""


def rebuild(invoices: pa.Table, lines: pa.Table) -> InvoiceSet:
    """Recompute ``line_items`` text, ``total`` and ``checksum`` of ``invoices`` from ``lines``.

    Invoices without lines are dropped (an invoice always has at least one line).
    """
    con = _duck.connect(inv=invoices, ln=lines)
    try:
        con.execute(_PYFLOAT_MACRO)
        inv = _duck.arrow(con, _REBUILD_SQL + " ORDER BY inv.source_row")
        ln = _duck.arrow(con, "SELECT * FROM ln ORDER BY invoice_id, line_no")
    finally:
        con.close()
    out = InvoiceSet.from_arrow(inv.cast(INVOICE_SCHEMA), ln.cast(LINE_SCHEMA))
    out.invoices["checksum"] = checksum(out.invoices)
    return out


def client_json_sql(prefix: str = "") -> str:
    """DuckDB expression building client JSON text from ``{prefix}client_*`` columns,
    keys in the devices' order (name, email, address, tax_id)."""
    keys = ("name", "email", "address", "tax_id")
    parts = [f"'\"{k}\": ' || coalesce(to_json({prefix}client_{k})::VARCHAR, 'null')" for k in keys]
    return "'{' || " + " || ', ' || ".join(parts) + " || '}'"
