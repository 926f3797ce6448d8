"""The embedded SQLite central store: one file, one writer at a time (``BEGIN IMMEDIATE``);
money and timestamps travel as exact text. Same semantics as PostgreSQL in plain SQL (SQLite
has no writing CTEs: a write decides, then writes, and nothing moves in between)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from ... import _progress
from ..._normalize import normalize
from ...errors import UsageError
from ...schema import InvoiceSet
from ...security.identity import TokenLike, TokenSecret, verify_token
from .. import _central_sql as ddl
from .. import _sqlite
from .._write import decide_sql, kind_sql, may_update, result_frame
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
    STAGE_EXTRA,
    apply_migrations,
    with_stage_extra,
)
from .base import CentralStore, SnapshotState, now_iso

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

    def ping(self, timeout: float) -> None:
        """Open the existing file (never create it) and read its catalogue, waiting at most
        ``timeout`` seconds for a lock; a missing file (an unmounted share) raises."""
        import sqlite3
        from pathlib import Path

        lock = _sqlite.file_lock(self.path)
        if not lock.acquire(timeout=timeout):  # this process is writing or reading it: it is there
            if Path(self.path).exists():
                return
            raise FileNotFoundError(self.path)
        try:
            conn = sqlite3.connect(f"{Path(self.path).absolute().as_uri()}?mode=rw", uri=True, timeout=timeout)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                conn.close()
        finally:
            lock.release()

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

    # -- incremental snapshots --------------------------------------------------------------
    def snapshot_state(self, since: str | None, *, identity: str | None = None) -> SnapshotState:
        """The marker is the change counter (one writer at a time: it orders the commits),
        read in one statement with the store's id."""
        conn = _sqlite.open_checked(self.path, tables=())
        try:
            current, version, marker = conn.execute(_SNAPSHOT_NOW).fetchone()
            if since is None or identity != current:
                return SnapshotState(current, version, str(marker))
            if not since.isdigit() or int(since) > marker:
                return SnapshotState(current, version, str(marker), since_ok=False)
            rows = conn.execute(_SNAPSHOT_CHANGED, (int(since),)).fetchall()
        finally:
            conn.close()
        return SnapshotState(current, version, str(marker), changed=tuple(r[0] for r in rows))

    # -- plain statements -------------------------------------------------------------------
    mark = "?"

    def fetch(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Read-only, on a connection of its own."""
        conn = _sqlite.open_checked(self.path, tables=())
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        finally:
            conn.close()

    def execute(self, sql: str, rows: Sequence[Sequence], *, token: TokenLike = None) -> None:
        """``executemany`` in one write transaction (``BEGIN IMMEDIATE``), the token verified first."""
        with _sqlite.write_transaction(self.path) as conn:
            self._authorize(conn, token)
            conn.executemany(sql, [tuple(r) for r in rows])

    # -- signed identities ------------------------------------------------------------------
    def enable_tokens(self, secret: TokenSecret, *, issuer: str, push_role: str | None = None) -> None:
        """Store the secret and the issuer in the file (SQLite has no roles: ``push_role`` must
        be None); the toolkit verifies every push's token against them."""
        if push_role is not None:
            raise UsageError(f"{self.display}: push_role= is for PostgreSQL central stores; SQLite has no roles")
        with _sqlite.write_transaction(self.path) as conn:
            conn.execute(_SECRET_UPSERT, (secret.reveal(),))
            conn.execute(_IDENTITY_UPSERT, (issuer, now_iso()))
        return None

    def tokens_enabled(self) -> bool:
        """Whether ``invoicekit_identity`` holds its row."""
        return bool(self.fetch("SELECT count(*) FROM invoicekit_identity")[0][0])

    def identify(self, token: TokenLike) -> str | None:
        """Verified here against the secret the file holds (read-only)."""
        conn = _sqlite.open_checked(self.path, tables=())
        try:
            return self._authorize(conn, token)
        finally:
            conn.close()

    def _authorize(self, conn, token: TokenLike) -> str | None:
        """First thing in a push's transaction: the subject of the token, verified here against
        the secret the file holds, or None on a store without tokens."""
        row = conn.execute("SELECT i.issuer, s.secret FROM invoicekit_identity i "
                           "LEFT JOIN invoicekit_token_secret s ON s.singleton = i.singleton").fetchone()
        text = self.push_token(token, enabled=row is not None)
        if text is None:
            return None
        return verify_token(text, secret=TokenSecret(row[1]), issuer=row[0], store=self.display).subject

    # -- read -------------------------------------------------------------------------------
    def param(self, n: int) -> str:
        """SQLite's positional ``?``."""
        return "?"

    def read(self, clause: str, params: list, *, lines: bool, ids: pa.Array | None = None) -> InvoiceSet:
        """Through ADBC's SQLite driver into Arrow; the exact text values are parsed by ``normalize``.
        With ``ids``: staged (ADBC bulk ingest) into a temporary table of the reading connection
        and joined on the primary key; rows come in the order of ``ids``."""
        if ids is None:
            raw = _sqlite.select_arrow(self.path, _SELECT, f"(SELECT * FROM invoices{clause} ORDER BY rowid)",
                                       params)
        else:
            staged = pa.table({"ik_id": ids, "ik_ord": pa.array(np.arange(len(ids), dtype=np.int64))})
            raw = _sqlite.select_arrow(self.path, _SELECT, _IDS_FROM.format(clause=clause), params,
                                       stage={_IDS_TABLE: staged})
        n = raw.num_rows
        raw = raw.append_column("source_row", pa.array(np.arange(1, n + 1, dtype=np.int64)))
        raw = raw.append_column("source", pa.array(np.full(n, self.display, dtype=object), pa.string()))
        return normalize(raw, lines=lines)

    # -- write_central ----------------------------------------------------------------------
    def write(self, inv: pa.Table, lines: pa.Table, *, force: bool, params: dict, batch_rows: int,
              progress: bool | None, undelete: frozenset[str] = frozenset(),
              notes: Mapping[str, str] | None = None, token: TokenLike = None) -> pd.DataFrame:
        """Rows inserted into temporary staging tables, then decided and written in plain SQL
        (``batch_rows`` is unused: one transaction, no COPY)."""
        inv = with_stage_extra(inv, undelete, notes)
        inv_rows = list(zip(*(c.to_pylist() for c in inv.columns)))
        line_rows = list(zip(*(c.to_pylist() for c in lines.columns)))
        marks = {"now": ":now", "actor": ":actor", "op": ":op"}
        with _progress.bar(total=inv.num_rows + lines.num_rows, desc="write_central", progress=progress) as bar, \
                _sqlite.write_transaction(self.path) as conn:
            subject = self._authorize(conn, token)
            if subject is not None:  # the audit names the verified identity, not a free-text actor
                params = {**params, "actor": subject}
            conn.execute(f"CREATE TEMP TABLE ik_stage ({', '.join(INV_COLS + STAGE_EXTRA)}, PRIMARY KEY (id))")
            conn.execute(f"CREATE TEMP TABLE ik_stage_lines ({', '.join(LINE_COLS)})")
            conn.execute(f"CREATE TEMP TABLE {CAS_WRITTEN}")
            conn.executemany(f"INSERT INTO ik_stage VALUES ({', '.join('?' * inv.num_columns)})", inv_rows)
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
                    now: str | None = None, token: TokenLike = None) -> tuple[set, set]:
        """Apply one batch (same semantics as PostgreSQL's, plain SQL); ``now`` stamps the
        ledger and audit rows (default: the current time)."""
        now = now or now_iso()
        cols = INV_COLS + ["op_id", "expected", "content_sha"]
        rows = list(zip(*(inv.column(c).to_pylist() for c in cols)))
        line_rows = list(zip(*(lines.column(c).to_pylist() for c in LINE_COLS)))
        with _sqlite.write_transaction(self.path) as conn:
            actor = self._authorize(conn, token) or actor
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


# -- signed identities: the secret and the settings, one row each ------------------------------
_SECRET_UPSERT = ("INSERT INTO invoicekit_token_secret (singleton, secret) VALUES (1, ?) "
                  "ON CONFLICT (singleton) DO UPDATE SET secret = excluded.secret")
_IDENTITY_UPSERT = ("INSERT INTO invoicekit_identity (singleton, issuer, push_role, enabled_at) VALUES (1, ?, NULL, ?) "
                    "ON CONFLICT (singleton) DO UPDATE SET issuer = excluded.issuer")

# -- incremental snapshots (schema version 10) -------------------------------------------------
_SNAPSHOT_NOW = ("SELECT (SELECT store_id FROM invoicekit_store), (SELECT max(version) FROM invoicekit_schema), "
                 "(SELECT seq FROM invoicekit_change_seq WHERE singleton = 1)")
# the invoices whose change counter passed the marker (an index range), with whether the store holds each
_SNAPSHOT_CHANGED = "SELECT invoice_id FROM invoicekit_changes WHERE seq > ?"

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

# read_central(ids=...): the staged ids (a temporary table of the reading connection) drive
# the join, one primary-key probe each
_IDS_TABLE = "ik_read_ids"
_IDS_FROM = (f"(SELECT invoices.* FROM temp.{_IDS_TABLE} k CROSS JOIN invoices ON invoices.id = k.ik_id"
             "{clause} ORDER BY k.ik_ord)")


# -- write_central: compare-and-set (see io/_write.py) ------------------------------------------
def _cas_steps(force: bool) -> list[str]:
    """The compare-and-set writes: decide, then write (one writer at a time, so nothing moves
    in between)."""
    return [
        f"""INSERT INTO ik_written SELECT s.id, 'updated', i.version, i.checksum, {kind_sql(force, "i")}
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
