"""The interface every central-store backend implements, and the URL -> backend choice.

``CentralStore(url_or_engine)`` parses the URL and returns an instance of the backend
registered for its SQLAlchemy backend name (``PostgresStore`` for ``postgresql://``,
``SqliteStore`` for ``sqlite:///``). Everything that differs between dialects is a method
or class attribute of the backend; code elsewhere asks the store, never tests its dialect.
Adding a dialect means adding one subclass that sets ``dialect`` and implements the
abstract methods (declaring it registers it).
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Mapping, Sequence

import pandas as pd
import pyarrow as pa

from ...errors import StoreSchemaError, UsageError, driver_errors, mask_secrets, translate
from ...schema import InvoiceSet
from ...security.identity import TokenLike, TokenSecret, not_enabled_error, required_error, token_text
from .. import _central_sql as ddl
from ._shared import central_rows

__all__ = ["CentralStore", "SCHEMA_VERSION", "SnapshotState", "backends", "id_array"]

#: the schema version :meth:`CentralStore.migrate` creates or upgrades to; every backend
#: numbers its migrations alike (checked when a backend class is declared)
SCHEMA_VERSION = len(ddl.POSTGRES)

_BACKENDS: dict[str, type[CentralStore]] = {}


@dataclass(frozen=True)
class SnapshotState:
    """What :meth:`CentralStore.snapshot_state` returns: ``identity`` (the store's id, and on
    PostgreSQL its database and schema), ``schema_version``, ``marker`` (the change marker
    now, text), ``since_ok`` (False when the earlier marker is ahead of the store's: a store
    rebuilt or restored since) and ``changed``: the ids written since it (inserted, updated
    or deleted: whether the store still holds each, a fetch of them says)."""

    identity: str
    schema_version: int
    marker: str
    since_ok: bool = True
    changed: Any = ()  # a sequence of ids, or a pyarrow string array


class ReadSession:
    """:meth:`CentralStore.read_session` of a backend that has no connection to share: the
    store's own calls, each on a connection of its own."""

    def __init__(self, store: "CentralStore") -> None:
        self.store = store

    def open(self) -> "ReadSession":
        return self

    def close(self) -> None:
        pass

    def __enter__(self) -> "ReadSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def snapshot_state(self, since: str | None, *, identity: str | None = None) -> SnapshotState:
        return self.store.snapshot_state(since, identity=identity)

    def read(self, clause: str, params: list, *, lines: bool, ids: pa.Array | None = None,
             split: bool = True) -> InvoiceSet:
        """The store's :meth:`CentralStore.read` (``split``: whether a backend may spread a
        large read by ids over several connections)."""
        return self.store.read(clause, params, lines=lines, ids=ids)


def backends() -> dict[str, type[CentralStore]]:
    """The registered backends, by SQLAlchemy backend name."""
    return dict(_BACKENDS)


class CentralStore(abc.ABC):
    """A central store named by a URL (or SQLAlchemy Engine, or another CentralStore).

    Constructing ``CentralStore(url)`` returns the backend for the URL's dialect. Every
    store has ``url`` (SQLAlchemy URL), ``display`` (the URL with its password masked)
    and ``dialect``; a PostgreSQL store also ``libpq`` and ``pg()``, a SQLite one ``path``.
    """

    #: SQLAlchemy backend name of the URLs this backend serves (the registry key)
    dialect: ClassVar[str]
    #: the store's numbered migrations (lists of statements), see ``_central_sql``
    migrations: ClassVar[list[list[str]]]
    #: rows travel as text (money and timestamps as strings) rather than typed
    rows_as_text: ClassVar[bool]
    #: SQL expression of the invoice's client name, for ``where={"client_name": ...}``
    client_name_sql: ClassVar[str]
    #: SQL for an always-false filter (``where`` with an empty list of values)
    false_sql: ClassVar[str] = "FALSE"
    #: ``application_name`` of the PostgreSQL sessions this store opens
    application_name = "invoicekit"

    url: Any
    display: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "dialect" not in cls.__dict__:
            return
        if len(cls.migrations) != SCHEMA_VERSION:
            raise TypeError(f"{cls.__name__} declares {len(cls.migrations)} migrations; every backend numbers "
                            f"its migrations alike ({SCHEMA_VERSION})")
        _BACKENDS[cls.dialect] = cls

    def __new__(cls, url_or_engine: Any) -> CentralStore:
        """The backend registered for the URL's dialect (a UsageError for any other)."""
        url = _store_url(url_or_engine)
        display = url.render_as_string(hide_password=True)
        name = url.get_backend_name()
        backend = _BACKENDS.get(name)
        if backend is None:
            raise UsageError(f"central store {display}: dialect {name!r} is not supported; "
                             "use a postgresql:// or sqlite:/// URL")
        if not issubclass(backend, cls):
            raise UsageError(f"{cls.__name__} takes a {getattr(cls, 'dialect', '?')} URL; got {display}")
        self = super().__new__(backend)
        self.url, self.display = url, display
        return self

    def __init__(self, url_or_engine: Any) -> None:  # noqa: ARG002 - parsed by __new__, which chose the class
        self._configure()

    def __getnewargs__(self) -> tuple:
        return (self.url,)

    def __repr__(self) -> str:
        return f"CentralStore({self.display})"

    # -- what each backend provides -------------------------------------------------------
    @abc.abstractmethod
    def _configure(self) -> None:
        """Derive the connection details from ``self.url``; a UsageError if they cannot serve."""

    @abc.abstractmethod
    def migrate(self) -> int:
        """Create or upgrade the store's tables idempotently; returns the schema version."""

    @abc.abstractmethod
    def schema_state(self) -> tuple[bool, int | None]:
        """(has table ``invoices``, highest applied schema version or None without
        ``invoicekit_schema``), in one query on the happy path."""

    @abc.abstractmethod
    def has_table(self, name: str) -> bool:
        """Whether the store has table ``name``."""

    @abc.abstractmethod
    def param(self, n: int) -> str:
        """The placeholder of the ``n``-th (1-based) bound parameter in :meth:`read`'s SQL."""

    @abc.abstractmethod
    def read(self, clause: str, params: list, *, lines: bool, ids: pa.Array | None = None) -> InvoiceSet:
        """The invoices matching ``clause`` (from :meth:`where_sql`) as an InvoiceSet.

        ``ids`` (distinct, non-null strings; see :func:`id_array`) restricts the read to
        those invoices, in that order: the ids are staged in bulk into a temporary table of
        the reading session and joined, never spliced into SQL as a list of values."""

    @abc.abstractmethod
    def write(self, inv: pa.Table, lines: pa.Table, *, force: bool, params: dict, batch_rows: int,
              progress: bool | None, undelete: frozenset[str] = frozenset(),
              notes: Mapping[str, str] | None = None, token: TokenLike = None) -> pd.DataFrame:
        """Compare-and-set write of rows shaped by :meth:`central_rows` in one transaction, with
        audit rows (``params``: actor, op, now); the per-row outcomes (see ``_write.result_frame``).
        Ids in ``undelete`` may go from tombstone to live at a higher version; ``notes`` (id ->
        text) become the audit rows' ``detail``. ``token``: the push's identity (see
        :meth:`enable_tokens`); the audit rows name its subject instead of ``params['actor']``."""

    #: the DB-API parameter mark of :meth:`fetch` and :meth:`execute` SQL
    mark: ClassVar[str]

    @abc.abstractmethod
    def fetch(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """The rows of one read-only query (parameters marked with :attr:`mark`)."""

    @abc.abstractmethod
    def execute(self, sql: str, rows: Sequence[Sequence], *, token: TokenLike = None) -> None:
        """One statement run once per parameter row, all in one transaction (a push: with
        ``token`` when the store requires one)."""

    @abc.abstractmethod
    def apply_batch(self, inv: pa.Table, lines: pa.Table, *, actor: str, strategy: str,
                    now: str | None = None, token: TokenLike = None) -> tuple[set, set]:
        """Apply one batch of sync operations in one transaction (rows from :meth:`central_rows`
        plus ``op_id``, ``expected``, ``content_sha``); returns (applied op ids, already-applied
        op ids). ``now`` stamps the ledger and audit where the store has no clock of its own.
        With a ``token`` the audit rows name its subject instead of ``actor``."""

    @abc.abstractmethod
    def enable_tokens(self, secret: TokenSecret, *, issuer: str, push_role: str | None = None) -> str | None:
        """Turn signed identities on (idempotent; a new secret replaces the old one): from then
        on every push needs a token signed with ``secret`` by ``issuer``. PostgreSQL verifies it
        in the store for connections of the push role (named ``push_role``, default
        :func:`default_push_role`; returned); SQLite has no roles (returns None): the toolkit
        verifies it."""

    @abc.abstractmethod
    def tokens_enabled(self) -> bool:
        """Whether pushes to this store need a signed identity token."""

    @abc.abstractmethod
    def identify(self, token: TokenLike) -> str | None:
        """The subject of a push's ``token`` as this store verifies it (nothing written), None
        on a store without identities; an IdentityError for a missing or refused token. For
        pushes whose rows name their writer (settings, decisions): they name this subject."""

    @abc.abstractmethod
    def push_workers(self, workers: int, batches: int) -> int:
        """How many of ``batches`` a push applies at once, given ``workers`` requested."""

    @abc.abstractmethod
    def ping(self, timeout: float) -> None:
        """One round trip to the store within about ``timeout`` seconds; raises the driver's
        error (or OSError) when it cannot be reached. Used by ``ConnectionMonitor``."""

    @abc.abstractmethod
    def probe_hard_delete(self, invoice_id: str) -> None:
        """Try ``DELETE FROM invoices`` for one id in a transaction rolled back either way;
        raises the store's refusal (the driver's error) if it refuses."""

    # -- whole-store comparison pushed down (invoicekit.io.pushdown) -------------------
    #: the store compares staged keys itself (:meth:`compare_keys`); else reconcile reads it whole
    compares_keys: ClassVar[bool] = False

    def compare_keys(self, keys: pa.Table, *, opaque: Sequence[str] = ()) -> pa.Table:
        """The ids whose keys (``invoicekit.io.pushdown.KEY_SCHEMA``: id, version, checksum,
        currency, modified_at, deleted_at) differ between ``keys`` and the store, the local ids
        it lacks and the central-only ids, with the central row's keys
        (``pushdown.DIFF_SCHEMA``). Central rows whose client text starts with one of
        ``opaque`` count as differing. Only backends with :attr:`compares_keys` implement it."""
        raise UsageError(f"central store {self.display}: this backend does not compare keys in the store")

    def central_keys(self, *, opaque: Sequence[str] = ()) -> pa.Table:
        """Every central row's keys: id, version (int64), checksum, currency, modified_at,
        deleted_at, and ``ik_opaque`` (whether its client text starts with one of
        ``opaque``), read in one snapshot. Only backends with :attr:`compares_keys` implement it."""
        raise UsageError(f"central store {self.display}: this backend does not compare keys in the store")

    # -- incremental snapshots (invoicekit.io.snapshot; schema version 10) ---------------
    @abc.abstractmethod
    def snapshot_state(self, since: str | None, *, identity: str | None = None) -> SnapshotState:
        """The store's identity, schema version and change marker now, in one connection, and
        with ``since`` (a marker of the store named ``identity``, used only when that is this
        store) the ids of the invoices written since it (inserted, updated, tombstoned), those
        the store still holds apart from those it no longer holds. The marker is taken before
        anything else is read, so a read that follows sees at least what it covers."""

    def read_session(self) -> "ReadSession":
        """A session for :meth:`snapshot_state` then :meth:`read` (``open``, ``close``, a
        context manager): on a backend that can, both on one connection, opened by ``open``
        (which may run on another thread while the caller does other work)."""
        return ReadSession(self)

    # -- the same on every backend --------------------------------------------------------
    def push_token(self, token: TokenLike, *, enabled: bool) -> str | None:
        """The text of a push's ``token`` for a store that does (``enabled``) or does not verify
        tokens: an IdentityError for a missing one, or for one the store cannot verify."""
        text = token_text(token, store=self.display)
        if enabled and text is None:
            raise required_error(self.display)
        if not enabled and text is not None:
            raise not_enabled_error(self.display)
        return text

    def central_rows(self, invoice_set: InvoiceSet) -> tuple[pa.Table, pa.Table]:
        """Invoices and lines of ``invoice_set`` shaped as this store's central tables."""
        return central_rows(invoice_set, text=self.rows_as_text)

    def require_schema(self) -> None:
        """Raise StoreSchemaError unless the store has the current schema (``SCHEMA_VERSION``)."""
        hint = f"central store {self.display} has no table 'invoices'; run `invoicekit db init URL` first"
        try:
            has, version = self.schema_state()
        except driver_errors() as exc:
            raise translate(exc, store=self.display) from exc
        if not has:
            raise StoreSchemaError(hint, store=self.display, missing=["invoices"])
        if version is None:
            raise StoreSchemaError(
                f"central store {self.display} has no schema version table (invoicekit_schema), so its schema "
                "is unknown; run `invoicekit db init URL` to upgrade it",
                store=self.display, missing=["invoicekit_schema"], reason="schema_outdated")
        if version < SCHEMA_VERSION:
            raise StoreSchemaError(
                f"central store {self.display} has schema version {version}, older than the version "
                f"{SCHEMA_VERSION} this invoicekit needs; run `invoicekit db init URL` to upgrade it",
                store=self.display, missing=[f"migration {v}" for v in range(version + 1, SCHEMA_VERSION + 1)],
                reason="schema_outdated")

    def require_ledger(self) -> None:
        """Raise StoreSchemaError unless the store has the sync ledger (schema version 2)."""
        if not self.has_table("invoicekit_ledger"):
            raise StoreSchemaError(f"central store {self.display} has no sync ledger (schema older than "
                                   "version 2); run `invoicekit db init URL` to upgrade it",
                                   store=self.display, missing=["invoicekit_ledger"])

    def where_sql(self, where: Mapping[str, Any] | None) -> tuple[str, list]:
        """Equality / IN filters from a mapping, as SQL with bound parameters."""
        if not where:
            return "", []
        clauses, params = [], []
        for key, value in where.items():
            if key not in ddl.FILTERABLE:
                raise UsageError(f"where: cannot filter on {key!r}; allowed: {', '.join(ddl.FILTERABLE)}")
            col = self.client_name_sql if key == "client_name" else key
            values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
            if not values:
                clauses.append(self.false_sql)
                continue
            marks = []
            for v in values:
                params.append(v)
                marks.append(self.param(len(params)))
            clauses.append(f"{col} IN ({', '.join(marks)})")
        return " WHERE " + " AND ".join(clauses), params


def id_array(ids: Any, *, func: str = "read_central") -> pa.Array:
    """``ids`` (a list, tuple, set, numpy array, pandas Series/Index or pyarrow array of invoice
    id strings) as a pyarrow string array of distinct ids, in first-seen order; nulls name no
    invoice and are left out. A bare string, or values that are not strings, is a UsageError."""
    import numpy as np
    import pyarrow.compute as pc

    if isinstance(ids, (str, bytes)):
        raise UsageError(f"{func}: ids= takes a list of invoice ids; got one {type(ids).__name__} "
                         f"(write ids=[{ids!r}] for a single id)", reason="bad_ids")
    if not isinstance(ids, (pa.Array, pa.ChunkedArray, pd.Series, pd.Index, np.ndarray)) and \
            not hasattr(ids, "__iter__"):
        raise UsageError(f"{func}: ids= takes a list, array or Series of invoice ids; got {type(ids).__name__}",
                         reason="bad_ids")
    try:
        if isinstance(ids, pa.ChunkedArray):
            arr = ids.combine_chunks() if ids.num_chunks != 1 else ids.chunk(0)
        elif isinstance(ids, pa.Array):
            arr = ids
        elif isinstance(ids, (pd.Series, pd.Index, np.ndarray)):
            arr = pa.array(ids, from_pandas=True)
        elif isinstance(ids, (set, frozenset)):
            arr = pa.array(sorted(ids, key=str), from_pandas=True)
        else:
            arr = pa.array(list(ids), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:  # mixed or odd values
        raise UsageError(f"{func}: ids= must hold invoice id strings; got values Arrow cannot read as one "
                         f"type ({exc})", reason="bad_ids") from None
    if isinstance(arr, pa.DictionaryArray):
        arr = arr.dictionary_decode()
    if pa.types.is_null(arr.type):
        return pa.array([], pa.string())
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type)):
        raise UsageError(f"{func}: ids= must hold invoice id strings; got values of type {arr.type}",
                         reason="bad_ids")
    return pc.unique(arr.cast(pa.string()).drop_null())


def now_iso() -> str:
    """The current UTC time as ISO 8601 text."""
    return datetime.now(timezone.utc).isoformat()


def _store_url(value: Any):
    """The SQLAlchemy URL a store is named by (a URL, Engine or CentralStore)."""
    from sqlalchemy.engine import Engine

    if isinstance(value, CentralStore):
        return value.url
    if isinstance(value, Engine):
        return value.url
    return _parse_url(value)


def _parse_url(value: Any):
    """``value`` (a URL string, path-like or SQLAlchemy URL) as a SQLAlchemy URL; a bare path
    or a string SQLAlchemy cannot parse is a UsageError saying what would work."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    if isinstance(value, URL):
        return value
    if not isinstance(value, (str, os.PathLike)):
        raise UsageError(f"the central store must be given as a URL (postgresql://user@host/db or "
                         f"sqlite:///central.sqlite) or a SQLAlchemy Engine; got {type(value).__name__}",
                         reason="bad_url")
    text = os.fsdecode(os.fspath(value))
    shown = mask_secrets(text)
    if "://" not in text:
        raise UsageError(f"central store {shown!r} is not a URL; use sqlite:///{shown} or "
                         "postgresql://user@host/db", reason="bad_url")
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise UsageError(f"central store {shown!r} is not a URL SQLAlchemy can parse ({exc}); use "
                         "sqlite:///PATH or postgresql://user@host/db", reason="bad_url") from None
    return url.set(drivername="postgresql") if url.drivername == "postgres" else url
