"""The offline store's schema, declared once: the devices' tables and the toolkit's additions.

The devices' own schema (:data:`DEVICE_SCHEMA_SQL`: ``transactions``, ``sync_queue``,
``app_settings``) is all the toolkit may assume of a store; everything it adds is
additive and comes in numbered migrations (:data:`MIGRATIONS`), applied once per store
inside the caller's write transaction and recorded in ``invoicekit_local_schema``. A store
written by other software without any of them loads, reconciles and syncs; the first
toolkit write brings it up to date.

Columns are used by name: :data:`ROW_COLUMNS` is the order of every offline-schema row
tuple the toolkit writes (``transactions`` and the ``invoicekit_base`` snapshots alike),
and other modules build their SQL from it, never from a column list of their own.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Callable

from ._central_sql import DECISIONS_SQLITE

__all__ = ["DEVICE_SCHEMA_SQL", "ROW_COLUMNS", "QUEUE_COLUMNS", "MIGRATIONS", "LOCAL_SCHEMA_VERSION", "upgrade",
           "columns_sql", "marks"]

#: the field devices' schema, verbatim in substance
DEVICE_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS transactions (id TEXT PRIMARY KEY, invoice_number TEXT, client_data TEXT, line_items TEXT, total_amount DECIMAL(10,2), created_at TIMESTAMP, modified_at TIMESTAMP, sync_status TEXT DEFAULT 'pending', checksum TEXT, version INTEGER DEFAULT 1);
CREATE TABLE IF NOT EXISTS sync_queue (id INTEGER PRIMARY KEY AUTOINCREMENT, transaction_id TEXT, operation TEXT, payload TEXT, retry_count INTEGER DEFAULT 0, created_at TIMESTAMP, FOREIGN KEY (transaction_id) REFERENCES transactions(id));
CREATE TABLE IF NOT EXISTS app_settings (key TEXT PRIMARY KEY, value TEXT, sync_required BOOLEAN DEFAULT 0);
CREATE INDEX IF NOT EXISTS idx_sync_status ON transactions(sync_status);
CREATE INDEX IF NOT EXISTS idx_created_at ON transactions(created_at);
"""

#: the columns of ``transactions`` the toolkit reads and writes, in the order of its row tuples
ROW_COLUMNS = ("id", "invoice_number", "client_data", "line_items", "total_amount", "created_at", "modified_at",
               "sync_status", "checksum", "version", "currency", "deleted_at")

#: the toolkit's additive columns on ``transactions`` (stores without them still load)
ADDITIVE_COLUMNS = {"currency": "TEXT", "deleted_at": "TIMESTAMP"}

#: the toolkit's additive columns on ``sync_queue``
QUEUE_COLUMNS = {"op_id": "TEXT", "status": "TEXT DEFAULT 'pending'", "last_error": "TEXT"}

_ROW_DECL = ("id TEXT PRIMARY KEY, invoice_number TEXT, client_data TEXT, line_items TEXT, total_amount DECIMAL(10,2), "
             "created_at TIMESTAMP, modified_at TIMESTAMP, sync_status TEXT, checksum TEXT, version INTEGER, "
             "currency TEXT, deleted_at TIMESTAMP")


#: the offline audit trail, as the central store's (see ``_central_sql``)
AUDIT_DECL = ("seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, op_id TEXT NOT NULL, "
              "invoice_id TEXT NOT NULL, kind TEXT NOT NULL, strategy TEXT, before_version INTEGER, "
              "after_version INTEGER, before_checksum TEXT, after_checksum TEXT, detail TEXT")


def columns_sql(prefix: str = "") -> str:
    """``ROW_COLUMNS`` as a SQL column list, each qualified by ``prefix`` (e.g. ``"r."``)."""
    return ", ".join(prefix + c for c in ROW_COLUMNS)


def marks() -> str:
    """One ``?`` per :data:`ROW_COLUMNS` entry."""
    return ", ".join("?" * len(ROW_COLUMNS))


def _have(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}


def _add_columns(table: str, wanted: dict[str, str]) -> Callable[[sqlite3.Connection], None]:
    def run(conn: sqlite3.Connection) -> None:
        have = _have(conn, table)
        for name, decl in wanted.items():
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
    return run


def _sql(*statements: str) -> Callable[[sqlite3.Connection], None]:
    def run(conn: sqlite3.Connection) -> None:
        for stmt in statements:
            conn.execute(stmt)
    return run


#: (version, what it adds, step); each step is idempotent, so a store that already has
#: what a migration adds (from an earlier toolkit that did not number them) takes it unchanged
MIGRATIONS: list[tuple[int, str, Callable[[sqlite3.Connection], None]]] = [
    (1, "transactions.currency and .deleted_at (tombstones)", _add_columns("transactions", ADDITIVE_COLUMNS)),
    (2, "invoicekit_base: each invoice's last-synced snapshot",
     _sql(f"CREATE TABLE IF NOT EXISTS invoicekit_base ({_ROW_DECL})")),
    (3, "sync_queue.op_id, .status, .last_error", _add_columns("sync_queue", QUEUE_COLUMNS)),
    (4, "invoicekit_ops and invoicekit_quarantine: applied and held operations", _sql(
        "CREATE TABLE IF NOT EXISTS invoicekit_ops (op_id TEXT PRIMARY KEY, invoice_id TEXT, kind TEXT, "
        "outcome TEXT, applied_at TEXT)",
        "CREATE TABLE IF NOT EXISTS invoicekit_quarantine (op_id TEXT PRIMARY KEY, invoice_id TEXT, reason TEXT, "
        "at TEXT)",
        "CREATE TABLE IF NOT EXISTS invoicekit_quarantined_ops (op_id TEXT PRIMARY KEY, queue_id INTEGER, "
        "transaction_id TEXT, operation TEXT, payload TEXT, created_at TEXT)")),
    (5, "a non-unique index on sync_queue.op_id (an operation a device resent is one op id twice)", _sql(
        "DROP INDEX IF EXISTS idx_sync_queue_op_id",
        "CREATE INDEX IF NOT EXISTS idx_sync_queue_op ON sync_queue(op_id)")),
    (6, "invoicekit_audit (writes named by an op id, e.g. duplicate cleanups) and invoicekit_decisions", _sql(
        f"CREATE TABLE IF NOT EXISTS invoicekit_audit ({AUDIT_DECL})",
        "CREATE TRIGGER IF NOT EXISTS invoicekit_audit_no_update BEFORE UPDATE ON invoicekit_audit "
        "BEGIN SELECT RAISE(ABORT, 'invoicekit_audit is append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS invoicekit_audit_no_delete BEFORE DELETE ON invoicekit_audit "
        "BEGIN SELECT RAISE(ABORT, 'invoicekit_audit is append-only'); END",
        "CREATE INDEX IF NOT EXISTS invoicekit_audit_op_idx ON invoicekit_audit (op_id)",
        DECISIONS_SQLITE)),
    (7, "invoicekit_settings_base: each synced setting's last-synced value and central version", _sql(
        "CREATE TABLE IF NOT EXISTS invoicekit_settings_base (key TEXT PRIMARY KEY, value TEXT, "
        "version INTEGER NOT NULL)")),
]

#: the offline schema version :func:`upgrade` brings a store to
LOCAL_SCHEMA_VERSION = MIGRATIONS[-1][0]


def upgrade(conn: sqlite3.Connection) -> int:
    """Inside a write transaction: the devices' tables where missing, then every migration
    not yet recorded. Returns the store's schema version. Costs one query on a current store."""
    try:
        done = {r[0] for r in conn.execute("SELECT version FROM invoicekit_local_schema")}
    except sqlite3.OperationalError:  # a store the toolkit has not written yet
        done = set()
    if done and max(done) >= LOCAL_SCHEMA_VERSION:
        return max(done)
    for stmt in DEVICE_SCHEMA_SQL.strip().split(";\n"):
        if stmt.strip():
            conn.execute(stmt)
    conn.execute("CREATE TABLE IF NOT EXISTS invoicekit_local_schema (version INTEGER PRIMARY KEY, "
                 "description TEXT, applied_at TEXT NOT NULL)")
    now = datetime.now(timezone.utc).isoformat()
    for version, description, step in MIGRATIONS:
        if version in done:
            continue
        step(conn)
        conn.execute("INSERT INTO invoicekit_local_schema VALUES (?, ?, ?)", (version, description, now))
    return LOCAL_SCHEMA_VERSION
