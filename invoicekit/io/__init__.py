"""Loaders and writers for the offline (SQLite) and central (PostgreSQL/SQLite) stores."""

from .central import WriteResult, init_db, read_central, write_central
from .local import create_local, read_local, write_local

__all__ = ["read_local", "write_local", "create_local", "read_central", "write_central", "init_db", "WriteResult"]
