"""What every backend shares: the central tables' column lists, rows shaped for them, and
the SQL fragments common to the compare-and-set write and the sync batch on every dialect."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv

from ... import _duck
from ...schema import InvoiceSet
from .._write import same_client

#: columns of ``invoices`` a writer sets, in the order rows are staged
INV_COLS = [
    "id", "invoice_number", "client_data_text", "line_items_text", "currency", "total", "created_at",
    "modified_at", "version", "sync_status", "checksum", "deleted_at", "origin",
]
#: columns of ``invoice_lines``
LINE_COLS = ["invoice_id", "line_no", "description", "quantity", "unit_price", "line_total"]

_CENTRAL_ROWS_SQL = """
SELECT id, invoice_number, client_data AS client_data_text, line_items AS line_items_text, currency,
       {total} AS total, {ts}(created_at) AS created_at, {ts}(modified_at) AS modified_at,
       version, sync_status, checksum, {ts}(deleted_at) AS deleted_at, source AS origin
FROM inv
"""


def central_rows(invoice_set: InvoiceSet, *, text: bool) -> tuple[pa.Table, pa.Table]:
    """Invoices and lines shaped as the central tables (money/timestamps as text with ``text``);
    a store's :meth:`~invoicekit.io.backends.CentralStore.central_rows` says which it needs.
    Where the environment configures keys, the client JSON is stored encrypted."""
    from ...security import encrypt_if_configured

    invoice_set = encrypt_if_configured(invoice_set)
    con = _duck.connect(inv=invoice_set.invoices_table(), ln=invoice_set.lines_table())
    try:
        if text:
            ts = "strftime_iso"
            con.execute(
                "CREATE OR REPLACE TEMP MACRO strftime_iso(t) AS strftime(t, '%Y-%m-%dT%H:%M:%S.%f+00:00')"
            )
            inv = _duck.arrow(con, _CENTRAL_ROWS_SQL.format(total="CAST(total AS VARCHAR)", ts=ts))
            lines = _duck.arrow(
                con,
                "SELECT invoice_id, line_no, description, CAST(quantity AS VARCHAR) AS quantity, "
                "CAST(unit_price AS VARCHAR) AS unit_price, CAST(line_total AS VARCHAR) AS line_total FROM ln",
            )
        else:
            inv = _duck.arrow(con, _CENTRAL_ROWS_SQL.format(total="total", ts=""))
            lines = _duck.arrow(con, f"SELECT {', '.join(LINE_COLS)} FROM ln")
    finally:
        con.close()
    return inv, lines


def with_stage_extra(inv: pa.Table, undelete: frozenset[str], notes) -> pa.Table:
    """``inv`` (rows of :data:`INV_COLS`) plus the :data:`STAGE_EXTRA` columns: the ``undelete``
    flag of the ids in ``undelete``, the ``note`` of the ids in ``notes`` (a mapping id -> text)."""
    import pyarrow.compute as pc

    ids = inv.column("id")
    flag = pc.is_in(ids, value_set=pa.array(sorted(undelete), pa.string())) if undelete else \
        pa.repeat(pa.scalar(False), inv.num_rows)
    if notes:
        keys = pa.array(list(notes), pa.string())
        note = pc.take(pa.array(list(notes.values()), pa.string()), pc.index_in(ids, value_set=keys))
    else:
        note = pa.nulls(inv.num_rows, pa.string())
    return inv.append_column("undelete", flag).append_column("note", note)


def apply_migrations(conn, migrations: list[list[str]], *, mark: str, now: str) -> int:
    """Run the migrations not yet recorded in ``invoicekit_schema`` on ``conn`` (a DB-API
    connection inside the caller's transaction; ``mark`` is its parameter placeholder)."""
    done = {r[0] for r in conn.execute("SELECT version FROM invoicekit_schema")}
    for version, stmts in enumerate(migrations, start=1):
        if version in done:
            continue
        for stmt in stmts:
            conn.execute(stmt)
        conn.execute(f"INSERT INTO invoicekit_schema VALUES ({mark}, {mark})", (version, now))
    return len(migrations)


def csv_bytes(table: pa.Table) -> bytes:
    """``table`` as headerless CSV, every value quoted (for ``COPY ... FROM STDIN (FORMAT csv)``)."""
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return buf.getvalue()


# -- compare-and-set writes (see io/_write.py) ---------------------------------------------
#: ``SET`` list of an update of central row from staged row ``s``
CAS_SET = ", ".join(f"{c} = s.{c}" for c in INV_COLS if c != "id")

#: the staged columns a write adds to :data:`INV_COLS`: may this row clear a tombstone
#: (write_central's ``undelete``), and the audit detail of this row (its ``notes``)
STAGE_EXTRA = ["undelete", "note"]

#: one audit row per row written (``ik_written``), placeholders {now} {actor} {op}
CAS_AUDIT = """
INSERT INTO invoicekit_audit (at, actor, op_id, invoice_id, kind, strategy, before_version, after_version,
                              before_checksum, after_checksum, detail)
SELECT {now}, {actor}, {op}, w.id, w.kind, 'write_central', w.before_version, s.version, w.before_checksum, s.checksum,
       s.note
FROM ik_written w JOIN ik_stage s ON s.id = w.id
"""
#: the lines of the rows written are replaced by the staged ones
CAS_LINES = [
    "DELETE FROM invoice_lines WHERE invoice_id IN (SELECT id FROM ik_written)",
    f"INSERT INTO invoice_lines ({', '.join(LINE_COLS)}) SELECT {', '.join(LINE_COLS)} FROM ik_stage_lines "
    "WHERE invoice_id IN (SELECT id FROM ik_written)",
]
#: the temporary table of the rows a write wrote (columns of ``_write.decide_sql``'s ``written``)
CAS_WRITTEN = ("ik_written (id TEXT PRIMARY KEY, outcome TEXT, before_version INTEGER, before_checksum TEXT, "
               "kind TEXT)")

# -- sync batches ---------------------------------------------------------------------------
#: ledger row ``l`` recorded the content of staged push ``p``: a redelivery (rows from before
#: schema version 6 recorded no content hash: their version and checksum decide), else an op id
#: reused for another change, which is refused (a conflict), never skipped
LEDGER_SAME = """(l.content_sha = p.content_sha
  OR (l.content_sha IS NULL AND l.new_version = p.version AND l.payload_checksum IS NOT DISTINCT FROM p.checksum))"""

#: the ledger recorded exactly push ``p``'s content at its version for its invoice: an older
#: operation delivered again under another op id (re-queued later), after later ones applied
LEDGER_HAS_CONTENT = """EXISTS (SELECT 1 FROM invoicekit_ledger l2 WHERE l2.invoice_id = p.id
  AND l2.new_version = p.version AND l2.content_sha = p.content_sha)"""

#: central row ``i`` already holds push ``p``'s content at its version (the same change delivered
#: again under another op id, e.g. re-queued by a device): redelivered
CENTRAL_SAME = f"""(i.version = p.version AND i.checksum IS NOT DISTINCT FROM p.checksum
  AND i.invoice_number = p.invoice_number AND {same_client("i", "p")}
  AND i.line_items_text = p.line_items_text AND i.currency = p.currency AND i.total = p.total
  AND (i.deleted_at IS NULL) = (p.deleted_at IS NULL))"""
