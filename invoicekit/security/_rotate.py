"""rotate_keys: re-encrypt every encrypted field of a store under the newest key.

The work goes batch by batch in key order, each batch its own transaction; a value
already under the newest key is skipped, so a rotation killed halfway is finished by
running it again (nothing is redone, nothing lost). Only the encrypted text changes:
versions, checksums (over the plaintext), ``modified_at`` and ``sync_status`` stay, since
a rotation is no content change. A value no key opens is left as it is and reported by
invoice id in :attr:`RotationResult.failed`.

Stores: an offline SQLite file (``transactions.client_data`` and the
``invoicekit_base`` snapshots), a central store by URL: ``sqlite:///`` or
``postgresql://`` (``invoices.client_data_text``; the JSON columns generated from it
follow). Identifiers come from the fixed lists below, never from arguments.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .._html import frame_html
from ..errors import UsageError, driver_errors, translate
from . import _pool
from ._keys import Keys, as_keys, resolve_keys
from ._tokens import ENVELOPE_HEAD, PREFIX

__all__ = ["rotate_keys", "RotationResult"]

log = logging.getLogger("invoicekit.security")

#: (table, key column, encrypted column) of each kind of store; the queue's payloads (and
#: quarantined ones) hold an encrypted client_data inside their JSON, so they are rotated too:
#: a pending operation must still open once the old key is gone
OFFLINE_COLUMNS = (("transactions", "id", "client_data"), ("invoicekit_base", "id", "client_data"),
                   ("sync_queue", "id", "payload"), ("invoicekit_quarantined_ops", "op_id", "payload"))
CENTRAL_COLUMNS = (("invoices", "id", "client_data_text"),)
#: columns holding JSON documents with tokens inside (rather than one marked value)
EMBEDDED = {("sync_queue", "payload"), ("invoicekit_quarantined_ops", "payload")}
#: integer keys (a queue row id) start below any id; text keys after ''
INTEGER_KEYS = {("sync_queue", "id"): -(2 ** 63)}

SELECT_BATCH = """SELECT {key}, {col} FROM {table}
WHERE {key} > {p} AND (substr({col}, 1, {p}) = {p} OR substr({col}, 1, {p}) = {p})
ORDER BY {key} LIMIT {p}"""
#: with ``plaintext=True``: every stored client JSON, encrypted or not
SELECT_ALL = """SELECT {key}, {col} FROM {table} WHERE {key} > {p} AND {col} IS NOT NULL ORDER BY {key} LIMIT {p}"""
#: documents carrying at least one token
SELECT_EMBEDDED = """SELECT {key}, {col} FROM {table} WHERE {key} > {p} AND instr({col}, {p}) > 0
ORDER BY {key} LIMIT {p}"""
UPDATE_ROW = "UPDATE {table} SET {col} = {p} WHERE {key} = {p} AND {col} = {p}"


@dataclass(frozen=True)
class RotationResult:
    """What :func:`rotate_keys` did: counts per table and the values no key opens."""

    store: str
    #: one row per table: table, column, rotated, skipped (already under the newest key), failed, batches
    counts: pd.DataFrame
    #: one row per value left as it was: table, id, column, reason (truncated_token, invalid_token, ...)
    failed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["table", "id", "column", "reason"]))

    @property
    def ok(self) -> bool:
        """True when every encrypted value is now under the newest key (older keys may go)."""
        return self.failed.empty

    def summary(self) -> str:
        """One line: rotated, skipped and failed values."""
        c = self.counts
        text = (f"{self.store}: {int(c['rotated'].sum()):,} value(s) re-encrypted, {int(c['skipped'].sum()):,} "
                f"already under the newest key")
        if not self.ok:
            text += (f", {len(self.failed):,} no key opens (keep the old keys until they are repaired; "
                     f"see .failed)")
        return text

    def __repr__(self) -> str:
        return f"RotationResult({self.summary()})"

    def _repr_html_(self) -> str:  # pragma: no cover - display only
        html = f"<b>rotate_keys</b> {self.summary()}" + frame_html(self.counts)
        return html + (frame_html(self.failed) if not self.ok else "")


class _Sqlite:
    """One SQLite file; a batch is a ``BEGIN IMMEDIATE`` transaction."""

    p = "?"

    def __init__(self, path: str, columns: tuple | None) -> None:
        self.display, self.path = path, path
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if columns is None:  # a file: an offline store, or a central one (invoicekit db init)
            columns = OFFLINE_COLUMNS if "transactions" in tables else CENTRAL_COLUMNS
        self.columns = tuple(c for c in columns if c[0] in tables)
        if not self.columns:
            self.conn.close()
            raise UsageError(f"rotate_keys: {path} holds neither an offline store (transactions) nor a central "
                             "one (invoices)")

    def batch(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def execute(self, sql: str, params: tuple) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        self.conn.executemany(sql, rows)

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        self.conn.execute("ROLLBACK" if kind else "COMMIT")

    def close(self) -> None:
        self.conn.close()


class _Postgres:
    """A central PostgreSQL store through its backend's connection; a batch is a transaction."""

    p = "%s"

    def __init__(self, store: Any, token: Any = None) -> None:
        self.display = store.display
        self.store, self.token = store, token
        self.conn = store.pg()
        self.columns = CENTRAL_COLUMNS
        self._tx = None

    def batch(self):
        self._tx = self.conn.transaction()
        self._tx.__enter__()
        with self.conn.cursor() as cur:  # the store verifies the identity in each batch's transaction
            self.store._authorize(cur, self.token)
        return self

    def execute(self, sql: str, params: tuple) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql, rows)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        tx, self._tx = self._tx, None
        return tx.__exit__(*exc)

    def close(self) -> None:
        self.conn.close()


def _open(store: Any, token: Any = None):
    if isinstance(store, (str, os.PathLike)):
        text = os.fsdecode(os.fspath(store))
        if "://" not in text:
            if not os.path.isfile(text):
                raise UsageError(f"rotate_keys: {text!r} is no file; pass an offline store's path or a central "
                                 "store's URL")
            return _Sqlite(text, None)
    from ..io.central import CentralStore

    central = CentralStore(store)
    central.require_schema()
    try:
        central.identify(token)  # refused (IdentityError) before anything is read or written
    except driver_errors() as exc:
        raise translate(exc, store=central.display, context="rotate_keys") from exc
    if hasattr(central, "pg"):
        return _Postgres(central, token)
    return _Sqlite(str(central.path), CENTRAL_COLUMNS)


def _rotate_batch(target, keys: Keys, rows: list[tuple], update: str, workers,
                  kind: str = "rotate") -> tuple[int, dict[str, str]]:
    """Inside the batch's transaction: re-encrypt ``rows`` (key, stored text), each distinct
    text once. Returns (rows changed, {text: reason} of those no key opens)."""
    distinct = list(dict.fromkeys(r[1] for r in rows))
    fresh, bad = _pool.run(kind, keys.material(), distinct, workers=workers)
    new = dict(zip(distinct, fresh))
    changes = [(new[text], k, text) for k, text in rows if new[text] is not None]
    target.executemany(update, changes)
    return len(changes), {distinct[i]: why for i, why in bad}


def _rotate_column(target, keys: Keys, table: str, key: str, col: str, size: int, workers,
                   plaintext: bool = False):
    """Every marked value of ``table.col`` (with ``plaintext``, every value), batch after
    batch in key order, each batch read, re-encrypted and written in one transaction."""
    update = UPDATE_ROW.format(table=table, col=col, key=key, p=target.p)
    if (table, col) in EMBEDDED:
        select, kind = SELECT_EMBEDDED.format(key=key, col=col, table=table, p=target.p), "rotate_embedded"
        params: tuple = (PREFIX, size)
    elif plaintext:
        select, kind, params = SELECT_ALL.format(key=key, col=col, table=table, p=target.p), "seal", (size,)
    else:
        select, kind = SELECT_BATCH.format(key=key, col=col, table=table, p=target.p), "rotate"
        params = (len(PREFIX), PREFIX, len(ENVELOPE_HEAD), ENVELOPE_HEAD, size)
    rotated = skipped = batches = 0
    failed: list[tuple] = []
    after = INTEGER_KEYS.get((table, key), "")
    while True:
        with target.batch():
            rows = target.execute(select, (after, *params))
            if not rows:
                break
            changed, reasons = _rotate_batch(target, keys, rows, update, workers, kind)
        failed += [(table, k, col, reasons[text]) for k, text in rows if text in reasons]
        rotated += changed
        skipped += len(rows) - changed - sum(1 for _, text in rows if text in reasons)
        batches += 1
        after = rows[-1][0]
        log.info("rotate_keys: %s.%s batch %d committed: %d re-encrypted of %d", table, col, batches, changed,
                 len(rows))
    return (table, col, rotated, skipped, len(failed), batches), failed


def rotate_keys(store: Any, *, keys: Any, batch_rows: int = 10_000, workers: int | None = None,
                token: Any = None, plaintext: bool = False) -> RotationResult:
    """Re-encrypt every encrypted field of ``store`` under the newest of ``keys``.

    ``store``: an offline store's path, or a central store's URL (``sqlite:///...``,
    ``postgresql://...``). ``keys``: the new key first, then every key values may still
    be under (a list, or :class:`~invoicekit.security.Keys`; None for ``INVOICEKIT_KEYS``
    / ``INVOICEKIT_KEY_FILE``). Runs in batches of ``batch_rows``, each committed on its
    own; killed halfway, run it again to finish. Versions and checksums are unchanged.
    Afterwards, when ``result.ok``, the older keys can be dropped. Values no key opens are
    left as they are and listed in ``result.failed`` by invoice id.

    ``token``: your signed identity (``ik.issue_token``), needed for a central store with
    identities on (``init_db(..., token_secret=)``) like every other write to it; verified
    before anything is read, and on PostgreSQL by the store itself in every batch.

    ``plaintext=True`` also encrypts the client JSON still stored as plaintext (rows written
    before keys were configured): how an existing store is encrypted at rest. Its counts
    include those values under ``rotated``. An offline store's queued payloads are rotated
    (a pending operation still opens without the old key); plaintext ones stay as queued.
    """
    keys = resolve_keys(as_keys(keys, func="rotate_keys"), func="rotate_keys")
    if int(batch_rows) < 1:
        raise UsageError(f"rotate_keys: batch_rows must be at least 1; got {batch_rows!r}")
    target = _open(store, token)
    counts, failed = [], []
    try:
        for table, key, col in target.columns:
            row, bad = _rotate_column(target, keys, table, key, col, int(batch_rows), workers, bool(plaintext))
            counts.append(row)
            failed += bad
    except driver_errors() as exc:
        raise translate(exc, store=target.display, context="rotate_keys") from exc
    finally:
        target.close()
    if failed:
        log.warning("rotate_keys: %d value(s) no key opens were left as they are", len(failed))
    return RotationResult(
        store=target.display,
        counts=pd.DataFrame(counts, columns=["table", "column", "rotated", "skipped", "failed", "batches"]),
        failed=pd.DataFrame(failed, columns=["table", "id", "column", "reason"]))
