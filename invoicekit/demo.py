"""``invoicekit demo``: the main job end to end on the sample data and embedded defaults.

Steps: load the device stores, validate them, verify checksums, build the central store
(embedded SQLite unless a URL is given; it refuses hard deletes: tombstones only), then
reconcile each device against it, resolve three-way (plus an analyst's decisions), plan,
sync (twice: the replay changes nothing) and reconcile again; finally a device works
offline (``LocalStore``) and its queue is drained by the ``SyncEngine``, a redelivered
operation changing nothing; last, stores written by other device software (kept rows for
deletions, resent and unknown operations, nested payloads) are drained and checked;
then duplicates in the central sample set are found, clustered and explained, and a few
invoices are rendered to PDF (one as a Factur-X e-invoice); last, a device's day: the
connection monitor sees central go and come back, the engine drains by itself and syncs
the settings, and reads go through the Redis cache; and the client fields are encrypted at
rest, the keys rotated, and pushes made to a store that requires signed identities.
Everything it writes goes under ``out``; every run starts from the same state and prints
the same; it prints what it did.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pandas as pd

from . import integrity as _checksum
from ._demo_day import device_day, security_step, snapshot_step
from .device import LocalStore
from .io import _sqlite, init_db, read_central, read_local, write_central
from .reconcile import reconcile
from .resolve import resolve
from .samples import read_jsonl, write_samples
from .sync import SyncEngine, apply_sync, plan_sync
from .validate import validate

__all__ = ["run_demo", "find_samples"]


def find_samples(out: Path) -> Path:
    """The committed ``data/samples`` when run from the repository, else fresh ones in ``out``."""
    here = Path("data/samples")
    if (here / "central.jsonl").exists() and (here / "device_a.sqlite").exists():
        return here
    target = out / "samples"
    write_samples(target)
    return target


def _say(text: str = "") -> None:
    print(text, flush=True)


def _table(frame: pd.DataFrame) -> str:
    return "    " + frame.to_string(index=False).replace("\n", "\n    ")


def run_demo(*, out: str | os.PathLike = "out", central: str | None = None) -> dict:
    """Run the demo; returns a dict of counts (also written to ``out/demo.json``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _fresh_start(out, embedded=central is None)
    samples = find_samples(out)
    _say(f"invoicekit demo: sample data from {samples}, outputs in {out}/")
    result: dict = {"devices": {}}

    _say("\n1. Load the offline device stores (SQLite -> InvoiceSet)")
    devices = {}
    for path in sorted(samples.glob("device_*.sqlite")):
        s = read_local(path)
        devices[path.stem] = s
        _say(f"   {path.name}: {len(s):,} invoices, {len(s.lines):,} line items")

    _say("\n2. Validate every store (all rules, offending rows kept)")
    for name, s in devices.items():
        report = validate(s)
        report.to_html(str(out / f"validation_{name}.html"))
        result["devices"][name] = {"invoices": len(s), "problems": len(report.problems)}
        if report.ok:
            _say(f"   {name}: no problems")
        else:
            _say(f"   {name}: {len(report.problems)} problem(s) -> {out}/validation_{name}.html")
            shown = report.problems[["source_row", "id", "rule", "field", "message"]].copy()
            shown["id"] = shown["id"].str.slice(0, 8)
            _say(_table(shown))

    _say("\n3. Verify SHA-256 checksums (byte-identical to the devices' formula)")
    for name, s in devices.items():
        bad = _checksum.tampered(s.invoices)
        result["devices"][name]["tampered"] = bad["id"].tolist()
        _say(f"   {name}: {len(s) - len(bad):,} ok, {len(bad)} failing"
             + (f": {', '.join(bad['id'])}" if len(bad) else ""))

    url = central or f"sqlite:///{(out / 'central.sqlite').resolve()}"
    where = " (embedded SQLite): " + url if central is None else ": given URL"
    _say(f"\n4. Central store{where}")
    version = init_db(url)
    dataset = read_jsonl(samples / "central.jsonl")
    written = write_central(dataset, url)
    again = write_central(dataset, url)  # compare-and-set: the same set again changes nothing
    back = read_central(url)
    same = _checksum.verify(back.invoices).all() and len(back) == len(dataset)
    _say(f"   schema version {version}; wrote {written.written:,} invoices; read back {len(back):,} "
         f"({'checksums all verify' if same else 'CHECKSUM MISMATCH'}); writing the same set again: "
         f"{again.unchanged:,} unchanged, {again.written:,} written")
    summary = back.summary()
    summary.to_csv(out / "central_summary.csv", index=False)
    _say(_table(summary.assign(first=summary["first"].dt.date, last=summary["last"].dt.date)))
    refusal = _hard_delete_refusal(url, str(back.invoices["id"].iloc[0]))
    _say(f"   tombstones only: the store refuses a hard DELETE of an invoice ({refusal})")
    result["central"] = {"invoices": len(back), "lines": len(back.lines), "deleted": summary.attrs["deleted"],
                         "hard_delete_refused": refusal is not None}

    _say("\n5. Reconcile each device against the central store, resolve, plan and sync")
    truth = pd.read_csv(samples / "situations.csv")
    work = out / "devices"
    work.mkdir(exist_ok=True)
    result["sync"] = {}
    for name in devices:
        path = work / f"{name}.sqlite"  # sync a copy: the sample files stay as they are
        shutil.copy(samples / f"{name}.sqlite", path)
        rec = reconcile(read_local(path), read_central(url))
        rec.to_html(str(out / f"reconcile_{name}.html"))
        cross = (truth[truth["device"] == name].merge(rec.status[["id", "status"]].astype(object), on="id")
                 .pivot_table(index="situation", columns="status", values="id", aggfunc="count", fill_value=0))
        _say(f"\n   [{name}] reconcile: " + ", ".join(f"{k} {v}" for k, v in rec.counts().items() if v)
             + f" -> {out}/reconcile_{name}.html")
        _say("   statuses found (columns) against the sample's truth (rows):")
        _say(_table(cross.reset_index()))
        res = resolve(rec, strategy="three_way")
        n_open = int((res.actions["action"] == "unresolved").sum())
        _say(f"   resolve three_way: {len(res.invoices):,} invoices to write, {n_open} need a decision "
             f"({len(res.unresolved)} fields), {int((res.actions['action'] == 'quarantine').sum())} quarantined")
        if n_open:
            shown = res.unresolved.head(5).copy()
            shown["id"] = shown["id"].str.slice(0, 8)
            _say(_table(shown))
            decisions = res.unresolved[["id", "field"]].assign(choice="central")  # an analyst's choice
            res = resolve(rec, strategy="three_way", decisions=decisions)
            _say(f"   with {len(decisions)} decisions (take central): "
                 f"{int((res.actions['action'] == 'unresolved').sum())} left unresolved")
        plan = plan_sync(res)
        plan.to_html(str(out / f"plan_{name}.html"))
        _say("   plan (dry run): " + ", ".join(f"{k} {n}" for k, n in plan.summary().itertuples(index=False)))
        synced = apply_sync(plan, local=path, central=url, actor="invoicekit-demo")
        again = apply_sync(plan, local=path, central=url, actor="invoicekit-demo")
        after = reconcile(read_local(path), read_central(url))
        held = int(after.status["status"].isin(["conflict"]).sum())
        _say(f"   applied: {int((synced.results['central'] == 'applied').sum())} pushed, "
             f"{int(((synced.results['kind'] == 'pull') & (synced.results['local'] == 'applied')).sum())} pulled; "
             f"replaying the plan applied {int((again.results[['central', 'local']] == 'applied').any(axis=1).sum())}")
        _say("   after sync: " + ", ".join(f"{k} {v}" for k, v in after.counts().items() if v)
             + (f" (the {held} quarantined rows stay flagged)" if held else ""))
        result["sync"][name] = {"pushed": int((synced.results["central"] == "applied").sum()),
                                "after": {k: v for k, v in after.counts().items() if v}}

    _device_side(work / "device_a.sqlite", url, result)
    _foreign_devices(work, url, result)
    _duplicates(dataset, out, result)
    _remove_duplicates(url, result)
    _render(work / "device_a.sqlite", out, result)
    device_day(work / "device_b.sqlite", url, result, _say)
    security_step(work / "device_b.sqlite", work, result, _say)
    snapshot_step(url, work, result, _say)

    (out / "demo.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    _say(f"\nDone. Files in {out}/: " + ", ".join(sorted(p.name for p in out.iterdir() if p.is_file()
                                                       and not p.name.endswith(("-wal", "-shm")))))
    return result


def _fresh_start(out: Path, *, embedded: bool) -> None:
    """Every run starts from the same state: the previous run's stores under ``out`` go (the
    embedded central store only when the demo made it; a given URL is the caller's)."""
    names = ["devices", "pdf"] + (["central.sqlite", "central.sqlite-wal", "central.sqlite-shm"] if embedded else [])
    for name in names:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _hard_delete_refusal(url: str, invoice_id: str) -> str | None:
    """Try ``DELETE FROM invoices`` for one id in a transaction that is rolled back either way;
    the store's refusal message, or None if it let the row go."""
    from .io.central import CentralStore

    try:
        CentralStore(url).probe_hard_delete(invoice_id)
    except Exception as exc:  # the refusal is what the demo shows
        return str(exc).splitlines()[0]
    return None


def _device_side(path: Path, url: str, result: dict) -> None:
    """A device goes on working offline, then its queue is drained exactly once."""
    _say("\n6. On the device: offline edits queue operations; the SyncEngine drains them")
    store = LocalStore(path)
    live = read_local(path).invoices
    live = live[live["deleted_at"].isna() & (live["sync_status"] == "synced")]
    new_id = store.create(invoice_number="INV-DEMO-0001", currency="EUR",  # a fixed id: every run prints the same
                          invoice_id=str(uuid.uuid5(uuid.NAMESPACE_URL, "invoicekit-demo/INV-DEMO-0001")),
                          client={"name": "Demo Bakery Ltd", "email": "accounts@bakery.example"},
                          line_items=[{"description": "Sourdough loaves", "quantity": 40, "unit_price": "3.20"},
                                      {"description": "Delivery", "quantity": 1, "unit_price": "12.50"}])
    edited, gone = str(live["id"].iloc[0]), str(live["id"].iloc[1])
    store.update(edited, client={"email": "new-billing@example.com"})
    store.delete(gone)
    queue = store.queue()
    _say(f"   LocalStore: created {new_id[:8]}, edited {edited[:8]}, deleted {gone[:8]} "
         f"-> {len(queue)} queued operations ({', '.join(queue['operation'])}), each with a uuid op id")
    # a device that lost its acknowledgement sends the first operation again
    engine = SyncEngine(path, url, batch_size=2, actor="invoicekit-demo-device")
    first = engine.drain()
    with _sqlite.write_transaction(str(path)) as conn:
        conn.execute("INSERT INTO sync_queue (transaction_id, operation, payload, retry_count, created_at, op_id, "
                     "status) VALUES (?, ?, ?, 0, ?, ?, 'pending')",
                     (queue["transaction_id"].iloc[0], queue["operation"].iloc[0], queue["payload"].iloc[0],
                      queue["created_at"].iloc[0], queue["op_id"].iloc[0]))
    again = engine.drain()
    after = reconcile(read_local(path), read_central(url))
    _say("   drain: " + ", ".join(f"{o} {n}" for o, n in first.summary().itertuples(index=False) if n)
         + "; the redelivered operation: " + ", ".join(f"{o} {n}" for o, n in again.summary().itertuples(index=False)
                                                      if n))
    _say(f"   queue now holds {len(store.queue())} operations; those 3 invoices now: "
         + ", ".join(f"{i[:8]} {s}" for i, s in after.status.set_index("id").loc[[new_id, edited, gone], "status"]
                     .items()))
    result["device"] = {"drain": {o: int(n) for o, n in first.summary().itertuples(index=False) if n},
                        "redelivered": {o: int(n) for o, n in again.summary().itertuples(index=False) if n}}



#: stores as other device software writes them (invoicekit.foreign), synced by the demo
FOREIGN_KINDS = ("kept_row_delete", "resent_ops", "nested_payload", "unknown_ops")


def _foreign_devices(work: Path, url: str, result: dict) -> None:
    """Stores written by other software, each with what the devices' schema leaves open,
    drained into the central store and checked against their generator's truth."""
    from .foreign import write_foreign_store

    _say("\n7. Stores written by other device software (made by invoicekit.foreign, not by the toolkit)")
    result["foreign"] = {}
    for kind in FOREIGN_KINDS:
        truth = write_foreign_store(work / f"foreign_{kind}.sqlite", kind=kind, seed=7, n=24)
        write_central(read_local(truth.write_central_seed(work / f"foreign_{kind}_seed.sqlite")), url)
        drained = SyncEngine(truth.path, url, actor=f"invoicekit-demo-{kind}").drain()
        want = truth.expected[truth.expected["present"]].set_index("id")
        got = read_central(url, where={"id": list(want.index)}, lines=False).invoices.set_index("id").loc[want.index]
        agree = int(((got["version"].astype(int).to_numpy() == want["version"].astype(int).to_numpy())
                     & (got["deleted_at"].notna().to_numpy() == want["deleted"].astype(bool).to_numpy())).sum())
        counts = {o: int(n) for o, n in drained.summary().itertuples(index=False) if n}
        _say(f"   {kind}: " + ", ".join(f"{o} {n}" for o, n in counts.items())
             + f"; central matches the truth for {agree}/{len(want)} invoices "
             f"({int(want['deleted'].sum())} deleted)")
        result["foreign"][kind] = {"drain": counts, "matching": agree, "invoices": len(want)}


def _duplicates(dataset, out: Path, result: dict) -> None:
    """Invoices entered more than once in the central sample set: found, clustered, explained."""
    from .dedupe import cluster_duplicates, find_duplicates, resolve_duplicates

    _say("\n8. Duplicates: invoices entered more than once (blocked, vectorised, explained)")
    pairs = find_duplicates(dataset)
    clusters = cluster_duplicates(pairs)
    cleanup = resolve_duplicates(dataset, clusters, keep="earliest")
    pairs.to_html(str(out / "duplicates.html"))
    dup = pairs.duplicates
    actions = dup["action"].value_counts()
    _say(f"   {len(dataset):,} invoices: {len(dup)} duplicate pairs ("
         + ", ".join(f"{a} {int(actions.get(a, 0))}" for a in ("skip", "merge", "review"))
         + f") in {clusters.clusters['cluster_id'].nunique()} clusters; keeping the earliest removes "
         f"{len(cleanup.removed)} -> {out}/duplicates.html")
    shown = dup.sort_values(["score", "id_a"], ascending=[False, True]).head(4)[["id_a", "id_b", "score", "reason"]]
    shown = shown.assign(id_a=shown["id_a"].str.slice(0, 8), id_b=shown["id_b"].str.slice(0, 8),
                         score=shown["score"].round(3))
    _say(_table(shown))
    result["duplicates"] = {"pairs": len(dup), "removed": len(cleanup.removed)}


def _remove_duplicates(url: str, result: dict) -> None:
    """The duplicates in the central store removed (audited tombstones), then the cleanup undone."""
    from .dedupe import apply_duplicates, cluster_duplicates, find_duplicates, resolve_duplicates, undo_duplicates

    before = read_central(url, lines=False).invoices
    live = int(before["deleted_at"].isna().sum())
    resolution = resolve_duplicates(before, cluster_duplicates(find_duplicates(before)), keep="earliest")
    applied = apply_duplicates(resolution, store=url, actor="invoicekit-demo")
    again = apply_duplicates(resolution, store=url, actor="invoicekit-demo")
    during = int(read_central(url, lines=False).invoices["deleted_at"].isna().sum())
    undone = undo_duplicates(url, applied.cleanup_id, actor="invoicekit-demo")
    after = read_central(url, lines=False).invoices.set_index("id").loc[before["id"]]
    same = bool((after["checksum"].to_numpy() == before["checksum"].to_numpy()).all())
    _say(f"   remove them in the central store: cleanup {applied.cleanup_id} tombstoned "
         f"{applied.count('removed')} ({applied.count('refused')} refused), {live} -> {during} live invoices; "
         f"applying it again: {again.count('unchanged')} unchanged, {again.written} written")
    _say(f"   undo: {undone.count('restored')} restored as a new version, {int(after['deleted_at'].isna().sum())} "
         f"live again, content checksums {'all as before' if same else 'CHANGED'}; audited as delete + undelete")
    result["duplicates"].update(cleanup_removed=applied.count("removed"), cleanup_restored=undone.count("restored"),
                                live_during_cleanup=during)


def _render(path: Path, out: Path, result: dict) -> None:
    """A few of a device's invoices as PDFs, the seller taken from the store's settings."""
    from .errors import MissingDependencyError
    from .samples import SAMPLE_SELLER

    _say("\n9. Render invoice PDFs (Jinja + WeasyPrint; seller from the store's app_settings 'seller')")
    with _sqlite.write_transaction(str(path)) as conn:  # what an analyst sets once per store
        conn.execute("INSERT OR REPLACE INTO app_settings (key, value, sync_required) VALUES ('seller', ?, 0)",
                     (json.dumps(SAMPLE_SELLER),))
    try:
        from .render import render_batch

        invoices = read_local(path)
        live = invoices.invoices[invoices.invoices["deleted_at"].isna()].sort_values("invoice_number")
        chosen = live[live["currency"] == "EUR"]["invoice_number"].head(3).tolist()
        done = render_batch(invoices, out / "pdf", where={"invoice_number": chosen}, workers=1, progress=False)
        xinv = render_batch(invoices, out / "pdf" / "factur-x", where={"invoice_number": chosen[:1]},
                            einvoice="factur-x", workers=1, progress=False)
    except MissingDependencyError as exc:
        _say(f"   skipped: {exc}")
        return
    files = pd.concat([done.files, xinv.files])
    _say(f"   {int(files['ok'].sum())} PDFs written under {out}/pdf/ (" + ", ".join(
        f"{n} {p} page(s)" for n, p in files[["invoice_number", "pages"]].itertuples(index=False)) + ")"
         + ("" if files["ok"].all() else f"; failed: {int((~files['ok']).sum())}"))
    result["render"] = {"ok": int(files["ok"].sum()), "failed": int((~files["ok"]).sum())}
