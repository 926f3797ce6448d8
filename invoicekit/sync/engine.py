"""``SyncEngine``: drain a device's ``sync_queue`` into the central store, exactly once.

The queue is drained oldest first, in batches that never hold two operations on the same
invoice (so each invoice's versions reach the central store one by one, contiguous).
Per batch:

1. payloads are parsed and verified in one vectorised pass; an unparseable payload, one
   failing its checksum or a validation rule, or one without a version is quarantined
   (moved to ``invoicekit_quarantine``, its row marked ``error``) and the rest go on;
2. the rows are marked ``syncing``;
3. the central store applies the batch in one transaction (see ``_central``):
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
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import _duck
from .._html import frame_html
from .._normalize import RAW_COLUMNS, normalize
from ..device import ensure_queue_columns
from ..errors import StoreError
from ..integrity import checksum
from ..io import _sqlite
from ..io.central import CentralStore, _central_rows, _require_schema
from ..io.local import REQUIRED_TABLES, _default_currency, _ensure_schema
from ..schema import InvoiceSet
from ..validate import validate
from . import _central
from .apply import _require_ledger, default_actor

__all__ = ["SyncEngine", "DrainResult", "OUTCOMES"]

OUTCOMES = ("synced", "already_synced", "conflict", "quarantined", "error")

_QUEUE_SQL = """
SELECT q.id AS source_row, q.transaction_id AS id, q.operation, q.op_id, q.retry_count,
  CASE WHEN json_valid(q.payload) THEN q.payload END AS p, q.created_at AS queued_at,
  json_valid(q.payload) AS payload_ok
FROM queue q
"""

_RAW_SQL = """
SELECT source_row, id,
  json_extract_string(p, '$.invoice_number') AS invoice_number,
  json_extract_string(p, '$.client_data') AS client_data,
  json_extract_string(p, '$.line_items') AS line_items,
  TRY_CAST(json_extract_string(p, '$.total_amount') AS DOUBLE) AS total_amount,
  CASE WHEN TRY_CAST(json_extract_string(p, '$.total_amount') AS DOUBLE) IS NULL
       THEN json_extract_string(p, '$.total_amount') END AS total_text,
  coalesce(json_extract_string(p, '$.currency'), $currency) AS currency,
  coalesce(json_extract_string(p, '$.created_at'), queued_at) AS created_at,
  coalesce(json_extract_string(p, '$.modified_at'), queued_at) AS modified_at,
  CASE WHEN operation = 'delete' THEN coalesce(json_extract_string(p, '$.deleted_at'), queued_at) END AS deleted_at,
  coalesce(json_extract_string(p, '$.version'), CASE WHEN operation = 'insert' THEN '1' END) AS version,
  'synced' AS sync_status,
  json_extract_string(p, '$.checksum') AS checksum,
  'sync_queue' AS source
FROM ops
"""


@dataclass(frozen=True)
class DrainResult:
    """One row per queue operation handled: queue_id, op_id, invoice_id, operation,
    outcome (see :data:`OUTCOMES`), attempts, error."""

    results: pd.DataFrame

    @property
    def ok(self) -> bool:
        """True when every operation is synced (or was already)."""
        return bool(self.results["outcome"].isin(["synced", "already_synced"]).all())

    def summary(self) -> pd.DataFrame:
        """Operations per outcome."""
        counts = self.results["outcome"].value_counts()
        return pd.DataFrame({"outcome": list(OUTCOMES), "operations": [int(counts.get(o, 0)) for o in OUTCOMES]})

    def _repr_html_(self) -> str:
        bad = self.results[~self.results["outcome"].isin(["synced", "already_synced"])]
        return (f"<b>DrainResult</b>: {len(self.results):,} operations"
                + frame_html(self.summary(), caption="by outcome") + frame_html(bad, caption="not synced"))

    def __repr__(self) -> str:
        return "DrainResult(" + ", ".join(f"{o}={n}" for o, n in self.summary().itertuples(index=False) if n) + ")"


class SyncEngine:
    """Drains the queue of the offline store at ``local`` into ``central`` (see module doc).

    ``on_batch_committed(frame)`` is called after each batch's central commit and before
    the device acknowledges it (a progress hook; the frame lists the batch's outcomes).
    ``sleep`` is the function used to wait between retries.
    """

    def __init__(self, local, central, *, batch_size: int = 500, max_retries: int = 5, backoff: float = 0.1,
                 max_backoff: float = 5.0, actor: str | None = None,
                 on_batch_committed: Callable[[pd.DataFrame], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
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

    def __repr__(self) -> str:
        return f"SyncEngine({self.local!r} -> {self.central.display})"

    def drain(self) -> DrainResult:
        """Push every queued operation, oldest first; returns the outcome of each."""
        self._prepare()
        done: list[pd.DataFrame] = []
        _, attempts, error = self._retrying(lambda: (_require_schema(self.central), _require_ledger(self.central)))
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            if error is not None:  # the central store never answered: the first batch waits, marked error
                outcome = self._fail(batch, attempts, error)
                done.append(outcome)
                break
            outcome = self._run_batch(batch)
            done.append(outcome)
            if (outcome["outcome"] == "error").any():
                break
        cols = ["queue_id", "op_id", "invoice_id", "operation", "outcome", "attempts", "error"]
        results = pd.concat(done, ignore_index=True) if done else pd.DataFrame({c: [] for c in cols})
        return DrainResult(results[cols].reset_index(drop=True))

    # -- steps ----------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Give queue rows written by other software an op id derived from their content."""
        _sqlite.open_checked(self.local, tables=REQUIRED_TABLES, integrity=True).close()
        with _sqlite.write_transaction(self.local) as conn:
            _ensure_schema(conn)
            ensure_queue_columns(conn)
            for stmt in ("CREATE TABLE IF NOT EXISTS invoicekit_quarantine (op_id TEXT PRIMARY KEY, invoice_id TEXT, "
                         "reason TEXT, at TEXT)",
                         "CREATE TABLE IF NOT EXISTS invoicekit_quarantined_ops (op_id TEXT PRIMARY KEY, queue_id "
                         "INTEGER, transaction_id TEXT, operation TEXT, payload TEXT, created_at TEXT)"):
                conn.execute(stmt)
            rows = conn.execute("SELECT id, transaction_id, operation, payload, created_at FROM sync_queue "
                                "WHERE op_id IS NULL").fetchall()
            if rows:
                import hashlib

                conn.executemany("UPDATE sync_queue SET op_id = ? WHERE id = ?", [
                    (str(__import__("uuid").UUID(hashlib.sha256("|".join(map(str, r[1:])).encode()).hexdigest()[:32])),
                     r[0]) for r in rows])

    def _next_batch(self) -> pa.Table | None:
        conn = _sqlite.open_checked(self.local, tables=REQUIRED_TABLES)
        try:
            default_currency = _default_currency(conn)
            rows = conn.execute(
                "SELECT id, transaction_id, operation, payload, retry_count, created_at, op_id FROM sync_queue "
                "WHERE coalesce(status, 'pending') NOT IN ('conflict') ORDER BY id LIMIT ?",
                (self.batch_size,)).fetchall()
            row_currency = dict(conn.execute(
                "SELECT id, currency FROM transactions WHERE id IN (SELECT transaction_id FROM sync_queue)").fetchall())
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
            "currency": pa.array([row_currency.get(r[1]) or default_currency for r in rows], pa.string()),
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
        parsed = normalize(raw.select(RAW_COLUMNS))
        meta = ops.select(["source_row", "id", "operation", "op_id", "retry_count", "payload_ok"]).to_pandas()
        return parsed, meta

    def _run_batch(self, batch: pa.Table) -> pd.DataFrame:
        parsed, meta = self._parse(batch)
        inv = parsed.invoices
        reason = pd.Series(None, index=meta.index, dtype=object)
        by_row = inv.set_index("source_row")
        ok_sum = (checksum(inv) == inv["checksum"]).fillna(False).astype(bool).to_numpy()
        bad_rows = set(inv["source_row"][~ok_sum])
        problems = validate(parsed).problems
        bad_valid = set(problems["source_row"])
        reason[~meta["payload_ok"]] = "payload is not JSON"
        reason[meta["source_row"].isin(bad_valid) & reason.isna()] = "payload fails validation"
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
            target = InvoiceSet(inv[keep].reset_index(drop=True),
                                parsed.lines[parsed.lines["invoice_id"].isin(inv["id"][keep])])
            rows, lines = _central_rows(target, text=self.central.dialect == "sqlite")
            expected = np.where(good["operation"].to_numpy() == "insert", None,
                                by_row.loc[good["source_row"], "version"].to_numpy(dtype=object))
            meta_tab = pa.table({
                "id": pa.array(good["id"].tolist(), pa.string()),
                "op_id": pa.array(good["op_id"].tolist(), pa.string()),
                "expected": pa.array([-1 if q in waiting else None if e is None else int(e) - 1
                                      for e, q in zip(expected, good["source_row"])], pa.int32()),
            })
            con = _duck.connect(rows=rows, meta=meta_tab)
            try:
                rows = _duck.arrow(con, "SELECT rows.*, meta.op_id, meta.expected FROM rows JOIN meta USING (id)")
            finally:
                con.close()
            self._mark_syncing(good["id"].tolist())

            def push():
                if self.central.dialect == "postgresql":
                    return _central.apply_pg(self.central, rows, lines, actor=self.actor, strategy="queue")
                return _central.apply_sqlite(self.central, rows, lines, actor=self.actor, strategy="queue",
                                             now=datetime.now(timezone.utc).isoformat())

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

    def _retrying(self, fn: Callable[[], object]) -> tuple[object, int, str | None]:
        """Call ``fn``, retrying connection trouble with exponential backoff:
        returns (result, attempts, error text or None)."""
        attempts = 0
        while True:
            attempts += 1
            try:
                return fn(), attempts, None
            except Exception as exc:  # noqa: BLE001 - anything but connection trouble is re-raised
                if not _retryable(exc):
                    raise
                if attempts > self.max_retries:
                    return None, attempts, f"{type(exc).__name__}: {exc}"
                self.sleep(min(self.max_backoff, self.backoff * 2 ** (attempts - 1)))

    def _fail(self, batch: pa.Table, attempts: int, error: str) -> pd.DataFrame:
        out = pd.DataFrame({"queue_id": batch.column("id").to_pylist(), "op_id": batch.column("op_id").to_pylist(),
                            "invoice_id": batch.column("transaction_id").to_pylist(),
                            "operation": batch.column("operation").to_pylist(), "outcome": "error",
                            "attempts": attempts, "error": error})
        self._acknowledge(out, pd.DataFrame({"op_id": [], "reason": []}), target_rows=[])
        return out

    def _mark_syncing(self, ids: list[str]) -> None:
        with _sqlite.write_transaction(self.local) as conn:
            conn.execute("UPDATE transactions SET sync_status = 'syncing' "
                         "WHERE sync_status = 'pending' AND id IN (SELECT value FROM json_each(?))", (_json(ids),))

    def _acknowledge(self, out: pd.DataFrame, quarantined: pd.DataFrame, *, target_rows: list[tuple]) -> None:
        """The device's side of a batch, in one transaction, set-based over temp tables."""
        now = datetime.now(timezone.utc).isoformat()
        with _sqlite.write_transaction(self.local) as conn:
            conn.execute("CREATE TEMP TABLE ik_out (op_id TEXT PRIMARY KEY, queue_id INTEGER, invoice_id TEXT, "
                         "outcome TEXT, error TEXT, reason TEXT)")
            why = dict(zip(quarantined["op_id"], quarantined["reason"]))
            conn.executemany("INSERT INTO ik_out VALUES (?, ?, ?, ?, ?, ?)", [
                (o, int(q), i, oc, e, why.get(o)) for o, q, i, oc, e in
                zip(out["op_id"], out["queue_id"], out["invoice_id"], out["outcome"], out["error"])])
            conn.execute(f"CREATE TEMP TABLE ik_rows ({', '.join(_ROW_COLS)}, queue_id INTEGER PRIMARY KEY)")
            conn.executemany(f"INSERT INTO ik_rows VALUES ({', '.join('?' * (len(_ROW_COLS) + 1))})", target_rows)
            # acknowledged: the payload is the last-synced snapshot; the op leaves the queue
            conn.execute(f"""
                INSERT OR REPLACE INTO invoicekit_base ({', '.join(_ROW_COLS)})
                SELECT {', '.join('r.' + c for c in _ROW_COLS)} FROM ik_rows r JOIN ik_out o USING (queue_id)
                WHERE o.outcome IN ('synced', 'already_synced')
                  AND NOT EXISTS (SELECT 1 FROM invoicekit_base b WHERE b.id = r.id AND b.version >= r.version)""")
            conn.execute("DELETE FROM sync_queue WHERE op_id IN "
                         "(SELECT op_id FROM ik_out WHERE outcome IN ('synced', 'already_synced'))")
            # a row is synced when nothing of it is queued and it is its acknowledged snapshot
            conn.execute("""
                UPDATE transactions SET sync_status = 'synced'
                WHERE id IN (SELECT invoice_id FROM ik_out WHERE outcome IN ('synced', 'already_synced'))
                  AND sync_status IS NOT 'synced'
                  AND NOT EXISTS (SELECT 1 FROM sync_queue q WHERE q.transaction_id = transactions.id)
                  AND EXISTS (SELECT 1 FROM invoicekit_base b WHERE b.id = transactions.id
                              AND b.version = transactions.version AND b.checksum IS transactions.checksum)""")
            conn.execute("UPDATE sync_queue SET status = 'conflict' "
                         "WHERE op_id IN (SELECT op_id FROM ik_out WHERE outcome = 'conflict')")
            conn.execute("UPDATE sync_queue SET status = 'error', retry_count = retry_count + 1, "
                         "last_error = (SELECT error FROM ik_out o WHERE o.op_id = sync_queue.op_id) "
                         "WHERE op_id IN (SELECT op_id FROM ik_out WHERE outcome = 'error')")
            conn.execute("INSERT OR IGNORE INTO invoicekit_quarantined_ops SELECT q.op_id, q.id, q.transaction_id, "
                         "q.operation, q.payload, q.created_at FROM sync_queue q JOIN ik_out o USING (op_id) "
                         "WHERE o.outcome = 'quarantined'")
            conn.execute("INSERT OR IGNORE INTO invoicekit_quarantine SELECT op_id, invoice_id, reason, ? FROM ik_out "
                         "WHERE outcome = 'quarantined'", (now,))
            conn.execute("DELETE FROM sync_queue "
                         "WHERE op_id IN (SELECT op_id FROM ik_out WHERE outcome = 'quarantined')")
            conn.execute("""
                UPDATE transactions SET sync_status = CASE
                    (SELECT o.outcome FROM ik_out o WHERE o.invoice_id = transactions.id)
                    WHEN 'conflict' THEN 'conflict' ELSE 'error' END
                WHERE id IN (SELECT invoice_id FROM ik_out WHERE outcome IN ('conflict', 'error', 'quarantined'))""")
            conn.execute("DROP TABLE temp.ik_out")
            conn.execute("DROP TABLE temp.ik_rows")


_ROW_COLS = ["id", "invoice_number", "client_data", "line_items", "total_amount", "created_at", "modified_at",
             "sync_status", "checksum", "version", "currency", "deleted_at"]


def _payload_rows(parsed: InvoiceSet) -> list[tuple]:
    """Offline-schema rows of the payloads, each followed by its queue id (for the base snapshot)."""
    from ..io.local import _offline_rows

    return [(*row, int(qid)) for row, qid in zip(_offline_rows(parsed), parsed.invoices["source_row"])]
def _json(values: list) -> str:
    import json

    return json.dumps(values)


def _retryable(exc: Exception) -> bool:
    """Connection trouble worth retrying (dropped connection, server restart, refused connect)."""
    if isinstance(exc, StoreError):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
