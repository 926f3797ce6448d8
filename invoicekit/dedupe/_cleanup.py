"""``apply_duplicates`` and ``undo_duplicates``: a duplicate cleanup written to a store, and undone.

Applying a :class:`~invoicekit.dedupe.DuplicateResolution` turns every removed entry into
a tombstone (version + 1, ``deleted_at`` set, content kept) through the compare-and-set
write path, in one transaction, with one audit row each (``op_id`` the cleanup id,
``kind`` ``delete``, ``detail`` JSON naming the survivor and the pair score). An entry
whose version or checksum in the store is no longer what was matched is refused and
reported, never overwritten. The default cleanup id is derived from what the cleanup
removes, so applying the same resolution twice is one cleanup, and the second changes
nothing. On an offline store the tombstones are also queued in ``sync_queue`` as
``delete`` operations (as :meth:`~invoicekit.LocalStore.delete` queues them), so the
device's next sync pushes them.

Undoing a cleanup brings its entries back (content as before, version + 1) through the
write path's one door out of a tombstone (``undelete=``), audited as ``undelete`` under
the same cleanup id; undoing twice is a no-op.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from .._html import frame_html, page
from ..errors import UsageError
from ..io import read_central, read_local, write_central, write_local
from ..io.records import is_central, read_audit, store_name
from ..schema import InvoiceSet
from ._resolve import DuplicateResolution

__all__ = ["apply_duplicates", "undo_duplicates", "CleanupResult", "OUTCOMES"]

#: per entry: removed / restored (written now), unchanged (this cleanup already did it), refused
OUTCOMES = ("removed", "restored", "unchanged", "refused")
_COLUMNS = ["id", "survivor_id", "score", "outcome", "reason", "before_version", "after_version"]


@dataclass(frozen=True)
class CleanupResult:
    """What :func:`apply_duplicates` or :func:`undo_duplicates` did, per entry.

    ``removed``: ``id``, ``survivor_id``, ``score``, ``outcome`` (removed, restored,
    unchanged, refused), ``reason`` (why refused), ``before_version``, ``after_version``;
    ``counts``: entries per outcome; ``cleanup_id`` names the cleanup in the audit trail
    (give it to :func:`undo_duplicates`); ``action``: ``apply`` or ``undo``.
    """

    cleanup_id: str
    store: str
    action: str
    removed: pd.DataFrame
    counts: pd.DataFrame

    def count(self, outcome: str) -> int:
        """Entries with ``outcome``."""
        return int((self.removed["outcome"] == outcome).sum())

    @property
    def written(self) -> int:
        """Entries written by this call (removed or restored)."""
        return self.count("removed") + self.count("restored")

    @property
    def refused(self) -> pd.DataFrame:
        """The entries not written, with the reason."""
        return self.removed[self.removed["outcome"] == "refused"].reset_index(drop=True)

    @property
    def ok(self) -> bool:
        """True when nothing was refused."""
        return self.count("refused") == 0

    def summary(self) -> pd.DataFrame:
        """Entries per outcome."""
        return self.counts.copy()

    def _repr_html_(self) -> str:
        head = (f"<b>CleanupResult</b> ({self.action}) {self.cleanup_id} on {self.store}: "
                + ", ".join(f"{n:,} {o}" for o, n in self.counts.itertuples(index=False)))
        return head + frame_html(self.counts, caption="by outcome") + frame_html(self.removed, caption="entries")

    def to_html(self, path: str) -> None:
        """Write the result as a standalone HTML page."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page(f"Duplicate cleanup {self.cleanup_id}", self._repr_html_()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{o}={n}" for o, n in self.counts.itertuples(index=False))
        return f"CleanupResult({self.action} {self.cleanup_id} on {self.store}: {shown})"


def _result(cleanup_id: str, store: Any, action: str, frame: pd.DataFrame) -> CleanupResult:
    frame = frame[_COLUMNS].sort_values("id").reset_index(drop=True).astype(
        {"id": "string", "survivor_id": "string", "score": "float64", "outcome": "string", "reason": "string",
         "before_version": "Int64", "after_version": "Int64"})
    counts = pd.DataFrame({"outcome": list(OUTCOMES),
                           "invoices": [int((frame["outcome"] == o).sum()) for o in OUTCOMES]})
    return CleanupResult(cleanup_id, store_name(store), action, frame, counts)


def default_cleanup_id(removed: pd.DataFrame) -> str:
    """``dedupe-`` and a hash of what the cleanup removes (ids, survivors, versions, checksums as
    found): the same resolution always gets the same id."""
    key = removed[["id", "survivor_id", "version", "checksum"]].astype(str).sort_values("id")
    digest = hashlib.sha256(key.to_csv(index=False).encode()).hexdigest()
    return f"dedupe-{digest[:16]}"


# -- the store: read the entries, write them back ---------------------------------------------
def _read(store: Any, ids: list[str]) -> InvoiceSet:
    """The store's current rows of ``ids`` (tombstones included), with their lines."""
    if is_central(store):
        return read_central(store, where={"id": ids})
    found = read_local(getattr(store, "path", store))
    keep = found.invoices["id"].isin(ids) & ~found.invoices["source"].astype(str).str.endswith("#sync_queue")
    inv = found.invoices[keep].drop_duplicates("id", keep="last")
    return InvoiceSet(inv.reset_index(drop=True), found.lines[found.lines["invoice_id"].isin(inv["id"])])


def _write(store: Any, rows: InvoiceSet, *, cleanup_id: str, actor, notes: dict, undelete=frozenset(),
           progress=None, token=None) -> pd.DataFrame:
    """Compare-and-set write of ``rows`` under the cleanup's audit op id; the per-row outcomes
    (``id``, ``outcome``, ``reason``: the refusal's message)."""
    if is_central(store):
        done = write_central(rows, store, validate=False, actor=actor, op_id=cleanup_id, notes=notes,
                             undelete=undelete, progress=progress, token=token)
    else:
        done = write_local(rows, getattr(store, "path", store), validate=False, actor=actor, op_id=cleanup_id,
                           notes=notes, undelete=undelete, queue=True, progress=progress)
    why = done.refused.set_index("id")["message"]
    return done.results[["id", "outcome"]].assign(reason=done.results["id"].map(why))


def _changed(current: InvoiceSet, ids: list[str], *, deleted: bool, rows: pd.DataFrame) -> tuple[InvoiceSet, dict]:
    """The entries of ``rows`` (id, version, checksum as expected) still as expected in
    ``current`` (live, or tombstones with ``deleted``), and why each other one is refused."""
    now = current.invoices[["id", "version", "checksum", "deleted_at"]].astype({"id": str})
    want = rows[["id", "version", "checksum"]].astype({"id": str})
    m = pd.DataFrame({"id": ids}).merge(want, on="id", how="left").merge(
        now, on="id", how="left", suffixes=("", "_now"), indicator=True)
    found = (m["_merge"] == "both").to_numpy()
    state = (m["deleted_at"].notna() == deleted).to_numpy()
    version = (m["version"].isna() | (m["version"] == m["version_now"])).fillna(False).to_numpy(dtype=bool)
    content = (m["checksum"].isna() | (m["checksum"].astype(object) == m["checksum_now"].astype(object))
               ).fillna(False).to_numpy(dtype=bool)
    expected = m["version"].astype("Int64").astype(str)
    why = pd.Series(None, index=m.index, dtype=object)
    why[~content] = "changed in the store since: other content at the same version"
    why[~version] = ("changed in the store since: version " + m["version_now"].astype("Int64").astype(str)
                     + ", expected " + expected)[~version]
    why[~state] = "live again in the store" if deleted else "deleted in the store meanwhile"
    why[~found] = "not in the store"
    why = dict(zip(m["id"][why.notna()], why[why.notna()]))
    ok = current.invoices[current.invoices["id"].isin(set(ids) - set(why))]
    return InvoiceSet(ok.reset_index(drop=True), current.lines[current.lines["invoice_id"].isin(ok["id"])]), why


def _next(rows: InvoiceSet, *, cleanup_id: str, deleted: bool, central: bool) -> InvoiceSet:
    """``rows`` one version up, tombstoned (``deleted``) or live, stamped now."""
    now = pd.Timestamp(datetime.now(timezone.utc))
    inv = rows.invoices.copy()
    inv["version"] = inv["version"] + 1
    inv["modified_at"] = now
    inv["deleted_at"] = now if deleted else pd.NaT
    inv["deleted_at"] = inv["deleted_at"].astype(rows.invoices["deleted_at"].dtype)
    inv["source"] = f"dedupe:{cleanup_id}"
    if not central:
        inv["sync_status"] = "pending"
    return InvoiceSet(inv, rows.lines)


def _outcomes(plan: pd.DataFrame, results: pd.DataFrame | None, why: dict, done: set, written: str) -> pd.DataFrame:
    """Per planned entry: what happened (``written`` for a row the write wrote)."""
    out = plan[["id", "survivor_id", "score", "version"]].rename(columns={"version": "before_version"})
    res = (results if results is not None else pd.DataFrame(columns=["id", "outcome", "reason"])).set_index("id")
    wrote = out["id"].map(res["outcome"]) if len(res) else pd.Series(None, index=out.index, dtype=object)
    out["outcome"] = wrote.map({"updated": written, "unchanged": "unchanged", "refused": "refused",
                                "inserted": "refused"}).astype(object)
    out["reason"] = (out["id"].map(res["reason"]) if len(res) else pd.Series(None, index=out.index)).astype(object)
    out.loc[out["id"].isin(done), ["outcome", "reason"]] = ["unchanged", None]
    refused = out["id"].map(why)
    out.loc[refused.notna(), "outcome"] = "refused"
    out.loc[refused.notna(), "reason"] = refused[refused.notna()]
    out["after_version"] = out["before_version"].astype("Int64") + 1
    out.loc[out["outcome"] == "refused", "after_version"] = pd.NA
    return out


def _note(cleanup_id: str, survivor: Any, score: Any, action: str) -> str:
    return json.dumps({"cleanup_id": cleanup_id, "action": action, "survivor_id": str(survivor),
                       "score": None if pd.isna(score) else round(float(score), 6)}, sort_keys=True)


# -- apply --------------------------------------------------------------------------------------
def apply_duplicates(resolution: DuplicateResolution, *, store: Any, actor: str | None = None,
                     cleanup_id: str | None = None, progress: bool | None = None, token=None) -> CleanupResult:
    """Tombstone every removed entry of ``resolution`` in ``store`` (an offline store path, or
    a central URL: PostgreSQL or the embedded SQLite), audited under ``cleanup_id`` (default:
    derived from the resolution); see the module doc. Returns :class:`CleanupResult`.
    ``token``: the signed identity a central store with identities on requires (see
    :func:`~invoicekit.io.write_central`)."""
    if not isinstance(resolution, DuplicateResolution):
        raise UsageError(f"apply_duplicates takes the DuplicateResolution of resolve_duplicates, not "
                         f"{type(resolution).__name__}", reason="bad_resolution")
    plan = resolution.removed.drop_duplicates("id").reset_index(drop=True)
    cleanup_id = cleanup_id or default_cleanup_id(plan)
    ids = plan["id"].astype(str).tolist()
    done = _done(read_audit(store, op_id=cleanup_id), "delete")
    todo = [i for i in ids if i not in done]
    current, why = _changed(_read(store, todo), todo, deleted=False, rows=plan) if todo else (None, {})
    results = None
    if current is not None and len(current.invoices):
        notes = {str(i): _note(cleanup_id, s, sc, "remove")
                 for i, s, sc in plan[["id", "survivor_id", "score"]].itertuples(index=False)}
        tombs = _next(current, cleanup_id=cleanup_id, deleted=True, central=is_central(store))
        results = _write(store, tombs, cleanup_id=cleanup_id, actor=actor, notes=notes, progress=progress,
                         token=token)
    return _result(cleanup_id, store, "apply", _outcomes(plan, results, why, done, "removed"))


def _done(audit: pd.DataFrame, kind: str) -> set[str]:
    """The ids whose latest write in the cleanup's audit rows is a ``kind`` (delete, undelete)."""
    last = audit.drop_duplicates("invoice_id", keep="last")
    return set(last.loc[last["kind"] == kind, "invoice_id"].astype(str))


# -- undo ---------------------------------------------------------------------------------------
def undo_duplicates(store: Any, cleanup_id: str, *, actor: str | None = None, token=None) -> CleanupResult:
    """Bring back the entries cleanup ``cleanup_id`` removed from ``store``: content as before,
    version + 1, audited as ``undelete``. Undoing twice changes nothing; an unknown cleanup
    id is a :class:`~invoicekit.errors.UsageError` (reason ``unknown_cleanup``). ``token``:
    as for :func:`apply_duplicates`."""
    audit = read_audit(store, op_id=cleanup_id)
    removed = audit[audit["kind"] == "delete"].drop_duplicates("invoice_id", keep="last")
    if removed.empty:
        raise UsageError(f"{store_name(store)} records no duplicate cleanup {cleanup_id!r}; the cleanup id is "
                         "printed by `invoicekit dedupe --apply` and is CleanupResult.cleanup_id",
                         reason="unknown_cleanup")
    detail = removed["detail"].map(lambda d: json.loads(d) if d else {})  # one small JSON per removed entry
    plan = pd.DataFrame({"id": removed["invoice_id"].astype(str).to_numpy(),
                         "survivor_id": detail.map(lambda d: d.get("survivor_id")).to_numpy(),
                         "score": detail.map(lambda d: d.get("score")).astype(float).to_numpy(),
                         "version": removed["after_version"].to_numpy(),
                         "checksum": removed["after_checksum"].to_numpy()})
    done = _done(audit, "undelete")
    todo = [i for i in plan["id"] if i not in done]
    current, why = _changed(_read(store, todo), todo, deleted=True, rows=plan) if todo else (None, {})
    results = None
    if current is not None and len(current.invoices):
        notes = {i: _note(cleanup_id, s, sc, "undo") for i, s, sc in plan[["id", "survivor_id", "score"]]
                 .itertuples(index=False)}
        live = _next(current, cleanup_id=cleanup_id, deleted=False, central=is_central(store))
        results = _write(store, live, cleanup_id=cleanup_id, actor=actor, notes=notes,
                         undelete=frozenset(live.invoices["id"].astype(str)), token=token)
    return _result(cleanup_id, store, "undo", _outcomes(plan, results, why, done, "restored"))
