"""``SyncEngine``: drain a device's ``sync_queue`` into the central store, exactly once.

The queue is drained oldest first, in batches that never hold two operations on the same
invoice (so each invoice's versions reach the central store one by one, contiguous).
Per batch:

1. payloads are parsed and verified in one vectorised pass; an unparseable payload, one
   failing its checksum or a validation rule, or one without a version is quarantined
   (moved to ``invoicekit_quarantine``, its row marked ``error``) and the rest go on;
2. the rows are marked ``syncing``;
3. the central store applies the batch in one transaction (``CentralStore.apply_batch``):
   ``INSERT ... ON CONFLICT ... WHERE version = expected`` where an ``insert`` expects no
   row and an ``update``/``delete`` expects the version before it; the ledger keyed by op
   id makes a redelivered operation a no-op;
4. the device acknowledges in one transaction: acknowledged operations leave the queue,
   rows whose last change went out become ``synced`` (with that payload as their base),
   refused operations (``conflict``) stay queued with status ``conflict`` and their row
   marked ``conflict``.

A crash anywhere (even between the central commit and step 4) loses nothing: the next
drain redelivers, the ledger recognises what was applied, and step 4 completes. Errors
reaching the central store (a dropped connection, a restart) are retried with
exponential backoff; after ``max_retries`` the batch is marked ``error`` and draining
stops, so later operations never overtake earlier ones.

With a :class:`~invoicekit.monitor.ConnectionMonitor` (``monitor=``) watching the central
store, an offline central store is not an error: ``drain()`` returns at once (or after the
batch in flight) with ``DrainResult.offline`` set, every operation still queued as it was
(no attempt counted, no backoff), and when the monitor sees the store come back the engine
drains the queue by itself in a background thread (its outcome in ``last_drain``).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import _duck
from .. import cache as _cache
from .._html import frame_html
from .._normalize import RAW_COLUMNS, normalize
from ..errors import InvoicekitError, UsageError, driver_errors, translate
from ..integrity import verify
from ..io import _sqlite
from ..io.central import CentralStore
from ..io.local import CURRENCY_HINT, REQUIRED_TABLES, ensure_schema, store_currency
from ..io.offline_schema import ROW_COLUMNS
from ..schema import InvoiceSet
from ..security import decrypt
from ..validate import validate
from ._content import content_sha
from .apply import default_actor

__all__ = ["SyncEngine", "DrainResult", "OUTCOMES"]

OUTCOMES = ("synced", "already_synced", "conflict", "quarantined", "error")

log = logging.getLogger(__name__)

#: the operations the devices' schema names; anything else is quarantined, never guessed at
OPERATIONS = ("insert", "update", "delete")

# A ``delete`` whose payload carries no content (``{"id", "version"}``: the device kept the
# row) takes its content from the row, which the store's write transaction has made the
# tombstone (see invoicekit.io.local.adopt_kept_deletes).
_QUEUE_SQL = """
WITH q AS (SELECT *, CASE WHEN json_valid(payload) THEN payload END AS p FROM queue)
SELECT q.id AS source_row, q.transaction_id AS id, q.operation, q.op_id, q.retry_count,
  q.p, q.created_at AS queued_at, q.p IS NOT NULL AS payload_ok,
  coalesce(q.operation = 'delete' AND json_type(q.p) = 'OBJECT'
    AND json_extract(q.p, '$.line_items') IS NULL AND json_extract(q.p, '$.client_data') IS NULL, false) AS by_ref,
  CASE WHEN json_type(q.p) = 'OBJECT' THEN json_extract_string(q.p, '$.id') END AS payload_id,
  coalesce(json_type(q.p, '$.client_data') IN ('OBJECT', 'ARRAY'), false) AS client_nested,
  coalesce(json_type(q.p, '$.line_items') IN ('OBJECT', 'ARRAY'), false) AS items_nested,
  q.r_invoice_number, q.r_client_data, q.r_line_items, q.r_total, q.r_created_at, q.r_modified_at,
  q.r_deleted_at, q.r_version, q.r_checksum
FROM q
"""

_RAW_SQL = """
WITH v AS (
  SELECT *,
    CASE WHEN by_ref THEN r_invoice_number ELSE json_extract_string(p, '$.invoice_number') END AS x_number,
    CASE WHEN by_ref THEN r_client_data ELSE json_extract_string(p, '$.client_data') END AS x_client,
    CASE WHEN by_ref THEN r_line_items ELSE json_extract_string(p, '$.line_items') END AS x_items,
    CASE WHEN by_ref THEN r_total ELSE json_extract_string(p, '$.total_amount') END AS x_total
  FROM ops
)
SELECT source_row, id, x_number AS invoice_number, x_client AS client_data, x_items AS line_items,
  TRY_CAST(x_total AS DOUBLE) AS total_amount,
  CASE WHEN TRY_CAST(x_total AS DOUBLE) IS NULL THEN x_total END AS total_text,
  coalesce(json_extract_string(p, '$.currency'), $currency) AS currency,
  CASE WHEN by_ref THEN r_created_at ELSE coalesce(json_extract_string(p, '$.created_at'), queued_at) END
    AS created_at,
  CASE WHEN by_ref THEN coalesce(r_modified_at, queued_at)
       ELSE coalesce(json_extract_string(p, '$.modified_at'), queued_at) END AS modified_at,
  CASE WHEN by_ref THEN coalesce(r_deleted_at, queued_at)
       WHEN operation = 'delete' THEN coalesce(json_extract_string(p, '$.deleted_at'), queued_at) END AS deleted_at,
  CASE WHEN by_ref THEN r_version
       ELSE coalesce(json_extract_string(p, '$.version'), CASE WHEN operation = 'insert' THEN '1' END) END AS version,
  'synced' AS sync_status,
  CASE WHEN by_ref THEN r_checksum ELSE json_extract_string(p, '$.checksum') END AS checksum,
  'sync_queue' AS source
FROM v
"""


@dataclass(frozen=True)
class DrainResult:
    """One row per queue operation handled: queue_id, op_id, invoice_id, operation,
    outcome (see :data:`OUTCOMES`), attempts, error. ``offline``: the engine's monitor saw
    the central store offline, so the drain stopped (or never started) and every operation
    not in ``results`` is still queued, untouched."""

    results: pd.DataFrame
    offline: bool = False
    #: the settings sync that followed (a :class:`~invoicekit.sync.SettingsSyncResult`), or None
    settings: Any = None

    @property
    def ok(self) -> bool:
        """True when every operation is synced (or was already) and none waits offline."""
        return not self.offline and bool(self.results["outcome"].isin(["synced", "already_synced"]).all())

    def summary(self) -> pd.DataFrame:
        """Operations per outcome."""
        counts = self.results["outcome"].value_counts()
        return pd.DataFrame({"outcome": list(OUTCOMES), "operations": [int(counts.get(o, 0)) for o in OUTCOMES]})

    def _repr_html_(self) -> str:
        bad = self.results[~self.results["outcome"].isin(["synced", "already_synced"])]
        return (f"<b>DrainResult</b>: {len(self.results):,} operations" + (" (central store offline)"
                                                                           if self.offline else "")
                + frame_html(self.summary(), caption="by outcome") + frame_html(bad, caption="not synced"))

    def __repr__(self) -> str:
        counts = [f"{o}={n}" for o, n in self.summary().itertuples(index=False) if n]
        return "DrainResult(" + ", ".join(counts + (["offline"] if self.offline else [])) + ")"


class _CentralOffline(Exception):
    """The monitor says the central store is offline: stop, leaving the queue as it is."""


class SyncEngine:
    """Drains the queue of the offline store at ``local`` into ``central`` (see module doc).

    ``on_batch_committed(frame)`` is called after each batch's central commit and before
    the device acknowledges it (a progress hook; the frame lists the batch's outcomes).
    ``sleep`` is the function used to wait between retries. ``monitor`` (a
    :class:`~invoicekit.monitor.ConnectionMonitor` checking ``central``) makes an offline
    central store wait instead of failing, and drains again when it is back (module doc).
    ``token`` is the device's signed identity (``ik.issue_token``; or a callable returning a
    fresh one, asked before each push), required by a central store with identities on; a
    refused token stops the drain with an IdentityError (not retried), nothing written.
    """

    def __init__(self, local, central, *, batch_size: int = 500, max_retries: int = 5, backoff: float = 0.1,
                 max_backoff: float = 5.0, actor: str | None = None,
                 on_batch_committed: Callable[[pd.DataFrame], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, currency: str | None = None,
                 monitor=None, token=None) -> None:
        self.local = str(local)
        self.central = CentralStore(central)
        self.central.application_name = "invoicekit-sync"
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.actor = actor or default_actor()
        self.on_batch_committed = on_batch_committed
        self.sleep = sleep
        #: currency of queued invoices that record none (else the store's ``app_settings``)
        self.currency = currency
        self.monitor = monitor
        #: the device's signed identity for every push (text, or a callable returning a fresh one)
        self.token = token
        #: the outcome of the last drain the engine started itself (the monitor saw central come back)
        self.last_drain: DrainResult | None = None
        self._drain_lock = threading.Lock()  # one drain at a time (the caller's or the reconnect's)
        self._reconnect_lock = threading.Lock()
        self._reconnect: threading.Thread | None = None
        self._again = False
        if monitor is not None:
            if "central" not in monitor.services:
                raise UsageError(f"SyncEngine(monitor=...): {monitor!r} does not check the central store; "
                                 "use ConnectionMonitor(central=URL, ...)")
            callback = monitor.on_change(_on_change_of(weakref.ref(self)))
            weakref.finalize(self, monitor.remove_callback, callback)

    def __repr__(self) -> str:
        return f"SyncEngine({self.local!r} -> {self.central.display})"

    def drain(self) -> DrainResult:
        """Push every queued operation, oldest first; returns the outcome of each. With a
        monitor that sees the central store offline, returns at once with ``offline=True``."""
        if self._offline():
            return _drain_result([], offline=True)
        with self._drain_lock:
            return self._drain()

    def _drain(self) -> DrainResult:
        self._prepare()
        done: list[pd.DataFrame] = []
        try:
            _, attempts, error = self._retrying(lambda: (self.central.require_schema(),
                                                         self.central.require_ledger()))
        except _CentralOffline:
            return self._wait_offline(done)
        while True:
            if self._offline():
                return self._wait_offline(done)
            batch = self._next_batch()
            if batch is None:
                break
            if error is not None:  # the central store never answered: the first batch waits, marked error
                outcome = self._fail(batch, attempts, error)
                done.append(outcome)
                break
            try:
                try:
                    outcome = self._run_batch(batch)
                finally:  # whatever the batch committed on either side is no longer cached
                    ids = pc.unique(batch.column("id")).to_pylist()
                    _cache.invalidate(self.central, invoices=ids)
                    _cache.invalidate(self.local, invoices=ids)
            except _CentralOffline:
                return self._wait_offline(done)
            except InvoicekitError as exc:  # a central read failed: offline, if the monitor agrees
                if exc.transient and self._offline(refresh=True):
                    return self._wait_offline(done)
                raise
            done.append(outcome)
            if (outcome["outcome"] == "error").any():
                break
        return replace(_drain_result(done), settings=self._sync_settings())

    def _sync_settings(self):
        """The device's settings marked ``sync_required``, synced after its invoices (a failure
        is logged: the invoices' outcomes stand)."""
        from ._settings import sync_settings

        try:
            return sync_settings(self.local, self.central, actor=self.actor, token=self.token)
        except InvoicekitError as exc:
            log.warning("SyncEngine %s: settings not synced: %s", self.local, exc)
            return None

    # -- the monitor ----------------------------------------------------------------------
    def _offline(self, *, refresh: bool = False) -> bool:
        """True when the monitor (probing central once more if ``refresh``) sees it offline."""
        if self.monitor is None:
            return False
        if refresh:
            self.monitor.check("central")
        return self.monitor.is_online("central") is False

    def _drain_in_background(self) -> None:
        """Drain in a thread of its own (once more after it, if asked again meanwhile)."""
        with self._reconnect_lock:
            if self._reconnect is not None:
                self._again = True
                return
            self._reconnect = threading.Thread(target=self._drain_reconnected, daemon=True,
                                               name="invoicekit-sync-reconnect")
            self._reconnect.start()

    def _drain_reconnected(self) -> None:
        while True:
            try:
                self.last_drain = self.drain()
            except Exception:  # noqa: BLE001 - nobody to raise to in this thread
                log.exception("SyncEngine %s: draining after the central store came back failed", self.local)
            with self._reconnect_lock:
                if not self._again:
                    self._reconnect = None
                    return
                self._again = False

    # -- steps ----------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Give queue rows written by other software an op id derived from their content."""
        _sqlite.open_checked(self.local, tables=REQUIRED_TABLES, integrity=True).close()
        with _sqlite.write_transaction(self.local) as conn:
            ensure_schema(conn)
            # derived from the queue row's content, so an operation the device queued twice (a
            # resend after a lost acknowledgement) gets one op id: a redelivery, applied once
            conn.create_function("invoicekit_op_id", 1, _content_op_id, deterministic=True)
            conn.execute("UPDATE sync_queue SET op_id = invoicekit_op_id(json_array(transaction_id, operation, "
                         "payload, created_at)) WHERE op_id IS NULL")

    def _next_batch(self) -> pa.Table | None:
        conn = _sqlite.open_checked(self.local, tables=REQUIRED_TABLES)
        try:
            default_currency = store_currency(conn, self.currency)
            rows = conn.execute(
                "SELECT id, CAST(transaction_id AS TEXT), CAST(operation AS TEXT), CAST(payload AS TEXT), "
                "coalesce(CAST(retry_count AS INTEGER), 0), CAST(created_at AS TEXT), CAST(op_id AS TEXT) "
                "FROM sync_queue "
                "WHERE coalesce(status, 'pending') NOT IN ('conflict') ORDER BY id LIMIT ?",
                (self.batch_size,)).fetchall()
            # the rows themselves: their currency, and the content of deletions queued by reference
            row_of = {r[0]: r[1:] for r in conn.execute(_ROW_SQL, (_json(sorted({r[1] for r in rows})),))}
            in_conflict = {r[0] for r in conn.execute(
                "SELECT DISTINCT transaction_id FROM sync_queue WHERE status = 'conflict'")}
        finally:
            conn.close()
        if not rows:
            return None
        seen, cut = set(), len(rows)
        for i, r in enumerate(rows):  # stop before the first repeated invoice: one op per invoice per batch
            if r[1] in seen:
                cut = i
                break
            seen.add(r[1])
        rows = rows[:cut]
        table = pa.table({
            "id": pa.array([r[0] for r in rows], pa.int64()),
            "transaction_id": pa.array([r[1] for r in rows], pa.string()),
            "operation": pa.array([r[2] for r in rows], pa.string()),
            "payload": pa.array([r[3] for r in rows], pa.string()),
            "retry_count": pa.array([r[4] for r in rows], pa.int64()),
            "created_at": pa.array([r[5] for r in rows], pa.string()),
            "op_id": pa.array([r[6] for r in rows], pa.string()),
            "currency": pa.array([(row_of.get(r[1]) or [None])[0] or default_currency for r in rows], pa.string()),
            **{f"r_{name}": pa.array([(row_of.get(r[1]) or [None] * len(_ROW_FIELDS))[i] for r in rows], pa.string())
               for i, name in enumerate(_ROW_FIELDS) if name != "currency"},
            # an invoice with a refused operation queued: its later operations wait behind it
            "blocked": pa.array([r[1] in in_conflict for r in rows], pa.bool_()),
        })
        return table

    def _parse(self, batch: pa.Table) -> tuple[InvoiceSet, pd.DataFrame]:
        con = _duck.connect(queue=batch)
        try:
            ops = _duck.arrow(con, _QUEUE_SQL)
            con.register("ops", ops.append_column("cur", batch.column("currency")))
            raw = _duck.arrow(con, _RAW_SQL.replace("$currency", "cur"))
        finally:
            con.close()
        raw = _unnest(raw, ops)
        # payloads a device stored encrypted are checked and pushed as plaintext (the central
        # store encrypts again where keys are set); without a key that opens them the drain
        # stops with a KeyConfigError/DecryptionError, nothing quarantined or acknowledged
        parsed = decrypt(normalize(raw.select(RAW_COLUMNS)))
        meta = ops.select(["source_row", "id", "operation", "op_id", "retry_count", "payload_ok",
                           "payload_id"]).to_pandas()
        return parsed, meta

    def _run_batch(self, batch: pa.Table) -> pd.DataFrame:
        parsed, meta = self._parse(batch)
        inv = parsed.invoices
        reason = pd.Series(None, index=meta.index, dtype=object)
        by_row = inv.set_index("source_row")
        self._require_currency(inv, meta)
        ok_sum = verify(inv).to_numpy()
        bad_rows = set(inv["source_row"][~ok_sum])
        problems = validate(parsed).problems
        bad_valid = set(problems["source_row"])
        reason[~meta["payload_ok"].fillna(False).astype(bool)] = "payload is not JSON"
        unknown = ~meta["operation"].isin(OPERATIONS) & reason.isna()
        reason[unknown] = ("unknown operation " + meta["operation"].astype(str).map(repr)
                           + ": expected insert, update or delete")[unknown]
        other = meta["payload_id"].notna() & (meta["payload_id"] != meta["id"]) & reason.isna()
        reason[other] = ("payload is for invoice " + meta["payload_id"].astype(str).map(repr)
                         + ", not its queue row's " + meta["id"].astype(str).map(repr))[other]
        broken = problems.drop_duplicates("source_row").set_index("source_row")
        why = "payload fails validation: " + broken["rule"].astype(str) + " (" + broken["field"].astype(str) + ")"
        failing = meta["source_row"].isin(bad_valid) & reason.isna()
        reason[failing] = meta.loc[failing, "source_row"].map(why).to_numpy()
        reason[meta["source_row"].isin(bad_rows) & reason.isna()] = "payload fails its checksum"
        no_version = by_row["version"].reindex(meta["source_row"]).isna().to_numpy()
        reason[no_version & reason.isna().to_numpy()] = "payload has no version"
        good = meta[reason.isna()]
        quarantined = meta[reason.notna()].assign(reason=reason[reason.notna()])
        out = pd.DataFrame({"queue_id": meta["source_row"], "op_id": meta["op_id"], "invoice_id": meta["id"],
                            "operation": meta["operation"], "outcome": None, "attempts": 0, "error": None})
        out.loc[reason.notna(), "outcome"] = "quarantined"
        out.loc[reason.notna(), "error"] = reason[reason.notna()]
        # an op queued behind a refused op on the same invoice is never applied: it is sent with
        # an impossible expected version, so the ledger still recognises one already applied
        waiting = set(pc.filter(batch.column("id"), batch.column("blocked")).to_pylist())
        applied: set = set()
        already: set = set()
        if len(good):
            keep = inv["source_row"].isin(good["source_row"])
            target = InvoiceSet(self._delete_versions(inv[keep].reset_index(drop=True)),
                                parsed.lines[parsed.lines["invoice_id"].isin(inv["id"][keep])])
            rows, lines = self.central.central_rows(target)
            written = target.invoices.set_index("source_row")["version"]
            expected = np.where(good["operation"].to_numpy() == "insert", None,
                                written.loc[good["source_row"]].to_numpy(dtype=object))
            meta_tab = pa.table({
                "id": pa.array(good["id"].tolist(), pa.string()),
                "op_id": pa.array(good["op_id"].tolist(), pa.string()),
                "expected": pa.array([-1 if q in waiting else None if e is None else int(e) - 1
                                      for e, q in zip(expected, good["source_row"])], pa.int32()),
            })
            canonical = target.invoices_table()
            sha = pa.table({"id": canonical.column("id"), "content_sha": content_sha(canonical)})
            con = _duck.connect(rows=rows, meta=meta_tab, sha=sha)
            try:
                rows = _duck.arrow(con, "SELECT rows.*, meta.op_id, meta.expected, sha.content_sha "
                                        "FROM rows JOIN meta USING (id) JOIN sha USING (id)")
            finally:
                con.close()
            self._mark_syncing(good["id"].tolist())

            def push():
                return self.central.apply_batch(rows, lines, actor=self.actor, strategy="queue",
                                                now=datetime.now(timezone.utc).isoformat(), token=self.token)

            result, attempts, error = self._retrying(push)
            if error is None:
                applied, already = result
            sent = out["op_id"].isin(good["op_id"])
            out.loc[sent, "attempts"] = attempts
            if error is not None:
                out.loc[sent, "outcome"] = "error"
                out.loc[sent, "error"] = error
            else:
                out.loc[sent, "outcome"] = out.loc[sent, "op_id"].map(
                    lambda o: "synced" if o in applied else "already_synced" if o in already else "conflict")
                behind = sent & out["queue_id"].isin(waiting) & (out["outcome"] == "conflict")
                out.loc[behind, "error"] = "an earlier operation on this invoice is in conflict: resolve it first"
            if error is None and self.on_batch_committed is not None:
                self.on_batch_committed(out.copy())
        self._acknowledge(out, quarantined, target_rows=_payload_rows(parsed))
        return out

    def _delete_versions(self, inv: pd.DataFrame) -> pd.DataFrame:
        """Deletions whose payload carries the version they delete (the row as it was, the
        central store's live version) rather than the tombstone's: the tombstone is one
        version up. Devices use both conventions; the central row tells them apart (one read
        of the batch's deletions)."""
        dead = inv[inv["deleted_at"].notna()]
        if dead.empty:
            return inv
        clause, params = self.central.where_sql({"id": dead["id"].astype(str).tolist()})
        try:
            now = self.central.read(clause, params, lines=False).invoices
        except driver_errors() as exc:
            raise translate(exc, store=self.central.display, context="SyncEngine.drain") from exc
        now = now.set_index("id")
        # the live row at the payload's version holding exactly the payload's content (so the
        # payload is that row, as it was deleted), or (delivered again) its tombstone one up;
        # a central row that moved on with other content is a conflict, as for any change
        at = inv["id"].map(now["version"])
        gone = inv["id"].map(now["deleted_at"].notna()).fillna(False).astype(bool).to_numpy()
        content = np.ones(len(inv), dtype=bool)
        for col in ("checksum", "invoice_number", "currency", "total"):
            content &= (inv["id"].map(now[col]).astype(object) == inv[col].astype(object)).fillna(False).to_numpy()
        same = inv["deleted_at"].notna().to_numpy() & content & (
            ((at == inv["version"]).fillna(False).to_numpy() & ~gone)
            | ((at == inv["version"] + 1).fillna(False).to_numpy() & gone))
        if not same.any():
            return inv
        out = inv.copy()
        out.loc[same, "version"] = out.loc[same, "version"] + 1
        return out

    def _require_currency(self, inv: pd.DataFrame, meta: pd.DataFrame) -> None:
        """Stop (nothing written) when an operation's invoice records no currency and none is known."""
        bad = inv["currency"].isna() & inv["source_row"].isin(meta["source_row"][meta["payload_ok"].fillna(False)])
        if bad.any():
            first = inv[bad].iloc[0]
            raise UsageError(f"{self.local}: sync_queue row {first['source_row']} (invoice {first['id']!r}) and "
                             f"{int(bad.sum()) - 1} more: {CURRENCY_HINT} (SyncEngine(..., currency='EUR'))")

    def _retrying(self, fn: Callable[[], object]) -> tuple[object, int, str | None]:
        """Call ``fn``, retrying connection trouble with exponential backoff:
        returns (result, attempts, error text or None)."""
        attempts = 0
        while True:
            attempts += 1
            try:
                return fn(), attempts, None
            except Exception as exc:  # noqa: BLE001 - anything but connection trouble is re-raised, typed
                if not _retryable(exc):
                    if not isinstance(exc, driver_errors()):
                        raise
                    err = translate(exc, store=self.central.display, context="SyncEngine.drain")
                    if err is exc:
                        raise
                    raise err from exc
                if self._offline(refresh=True):  # waiting for the monitor, not burning retries
                    raise _CentralOffline from exc
                if attempts > self.max_retries:
                    return None, attempts, f"{type(exc).__name__}: {exc}"
                self.sleep(min(self.max_backoff, self.backoff * 2 ** (attempts - 1)))

    def _fail(self, batch: pa.Table, attempts: int, error: str) -> pd.DataFrame:
        out = pd.DataFrame({"queue_id": batch.column("id").to_pylist(), "op_id": batch.column("op_id").to_pylist(),
                            "invoice_id": batch.column("transaction_id").to_pylist(),
                            "operation": batch.column("operation").to_pylist(), "outcome": "error",
                            "attempts": attempts, "error": error})
        self._acknowledge(out, pd.DataFrame({"source_row": [], "reason": []}), target_rows=[])
        return out

    def _mark_syncing(self, ids: list[str]) -> None:
        with _sqlite.write_transaction(self.local) as conn:
            conn.execute("UPDATE transactions SET sync_status = 'syncing' "
                         "WHERE sync_status = 'pending' AND id IN (SELECT value FROM json_each(?))", (_json(ids),))

    def _wait_offline(self, done: list[pd.DataFrame]) -> DrainResult:
        """Stop for an offline central store: rows with operations still queued are pending
        again (none stays ``syncing``); the queue itself is left as it is."""
        with _sqlite.write_transaction(self.local) as conn:
            conn.execute("UPDATE transactions SET sync_status = 'pending' WHERE sync_status = 'syncing' "
                         "AND id IN (SELECT transaction_id FROM sync_queue)")
        return _drain_result(done, offline=True)

    def _acknowledge(self, out: pd.DataFrame, quarantined: pd.DataFrame, *, target_rows: list[tuple]) -> None:
        """The device's side of a batch, in one transaction, set-based over temp tables."""
        now = datetime.now(timezone.utc).isoformat()
        with _sqlite.write_transaction(self.local) as conn:
            conn.execute("CREATE TEMP TABLE ik_out (op_id TEXT, queue_id INTEGER PRIMARY KEY, invoice_id TEXT, "
                         "outcome TEXT, error TEXT, reason TEXT)")
            why = dict(zip(quarantined["source_row"].astype(int), quarantined["reason"]))
            conn.executemany("INSERT INTO ik_out VALUES (?, ?, ?, ?, ?, ?)", [
                (o, int(q), i, oc, e, why.get(int(q))) for o, q, i, oc, e in
                zip(out["op_id"], out["queue_id"], out["invoice_id"], out["outcome"], out["error"])])
            conn.execute(f"CREATE TEMP TABLE ik_rows ({', '.join(_ROW_COLS)}, queue_id INTEGER PRIMARY KEY)")
            conn.executemany(f"INSERT INTO ik_rows VALUES ({', '.join('?' * (len(_ROW_COLS) + 1))})", target_rows)
            # acknowledged: the payload is the last-synced snapshot; the op leaves the queue
            conn.execute(f"""
                INSERT OR REPLACE INTO invoicekit_base ({', '.join(_ROW_COLS)})
                SELECT {', '.join('r.' + c for c in _ROW_COLS)} FROM ik_rows r JOIN ik_out o USING (queue_id)
                WHERE o.outcome IN ('synced', 'already_synced')
                  AND NOT EXISTS (SELECT 1 FROM invoicekit_base b WHERE b.id = r.id AND b.version >= r.version)""")
            conn.execute("DELETE FROM sync_queue WHERE id IN "
                         "(SELECT queue_id FROM ik_out WHERE outcome IN ('synced', 'already_synced'))")
            # a row is synced when nothing of it is queued and it is its acknowledged snapshot
            conn.execute("""
                UPDATE transactions SET sync_status = 'synced'
                WHERE id IN (SELECT invoice_id FROM ik_out WHERE outcome IN ('synced', 'already_synced'))
                  AND sync_status IS NOT 'synced'
                  AND NOT EXISTS (SELECT 1 FROM sync_queue q WHERE q.transaction_id = transactions.id)
                  AND EXISTS (SELECT 1 FROM invoicekit_base b WHERE b.id = transactions.id
                              AND b.version = CAST(transactions.version AS INTEGER)
                              AND b.checksum IS transactions.checksum)""")
            conn.execute("UPDATE sync_queue SET status = 'conflict' "
                         "WHERE id IN (SELECT queue_id FROM ik_out WHERE outcome = 'conflict')")
            conn.execute("UPDATE sync_queue SET status = 'error', retry_count = retry_count + 1, "
                         "last_error = (SELECT error FROM ik_out o WHERE o.queue_id = sync_queue.id) "
                         "WHERE id IN (SELECT queue_id FROM ik_out WHERE outcome = 'error')")
            conn.execute("INSERT OR IGNORE INTO invoicekit_quarantined_ops SELECT q.op_id, q.id, q.transaction_id, "
                         "q.operation, q.payload, q.created_at FROM sync_queue q JOIN ik_out o ON o.queue_id = q.id "
                         "WHERE o.outcome = 'quarantined'")
            conn.execute("INSERT OR IGNORE INTO invoicekit_quarantine SELECT op_id, invoice_id, reason, ? FROM ik_out "
                         "WHERE outcome = 'quarantined'", (now,))
            conn.execute("DELETE FROM sync_queue "
                         "WHERE id IN (SELECT queue_id FROM ik_out WHERE outcome = 'quarantined')")
            conn.execute("""
                UPDATE transactions SET sync_status = CASE
                    (SELECT o.outcome FROM ik_out o WHERE o.invoice_id = transactions.id)
                    WHEN 'conflict' THEN 'conflict' ELSE 'error' END
                WHERE id IN (SELECT invoice_id FROM ik_out WHERE outcome IN ('conflict', 'error', 'quarantined'))""")
            conn.execute("DROP TABLE temp.ik_out")
            conn.execute("DROP TABLE temp.ik_rows")


_RESULT_COLUMNS = ["queue_id", "op_id", "invoice_id", "operation", "outcome", "attempts", "error"]


def _drain_result(done: list[pd.DataFrame], *, offline: bool = False) -> DrainResult:
    results = pd.concat(done, ignore_index=True) if done else pd.DataFrame({c: [] for c in _RESULT_COLUMNS})
    return DrainResult(results[_RESULT_COLUMNS].reset_index(drop=True), offline=offline)


def _on_change_of(engine_ref: weakref.ref) -> Callable:
    """The monitor callback of an engine, holding it weakly (the monitor never keeps an
    engine alive): the central store coming back drains the queue in the background."""

    def on_change(change) -> None:
        engine = engine_ref()
        if engine is not None and change.service == "central" and change.online and change.previous is False:
            engine._drain_in_background()

    return on_change


def _content_op_id(text: str) -> str:
    import hashlib
    import uuid

    return str(uuid.UUID(hashlib.sha256(text.encode()).hexdigest()[:32]))


#: what a batch reads of each queued invoice's row (as text), see ``_QUEUE_SQL``
_ROW_FIELDS = ("currency", "invoice_number", "client_data", "line_items", "total", "created_at", "modified_at",
               "deleted_at", "version", "checksum")
_ROW_SQL = ("SELECT CAST(id AS TEXT), CAST(currency AS TEXT), CAST(invoice_number AS TEXT), CAST(client_data AS TEXT), "
            "CAST(line_items AS TEXT), CAST(total_amount AS TEXT), CAST(created_at AS TEXT), "
            "CAST(modified_at AS TEXT), CAST(deleted_at AS TEXT), CAST(version AS TEXT), CAST(checksum AS TEXT) "
            "FROM transactions WHERE id IN (SELECT value FROM json_each(?))")

_ROW_COLS = list(ROW_COLUMNS)


def _payload_rows(parsed: InvoiceSet) -> list[tuple]:
    """Offline-schema rows of the payloads, each followed by its queue id (for the base snapshot)."""
    from ..io.local import _offline_rows

    return [(*row, int(qid)) for row, qid in zip(_offline_rows(parsed), parsed.invoices["source_row"])]
def _json(values: list) -> str:
    import json

    return json.dumps(values)


def _unnest(raw: pa.Table, ops: pa.Table) -> pa.Table:
    """Client and line-item JSON that a payload holds as objects, as text: the row's own stored
    text where it parses to the same value (the text the device checksummed or stores), else
    ``json.dumps`` of the object (as a device writes it). Only such payloads pay a Python pass."""
    import json

    for field, flag, stored in (("client_data", "client_nested", "r_client_data"),
                                ("line_items", "items_nested", "r_line_items")):
        nested = ops.column(flag).fill_null(False)
        if not pc.any(nested).as_py():
            continue
        values = raw.column(field).to_pylist()
        rows = ops.column(stored).to_pylist()
        for i in np.flatnonzero(nested.to_numpy(zero_copy_only=False)):
            obj = json.loads(values[i])
            try:
                same = rows[i] is not None and json.loads(rows[i]) == obj
            except ValueError:
                same = False
            values[i] = rows[i] if same else json.dumps(obj)
        raw = raw.set_column(raw.schema.get_field_index(field), field, pa.array(values, pa.string()))
    return raw


def _retryable(exc: Exception) -> bool:
    """Connection trouble worth retrying (dropped connection, server restart, refused connect);
    a typed error says so itself (a schema error is not retried)."""
    if isinstance(exc, InvoicekitError):
        return bool(exc.transient)
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
