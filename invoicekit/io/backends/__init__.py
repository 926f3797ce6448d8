"""The central store's backends: one class per dialect behind one interface.

``CentralStore(url)`` returns the backend for the URL: :class:`PostgresStore` for
``postgresql://``, :class:`SqliteStore` for ``sqlite:///``. Each holds everything its
dialect does differently (create/upgrade, schema checks, read, compare-and-set write, sync
batches, how rows travel); see :class:`~invoicekit.io.backends.base.CentralStore` for the
interface. A new dialect is one more subclass in its own module, imported here.
"""

from .base import SCHEMA_VERSION, CentralStore, backends
from .postgres import PostgresStore
from .sqlite import SqliteStore

__all__ = ["CentralStore", "PostgresStore", "SqliteStore", "SCHEMA_VERSION", "backends"]
