"""DuckDB helpers: cheap isolated connections (cursors of one shared in-memory database), UTC."""

from __future__ import annotations

import threading
from typing import Any

import duckdb
import pyarrow as pa

_lock = threading.Lock()
_db: duckdb.DuckDBPyConnection | None = None


def _database() -> duckdb.DuckDBPyConnection:
    global _db
    with _lock:
        if _db is None:
            _db = duckdb.connect()
        return _db


def connect(**tables: Any) -> duckdb.DuckDBPyConnection:
    """A fresh DuckDB connection in UTC with ``tables`` registered by name.

    Each call is a new cursor on one shared in-memory database: temp tables, macros and
    registrations are private to it and vanish when it is closed (about 100x cheaper
    than a new database). Values may be Arrow tables or pandas DataFrames; they are
    scanned, not copied.
    """
    con = _database().cursor()
    con.execute("SET TimeZone = 'UTC'")
    for name, table in tables.items():
        con.register(name, table)
    return con


def arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> pa.Table:
    """Run ``sql`` and return the whole result as one Arrow table."""
    return con.sql(sql, params=params).to_arrow_table()
