"""The embedded SQLite central store: one file, one writer at a time (``BEGIN IMMEDIATE``);
money and timestamps travel as exact text. Same semantics as PostgreSQL in plain SQL (SQLite
has no writing CTEs: a write decides, then writes, and nothing moves in between)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa

from ... import _progress
from ..._normalize import normalize
from ...errors import UsageError
from ...schema import InvoiceSet
from .. import _central_sql as ddl
from .. import _sqlite
from .._write import decide_sql, may_update, result_frame
from ._shared import (
    CAS_AUDIT,
    CAS_LINES,
    CAS_SET,
    CAS_WRITTEN,
    CENTRAL_SAME,
    INV_COLS,
    LEDGER_HAS_CONTENT,
    LEDGER_SAME,
    LINE_COLS,
    apply_migrations,
)
from .base import CentralStore, now_iso

__all__ = ["SqliteStore"]


class SqliteStore(CentralStore):
    """A central store in a SQLite file (``sqlite:///PATH`` URL); ``path`` is the file."""

    dialect = "sqlite"
    migrations = ddl.SQLITE
    rows_as_text = True
    client_name_sql = "json_extract(client_data_text, '$.name')"
    false_sql = "0"

    path: str

    def _configure(self) -> None:
        if not self.url.database or self.url.database == ":memory:":
            raise UsageError(f"{self.display}: a central SQLite store must be a file")
        self.path = self.url.database

    # -- schema -----------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply the missing migrations in one write transaction (``BEGIN IMMEDIATE``)."""
        with _sqlite.write_transaction(self.path) as conn:
            conn.execute(ddl.META)
            return apply_migrations(conn, self.migrations, mark="?", now=now_iso())

    def schema_state(self) -> tuple[bool, int | None]:
        """No file is no table; else one query (a second only without ``invoicekit_schema``)."""
        import sqlite3

        if not os.path.exists(self.path):
            return False, None
        conn = _sqlite.open_checked(self.path, tables=())
        try:
            try:
                has, version = conn.execute(_SCHEMA_SQL).fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                has, version = conn.execute(_HAS_TABLE_SQL, ("invoices",)).fetchone()[0], None
        finally:
            conn.close()
        return bool(has), version

    def has_table(self, name: str) -> bool:
        """From ``sqlite_master``."""
        import sqlite3

        conn = sqlite3.connect(self.path)
        try:
            return bool(conn.execute(_HAS_TABLE_SQL, (name,)).fetchone()[0])
        finally:
            conn.close()

    def probe_hard_delete(self, invoice_id: str) -> None:
        """Refused by the schema's trigger (version 5): sqlite3 raises its message."""
        import sqlite3

        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.execute("DELETE FROM invoices WHERE id = ?", (invoice_id,))
        finally:
            conn.execute("ROLLBACK")
            conn.close()

    # -- read -------------------------------------------------------------------------------
    def param(self, n: int) -> str:
        """SQLite's positional ``?``."""
        return "?"

    def read(self, clause: str, params: list, *, lines: bool) -> InvoiceSet:
        """Through ADBC's SQLite driver into Arrow; the exact text values are parsed by ``normalize``."""
        raw = _sqlite.select_arrow(self.path, _SELECT, f"(SELECT * FROM invoices{clause} ORDER BY rowid)", params)
        n = raw.num_rows
        raw = raw.append_column("source_row", pa.array(np.arange(1, n + 1, dtype=np.int64)))
        raw = raw.append_column("source", pa.array(np.full(n, self.display, dtype=object), pa.string()))
        return normalize(raw, lines=lines)

    # -- write_central ----------------------------------------------------------------------
    def write(self, inv: pa.Table, lines: pa.Table, *, force: bool, params: dict, batch_rows: int,
              progress: bool | None) -> pd.DataFrame:
        """Rows inserted into temporary staging tables, then decided and written in plain SQL
        (``batch_rows`` is unused: one transaction, no COPY)."""
        inv_rows = list(zip(*(c.to_pylist() for c in inv.columns)))
        line_rows = list(zip(*(c.to_pylist() for c in lines.columns)))
        marks = {"now": ":now", "actor": ":actor", "op": ":op"}
        with _progress.bar(total=inv.num_rows + lines.num_rows, desc="write_central", progress=progress) as bar, \
                _sqlite.write_transaction(self.path) as conn:
            conn.execute(f"CREATE TEMP TABLE ik_stage ({', '.join(INV_COLS)}, PRIMARY KEY (id))")
            conn.execute(f"CREATE TEMP TABLE ik_stage_lines ({', '.join(LINE_COLS)})")
            conn.execute(f"CREATE TEMP TABLE {CAS_WRITTEN}")
            conn.executemany(f"INSERT INTO ik_stage VALUES ({', '.join('?' * len(INV_COLS))})", inv_rows)
            conn.executemany(f"INSERT INTO ik_stage_lines VALUES ({', '.join('?' * len(LINE_COLS))})", line_rows)
            for sql in _cas_steps(force):
                conn.execute(sql)
            conn.execute(CAS_AUDIT.format(**marks), params)
            bar.update(len(inv_rows))
            for sql in CAS_LINES:
                conn.execute(sql)
            bar.update(len(line_rows))
            results = result_frame(conn.execute(decide_sql("ik_written")).fetchall())
            for t in ("ik_stage", "ik_stage_lines", "ik_written"):
                conn.execute(f"DROP TABLE temp.{t}")
        return results

    # -- sync batches -----------------------------------------------------------------------
    def push_workers(self, workers: int, batches: int) -> int:
        """One: a SQLite file has one writer at a time, so parallel batches would only wait."""
        return 1

    def apply_batch(self, inv: pa.Table, lines: pa.Table, *, actor: str, strategy: str,
                    now: str | None = None) -> tuple[set, set]:
        """Apply one batch (same semantics as PostgreSQL's, plain SQL); ``now`` stamps the
        ledger and audit rows (default: the current time)."""
        now = now or now_iso()
        cols = INV_COLS + ["op_id", "expected", "content_sha"]
        rows = list(zip(*(inv.column(c).to_pylist() for c in cols)))
        line_rows = list(zip(*(lines.column(c).to_pylist() for c in LINE_COLS)))
        with _sqlite.write_transaction(self.path) as conn:
            conn.execute(f"CREATE TEMP TABLE ik_push ({', '.join(cols)}, PRIMARY KEY (id))")
            conn.execute(f"CREATE TEMP TABLE ik_push_lines ({', '.join(LINE_COLS)})")
            conn.executemany(f"INSERT INTO ik_push VALUES ({', '.join('?' * len(cols))})", rows)
            conn.executemany(f"INSERT INTO ik_push_lines VALUES ({', '.join('?' * len(LINE_COLS))})", line_rows)
            already = {r[0] for r in conn.execute(
                f"SELECT p.op_id FROM ik_push p JOIN invoicekit_ledger l ON l.op_id = p.op_id WHERE {LEDGER_SAME}")}
            conn.execute("DELETE FROM ik_push WHERE op_id IN (SELECT op_id FROM invoicekit_ledger)")
            conn.execute("CREATE TEMP TABLE ik_before AS SELECT i.id, i.version, i.checksum FROM invoices i "
                         "JOIN ik_push p ON p.id = i.id")
            applied_ids = [r[0] for r in conn.execute(_PUSH_UPSERT).fetchall()]
            conn.execute("CREATE TEMP TABLE ik_applied (id TEXT PRIMARY KEY)")
            conn.executemany("INSERT INTO ik_applied VALUES (?)", [(i,) for i in applied_ids])
            conn.execute(_PUSH_LEDGER, (now,))
            conn.execute(_PUSH_AUDIT, (now, actor, strategy))
            conn.execute("DELETE FROM invoice_lines WHERE invoice_id IN (SELECT id FROM ik_applied)")
            conn.execute(f"INSERT INTO invoice_lines ({', '.join(LINE_COLS)}) SELECT {', '.join(LINE_COLS)} "
                         "FROM ik_push_lines WHERE invoice_id IN (SELECT id FROM ik_applied)")
            applied = {r[0] for r in conn.execute("SELECT p.op_id FROM ik_push p JOIN ik_applied a ON a.id = p.id")}
            already |= {r[0] for r in conn.execute(
                f"SELECT p.op_id FROM ik_push p LEFT JOIN invoices i ON i.id = p.id "
                f"WHERE p.id NOT IN (SELECT id FROM ik_applied) AND ({CENTRAL_SAME} OR {LEDGER_HAS_CONTENT})")}
            for t in ("ik_push", "ik_push_lines", "ik_before", "ik_applied"):
                conn.execute(f"DROP TABLE temp.{t}")
        return applied, already


# -- schema checks: one query on the happy path ------------------------------------------------
_SCHEMA_SQL = ("SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'invoices') = 1, "
               "max(version) FROM invoicekit_schema")
_HAS_TABLE_SQL = "SELECT count(*) = 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

# -- read_central: (SQL expression, canonical name, kind), parsed by normalize -----------------
_SELECT = [
    ("id", "id", "text"), ("invoice_number", "invoice_number", "text"),
    ("client_data_text", "client_data", "text"), ("line_items_text", "line_items", "text"),
    ("NULL", "total_amount", "real"), ("total", "total_text", "text"),
    ("currency", "currency", "text"), ("created_at", "created_at", "text"),
    ("modified_at", "modified_at", "text"), ("deleted_at", "deleted_at", "text"),
    ("CAST(version AS TEXT)", "version", "text"), ("sync_status", "sync_status", "text"),
    ("checksum", "checksum", "text"),
]


# -- write_central: compare-and-set (see io/_write.py) ------------------------------------------
def _cas_steps(force: bool) -> list[str]:
    """The compare-and-set writes: decide, then write (one writer at a time, so nothing moves
    in between)."""
    flag = "TRUE" if force else "FALSE"
    return [
        f"""INSERT INTO ik_written SELECT s.id, 'updated', i.version, i.checksum,
              CASE WHEN {flag} THEN 'force_write' WHEN s.deleted_at IS NOT NULL THEN 'delete' ELSE 'update' END
            FROM ik_stage s JOIN invoices i ON i.id = s.id WHERE {may_update(force)}""",
        f"UPDATE invoices AS i SET {CAS_SET} FROM ik_stage s "
        "WHERE i.id = s.id AND i.id IN (SELECT id FROM ik_written)",
        "INSERT INTO ik_written SELECT s.id, 'inserted', NULL, NULL, 'insert' FROM ik_stage s "
        "WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.id = s.id)",
        f"INSERT INTO invoices ({', '.join(INV_COLS)}) SELECT {', '.join(INV_COLS)} FROM ik_stage "
        "WHERE id IN (SELECT id FROM ik_written WHERE outcome = 'inserted')",
    ]


# -- sync batches --------------------------------------------------------------------------------
_COLS = ", ".join(INV_COLS)
_EXCLUDED_SET = ", ".join(f"{c} = excluded.{c}" for c in INV_COLS if c != "id")
# new invoices, and edits of rows still at the version the push expected
_PUSH_UPSERT = (
    f"INSERT INTO invoices ({_COLS}) SELECT {_COLS} FROM ik_push p "
    "WHERE p.expected IS NULL OR EXISTS (SELECT 1 FROM invoices i WHERE i.id = p.id) "
    f"ON CONFLICT(id) DO UPDATE SET {_EXCLUDED_SET} "
    "WHERE invoices.version = (SELECT q.expected FROM ik_push q WHERE q.id = excluded.id) RETURNING id"
)
_PUSH_LEDGER = ("INSERT INTO invoicekit_ledger (op_id, invoice_id, new_version, payload_checksum, applied_at, "
                "content_sha) SELECT p.op_id, p.id, p.version, p.checksum, ?, p.content_sha "
                "FROM ik_push p JOIN ik_applied a ON a.id = p.id")
_PUSH_AUDIT = (
    "INSERT INTO invoicekit_audit (at, actor, op_id, invoice_id, kind, strategy, before_version, after_version,"
    " before_checksum, after_checksum) "
    "SELECT ?, ?, p.op_id, p.id, CASE WHEN b.id IS NULL THEN 'insert' WHEN p.deleted_at IS NOT NULL "
    "THEN 'delete' ELSE 'update' END, ?, b.version, p.version, b.checksum, p.checksum "
    "FROM ik_push p JOIN ik_applied a ON a.id = p.id LEFT JOIN ik_before b ON b.id = p.id"
)
