"""Central side of ``apply_sync``: optimistic-concurrency upserts, ledger and audit, per batch.

Each batch is one transaction: the payloads go through a staging table (COPY on
PostgreSQL), operations already in ``invoicekit_ledger`` are skipped, and one
``INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE version = expected`` applies the rest.
Rows whose central version moved since the plan are not touched and come back as
conflicts. Applied operations enter the ledger and the append-only audit trail in the
same transaction, so an operation is applied exactly once even if the caller dies
between the commit and its acknowledgement.
"""

from __future__ import annotations

import pyarrow as pa

from ..io import _sqlite
from ..io.central import _INV_COLS, _LINE_COLS, CentralStore, _csv

_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in _INV_COLS if c != "id")
_COLS = ", ".join(_INV_COLS)

_PG_APPLY = f"""
WITH before AS (
  SELECT i.id, i.version, i.checksum FROM invoices i JOIN ik_push p USING (id)
), up AS (
  INSERT INTO invoices ({_COLS})
  SELECT {_COLS} FROM ik_push p
  WHERE p.expected IS NULL OR EXISTS (SELECT 1 FROM invoices i WHERE i.id = p.id)
  ON CONFLICT (id) DO UPDATE SET {_SET}
  WHERE invoices.version = (SELECT q.expected FROM ik_push q WHERE q.id = EXCLUDED.id)
  RETURNING id, version, checksum
), led AS (
  INSERT INTO invoicekit_ledger (op_id, invoice_id, new_version, payload_checksum)
  SELECT p.op_id, up.id, up.version, up.checksum FROM up JOIN ik_push p USING (id)
), aud AS (
  INSERT INTO invoicekit_audit (actor, op_id, invoice_id, kind, strategy, before_version, after_version,
                                before_checksum, after_checksum)
  SELECT %(actor)s, p.op_id, up.id,
         CASE WHEN b.id IS NULL THEN 'insert' WHEN p.deleted_at IS NOT NULL THEN 'delete' ELSE 'update' END,
         %(strategy)s, b.version, up.version, b.checksum, up.checksum
  FROM up JOIN ik_push p USING (id) LEFT JOIN before b USING (id)
)
INSERT INTO ik_applied SELECT id FROM up
"""

_PG_DROP_CHANGED_LINES = """
DELETE FROM invoice_lines l USING ik_applied a
WHERE l.invoice_id = a.id AND NOT EXISTS (
  SELECT 1 FROM ik_push_lines s
  WHERE s.invoice_id = l.invoice_id AND s.line_no = l.line_no AND s.description IS NOT DISTINCT FROM l.description
    AND s.quantity = l.quantity AND s.unit_price = l.unit_price AND s.line_total = l.line_total)
"""


def apply_pg(store: CentralStore, inv: pa.Table, lines: pa.Table, *, actor: str, strategy: str) -> tuple[set, set]:
    """Apply one batch on PostgreSQL; returns (applied op ids, already-applied op ids)."""
    with store.pg() as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE ik_push (LIKE invoices INCLUDING DEFAULTS) ON COMMIT DROP")
        cur.execute("ALTER TABLE ik_push ADD COLUMN op_id TEXT, ADD COLUMN expected INTEGER")
        cur.execute("CREATE TEMP TABLE ik_push_lines (LIKE invoice_lines) ON COMMIT DROP")
        cols = _INV_COLS + ["op_id", "expected"]
        with cur.copy(f"COPY ik_push ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(_csv(inv.select(cols)))
        with cur.copy(f"COPY ik_push_lines ({', '.join(_LINE_COLS)}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(_csv(lines.select(_LINE_COLS)))
        cur.execute("CREATE UNIQUE INDEX ON ik_push (id)")
        cur.execute("CREATE UNIQUE INDEX ON ik_push_lines (invoice_id, line_no)")
        cur.execute("CREATE TEMP TABLE ik_applied (id TEXT PRIMARY KEY) ON COMMIT DROP")
        # planner statistics for the staged rows: without them PostgreSQL guesses and may scan
        # the whole invoices table (per batch) instead of probing its primary key
        cur.execute("ANALYZE ik_push, ik_push_lines")
        cur.execute("DELETE FROM ik_push p USING invoicekit_ledger l WHERE l.op_id = p.op_id RETURNING p.op_id")
        already = {r[0] for r in cur.fetchall()}
        cur.execute(_PG_APPLY, {"actor": actor, "strategy": strategy})
        cur.execute("ANALYZE ik_applied")
        # lines: only those that changed are rewritten (an edit usually touches one line)
        cur.execute(_PG_DROP_CHANGED_LINES)
        cur.execute(f"INSERT INTO invoice_lines ({', '.join(_LINE_COLS)}) SELECT {', '.join(_LINE_COLS)} "
                    "FROM ik_push_lines s JOIN ik_applied a ON a.id = s.invoice_id "
                    "ON CONFLICT (invoice_id, line_no) DO NOTHING")
        cur.execute("SELECT p.op_id FROM ik_push p JOIN ik_applied a USING (id)")
        applied = {r[0] for r in cur.fetchall()}
        # a concurrent run of the same plan may have committed these ops while we waited on their rows
        cur.execute("SELECT p.op_id FROM ik_push p JOIN invoicekit_ledger l USING (op_id) "
                    "WHERE p.id NOT IN (SELECT id FROM ik_applied)")
        already |= {r[0] for r in cur.fetchall()}
    return applied, already


def apply_sqlite(store: CentralStore, inv: pa.Table, lines: pa.Table, *, actor: str, strategy: str,
                 now: str) -> tuple[set, set]:
    """Apply one batch on the embedded SQLite central store (same semantics, plain SQL)."""
    cols = _INV_COLS + ["op_id", "expected"]
    rows = list(zip(*(inv.column(c).to_pylist() for c in cols)))
    line_rows = list(zip(*(lines.column(c).to_pylist() for c in _LINE_COLS)))
    with _sqlite.write_transaction(store.path) as conn:
        conn.execute(f"CREATE TEMP TABLE ik_push ({', '.join(cols)}, PRIMARY KEY (id))")
        conn.execute(f"CREATE TEMP TABLE ik_push_lines ({', '.join(_LINE_COLS)})")
        conn.executemany(f"INSERT INTO ik_push VALUES ({', '.join('?' * len(cols))})", rows)
        conn.executemany(f"INSERT INTO ik_push_lines VALUES ({', '.join('?' * len(_LINE_COLS))})", line_rows)
        already = {r[0] for r in conn.execute(
            "SELECT p.op_id FROM ik_push p JOIN invoicekit_ledger l ON l.op_id = p.op_id")}
        conn.execute("DELETE FROM ik_push WHERE op_id IN (SELECT op_id FROM invoicekit_ledger)")
        conn.execute("CREATE TEMP TABLE ik_before AS SELECT i.id, i.version, i.checksum FROM invoices i "
                     "JOIN ik_push p ON p.id = i.id")
        set_ = ", ".join(f"{c} = excluded.{c}" for c in _INV_COLS if c != "id")
        applied_ids = [r[0] for r in conn.execute(
            f"INSERT INTO invoices ({_COLS}) SELECT {_COLS} FROM ik_push p "
            "WHERE p.expected IS NULL OR EXISTS (SELECT 1 FROM invoices i WHERE i.id = p.id) "
            f"ON CONFLICT(id) DO UPDATE SET {set_} "
            "WHERE invoices.version = (SELECT q.expected FROM ik_push q WHERE q.id = excluded.id) RETURNING id"
        ).fetchall()]
        conn.execute("CREATE TEMP TABLE ik_applied (id TEXT PRIMARY KEY)")
        conn.executemany("INSERT INTO ik_applied VALUES (?)", [(i,) for i in applied_ids])
        conn.execute("INSERT INTO invoicekit_ledger (op_id, invoice_id, new_version, payload_checksum, applied_at) "
                     "SELECT p.op_id, p.id, p.version, p.checksum, ? FROM ik_push p JOIN ik_applied a ON a.id = p.id",
                     (now,))
        conn.execute(
            "INSERT INTO invoicekit_audit (at, actor, op_id, invoice_id, kind, strategy, before_version, after_version,"
            " before_checksum, after_checksum) "
            "SELECT ?, ?, p.op_id, p.id, CASE WHEN b.id IS NULL THEN 'insert' WHEN p.deleted_at IS NOT NULL "
            "THEN 'delete' ELSE 'update' END, ?, b.version, p.version, b.checksum, p.checksum "
            "FROM ik_push p JOIN ik_applied a ON a.id = p.id LEFT JOIN ik_before b ON b.id = p.id",
            (now, actor, strategy))
        conn.execute("DELETE FROM invoice_lines WHERE invoice_id IN (SELECT id FROM ik_applied)")
        conn.execute(f"INSERT INTO invoice_lines ({', '.join(_LINE_COLS)}) SELECT {', '.join(_LINE_COLS)} "
                     "FROM ik_push_lines WHERE invoice_id IN (SELECT id FROM ik_applied)")
        applied = {r[0] for r in conn.execute("SELECT p.op_id FROM ik_push p JOIN ik_applied a ON a.id = p.id")}
        for t in ("ik_push", "ik_push_lines", "ik_before", "ik_applied"):
            conn.execute(f"DROP TABLE temp.{t}")
    return applied, already
