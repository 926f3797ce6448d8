"""Build and execute ``notebooks/04_offline_device.ipynb`` (run from the repository root).

    .venv/bin/python scripts/build_notebook_04.py

The notebook is committed executed; ``make test`` re-runs it under nbval and compares the
outputs, so every printed value must be deterministic: sample data are seeded, ids and
clocks stay out of the outputs, and what legitimately changes between runs (the temporary
folder's path, timings in milliseconds) is rewritten by ``notebooks/nbval_sanitize.cfg``
before the comparison. The key results are asserted in the cells, and the last cell removes
the temporary folder and the notebook's Redis keys.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _notebooks import execute  # scripts/ is sys.path[0] when run

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "notebooks" / "04_offline_device.ipynb"

CELLS: list[tuple[str, str, tuple[str, ...]]] = [
    ("md", """# 04 · The offline device: a local store, the connection going and coming back, the queue draining

A field device works offline most of the day. Everything it changes goes into its local
SQLite store and its `sync_queue`; a `ConnectionMonitor` watches the central store, and the
`SyncEngine` drains the queue when the connection is back, then syncs the settings marked
`sync_required`. Reads go through a Redis cache that no toolkit write leaves stale.

Everything runs on the committed sample device against an embedded central store (SQLite, in
a temporary directory): "offline" here is the central file being out of reach, which is what
the monitor sees when a network share or a server goes away. Point `url` at a
`postgresql://` URL for the real thing; the calls are the same.""", ()),
    ("code", """import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

import invoicekit as ik
from invoicekit.samples import read_jsonl

# the monitor logs every change of state (a warning when a service goes offline); this
# notebook keeps the log out of its outputs, which show the same events as data
logging.getLogger("invoicekit").addHandler(logging.NullHandler())

SAMPLES = Path("../data/samples") if Path("../data/samples").exists() else Path("data/samples")
work = Path(tempfile.mkdtemp(prefix="invoicekit-04-"))
device = work / "device_a.sqlite"
shutil.copy(SAMPLES / "device_a.sqlite", device)  # the device works on a copy
central_file = work / "central.sqlite"
url = f"sqlite:///{central_file.as_posix()}"
ik.init_db(url)
ik.write_central(read_jsonl(SAMPLES / "central.jsonl"), url).summary()""", ()),
    ("md", """## The local store: every change queued

`LocalStore` writes the invoice row and its `sync_queue` operation in one transaction (WAL,
`synchronous=FULL`), so a device that loses power mid-write has either both or neither. The
device's own numbering, checksums and versions are kept exactly as the device software
writes them.""", ()),
    ("code", """store = ik.LocalStore(device)
queued_before = len(store.queue())
new_id = store.create(invoice_number="INV-NB-0001", currency="EUR", client={"name": "Notebook Ltd"},
                      line_items=[{"description": "Training day", "quantity": 2, "unit_price": "850.00"}])
store.update(new_id, line_items=[{"description": "Training day", "quantity": 3, "unit_price": "850.00"}])
queue = store.queue()
assert len(queue) == queued_before + 2
print("queued by the sample device:", queued_before, "| and now:", list(queue["operation"].tail(2)))
now_local = ik.read_local(device, lines=False).invoices
assert ik.tampered(now_local).empty  # the store wrote the devices' own checksum
row = now_local.set_index("id").loc[new_id]
print(row["invoice_number"], row["total"], "version", row["version"], row["sync_status"])""", ()),
    ("md", """## The monitor and the engine

The monitor probes the central store with a timeout and reports each change of state once to
every callback. The engine takes the monitor: while central is offline a drain returns at
once and leaves the queue as it is (no retries burnt); when central comes back, the engine
drains by itself.""", ()),
    ("code", """changes = []
monitor = ik.ConnectionMonitor(central=url, interval=0.5, timeout=1.0)
monitor.on_change(lambda change: changes.append((change.service, change.online)))
engine = ik.SyncEngine(device, url, monitor=monitor, currency="EUR")
monitor.check()
print("central online:", monitor.online, "| changes seen:", changes)
first = engine.drain()  # what the sample device had queued (some of it in conflict with central), and ours
assert changes == [("central", True)] and not first.offline
row = ik.read_central(url, where={"id": new_id}).invoices.iloc[0]
print("in central:", row["invoice_number"], row["total"], "version", row["version"])
first.summary()""", ()),
    ("md", """Some of what the sample device queued conflicts with what the central store holds (both
sides edited those invoices): those operations stay queued, flagged `conflict`, for an
analyst to settle (notebook 01 shows how). Everything else is synced, oldest first, in
batches, retrying connection trouble with exponential backoff.""", ()),
    ("md", """## Offline: the device keeps working

The central store goes out of reach. The device creates two invoices, corrects one and
deletes another; each change is stored and queued. A drain now returns at once, `offline`,
with the queue untouched.""", ()),
    ("code", """os.rename(central_file, work / "central.away")  # the connection is gone
monitor.check()
print("central online:", monitor.online)

new_ids = [store.create(invoice_number=f"DAY-{n}", client={"name": "Kiosk am Markt", "tax_id": "DE811907980"},
                        line_items=[{"description": "Coffee beans 1 kg", "quantity": n, "unit_price": 18.5}],
                        currency="EUR") for n in (1, 2)]
store.update(new_ids[0], line_items=[{"description": "Coffee beans 1 kg", "quantity": 3, "unit_price": 18.5}])
victim = ik.read_local(device, lines=False).invoices.query("deleted_at.isna()")["id"].iloc[0]
store.delete(victim)
ik.Settings(device).set("receipt_footer", "Danke für Ihren Einkauf!", sync_required=True)

offline = engine.drain()
assert offline.offline and len(offline.results) == 0
print("drain while offline -> offline:", offline.offline, "| operations handled:", len(offline.results))
print("waiting in the queue:", len(store.queue()))""", ()),
    ("md", """## Back online: the queue drains by itself

The file comes back; the monitor's next round sees it and the engine, told by its callback,
drains in the background. Afterwards the invoices and the setting are in the central store.""", ()),
    ("code", """os.rename(work / "central.away", central_file)
engine.last_drain = None
monitor.check()
deadline = time.monotonic() + 60
while engine.last_drain is None and time.monotonic() < deadline:
    time.sleep(0.1)
drained = engine.last_drain
assert drained is not None and drained.ok and changes[-2:] == [("central", False), ("central", True)]
print("changes seen:", changes)
print("drained in the background -> ok:", drained.ok)
drained.summary()""", ()),
    ("code", """synced = drained.settings.settings
print("settings synced:", dict(zip(synced["key"], synced["outcome"])))
central_now = ik.read_central(url, lines=False).invoices.set_index("id")
print("new invoices in central:", all(i in central_now.index for i in new_ids))
print("the deletion reached central:", bool(pd.notna(central_now.loc[victim, "deleted_at"])))
assert all(i in central_now.index for i in new_ids) and pd.notna(central_now.loc[victim, "deleted_at"])
print("left in the queue (the conflicts from before):", len(store.queue()))""", ()),
    ("md", """## Reads through the cache

`get_invoice` and `get_client` read through Redis (`INVOICEKIT_REDIS_URL`, here the local
server if one answers). A hit is the same one-row `InvoiceSet` the store gives; every toolkit
write drops exactly what it changed, and if Redis is down the answer comes from the store, with
one warning in the log.""", ()),
    ("code", """cache = ik.Cache(os.environ.get("INVOICEKIT_REDIS_URL", "redis://127.0.0.1:6379/0"),
                 namespace="notebook-04-" + os.urandom(4).hex())
from_store = ik.get_invoice(device, new_ids[0], cache=False)
miss = ik.get_invoice(device, new_ids[0], cache=cache)
hit = ik.get_invoice(device, new_ids[0], cache=cache)
print("a read through the cache equals the store:", miss.invoices.equals(from_store.invoices)
      and hit.invoices.equals(from_store.invoices))
store.update(new_ids[0], invoice_number="DAY-1-CORRECTED")
after = ik.get_invoice(device, new_ids[0], cache=cache)
print("after an edit the cache gives:", after.invoices["invoice_number"].iloc[0])
assert after.invoices["invoice_number"].iloc[0] == "DAY-1-CORRECTED"
print("the client's invoices:", len(ik.get_client(device, tax_id="DE 811 907 980", cache=cache)))""", ()),
    ("code", """t0 = time.perf_counter()
ik.get_invoice(device, new_ids[0], cache=False)
store_s = time.perf_counter() - t0
t0 = time.perf_counter()
ik.get_invoice(device, new_ids[0], cache=cache)
cache_s = time.perf_counter() - t0
print(f"from the store {store_s * 1000:.1f} ms, through the cache {cache_s * 1000:.1f} ms;", cache.stats)""", ()),
    ("md", """## A store written by other software

The devices' schema leaves much open. `invoicekit.foreign` writes stores the way other
software does (plain `sqlite3`, no toolkit conventions); this one honours `sync_queue`'s
foreign key, so a deleted invoice keeps its row and only a queued `delete` says it is gone,
and it stores timestamps as epoch numbers in some rows. Reconcile sees the deletions, and a
sync pushes them as tombstones one version up.""", ()),
    ("code", """from invoicekit.foreign import write_foreign_store

fk = write_foreign_store(work / "foreign.sqlite", kind="kept_row_delete", seed=1)
fk.write_central_seed(work / "foreign_seed.sqlite")
print(ik.write_central(ik.read_local(work / "foreign_seed.sqlite"), url).summary().to_dict("records"))
rec_f = ik.reconcile(ik.read_local(fk.path), url)
print({k: v for k, v in rec_f.counts().items() if v})
out_f = ik.apply_sync(ik.plan_sync(ik.resolve(rec_f)), local=fk.path, central=url, actor="notebook-04")
now = ik.read_central(url, lines=False).invoices.set_index("id")
want = fk.expected[fk.expected["present"]].set_index("id")
deleted_ok = bool((now.loc[want.index, "deleted_at"].notna().to_numpy() == want["deleted"].to_numpy(bool)).all())
assert out_f.ok and deleted_ok
print("ok:", out_f.ok, "| deleted as the truth says:", deleted_ok)""", ()),
    ("md", """The monitor stops, the notebook's cache keys go, and so does the temporary folder:""", ()),
    ("code", """monitor.stop()
cache.clear()
shutil.rmtree(work)
assert not work.exists()""", ()),
]


def main() -> int:
    return execute(CELLS, TARGET)


if __name__ == "__main__":
    sys.exit(main())
