"""DuckDB helpers: one configured in-memory connection per call site, UTC everywhere."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa


def connect(**tables: Any) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection in UTC with ``tables`` registered by name.

    Values may be Arrow tables or pandas DataFrames; they are scanned, not copied.
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, table in tables.items():
        con.register(name, table)
    return con


def arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> pa.Table:
    """Run ``sql`` and return the whole result as one Arrow table."""
    return con.sql(sql, params=params).to_arrow_table()
