"""One error hierarchy for invoicekit.

Every error the toolkit raises on purpose derives from :class:`InvoicekitError`.
Errors that concern data carry the offending rows as a DataFrame so a notebook
user can look at them directly. Every error

* survives :mod:`pickle` with its class, message and attributes (they cross process
  pools and caches; see :meth:`InvoicekitError.__reduce__`),
* carries a ``reason`` code (a short snake_case string: the class default, or a more
  precise one given when raised), and
* says whether it is ``transient`` (connection lost, server restarting, lock timeout):
  only transient errors are worth retrying.

:func:`translate` turns the exception of a driver (sqlite3, psycopg, ADBC, SQLAlchemy,
DuckDB, pyarrow) into the matching typed error, naming the store with any password masked.
"""

from __future__ import annotations

import pickle
import re
import sys
from dataclasses import dataclass
from typing import Any

__all__ = [
    "InvoicekitError",
    "UsageError",
    "MissingDependencyError",
    "StoreError",
    "NotAStoreError",
    "StoreSchemaError",
    "StoreUnavailableError",
    "InvoiceNotFoundError",
    "ValidationError",
    "translate",
    "driver_errors",
    "mask_secrets",
]


def _rebuild(cls: type, args: tuple, state: dict) -> "InvoicekitError":
    """Unpickle an error without calling its ``__init__`` (whose signature varies)."""
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


def _picklable(value: Any) -> Any:
    """``value`` if it pickles, else its ``repr`` (pandera's ReducedPickleExceptionBase idea)."""
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return value
    if type(value).__module__.split(".")[0] in ("pandas", "pyarrow", "numpy"):
        return value
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 - anything unpicklable travels as text
        return repr(value)
    return value


class InvoicekitError(Exception):
    """Base class of every error raised by invoicekit."""

    #: exit code the CLI maps this error to (2: bad usage or bad input)
    exit_code = 2
    #: short snake_case code saying what went wrong (instances may carry a more precise one)
    reason = "invoicekit_error"
    #: True when retrying the same call may succeed (connection lost, lock timeout)
    transient = False

    def __init__(self, message: str = "", *, reason: str | None = None, transient: bool | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if transient is not None:
            self.transient = bool(transient)

    @property
    def message(self) -> str:
        """The message, as ``str(error)``."""
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):
        """Pickle as class, args and attributes; attributes that do not pickle travel as text."""
        state = {k: _picklable(v) for k, v in self.__dict__.items()}
        return _rebuild, (type(self), self.args, state)


class UsageError(InvoicekitError, ValueError):
    """A function or command was called with options that make no sense."""

    reason = "bad_usage"


class MissingDependencyError(InvoicekitError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    reason = "missing_dependency"

    def __init__(self, module: str, extra: str, *, reason: str | None = None) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"invoicekit needs the optional package {module!r} for this; "
            f"install it with: pip install 'invoicekit[{extra}]'",
            reason=reason,
        )


class StoreError(InvoicekitError):
    """A store (SQLite file or central database) cannot be used as asked.

    ``store`` names it: a file path, or a URL with its password masked.
    """

    reason = "store_error"

    def __init__(self, message: str, *, store: str, reason: str | None = None,
                 transient: bool | None = None) -> None:
        self.store = mask_secrets(str(store))
        super().__init__(mask_secrets(message), reason=reason, transient=transient)


class NotAStoreError(StoreError):
    """The file is missing, corrupt, or not a SQLite database at all."""

    reason = "not_a_store"


class InvoiceNotFoundError(StoreError, KeyError):
    """The store holds no invoice with this id."""

    reason = "invoice_not_found"

    def __init__(self, message: str, *, store: str, invoice_id: str, reason: str | None = None) -> None:
        self.invoice_id = invoice_id
        super().__init__(message, store=store, reason=reason)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class StoreSchemaError(StoreError):
    """The store lacks tables or columns the offline/central schema requires."""

    reason = "schema_missing"

    def __init__(self, message: str, *, store: str, missing: list[str], reason: str | None = None) -> None:
        self.missing = list(missing)
        super().__init__(message, store=store, reason=reason)


class StoreUnavailableError(StoreError):
    """The store cannot be reached right now (connection lost, server restarting, lock
    timeout); transient: the same call may succeed when retried."""

    reason = "store_unavailable"
    transient = True


class ValidationError(InvoicekitError):
    """Data broke one or more validation rules.

    ``problems`` is a DataFrame with one row per broken rule and offending row
    (columns ``source``, ``source_row``, ``id``, ``rule``, ``field``, ``value``,
    ``message``).
    """

    reason = "validation_failed"

    def __init__(self, problems: Any, *, context: str = "", reason: str | None = None) -> None:
        self.problems = problems
        n = len(problems)
        rules = ", ".join(
            f"{rule} ({count})" for rule, count in problems["rule"].value_counts().sort_index().items()
        )
        first = problems.iloc[0] if n else None
        where = ""
        if first is not None:
            label = {"source": "{}", "source_row": "row {}", "id": "id {!r}"}
            parts = [fmt.format(first[k]) for k, fmt in label.items() if k in first.index and not _absent(first[k])]
            where = f"; first: {' '.join(parts)}: {first['message']}" if parts else (
                f"; first: {first['message']}")
        prefix = f"{context}: " if context else ""
        super().__init__(f"{prefix}{n} validation problem(s): {rules}{where}", reason=reason)


def _absent(value: Any) -> bool:
    """None, NaN or pandas' NA (a problem row without a source, row or id)."""
    try:
        return value is None or bool(value != value) or str(value) == "<NA>"
    except (TypeError, ValueError):
        return str(value) == "<NA>"


# -- passwords never shown -------------------------------------------------------------
_URL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*):(?P<pw>[^@/\s]*)@")
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``text`` with the passwords of URLs (``scheme://user:secret@``) and of libpq
    ``password=secret`` settings replaced by ``***``."""
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}:***@", text)
    return _KV_PASSWORD.sub(lambda m: f"{m['head']}***", text)


def _passwords(text: str) -> list[str]:
    from urllib.parse import unquote

    found = [m["pw"] for m in _URL_USERINFO.finditer(text)] + [m["pw"] for m in _KV_PASSWORD.finditer(text)]
    return [p for pw in found if pw and pw != "***" for p in {pw, unquote(pw)}]


# -- driver exceptions -> typed errors ---------------------------------------------------
def driver_errors() -> tuple[type[BaseException], ...]:
    """The base exception classes of the drivers invoicekit uses, for ``except`` clauses.

    Only drivers already imported are listed (an exception can only come from those), so
    nothing is imported here.
    """
    import sqlite3

    found: list[type[BaseException]] = [sqlite3.Error]
    for module, name in (("psycopg", "Error"), ("adbc_driver_manager", "Error"), ("duckdb", "Error"),
                         ("pyarrow", "ArrowException"), ("sqlalchemy.exc", "SQLAlchemyError")):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


@dataclass(frozen=True)
class _Kind:
    cls: type
    reason: str
    hint: str = ""
    missing: tuple[str, ...] = ()
    lead: str = ""  # replaces "<store>" at the head of the message


_CENTRAL_INIT = "run `invoicekit db init URL` to create or upgrade it"
_OFFLINE_SCHEMA = "expected the offline store schema (transactions, sync_queue, app_settings)"
_RETRY = "this is transient: retry"
_MISSING_NAME = re.compile(
    r'(?:relation|column|table|function|schema)\s+"?([\w.]+)"?(?:\(.*?\))?\s+does not exist'
    r"|no such (?:table|column|function): ([\w.]+)", re.IGNORECASE)

# PostgreSQL SQLSTATEs worth retrying, with their reason code
_PG_TRANSIENT = {
    "57P01": "connection_lost", "57P02": "connection_lost", "57P03": "server_restarting",
    "40001": "serialization_failure", "40P01": "deadlock", "55P03": "lock_timeout",
    "53300": "too_many_connections", "57014": "timeout",
}
_PG_SCHEMA = {"42P01", "42703", "42883", "3F000"}


def _missing(detail: str) -> tuple[str, ...]:
    return tuple(a or b for a, b in _MISSING_NAME.findall(detail))


def _schema_kind(detail: str, central: bool) -> _Kind:
    return _Kind(StoreSchemaError, "schema_missing", _CENTRAL_INIT if central else _OFFLINE_SCHEMA,
                 _missing(detail) or ("unknown",))


def _pg_kind(exc: BaseException, detail: str, store: str, *, connection_class: bool) -> _Kind:
    """PostgreSQL (psycopg or ADBC) errors, by SQLSTATE, else by the client library's text."""
    state = getattr(exc, "sqlstate", None) or ""
    low = detail.lower()
    connecting = "connection failed" in low or "failed to connect" in low or "connection to server" in low
    lead = f"cannot connect to central store {store}" if connecting else ""
    if state == IDENTITY_SQLSTATE:  # the store refused the push's identity token
        reason = getattr(getattr(exc, "diag", None), "message_detail", None) or "token_refused"
        return _Kind(IdentityError, reason if re.fullmatch(r"[a-z_]{1,40}", reason) else "token_refused")
    if state in _PG_TRANSIENT:
        return _Kind(StoreUnavailableError, _PG_TRANSIENT[state], _RETRY, lead=lead)
    if state.startswith("08"):
        return _Kind(StoreUnavailableError, "connection_lost", _RETRY, lead=lead)
    if state in _PG_SCHEMA:
        return _schema_kind(detail, True)
    if state in ("28000", "28P01", "42501") or "authentication failed" in low or "no pg_hba.conf" in low \
            or "no password supplied" in low or re.search(r'role "[^"]*" does not exist', low):
        return _Kind(StoreError, "access_denied", "check the user and password in the URL, and the "
                     "server's pg_hba.conf and grants", lead=lead)
    if state == "3D000" or re.search(r'database "[^"]*" does not exist', low):
        return _Kind(StoreError, "no_such_database", "create the database (createdb NAME) or fix the URL, "
                     "then run `invoicekit db init URL`", lead=lead)
    if state.startswith("22"):
        return _Kind(StoreError, "bad_value", "the central schema cannot hold this value; validate the data")
    if state.startswith("23"):
        return _Kind(StoreError, "constraint_violation", "the store refused the write")
    if "starting up" in low or "shutting down" in low or "in recovery" in low:
        return _Kind(StoreUnavailableError, "server_restarting", _RETRY, lead=lead)
    if connection_class and not state:
        return _Kind(StoreUnavailableError, "connection_failed" if connecting else "connection_lost", _RETRY,
                     lead=lead)
    return _Kind(StoreError, "query_failed")


def _sqlite_kind(exc: BaseException, detail: str, central: bool) -> _Kind:
    """SQLite errors (sqlite3 or ADBC), by SQLite result code name, else by message."""
    import sqlite3

    name = getattr(exc, "sqlite_errorname", "") or ""
    low = detail.lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in low \
            or "database table is locked" in low:
        return _Kind(StoreUnavailableError, "locked", "another connection holds the lock; " + _RETRY)
    if "no such table" in low or "no such column" in low:
        return _schema_kind(detail, central)
    if name.startswith("SQLITE_NOTADB") or "not a database" in low:
        return _Kind(NotAStoreError, "not_a_store", "expected a SQLite file")
    if name.startswith("SQLITE_CORRUPT") or "malformed" in low:
        return _Kind(NotAStoreError, "corrupt", "restore the file from a backup")
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in low:
        return _Kind(NotAStoreError, "cannot_open", "check that the file and its directory exist and are readable")
    if name.startswith("SQLITE_READONLY") or "readonly" in low:
        return _Kind(StoreError, "read_only", "check the permissions of the file and its directory")
    if name.startswith("SQLITE_FULL") or "disk is full" in low:
        return _Kind(StoreError, "disk_full", "free some disk space")
    if isinstance(exc, sqlite3.IntegrityError) or name.startswith("SQLITE_CONSTRAINT"):
        return _Kind(StoreError, "constraint_violation", "the store refused the write")
    if isinstance(exc, sqlite3.DataError) or "too big" in low:
        return _Kind(StoreError, "bad_value", "the value cannot be stored; validate the data")
    if type(exc) is sqlite3.DatabaseError:
        return _Kind(NotAStoreError, "not_a_store", "expected a SQLite file")
    return _Kind(StoreError, "query_failed")


def _kind(exc: BaseException, detail: str, store: str) -> _Kind:
    import sqlite3

    central = "://" in store
    mods = sys.modules
    if isinstance(exc, sqlite3.Error):
        return _sqlite_kind(exc, detail, central)
    sa = mods.get("sqlalchemy.exc")
    if sa is not None and isinstance(exc, sa.SQLAlchemyError):
        if isinstance(exc, sa.NoSuchModuleError):
            return _Kind(UsageError, "unsupported_dialect", "use a postgresql:// or sqlite:/// URL")
        if isinstance(exc, sa.ArgumentError):
            return _Kind(UsageError, "bad_url", f"use sqlite:///{store or 'PATH'} or postgresql://user@host/db",
                         lead=f"central store {store!r} is not a URL")
        return _Kind(StoreError, "query_failed")
    pg = mods.get("psycopg")
    if pg is not None and isinstance(exc, pg.Error):
        return _pg_kind(exc, detail, store, connection_class=isinstance(exc, (pg.OperationalError, pg.InterfaceError)))
    adbc = mods.get("adbc_driver_manager")
    if adbc is not None and isinstance(exc, adbc.Error):
        if central and not store.startswith("sqlite"):
            return _pg_kind(exc, detail, store, connection_class=isinstance(exc, adbc.OperationalError))
        return _sqlite_kind(exc, detail, central)
    duck = mods.get("duckdb")
    if duck is not None and isinstance(exc, duck.Error):
        value = isinstance(exc, (duck.OutOfRangeException, duck.ConversionException, duck.InvalidInputException))
        return _Kind(StoreError if store else UsageError, "bad_value" if value else "query_failed",
                     "a value is outside what invoicekit can represent; validate the data" if value else "")
    arrow = mods.get("pyarrow")
    if arrow is not None and isinstance(exc, arrow.ArrowException):
        value = isinstance(exc, (arrow.ArrowInvalid, arrow.ArrowTypeError))
        return _Kind(StoreError if store else UsageError, "bad_value" if value else "query_failed",
                     "a value does not fit its column type; validate the data" if value else "")
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return _Kind(NotAStoreError, "no_such_file", "check the path")
    if isinstance(exc, PermissionError):
        return _Kind(StoreError, "permission_denied", "check the permissions of the file and its directory")
    if isinstance(exc, OSError):
        return _Kind(StoreError, "io_error")
    return _Kind(StoreError, "unexpected_error")


def _detail(exc: BaseException, secrets: list[str]) -> str:
    diag = getattr(exc, "diag", None)  # psycopg: the server's message without its context
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = " ".join(str(primary or exc).split()) or type(exc).__name__
    text = re.sub(r"\s*Query was: .*$", "", text)  # ADBC repeats the whole statement
    text = re.sub(r"\s+LINE \d+: .*$", "", text)  # and PostgreSQL/DuckDB quote it with a caret
    for secret in secrets:
        text = text.replace(secret, "***")
    text = mask_secrets(text)
    return text if len(text) <= 400 else text[:399] + "…"


def translate(exc: BaseException, *, store: str, context: str = "") -> InvoicekitError:
    """The typed :class:`InvoicekitError` for a driver exception ``exc`` met on ``store``.

    ``store`` is the file path or URL (its password is masked in the error); ``context``
    (e.g. ``"read_central"``) prefixes the message. Use as
    ``except driver_errors() as exc: raise translate(exc, store=...) from exc``.
    An :class:`InvoicekitError` is returned unchanged. Connection trouble, a server
    restarting and lock timeouts become a transient :class:`StoreUnavailableError`; a
    missing table or column a :class:`StoreSchemaError`; a URL SQLAlchemy cannot parse a
    :class:`UsageError`. The driver's class is kept as ``driver_error`` (and PostgreSQL's
    ``sqlstate`` when there is one).
    """
    if isinstance(exc, InvoicekitError):
        return exc
    raw = str(store or "")
    shown = mask_secrets(raw)
    detail = _detail(exc, _passwords(raw))
    kind = _kind(exc, detail, shown)
    where = kind.lead or (f"central store {shown}" if "://" in shown else shown)
    head = f"{context}: " if context else ""
    message = f"{head}{where}: {detail}" if where else f"{head}{detail}"
    if kind.hint:
        message += f"; {kind.hint}"
    if issubclass(kind.cls, StoreSchemaError):
        err: InvoicekitError = kind.cls(message, store=shown, missing=list(kind.missing), reason=kind.reason)
    elif issubclass(kind.cls, (StoreError, IdentityError)):
        err = kind.cls(message, store=shown, reason=kind.reason)
    else:
        err = kind.cls(message, reason=kind.reason)
    err.driver_error = f"{type(exc).__module__}.{type(exc).__qualname__}"
    if getattr(exc, "sqlstate", None):
        err.sqlstate = exc.sqlstate
    return err


# -- rendering (invoicekit.render) -------------------------------------------------------
__all__ += ["RenderError"]


class RenderError(InvoicekitError):
    """One invoice could not be rendered (``invoice_id`` names it; ``reason`` says why,
    e.g. ``total_mismatch``, ``bad_currency``, ``layout_failed``)."""

    reason = "render_failed"

    def __init__(self, message: str, *, invoice_id: str | None = None, reason: str | None = None) -> None:
        self.invoice_id = invoice_id
        super().__init__(message, reason=reason)


# -- encryption (invoicekit.security) ----------------------------------------------------
__all__ += ["KeyConfigError", "DecryptionError"]


class KeyConfigError(UsageError):
    """No usable encryption key: none configured, or one that is not a Fernet key. The
    message says how to supply one and never holds key material."""

    reason = "no_key"


class DecryptionError(InvoicekitError):
    """An encrypted field holds a token no configured key opens: tampered, truncated, or
    encrypted under a foreign key. ``invoice_id`` and ``column`` name the first such value;
    ``failures`` (a DataFrame: ``id``, ``column``, ``reason``) lists every one. The message
    holds neither the key nor the token nor any plaintext."""

    reason = "invalid_token"

    def __init__(self, message: str, *, invoice_id: str | None = None, column: str | None = None,
                 failures: Any = None, reason: str | None = None) -> None:
        self.invoice_id = invoice_id
        self.column = column
        self.failures = failures
        super().__init__(message, reason=reason)


# -- signed identities (invoicekit.security.identity) --------------------------------------
__all__ += ["IdentityError", "IDENTITY_SQLSTATE"]

#: SQLSTATE the PostgreSQL central store raises when it refuses a push's identity token
#: (its DETAIL is the reason code); :func:`translate` turns it into an IdentityError
IDENTITY_SQLSTATE = "IK401"


class IdentityError(InvoicekitError):
    """A push's identity token is missing, or refused (expired, unsigned, wrongly signed,
    wrong issuer, malformed), or the token secret is unusable; ``reason`` says which, and
    ``store`` names the store when there is one. The message holds neither the secret nor
    the token."""

    reason = "token_refused"

    def __init__(self, message: str, *, store: str | None = None, reason: str | None = None) -> None:
        self.store = mask_secrets(str(store)) if store else None
        super().__init__(mask_secrets(message), reason=reason)
