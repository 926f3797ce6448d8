"""``apply_sync``: write a :class:`~invoicekit.sync.plan.SyncPlan` to the central and offline stores.

Order: the plan's pushes are validated first (a bad payload raises and nothing is
written); then the central store, batch by batch (its backend's ``apply_batch``, see
:mod:`invoicekit.io.backends`); then the offline store in one transaction (see ``_local``).
A push whose central version moved since the plan is a new conflict: it is not written
anywhere. Re-running the same plan, or running it again after a crash at any point,
changes nothing already done: both sides keep a ledger of op ids.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa

from .. import _duck, _progress
from .. import cache as _cache
from ..errors import InvoicekitError, UsageError, driver_errors, translate
from ..io.central import CentralStore
from ..io.local import _offline_rows, store_identity
from ..schema import InvoiceSet
from ..security.identity import TokenLike
from . import _local
from ._content import content_sha
from .plan import SyncPlan

__all__ = ["apply_sync", "check_sync", "SyncResult", "default_actor"]


#: retries of a batch after a transient error (connection lost, server restarting), with backoff
TRANSIENT_RETRIES = 3


def default_actor() -> str:
    """``user@host`` of this process, recorded in the audit trail."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass(frozen=True)
class SyncResult:
    """What ``apply_sync`` did, per operation.

    ``results``: op_id, kind, invoice_id, ``central`` (applied / already_applied /
    conflict / not_needed) and ``local`` (applied / already_applied / local_changed /
    skipped). ``conflicts``: pushes refused because the central version moved.
    """

    results: pd.DataFrame

    @property
    def conflicts(self) -> pd.DataFrame:
        """Pushes and pulls refused because the central row's version moved since the plan."""
        return self.results[self.results["central"] == "conflict"].reset_index(drop=True)

    @property
    def ok(self) -> bool:
        """True when no push met a conflict and every local write took effect."""
        return self.conflicts.empty and not (self.results["local"] == "local_changed").any()

    def summary(self) -> pd.DataFrame:
        """Operations per (kind, central outcome, local outcome)."""
        return self.results.groupby(["kind", "central", "local"]).size().rename("operations").reset_index()

    def _repr_html_(self) -> str:
        """The compact report: outcomes, new conflicts and the first operations."""
        from ..reports import sync_result_html

        return sync_result_html(self, standalone=False)

    def to_html(self, path: str) -> None:
        """Write the result as a standalone HTML report (every operation, filter and sort, works offline)."""
        from ..reports import sync_result_html, write

        write(path, sync_result_html(self))

    def __repr__(self) -> str:
        return "SyncResult(" + ", ".join(
            f"{k}/{c}/{lo}={n}" for k, c, lo, n in self.summary().itertuples(index=False)) + ")"


def _push_rows(plan: SyncPlan, pushes: pd.DataFrame, store: CentralStore) -> tuple[pa.Table, pa.Table]:
    ids = set(pushes["invoice_id"])
    target = InvoiceSet(plan.target.invoices[plan.target.invoices["id"].isin(ids)],
                        plan.target.lines[plan.target.lines["invoice_id"].isin(ids)])
    inv, lines = store.central_rows(target)
    canonical = target.invoices_table()
    sha = pa.table({"id": canonical.column("id"), "content_sha": content_sha(canonical)})
    con = _duck.connect(inv=inv, sha=sha, ops=pa.Table.from_pandas(
        pushes[["invoice_id", "op_id", "expected_central_version"]], preserve_index=False))
    try:
        inv = _duck.arrow(con, "SELECT inv.*, ops.op_id, ops.expected_central_version::INTEGER AS expected, "
                               "sha.content_sha FROM inv JOIN ops ON ops.invoice_id = inv.id "
                               "JOIN sha ON sha.id = inv.id ORDER BY inv.id")
    finally:
        con.close()
    return inv, lines


def apply_sync(
    plan: SyncPlan, *, local: str | os.PathLike, central, actor: str | None = None, batch_rows: int = 10_000,
    workers: int = 2, progress: bool | None = None, token: TokenLike = None,
) -> SyncResult:
    """Apply ``plan``: pushes to ``central`` (URL or Engine), acknowledgements, pulls, flags
    and quarantines to the offline store at ``local``. See the module doc.

    Pushes go in batches of ``batch_rows`` invoices, each batch one central transaction;
    on PostgreSQL ``workers`` batches are applied at once over as many connections (a plan
    pushes each invoice once, so batches never touch the same rows).

    ``token``: the pusher's signed identity (``ik.issue_token``, or a callable returning
    one), required when the central store was initialised with a token secret; each batch
    verifies it before writing (an :class:`~invoicekit.errors.IdentityError`, nothing written
    by that batch), and the audit trail names its subject instead of ``actor``."""
    from .._args import as_central, as_local_path, expect

    plan = expect(plan, SyncPlan, func="apply_sync", param="plan")
    local = as_local_path(local, func="apply_sync", param="local")
    central = as_central(central, func="apply_sync", param="central")
    _require_planned_store(plan, local)
    actor = actor or default_actor()
    now = datetime.now(timezone.utc).isoformat()
    ops = plan.ops
    pushes = ops[ops["kind"] == "push"]
    store = check_sync(plan, central)  # each batch verifies the token itself, in its transaction

    central_outcome = {op: "not_needed" for op in ops["op_id"]}
    touched = ops["invoice_id"].astype(str).unique().tolist()
    try:
        if len(pushes):
            central_outcome.update(_push_central(store, plan, pushes, actor=actor, now=now, batch_rows=batch_rows,
                                                 workers=workers, progress=progress, token=token))
    finally:  # batches committed before an error are written too
        if len(pushes):
            _cache.invalidate(store, invoices=pushes["invoice_id"].astype(str).unique().tolist())
    central_outcome.update(_stale_pulls(store, ops[ops["kind"] == "pull"]))

    go = ops["op_id"].map(central_outcome).ne("conflict")
    op_rows = list(zip(
        ops["op_id"], ops["kind"], ops["invoice_id"],
        *(ops[c].astype(object).where(ops[c].notna(), None) for c in (
            "expected_local_version", "expected_local_checksum", "new_version", "payload_checksum")),
        ops["deletes"].astype(object).where(ops["deletes"].notna(), False),
        ops["note"].astype(object).where(ops["note"].notna(), None), go,
    ))
    try:
        local_outcome = _local.apply_local(local, op_rows, _offline_rows(plan.target), now=now)
    finally:
        _cache.invalidate(local, invoices=touched)
    results = ops[["op_id", "kind", "invoice_id"]].copy()
    results["central"] = results["op_id"].map(central_outcome).astype("string[pyarrow]")
    results["local"] = results["op_id"].map(local_outcome).astype("string[pyarrow]")
    return SyncResult(results.reset_index(drop=True))


def check_sync(plan: SyncPlan, central, *, identify: bool = False, token: TokenLike = None) -> CentralStore:
    """What :func:`apply_sync` checks before it writes anything, so that a dry run
    (``invoicekit sync --dry-run``) fails exactly as the real run would; returns the store.

    The plan's pushes pass validation (strictly: a ValidationError naming store, row and
    rule), and ``central`` (a URL or Engine) has the schema and the ledger a sync needs.
    ``identify=True``: a plan with pushes also has the store verify ``token``, the pusher's
    identity, writing nothing (a missing or refused token is the real run's IdentityError);
    ``apply_sync`` leaves that to the transaction of each batch it writes."""
    from ..validate import validate

    pushes = plan.ops[plan.ops["kind"] == "push"]
    if len(pushes):
        ids = pushes["invoice_id"]  # (isin hashes the column: no Python set of 100,000 ids)
        validate(InvoiceSet(plan.target.invoices[plan.target.invoices["id"].isin(ids)],
                            plan.target.lines[plan.target.lines["invoice_id"].isin(ids)]), strict=True)
    store = CentralStore(central)
    store.require_schema()
    store.require_ledger()
    if identify and len(pushes):
        store.identify(token)
    return store


#: ids per version lookup of the pulls (bound parameters; PostgreSQL takes at most 65,535)
PULL_CHECK_IDS = 10_000


def _stale_pulls(store: CentralStore, pulls: pd.DataFrame) -> dict[str, str]:
    """Pulls whose central row moved since the plan (another version now): conflicts, not
    taken, so a stale plan never writes old central content into the device."""
    if pulls.empty:
        return {}
    ids = pulls["invoice_id"].astype(str).tolist()
    now_at: dict[str, int] = {}
    for start in range(0, len(ids), PULL_CHECK_IDS):
        clause, params = store.where_sql({"id": ids[start:start + PULL_CHECK_IDS]})
        try:
            found = store.read(clause, params, lines=False).invoices
        except driver_errors() as exc:
            raise translate(exc, store=store.display, context="apply_sync") from exc
        now_at.update(zip(found["id"].astype(str), found["version"].astype(int)))
    planned = dict(zip(pulls["invoice_id"].astype(str), pulls["new_version"]))
    return {op: "conflict" for op, inv in zip(pulls["op_id"], pulls["invoice_id"].astype(str))
            if now_at.get(inv) != planned[inv]}


def _push_central(store: CentralStore, plan: SyncPlan, pushes: pd.DataFrame, *, actor: str, now: str,
                  batch_rows: int, workers: int, progress: bool | None, token: TokenLike) -> dict[str, str]:
    """Write the pushes to the central store in batches; op_id -> applied / already_applied / conflict."""
    inv, lines = _push_rows(plan, pushes, store)
    starts = range(0, inv.num_rows, batch_rows)

    stop = threading.Event()  # set by a failed batch: batches not yet started do nothing

    def one(start: int) -> tuple[list, set, set] | None:
        if stop.is_set():
            return None
        try:
            return apply_batch(start)
        except BaseException:
            stop.set()
            raise

    def apply_batch(start: int) -> tuple[list, set, set]:
        """One batch, retried on transient trouble (a dropped connection, a server restart):
        the batch is one transaction and the ledger skips what a lost commit applied."""
        for attempt in range(1, TRANSIENT_RETRIES + 2):
            try:
                return apply_once(start)
            except (InvoicekitError, *driver_errors()) as exc:  # typed below; only transient errors retry
                err = translate(exc, store=store.display, context="apply_sync")
                if not err.transient or attempt > TRANSIENT_RETRIES or stop.is_set():
                    if err is exc:
                        raise
                    raise err from exc
                time.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")  # pragma: no cover

    def apply_once(start: int) -> tuple[list, set, set]:
        part = inv.slice(start, batch_rows)
        part_lines = lines.filter(pa.compute.is_in(lines.column("invoice_id"), part.column("id")))
        applied, already = store.apply_batch(part, part_lines, actor=actor, strategy=plan.strategy, now=now,
                                             token=token)
        return part.column("op_id").to_pylist(), applied, already

    # a plan pushes each invoice at most once, so batches touch disjoint rows: the store says
    # how many it applies at once (PostgreSQL: `workers` connections, each batch its own transaction)
    n_workers = store.push_workers(workers, len(starts))
    show = progress if progress is not None else len(starts) > 5
    outcome: dict[str, str] = {}
    with ThreadPoolExecutor(n_workers) as pool, _progress.bar(
            total=inv.num_rows, desc="push", unit="invoice", progress=show) as bar:
        futures = [pool.submit(one, start) for start in starts]
        try:
            for future in futures:
                op_ids, applied, already = future.result()  # not None: nothing failed before it
                for op in op_ids:
                    outcome[op] = ("applied" if op in applied else "already_applied" if op in already
                                   else "conflict")
                bar.update(len(op_ids))
        except BaseException:
            # a failed batch (or an interrupt) stops the batches not yet started; one under way
            # finishes its transaction, and the ledger makes a rerun skip what it applied
            stop.set()
            for future in futures:
                future.cancel()
            raise
    return outcome


def _require_planned_store(plan: SyncPlan, local: str) -> None:
    """Refuse a plan made from another offline store: its acknowledgements and snapshots
    would rewrite that store's rows with another device's content."""
    if not plan.stores:  # a plan put together by hand names no store
        return
    here, ident = os.path.realpath(local), store_identity(local)
    for path, planned in plan.stores:
        if (planned is not None and planned == ident) or (planned is None and path == here):
            return
    made = ", ".join(path for path, _ in plan.stores)
    raise UsageError(f"{local}: this plan was made from another offline store ({made}); reconcile and plan "
                     f"from {local} itself to sync it")
