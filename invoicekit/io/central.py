"""The central store: PostgreSQL (first class, Arrow/COPY fast paths) or SQLite (embedded default).

Tables (see ``_central_sql``): ``invoices`` keeps the client and line-item JSON text
exactly as received (``client_data_text``, ``line_items_text``: the checksummed
payload) next to a queryable ``client_data JSONB`` generated from it; ``invoice_lines``
holds the parsed lines with ``NUMERIC`` amounts for SQL analytics; ``deleted_at`` marks
tombstones. ``invoicekit_schema`` records applied migrations.

What each dialect does differently lives in its backend (:mod:`invoicekit.io.backends`);
the functions here check their arguments and the schema, and delegate.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import driver_errors, translate
from ..schema import InvoiceSet
from ._write import WriteResult
from .backends import SCHEMA_VERSION, CentralStore
from .backends.base import now_iso

__all__ = ["init_db", "read_central", "write_central", "CentralStore", "SCHEMA_VERSION", "WriteResult"]


def init_db(url_or_engine: Any) -> int:
    """Create or upgrade the central store idempotently; returns the schema version."""
    store = CentralStore(url_or_engine)
    try:
        return store.migrate()
    except driver_errors() as exc:
        raise translate(exc, store=store.display, context="init_db") from exc


def read_central(url_or_engine: Any, *, where: Mapping[str, Any] | None = None, lines: bool = True) -> InvoiceSet:
    """Load the central store into an :class:`InvoiceSet`.

    ``where`` filters with equality (or a list for IN) on ``id``, ``invoice_number``,
    ``currency``, ``sync_status``, ``version`` or ``client_name``; values are bound as
    parameters, never spliced into SQL. ``lines=False`` skips parsing line items (the
    ``lines`` frame is then empty; ``line_items`` text is still loaded).
    PostgreSQL is read through ADBC (Arrow, binary COPY); amounts stay exact.
    """
    store = CentralStore(url_or_engine)
    store.require_schema()
    clause, params = store.where_sql(where)
    try:
        return store.read(clause, params, lines=lines)
    except driver_errors() as exc:
        raise translate(exc, store=store.display, context="read_central") from exc


def write_central(
    invoice_set: InvoiceSet, url_or_engine: Any, *, validate: bool = True, force: bool = False,
    actor: str | None = None, batch_rows: int = 250_000, progress: bool | None = None,
) -> WriteResult:
    """Write ``invoice_set`` into the central store, compare-and-set, in one transaction.

    Per invoice: a new id is inserted, a higher version updates, the same version with the
    same content is left unchanged, and anything else (a lower version, other content at the
    same version, a live row over a tombstone) is refused and reported: a plain write never
    lowers a version, revives a deletion or overwrites what a sync wrote. ``force=True``
    overwrites whatever differs, and the audit trail names it. Every row written gets an
    audit row (``actor``, default ``user@host``). All or nothing: on any error nothing is
    written. Writing the same set again changes nothing.

    PostgreSQL: rows are streamed with ``COPY`` into temporary staging tables in batches of
    ``batch_rows``. With ``validate`` (default) a set that breaks a rule raises
    :class:`~invoicekit.errors.ValidationError` before anything is written. ``progress``
    shows a bar (default: for 100,000 invoices and lines or more). Returns a
    :class:`~invoicekit.io.WriteResult` (counts, and the refused rows with their reason).
    """
    import uuid

    from ..sync.apply import default_actor
    from ..validate import validate as _validate

    store = CentralStore(url_or_engine)
    store.require_schema()
    if validate:
        _validate(invoice_set, strict=True)
    inv, lines = store.central_rows(invoice_set)
    params = {"actor": actor or default_actor(), "op": f"write_central:{uuid.uuid4()}", "now": now_iso()}
    try:
        results = store.write(inv, lines, force=force, params=params, batch_rows=batch_rows, progress=progress)
    except driver_errors() as exc:  # the transaction rolled back: nothing was written
        raise translate(exc, store=store.display, context="write_central") from exc
    return WriteResult(results=results, store=store.display, forced=force)
