"""Read one invoice, or one client's invoices, from a store, through the Redis cache.

:func:`get_invoice` and :func:`get_client` return exactly what loading the store and
filtering it would: with a :class:`~invoicekit.cache.Cache` the answer comes from Redis
when it holds a value this toolkit wrote for that store (and no toolkit write has changed
it since), else from the store, and is then cached. Redis failing changes nothing but the
time taken.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import cache as _cache
from ._normalize import ITEM_COLUMNS
from .errors import InvoiceNotFoundError, UsageError
from .schema import INVOICE_SCHEMA, PROBLEM_SCHEMA, InvoiceSet, to_frame, to_table

__all__ = ["get_invoice", "get_client"]


def _store_arg(store: Any, func: str) -> Any:
    if isinstance(store, (str, os.PathLike)):
        return os.fsdecode(os.fspath(store))
    from .io.central import CentralStore

    if isinstance(store, CentralStore):
        return store
    raise UsageError(f"{func}() takes a store's file path or URL as store; got {type(store).__name__}"
                     + (": pass the path or URL it was loaded from" if isinstance(store, InvoiceSet) else ""))


def _load(store: Any, *, where_id: str | None = None) -> InvoiceSet:
    """The whole store, or (central) just the rows of one id."""
    from ._args import as_invoice_set
    from .io import read_central

    if where_id is not None and (not isinstance(store, str) or "://" in store):
        return read_central(store, where={"id": where_id}, lines=False)
    if not isinstance(store, str):
        return read_central(store, lines=False)
    return as_invoice_set(store, func="get_invoice", param="store")


def _as_set(invoices: pa.Table, problems: pa.Table) -> InvoiceSet:
    invoices = invoices.select(INVOICE_SCHEMA.names).cast(INVOICE_SCHEMA)
    return InvoiceSet(to_frame(invoices, INVOICE_SCHEMA), None, to_frame(problems, PROBLEM_SCHEMA),
                      pending_lines=invoices.select(ITEM_COLUMNS))


def _rows(loaded: InvoiceSet, mask_of) -> tuple[pa.Table, pa.Table]:
    """The invoices of ``loaded`` where ``mask_of(invoices table)`` holds, and their load problems."""
    inv = loaded.invoices_table()
    inv = inv.filter(mask_of(inv))
    inv = inv.sort_by([("created_at", "ascending"), ("id", "ascending"), ("source_row", "ascending")])
    problems = to_table(loaded.problems, PROBLEM_SCHEMA)
    problems = problems.filter(pc.is_in(problems.column("id"), value_set=inv.column("id")))
    return inv, problems


def _check(ident_ok) -> Any:
    def check(tables: list[pa.Table]) -> bool:
        return (len(tables) == 2 and tables[0].schema.equals(INVOICE_SCHEMA)
                and tables[1].schema.equals(PROBLEM_SCHEMA) and ident_ok(tables[0]))
    return check


# With keys configured the cache holds the client fields encrypted, as the stores do: Redis
# never sees what the stores keep sealed. A hit is opened before it is checked or returned;
# one no configured key opens (no keys here, or a key rotated away) is a miss.
def _sealed(tables: list[pa.Table]) -> list[pa.Table]:
    from .security import DEFAULT_FIELDS, keys_configured, seal_frame

    if not keys_configured():
        return tables
    frame = seal_frame(to_frame(tables[0], INVOICE_SCHEMA), DEFAULT_FIELDS, func="cache")
    return [to_table(frame, INVOICE_SCHEMA), tables[1]]


def _opened(tables: list[pa.Table]) -> list[pa.Table] | None:
    from .errors import DecryptionError, KeyConfigError
    from .security import ENCRYPTABLE, encrypted_mask, open_frame

    if len(tables) != 2 or not tables[0].schema.equals(INVOICE_SCHEMA):
        return tables  # not ours: the check refuses it
    inv = tables[0]
    if not any(pc.any(encrypted_mask(inv.column(c))).as_py() for c in ENCRYPTABLE):
        return tables
    try:
        frame = open_frame(to_frame(inv, INVOICE_SCHEMA), ENCRYPTABLE, func="cache")
    except (KeyConfigError, DecryptionError):
        return None
    return [to_table(frame, INVOICE_SCHEMA), tables[1]]


def _through(check) -> Any:
    """``check`` applied to a cached value once opened (an unopenable one fails it)."""
    def opened_check(tables: list[pa.Table]) -> bool:
        opened = _opened(tables)
        return opened is not None and check(opened)
    return opened_check


def get_invoice(store: Any, invoice_id: str, *, cache: Any = None) -> InvoiceSet:
    """The invoice ``invoice_id`` of ``store`` (an offline store's path, or a central URL) as
    a one-row :class:`InvoiceSet` (a tombstone too: a deleted invoice is still in the store).

    ``cache``: a :class:`~invoicekit.cache.Cache`, ``None`` for the one
    ``INVOICEKIT_REDIS_URL`` names (if any), ``False`` for none. An id the store lacks
    raises :class:`~invoicekit.errors.InvoiceNotFoundError`.
    """
    store = _store_arg(store, "get_invoice")
    if not isinstance(invoice_id, str) or not invoice_id:
        raise UsageError(f"get_invoice() takes the invoice id as a non-empty string; got {invoice_id!r}")
    cache = _cache.as_cache(cache, func="get_invoice")

    def one(table: pa.Table) -> bool:
        return table.num_rows == 1 and table.column("id")[0].as_py() == invoice_id

    stamp = None
    if cache is not None:
        hit, stamp = cache.get_frames("txn", invoice_id, store, check=_through(_check(one)))
        if hit is not None:
            return _as_set(*_opened(hit))
    loaded = _load(store, where_id=invoice_id)
    inv, problems = _rows(loaded, lambda t: pc.equal(t.column("id"), invoice_id))
    if inv.num_rows == 0:
        raise InvoiceNotFoundError(f"{_cache.store_key(store).split(':', 1)[1]} holds no invoice {invoice_id!r}",
                                   store=str(getattr(store, "display", store)), invoice_id=invoice_id)
    inv = inv.slice(inv.num_rows - 1)  # a queued delete of a removed row next to nothing else: one row per id
    if cache is not None:
        cache.put_frames("txn", invoice_id, store, _sealed([inv, problems]), stamp=stamp)
    return _as_set(inv, problems)


_TAX_JUNK = r"[\s.\-/]"


def _normal(kind: str, text: str) -> str:
    if kind == "tax_id":
        return re.sub(_TAX_JUNK, "", text).upper()
    if kind == "email":
        return text.strip().casefold()
    return " ".join(text.split()).casefold()


def _column_normal(kind: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    if kind == "tax_id":
        return pc.utf8_upper(pc.replace_substring_regex(column, _TAX_JUNK, ""))
    if kind == "email":
        return pc.utf8_lower(pc.utf8_trim_whitespace(column))
    return pc.utf8_lower(pc.utf8_trim_whitespace(pc.replace_substring_regex(column, r"\s+", " ")))


def get_client(store: Any, *, tax_id: str | None = None, email: str | None = None, name: str | None = None,
               cache: Any = None) -> InvoiceSet:
    """Every invoice of one client in ``store`` (tombstones included), by exactly one of
    ``tax_id`` (spaces, dots, dashes and case ignored), ``email`` (case ignored) or
    ``name`` (case and runs of spaces ignored), oldest first. Read through ``cache`` like
    :func:`get_invoice`; an unknown client is an empty set."""
    store = _store_arg(store, "get_client")
    given = {k: v for k, v in (("tax_id", tax_id), ("email", email), ("name", name)) if v is not None}
    if len(given) != 1:
        raise UsageError("get_client() takes exactly one of tax_id=, email=, name=; got "
                         + (", ".join(sorted(given)) or "none"))
    (kind, value), = given.items()
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"get_client(): {kind} must be a non-empty string; got {value!r}")
    wanted = _normal(kind, value)
    from .security import lookup_digest

    ident = f"{kind}-{lookup_digest(wanted)}"  # keyed when keys are set: no guess testable against the cache
    column = {"tax_id": "client_tax_id", "email": "client_email", "name": "client_name"}[kind]
    cache = _cache.as_cache(cache, func="get_client")

    def matches(table: pa.Table) -> pa.ChunkedArray:
        return pc.fill_null(pc.equal(_column_normal(kind, table.column(column)), wanted), False)

    def all_match(table: pa.Table) -> bool:
        return table.num_rows == 0 or bool(pc.all(matches(table)).as_py())

    stamp = None
    if cache is not None:
        hit, stamp = cache.get_frames("cli", ident, store, check=_through(_check(all_match)))
        if hit is not None:
            return _as_set(*_opened(hit))
    inv, problems = _rows(_load(store), matches)
    if cache is not None:
        cache.put_frames("cli", ident, store, _sealed([inv, problems]), stamp=stamp)
    return _as_set(inv, problems)
