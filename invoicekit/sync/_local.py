"""Local side of ``apply_sync``: acknowledge pushes, take pulls, flag and quarantine, in one transaction.

The local row is only written when it is still exactly what the plan saw (same version
and checksum); a row edited meanwhile is left for the next sync. Versions are compared as
integers: other software's stores may hold them as text (an untyped column). Every operation that
took effect enters ``invoicekit_ops``, so replaying a plan changes nothing.
"""

from __future__ import annotations

from ..io import _sqlite
from ..io.local import REQUIRED_TABLES, ensure_schema
from ..io.offline_schema import ROW_COLUMNS

_ROW_COLS = list(ROW_COLUMNS)
_OP_COLS = ["op_id", "kind", "invoice_id", "expected_local_version", "expected_local_checksum", "new_version",
            "payload_checksum", "deletes", "note", "go"]
_SET = ", ".join(f"{c} = r.{c}" for c in _ROW_COLS if c not in ("id", "sync_status")) + ", sync_status = 'synced'"


def apply_local(path: str, ops: list[tuple], rows: list[tuple], *, now: str) -> dict[str, str]:
    """Apply the local effects of ``ops`` (tuples in ``_OP_COLS`` order; ``go`` says the
    central side allows it) with payload ``rows`` (offline-schema tuples). Returns
    op_id -> outcome (applied, already_applied, local_changed, skipped)."""
    _sqlite.open_checked(path, tables=REQUIRED_TABLES, integrity=True).close()
    with _sqlite.write_transaction(path) as conn:
        ensure_schema(conn)
        conn.execute(f"CREATE TEMP TABLE ik_ops ({', '.join(_OP_COLS)}, PRIMARY KEY (op_id))")
        conn.execute(f"CREATE TEMP TABLE ik_rows ({', '.join(_ROW_COLS)}, PRIMARY KEY (id))")
        conn.executemany(f"INSERT INTO ik_ops VALUES ({', '.join('?' * len(_OP_COLS))})", ops)
        conn.executemany(f"INSERT INTO ik_rows VALUES ({', '.join('?' * len(_ROW_COLS))})", rows)
        already = {r[0] for r in conn.execute(
            "SELECT op_id FROM ik_ops WHERE op_id IN (SELECT op_id FROM invoicekit_ops)")}
        conn.execute("DELETE FROM ik_ops WHERE op_id IN (SELECT op_id FROM invoicekit_ops) OR NOT go")
        unchanged = ("CAST(t.version AS INTEGER) IS o.expected_local_version "
                     "AND t.checksum IS o.expected_local_checksum")
        # pushes acknowledged and pulls taken, where the local row is as planned
        conn.execute(f"""
            UPDATE transactions AS t SET {_SET}
            FROM ik_rows r JOIN ik_ops o ON o.invoice_id = r.id
            WHERE t.id = r.id AND o.kind IN ('push', 'pull') AND {unchanged}""")
        conn.execute(f"""
            INSERT INTO transactions ({', '.join(_ROW_COLS)})
            SELECT {', '.join('r.' + c for c in _ROW_COLS)} FROM ik_rows r JOIN ik_ops o ON o.invoice_id = r.id
            WHERE o.kind = 'pull' AND o.expected_local_version IS NULL
              AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = r.id)""")
        # which took effect: the row now carries the payload; or a device-deleted row's tombstone was pushed
        conn.execute("""
            CREATE TEMP TABLE ik_done AS
            SELECT o.op_id, o.invoice_id, o.kind FROM ik_ops o
            LEFT JOIN transactions t ON t.id = o.invoice_id
            WHERE (o.kind IN ('push', 'pull') AND CAST(t.version AS INTEGER) IS o.new_version
                   AND t.checksum IS o.payload_checksum)
               OR (o.kind = 'push' AND o.deletes AND t.id IS NULL)""")
        # the last-synced snapshot: what central now holds for every push, and every pull taken (a
        # row edited again since the plan keeps its edit and stays pending, on top of this base).
        # A push's base is only written over the row the plan saw or its later edits (same or
        # higher version), or for a row the device removed: never over another lineage's row.
        conn.execute(f"""
            INSERT OR REPLACE INTO invoicekit_base ({', '.join(_ROW_COLS)})
            SELECT {', '.join('r.' + c for c in _ROW_COLS)} FROM ik_rows r JOIN ik_ops o ON o.invoice_id = r.id
            LEFT JOIN transactions t ON t.id = r.id
            WHERE o.op_id IN (SELECT op_id FROM ik_done)
               OR (o.kind = 'push' AND ((t.id IS NULL AND (o.deletes OR o.expected_local_version IS NULL))
                                        OR CAST(t.version AS INTEGER) >= o.expected_local_version))""")
        # an invoice settled by a push or a pull leaves the queue: its operations are either what
        # central now holds, or (a pull) what the analyst decided against, refused ones included
        conn.execute("DELETE FROM sync_queue "
                     "WHERE transaction_id IN (SELECT invoice_id FROM ik_done WHERE kind IN ('push', 'pull'))")
        flagged = conn.execute(f"""
            UPDATE transactions AS t SET sync_status = 'conflict' FROM ik_ops o
            WHERE o.kind = 'flag_conflict' AND t.id = o.invoice_id AND {unchanged} RETURNING id""").fetchall()
        conn.execute("INSERT INTO ik_done SELECT op_id, invoice_id, kind FROM ik_ops "
                     "WHERE kind = 'flag_conflict' AND invoice_id IN (SELECT value FROM json_each(?))",
                     (_json([r[0] for r in flagged]),))
        conn.execute("UPDATE transactions SET sync_status = 'error' "
                     "WHERE id IN (SELECT invoice_id FROM ik_ops WHERE kind = 'quarantine')")
        conn.execute("INSERT OR IGNORE INTO invoicekit_quarantine SELECT op_id, invoice_id, note, ? FROM ik_ops "
                     "WHERE kind = 'quarantine'", (now,))
        conn.execute("INSERT INTO ik_done SELECT op_id, invoice_id, kind FROM ik_ops WHERE kind = 'quarantine'")
        conn.execute("INSERT OR IGNORE INTO invoicekit_ops SELECT op_id, invoice_id, kind, 'applied', ? FROM ik_done",
                     (now,))
        done = {r[0] for r in conn.execute("SELECT op_id FROM ik_done")}
        pending = {r[0] for r in conn.execute("SELECT op_id FROM ik_ops")}
        for t in ("ik_ops", "ik_rows", "ik_done"):
            conn.execute(f"DROP TABLE temp.{t}")
    out = {op[0]: "skipped" for op in ops}
    out.update({o: "local_changed" for o in pending - done})
    out.update({o: "already_applied" for o in already})
    out.update({o: "applied" for o in done})
    return out


def _json(values: list) -> str:
    import json

    return json.dumps(values)
