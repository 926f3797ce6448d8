"""Central side of ``apply_sync``: optimistic-concurrency writes, ledger and audit, per batch.

Each batch is one transaction: the payloads go through a staging table (COPY on
PostgreSQL), operations already in ``invoicekit_ledger`` are skipped, ``UPDATE ... FROM``
staging ``WHERE version = expected`` applies the edits and deletions (two statements: edits
that keep the client text, then those that change it) and one ``INSERT ... ON CONFLICT (id)
DO NOTHING`` the new invoices. Rows whose central
version moved since the plan (or that appeared meanwhile) are not touched and come back
as conflicts. Applied operations enter the ledger and the append-only audit trail in the
same statement, so an operation is applied exactly once even if the caller dies between
the commit and its acknowledgement.

Why an ``UPDATE`` and not one ``INSERT ... ON CONFLICT DO UPDATE`` for edits: the update
can return the row as it was (version and checksum before, for the audit) from the same
index probe, and it needs no per-row subquery for the expected version; see
BENCHMARKS.md for the measured difference.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ..io import _sqlite
from ..io.central import _INV_COLS, _LINE_COLS, CentralStore, _csv

_COLS = ", ".join(_INV_COLS)
_LCOLS = ", ".join(_LINE_COLS)
_UPD_SET = ", ".join(f"{c} = p.{c}" for c in _INV_COLS if c != "id")

# What every applied operation leaves, from a CTE ``done`` (id, op_id, version, checksum,
# before_version, before_checksum, kind, lines_changed): its ledger row, its audit row, and
# its id in ``ik_applied`` for the line items step.
_RECORD = """, led AS (
  INSERT INTO invoicekit_ledger (op_id, invoice_id, new_version, payload_checksum, content_sha)
  SELECT op_id, id, version, checksum, content_sha FROM done
), aud AS (
  INSERT INTO invoicekit_audit (actor, op_id, invoice_id, kind, strategy, before_version, after_version,
                                before_checksum, after_checksum)
  SELECT %(actor)s, op_id, id, kind, %(strategy)s, before_version, version, before_checksum, checksum FROM done
)
INSERT INTO ik_applied (id, op_id, lines_changed) SELECT id, op_id, lines_changed FROM done
"""

# Updates: one index probe per staged row (the planner is steered to nested loops, see
# apply_pg); ``o`` is the row as it was before this statement (same snapshot), which the
# audit trail records. A row whose version moved is not matched: it comes back as a conflict.
# Two statements: edits that keep the client text as it is leave ``client_data_text`` out of
# the SET list, so PostgreSQL does not recompute the five generated client columns (five JSON
# parses per row, about a third of the update's CPU); the second statement takes the edits
# whose client text changed (and only the staged rows the first did not apply).
_PG_UPDATE_SQL = """
WITH done AS (
  UPDATE invoices i SET {set}
  FROM ik_push p JOIN invoices o ON o.id = p.id
  WHERE i.id = p.id AND p.expected IS NOT NULL AND i.version = p.expected AND {client}
  RETURNING i.id, p.op_id, p.content_sha, i.version, i.checksum, o.version AS before_version,
            o.checksum AS before_checksum,
            CASE WHEN p.deleted_at IS NOT NULL THEN 'delete' ELSE 'update' END AS kind,
            o.line_items_text IS DISTINCT FROM i.line_items_text AS lines_changed
)"""
_PG_UPDATES = [
    _PG_UPDATE_SQL.format(set=", ".join(f"{c} = p.{c}" for c in _INV_COLS if c not in ("id", "client_data_text")),
                          client="i.client_data_text = p.client_data_text") + _RECORD,
    _PG_UPDATE_SQL.format(set=_UPD_SET, client="i.client_data_text IS DISTINCT FROM p.client_data_text "
                                                "AND NOT EXISTS (SELECT 1 FROM ik_applied a WHERE a.id = p.id)")
    + _RECORD,
]

# Creates: rows the central store does not have yet (an id it has already is a conflict).
_PG_INSERT = f"""
WITH ins AS (
  INSERT INTO invoices ({_COLS})
  SELECT {_COLS} FROM ik_push p WHERE p.expected IS NULL
  ON CONFLICT (id) DO NOTHING
  RETURNING id, version, checksum
), done AS (
  SELECT ins.id, p.op_id, p.content_sha, ins.version, ins.checksum, NULL::integer AS before_version,
         NULL::text AS before_checksum,
         'insert' AS kind, true AS lines_changed
  FROM ins JOIN ik_push p USING (id)
)""" + _RECORD

# Line items of applied invoices whose line_items text changed (the toolkit writes the text
# and the lines together): one MERGE updates the lines that differ in place and inserts new
# line numbers (unchanged lines are not touched), then lines past the payload's count go.
_PG_LINES = [
    f"""MERGE INTO invoice_lines l
        USING (SELECT s.* FROM ik_push_lines s JOIN ik_applied a ON a.id = s.invoice_id AND a.lines_changed) s
        ON l.invoice_id = s.invoice_id AND l.line_no = s.line_no
        WHEN MATCHED AND (l.description, l.quantity, l.unit_price, l.line_total)
                         IS DISTINCT FROM (s.description, s.quantity, s.unit_price, s.line_total) THEN
          UPDATE SET description = s.description, quantity = s.quantity, unit_price = s.unit_price,
                     line_total = s.line_total
        WHEN NOT MATCHED THEN
          INSERT ({_LCOLS}) VALUES ({", ".join("s." + c for c in _LINE_COLS)})""",
    """DELETE FROM invoice_lines l USING ik_applied a JOIN ik_push p ON p.id = a.id
        WHERE a.lines_changed AND l.invoice_id = a.id AND l.line_no > coalesce(p.n_lines, 0)""",
]
# An op id the ledger holds: a redelivery when the ledger recorded this content (rows from
# before schema version 6 recorded no content hash: their version and checksum decide),
# else an id reused for another change, which is refused (a conflict), never skipped.
LEDGER_SAME = """(l.content_sha = p.content_sha
  OR (l.content_sha IS NULL AND l.new_version = p.version AND l.payload_checksum IS NOT DISTINCT FROM p.checksum))"""

# A staged row not applied whose central row already holds its content at its version (the
# same change delivered again under another op id, e.g. re-queued by a device): redelivered.
CENTRAL_SAME = """(i.version = p.version AND i.checksum IS NOT DISTINCT FROM p.checksum
  AND i.invoice_number = p.invoice_number AND i.client_data_text = p.client_data_text
  AND i.line_items_text = p.line_items_text AND i.currency = p.currency AND i.total = p.total
  AND (i.deleted_at IS NULL) = (p.deleted_at IS NULL))"""

# the same deletion for payloads whose line numbers are not 1..n (not what the toolkit
# produces, but a hand-built set may): every line the payload lacks goes
_PG_DROP_MISSING_LINES = """DELETE FROM invoice_lines l USING ik_applied a
    WHERE a.lines_changed AND l.invoice_id = a.id AND NOT EXISTS (
      SELECT 1 FROM ik_push_lines s WHERE s.invoice_id = l.invoice_id AND s.line_no = l.line_no)"""


def apply_pg(store: CentralStore, inv: pa.Table, lines: pa.Table, *, actor: str, strategy: str) -> tuple[set, set]:
    """Apply one batch on PostgreSQL; returns (applied op ids, already-applied op ids).

    Every join in the batch's statements has an index on its inner side (the central
    tables' keys, the staging tables' unique indexes), and a batch is small beside the
    central table, so the planner is told to use nested loops: one index probe per staged
    row instead of a scan (or a hash) of the whole central table, with no ``ANALYZE`` of
    the staging tables. Updates that leave every indexed column alone are HOT updates
    (schema version 4 keeps free space in the central tables' pages).
    """
    cols = _INV_COLS + ["op_id", "expected", "n_lines", "content_sha"]
    # line numbers run 1..n per invoice (explode_lines and resolve number them so), which
    # lets surplus central lines go by number; checked, else the slower set difference
    counts = lines.group_by("invoice_id").aggregate([("line_no", "max"), ("line_no", "count"), ("line_no", "min")])
    numbered = counts.num_rows == 0 or (
        pc.all(pc.equal(counts.column("line_no_max"), counts.column("line_no_count"))).as_py()
        and pc.min(counts.column("line_no_min")).as_py() == 1)
    inv = inv.join(counts.select(["invoice_id", "line_no_max"]), "id", "invoice_id").rename_columns(
        [*inv.column_names, "n_lines"]).sort_by("id")
    lines = lines.sort_by([("invoice_id", "ascending"), ("line_no", "ascending")])
    with store.pg() as conn, conn.cursor() as cur:
        # staging tables in memory (before the session's first temporary table), no JIT
        # compilation for statements that run once, index probes rather than whole-table joins
        cur.execute("SET LOCAL temp_buffers = '256MB'")
        cur.execute("SET LOCAL jit = off")
        cur.execute("SET LOCAL enable_hashjoin = off")
        cur.execute("SET LOCAL enable_mergejoin = off")
        cur.execute("CREATE TEMP TABLE ik_push (LIKE invoices INCLUDING DEFAULTS) ON COMMIT DROP")
        cur.execute("ALTER TABLE ik_push ADD COLUMN op_id TEXT, ADD COLUMN expected INTEGER, "
                    "ADD COLUMN n_lines INTEGER, ADD COLUMN content_sha TEXT")
        cur.execute("CREATE TEMP TABLE ik_push_lines (LIKE invoice_lines) ON COMMIT DROP")
        cur.execute("CREATE TEMP TABLE ik_applied (id TEXT PRIMARY KEY, op_id TEXT, lines_changed BOOLEAN) "
                    "ON COMMIT DROP")
        with cur.copy(f"COPY ik_push ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(_csv(inv.select(cols)))
        with cur.copy(f"COPY ik_push_lines ({_LCOLS}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(_csv(lines.select(_LINE_COLS)))
        cur.execute("CREATE UNIQUE INDEX ON ik_push (id)")
        cur.execute("CREATE UNIQUE INDEX ON ik_push_lines (invoice_id, line_no)")
        cur.execute(f"DELETE FROM ik_push p USING invoicekit_ledger l WHERE l.op_id = p.op_id "
                    f"RETURNING p.op_id, {LEDGER_SAME}")
        seen = cur.fetchall()
        already = {r[0] for r in seen if r[1]}
        params = {"actor": actor, "strategy": strategy}
        for sql in _PG_UPDATES:
            cur.execute(sql, params)
        cur.execute(_PG_INSERT, params)
        for sql in _PG_LINES if numbered else [_PG_LINES[0], _PG_DROP_MISSING_LINES]:
            cur.execute(sql)
        cur.execute("SELECT op_id FROM ik_applied")
        applied = {r[0] for r in cur.fetchall()}
        # a concurrent run of the same plan may have committed these ops while we waited on their
        # rows; or the central row holds this very change already (delivered under another op id)
        cur.execute(f"SELECT p.op_id FROM ik_push p LEFT JOIN invoicekit_ledger l USING (op_id) "
                    f"LEFT JOIN invoices i ON i.id = p.id "
                    f"WHERE NOT EXISTS (SELECT 1 FROM ik_applied a WHERE a.id = p.id) "
                    f"AND ((l.op_id IS NOT NULL AND {LEDGER_SAME}) OR (l.op_id IS NULL AND {CENTRAL_SAME}))")
        already |= {r[0] for r in cur.fetchall()}
    return applied, already


def apply_sqlite(store: CentralStore, inv: pa.Table, lines: pa.Table, *, actor: str, strategy: str,
                 now: str) -> tuple[set, set]:
    """Apply one batch on the embedded SQLite central store (same semantics, plain SQL)."""
    cols = _INV_COLS + ["op_id", "expected", "content_sha"]
    rows = list(zip(*(inv.column(c).to_pylist() for c in cols)))
    line_rows = list(zip(*(lines.column(c).to_pylist() for c in _LINE_COLS)))
    with _sqlite.write_transaction(store.path) as conn:
        conn.execute(f"CREATE TEMP TABLE ik_push ({', '.join(cols)}, PRIMARY KEY (id))")
        conn.execute(f"CREATE TEMP TABLE ik_push_lines ({', '.join(_LINE_COLS)})")
        conn.executemany(f"INSERT INTO ik_push VALUES ({', '.join('?' * len(cols))})", rows)
        conn.executemany(f"INSERT INTO ik_push_lines VALUES ({', '.join('?' * len(_LINE_COLS))})", line_rows)
        already = {r[0] for r in conn.execute(
            f"SELECT p.op_id FROM ik_push p JOIN invoicekit_ledger l ON l.op_id = p.op_id WHERE {LEDGER_SAME}")}
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
        conn.execute("INSERT INTO invoicekit_ledger (op_id, invoice_id, new_version, payload_checksum, applied_at, "
                     "content_sha) SELECT p.op_id, p.id, p.version, p.checksum, ?, p.content_sha "
                     "FROM ik_push p JOIN ik_applied a ON a.id = p.id", (now,))
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
        already |= {r[0] for r in conn.execute(
            f"SELECT p.op_id FROM ik_push p JOIN invoices i ON i.id = p.id "
            f"WHERE p.id NOT IN (SELECT id FROM ik_applied) AND {CENTRAL_SAME}")}
        for t in ("ik_push", "ik_push_lines", "ik_before", "ik_applied"):
            conn.execute(f"DROP TABLE temp.{t}")
    return applied, already
