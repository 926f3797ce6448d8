"""The central store: PostgreSQL (first class, Arrow/COPY fast paths) or SQLite (embedded default).

Tables (see ``_central_sql``): ``invoices`` keeps the client and line-item JSON text
exactly as received (``client_data_text``, ``line_items_text``: the checksummed
payload) next to a queryable ``client_data JSONB`` generated from it; ``invoice_lines``
gives the parsed lines with ``NUMERIC`` amounts for SQL analytics (on PostgreSQL from
schema version 11 a view of ``line_items_text``: :mod:`invoicekit.io._lines_view`; a table
on SQLite); ``deleted_at`` marks tombstones. ``invoicekit_schema`` records applied migrations.

What each dialect does differently lives in its backend (:mod:`invoicekit.io.backends`);
the functions here check their arguments and the schema, and delegate.
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import cache as _cache
from ..errors import UsageError, driver_errors, translate
from ..schema import InvoiceSet
from ..security.identity import DEFAULT_ISSUER, TokenLike, TokenSecret
from ._write import WriteResult
from .backends import SCHEMA_VERSION, CentralStore
from .backends.base import id_array, now_iso

__all__ = ["init_db", "read_central", "write_central", "CentralStore", "SCHEMA_VERSION", "WriteResult"]


def init_db(url_or_engine: Any, *, token_secret: str | bytes | TokenSecret | None = None,
            issuer: str = DEFAULT_ISSUER, push_role: str | None = None) -> int:
    """Create or upgrade the central store idempotently; returns the schema version.

    With ``token_secret`` (at least 32 bytes; see :mod:`invoicekit.security.identity`) it also
    turns signed identities on: from then on every push (``write_central``, ``apply_sync``,
    ``SyncEngine``, cleanups, settings and decisions) needs ``token=``, a token signed with
    that secret by ``issuer`` (``ik.issue_token``), and the audit trail names its subject.
    On PostgreSQL the store verifies the token itself: login roles granted the push role
    (``push_role``, default ``<database>_ik_push``, created if missing) may write only with
    a valid token. Running it again with another secret replaces the secret (tokens signed
    with the old one are refused); without ``token_secret`` it leaves identities as they are.
    """
    store = CentralStore(url_or_engine)
    secret = None if token_secret is None else TokenSecret(token_secret)
    token_secret = None  # no frame of a traceback keeps the caller's secret
    if push_role is not None and secret is None:
        raise UsageError("init_db: push_role= needs token_secret= (the push role writes only with a verified token)")
    try:
        version = store.migrate()
        if secret is not None:
            store.enable_tokens(secret, issuer=issuer, push_role=push_role)
        return version
    except driver_errors() as exc:
        raise translate(exc, store=store.display, context="init_db") from exc


def read_central(url_or_engine: Any, *, where: Mapping[str, Any] | None = None, lines: bool = True,
                 ids: Any = None, snapshot: Any = None) -> InvoiceSet:
    """Load the central store into an :class:`InvoiceSet`.

    ``where`` filters with equality (or a list for IN) on ``id``, ``invoice_number``,
    ``currency``, ``sync_status``, ``version`` or ``client_name``; values are bound as
    parameters, never spliced into SQL. ``lines=False`` skips parsing line items (the
    ``lines`` frame is then empty; ``line_items`` text is still loaded).
    PostgreSQL is read through ADBC (Arrow, binary COPY); amounts stay exact.

    ``ids`` (a list, array, Series or pyarrow array of invoice ids, any number of them)
    reads exactly those invoices, tombstones included, in the order given (repeats once);
    ids the store does not hold are simply absent, and ``where`` filters them further
    (``source_row`` numbers the rows of the read, as with ``where``). The
    ids travel in bulk (``COPY`` on PostgreSQL) into a temporary table that the read joins,
    so fetching the 20,000 invoices a device holds from a store of millions moves only
    those rows. ``reconcile(local, url)`` reads the central store this way.

    ``snapshot`` (a file path, e.g. ``"~/.cache/central.arrow"``) keeps a local copy of the
    whole store (an Arrow IPC file, see :mod:`invoicekit.io.snapshot`): the first call reads
    everything and saves it; later calls fetch only the invoices written since the copy was
    taken (inserted, edited, tombstoned; found by a change marker the store keeps itself,
    never by clocks), drop those the store no longer holds, merge, and replace the file
    atomically. The result equals a full read (rows in another order: the copy's, changed
    invoices last). Several processes may share the file. A file that is truncated, from
    another store, or of an older format or schema is rebuilt (a logged warning), never
    used. The file holds what the store holds: encrypted client data stays encrypted in it.
    ``snapshot`` cannot be combined with ``where`` or ``ids`` (filter the result instead).

    A list (or tuple) of stores reads each with the same options and stacks them, as
    ``read_local`` does with a list of paths (``source`` tells the rows apart); ``snapshot``
    then takes a list of as many paths, one per store.
    """
    if isinstance(url_or_engine, (list, tuple)):
        return _read_many(list(url_or_engine), where=where, lines=lines, ids=ids, snapshot=snapshot)
    store = CentralStore(url_or_engine)
    if snapshot is not None:
        return _read_snapshot(store, snapshot, where=where, ids=ids, lines=lines)
    wanted = None if ids is None else id_array(ids, func="read_central")
    store.require_schema()
    if wanted is not None and len(wanted) == 0:  # nothing asked for: an empty read, nothing staged
        where, wanted = {**(where or {}), "id": []}, None
    clause, params = store.where_sql(where)
    try:
        result = store.read(clause, params, lines=lines, ids=wanted)
    except driver_errors() as exc:
        raise translate(exc, store=store.display, context="read_central") from exc
    from ..security import decrypt_if_configured

    return decrypt_if_configured(result)


def _read_many(stores: list, *, where: Any, lines: bool, ids: Any, snapshot: Any) -> InvoiceSet:
    """read_central of a list of stores: each read, then stacked (InvoiceSet.concat)."""
    if not stores:
        raise UsageError("read_central() got an empty list of central stores")
    if snapshot is None:
        paths = [None] * len(stores)
    elif isinstance(snapshot, (list, tuple)) and len(snapshot) == len(stores):
        paths = list(snapshot)
    else:
        raise UsageError(f"read_central: with a list of {len(stores)} stores, snapshot= takes a list of "
                         f"{len(stores)} paths, one per store (got {type(snapshot).__name__})",
                         reason="bad_snapshot")
    wanted = None if ids is None else id_array(ids, func="read_central")
    return InvoiceSet.concat(read_central(store, where=where, lines=lines, ids=wanted, snapshot=path)
                             for store, path in zip(stores, paths))


def _read_snapshot(store: CentralStore, snapshot: Any, *, where: Any, ids: Any, lines: bool) -> InvoiceSet:
    """read_central(snapshot=...): the arguments checked, then :func:`invoicekit.io.snapshot.read_snapshot`."""
    from ..security import decrypt_if_configured
    from .snapshot import read_snapshot

    if where or ids is not None:
        raise UsageError("read_central: snapshot= reads the whole store and cannot be combined with "
                         f"{'where=' if where else 'ids='}; filter the InvoiceSet it returns, or read "
                         "without snapshot=", reason="snapshot_filter")
    store.require_schema()
    try:
        result = read_snapshot(store, snapshot, lines=lines)
    except driver_errors() as exc:
        raise translate(exc, store=store.display, context="read_central") from exc
    return decrypt_if_configured(result)


def write_central(
    invoice_set: InvoiceSet, url_or_engine: Any, *, validate: bool = True, force: bool = False,
    actor: str | None = None, batch_rows: int = 250_000, progress: bool | None = None,
    undelete: frozenset[str] = frozenset(), op_id: str | None = None, notes: Mapping[str, str] | None = None,
    token: TokenLike = None,
) -> WriteResult:
    """Write ``invoice_set`` into the central store, compare-and-set, in one transaction.

    Per invoice: a new id is inserted, a higher version updates, the same version with the
    same content is left unchanged, and anything else (a lower version, other content at the
    same version, a live row over a tombstone) is refused and reported: a plain write never
    lowers a version, revives a deletion or overwrites what a sync wrote. ``force=True``
    overwrites whatever differs, and the audit trail names it. Every row written gets an
    audit row (``actor``, default ``user@host``). All or nothing: on any error nothing is
    written. Writing the same set again changes nothing.

    ``token``: the writer's signed identity (``ik.issue_token``, or a callable returning
    one), required by a store initialised with a token secret; it is verified before
    anything is written (an :class:`~invoicekit.errors.IdentityError` otherwise) and the
    audit rows name its subject, whatever ``actor`` says.

    PostgreSQL: rows are streamed with ``COPY`` into temporary staging tables in batches of
    ``batch_rows``. With ``validate`` (default) a set that breaks a rule raises
    :class:`~invoicekit.errors.ValidationError` before anything is written. ``progress``
    shows a bar (default: for 100,000 invoices and lines or more). Returns a
    :class:`~invoicekit.io.WriteResult` (counts, and the refused rows with their reason).

    Narrow options for audited undo (duplicate cleanups use them): ``undelete`` lets exactly
    those ids go from tombstone to live at a higher version (audit kind ``undelete``; every
    other rule still holds for them); ``op_id`` names the write in the audit trail (default
    ``write_central:<uuid>``); ``notes`` (id -> text) is each audit row's ``detail``.
    """
    import uuid

    from ..sync.apply import default_actor
    from ..validate import validate as _validate

    store = CentralStore(url_or_engine)
    store.require_schema()
    if validate:
        _validate(invoice_set, strict=True)
    inv, lines = store.central_rows(invoice_set)
    params = {"actor": actor or default_actor(), "op": op_id or f"write_central:{uuid.uuid4()}", "now": now_iso()}
    try:
        results = store.write(inv, lines, force=force, params=params, batch_rows=batch_rows, progress=progress,
                              undelete=frozenset(undelete), notes=notes, token=token)
    except driver_errors() as exc:  # the transaction rolled back: nothing was written
        raise translate(exc, store=store.display, context="write_central") from exc
    result = WriteResult(results=results, store=store.display, forced=force)
    _cache.invalidate_written(store, result)
    return result
