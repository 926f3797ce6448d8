"""Build and execute ``notebooks/03_device_day.ipynb`` (run from the repository root).

    .venv/bin/python scripts/build_notebook_03.py

The notebook is committed executed; ``make test`` re-runs it under nbval and compares the
outputs, so every printed value must be deterministic: sample data are seeded, ids and
clocks stay out of the outputs, and the cells whose output depends on the machine (timings,
whether Redis answers) are tagged ``nbval-ignore-output``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _notebooks import IGNORE, execute  # scripts/ is sys.path[0] when run

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "notebooks" / "03_device_day.ipynb"

CELLS: list[tuple[str, str, tuple[str, ...]]] = [
    ("md", """# 03 · A device's day: offline edits, the connection coming and going, the queue draining

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

work = Path(tempfile.mkdtemp(prefix="ik_device_day_"))
device = work / "device_a.sqlite"
shutil.copy(Path("..") / "data" / "samples" / "device_a.sqlite", device)
central_file = work / "central.sqlite"
url = f"sqlite:///{central_file}"
ik.init_db(url)
ik.write_central(read_jsonl(Path("..") / "data" / "samples" / "central.jsonl"), url).summary()""", ()),
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
first = engine.drain()  # what the sample device had queued (some of it in conflict with central)
first.summary()""", ()),
    ("md", """Some of what the sample device queued conflicts with what the central store holds (both
sides edited those invoices): those operations stay queued, flagged `conflict`, for an
analyst to settle (notebook 02 shows how). Everything else is synced.""", ()),
    ("md", """## Offline: the device keeps working

The central store goes out of reach. The device creates two invoices, corrects one and
deletes another; each change is stored and queued. A drain now returns at once, `offline`,
with the queue untouched.""", ()),
    ("code", """os.rename(central_file, work / "central.away")  # the connection is gone
monitor.check()
print("central online:", monitor.online)

store = ik.LocalStore(device)
new_ids = [store.create(invoice_number=f"DAY-{n}", client={"name": "Kiosk am Markt", "tax_id": "DE811907980"},
                        line_items=[{"description": "Coffee beans 1 kg", "quantity": n, "unit_price": 18.5}],
                        currency="EUR") for n in (1, 2)]
store.update(new_ids[0], line_items=[{"description": "Coffee beans 1 kg", "quantity": 3, "unit_price": 18.5}])
victim = ik.read_local(device, lines=False).invoices.query("deleted_at.isna()")["id"].iloc[0]
store.delete(victim)
ik.Settings(device).set("receipt_footer", "Danke für Ihren Einkauf!", sync_required=True)

offline = engine.drain()
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
print("changes seen:", changes)
print("drained in the background -> ok:", drained.ok)
drained.summary()""", ()),
    ("code", """synced = drained.settings.settings
print("settings synced:", dict(zip(synced["key"], synced["outcome"])))
central_now = ik.read_central(url, lines=False).invoices.set_index("id")
print("new invoices in central:", all(i in central_now.index for i in new_ids))
print("the deletion reached central:", bool(pd.notna(central_now.loc[victim, "deleted_at"])))
print("left in the queue (the conflicts from before):", len(store.queue()))""", ()),
    ("md", """## Reads through the cache

`get_invoice` and `get_client` read through Redis (`INVOICEKIT_REDIS_URL`, here the local
server if one answers). A hit is the same one-row `InvoiceSet` the store gives; every toolkit
write drops exactly what it changed, and if Redis is down the answer comes from the store, with
one warning in the log.""", ()),
    ("code", """cache = ik.Cache(os.environ.get("INVOICEKIT_REDIS_URL", "redis://127.0.0.1:6379/0"),
                 namespace="notebook-03-" + os.urandom(4).hex())
from_store = ik.get_invoice(device, new_ids[0], cache=False)
miss = ik.get_invoice(device, new_ids[0], cache=cache)
hit = ik.get_invoice(device, new_ids[0], cache=cache)
print("a read through the cache equals the store:", miss.invoices.equals(from_store.invoices)
      and hit.invoices.equals(from_store.invoices))
store.update(new_ids[0], invoice_number="DAY-1-CORRECTED")
after = ik.get_invoice(device, new_ids[0], cache=cache)
print("after an edit the cache gives:", after.invoices["invoice_number"].iloc[0])
print("the client's invoices:", len(ik.get_client(device, tax_id="DE 811 907 980", cache=cache)))""", ()),
    ("code", """t0 = time.perf_counter()
ik.get_invoice(device, new_ids[0], cache=False)
store_s = time.perf_counter() - t0
t0 = time.perf_counter()
ik.get_invoice(device, new_ids[0], cache=cache)
cache_s = time.perf_counter() - t0
print(f"from the store {store_s * 1000:.1f} ms, through the cache {cache_s * 1000:.1f} ms;", cache.stats)
cache.clear()
monitor.stop()""", (IGNORE,)),
]


def main() -> int:
    return execute(CELLS, TARGET)


if __name__ == "__main__":
    sys.exit(main())
