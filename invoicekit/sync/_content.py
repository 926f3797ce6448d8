"""What an operation writes, as one SHA-256: the content half of every op id and ledger check.

The devices' checksum covers only the invoice number, client and line-item text and the
total; an operation also writes the currency, the timestamps, the version and the
tombstone. Two operations that write different values must never share an op id, and a
ledger must never take one for the other, so both hash everything written: one JSON array
of the canonical columns (timestamps as UTC microseconds, the total as its exact decimal
text), which no value can forge by containing a separator.
"""

from __future__ import annotations

import pyarrow as pa

from .. import _duck

__all__ = ["CONTENT_SHA_SQL", "content_sql", "content_sha"]

#: DuckDB expression over the canonical invoice columns (an InvoiceSet's invoices table)
CONTENT_SHA_SQL = """sha256(to_json(list_value(
  CAST({p}id AS VARCHAR), CAST({p}invoice_number AS VARCHAR), CAST({p}client_data AS VARCHAR),
  CAST({p}line_items AS VARCHAR), CAST({p}currency AS VARCHAR), CAST({p}total AS VARCHAR),
  CAST(epoch_us({p}created_at) AS VARCHAR), CAST(epoch_us({p}modified_at) AS VARCHAR),
  CAST(epoch_us({p}deleted_at) AS VARCHAR), CAST({p}version AS VARCHAR), CAST({p}checksum AS VARCHAR)))::VARCHAR)"""


def content_sql(prefix: str = "") -> str:
    """:data:`CONTENT_SHA_SQL` for columns qualified by ``prefix`` (e.g. ``"t."``)."""
    return CONTENT_SHA_SQL.format(p=prefix)


def content_sha(invoices: pa.Table) -> pa.Array:
    """The content hash of each row of a canonical invoices table, in its order."""
    con = _duck.connect(inv=invoices)
    try:
        out = _duck.arrow(con, f"SELECT {content_sql()} AS h FROM inv")
    finally:
        con.close()
    return out.column("h").combine_chunks()
