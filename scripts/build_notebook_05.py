"""Build and execute ``notebooks/05_central_scale.ipynb`` (run from the repository root).

    .venv/bin/python scripts/build_notebook_05.py

The notebook is committed executed; ``make test`` re-runs it under nbval and compares the
outputs, so every printed value must be deterministic: the sample data are committed, the
edits pick ids in sorted order, and what changes between runs (the temporary folder's path,
a store's random identity, timings) stays out of the outputs or is rewritten by
``notebooks/nbval_sanitize.cfg``. The key results are asserted in the cells, and the last
cell removes the temporary folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _notebooks import execute  # scripts/ is sys.path[0] when run

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "notebooks" / "05_central_scale.ipynb"

CELLS: list[tuple[str, str, tuple[str, ...]]] = [
    ("md", """# 05 · A large central store: read only what is needed

A device holds thousands of invoices; the central store holds millions. Reading the whole
central store for every reconcile costs seconds and gigabytes, so the toolkit reads only what
a question needs:

* **a device against the store**: `reconcile(device, url)` fetches the device's invoices only;
* **by id**: `read_central(url, ids=...)` stages the ids in bulk and joins them;
* **a snapshot**: `read_central(url, snapshot=PATH)` keeps a local copy and later fetches only
  what was written since (a change marker the central schema keeps, not clocks);
* **several stores at once**: `read_central([url_a, url_b])`, as `read_local` takes a list.

The store here is an embedded SQLite file in a temporary directory, loaded with the committed
sample data; point `url` at a `postgresql://` URL for the real thing: the calls are the same
(on PostgreSQL, `reconcile(..., pushdown=True)` also compares whole stores by their keys).""", ()),
    ("code", """import logging
import shutil
import tempfile
from pathlib import Path

import pandas as pd

import invoicekit as ik
from invoicekit.io.snapshot import snapshot_info
from invoicekit.samples import read_jsonl

logging.getLogger("invoicekit").addHandler(logging.NullHandler())  # the snapshot's log stays out of the outputs

SAMPLES = Path("../data/samples") if Path("../data/samples").exists() else Path("data/samples")
work = Path(tempfile.mkdtemp(prefix="invoicekit-05-"))
device = work / "device_a.sqlite"
shutil.copy(SAMPLES / "device_a.sqlite", device)
url = f"sqlite:///{(work / 'central.sqlite').as_posix()}"
ik.init_db(url)
central_set = read_jsonl(SAMPLES / "central.jsonl")
ik.write_central(central_set, url).summary()""", ()),
    ("md", """## A device against the store: only the device's invoices travel

Given the store itself (a URL), reconcile reads the central side for the ids the device
holds, while the device file loads. Central-only invoices are out of scope, and the result
says so; for every id the device holds, the statuses and field differences are those of a
full read.""", ()),
    ("code", """rec = ik.reconcile(device, url)
full = ik.reconcile(ik.read_local(device), ik.read_central(url))
held = full.status[full.status["status"] != "central_only"].reset_index(drop=True)
pd.testing.assert_frame_equal(rec.status, held)
pd.testing.assert_frame_equal(rec.fields, full.fields)
assert rec.scope == "device" and len(rec.central) < len(full.central)
print(f"fetched {len(rec.central):,} of the store's {len(full.central):,} invoices; "
      f"the full read's central-only invoices: {int((full.status['status'] == 'central_only').sum())}")
rec.summary()""", ()),
    ("md", """## By id

Any number of ids, in any form (a list, a Series, an Arrow array): they travel in bulk into a
temporary table of the reading session and are joined, never spliced into SQL. The rows come in
the order asked for; ids the store lacks are simply absent.""", ()),
    ("code", """wanted = sorted(central_set.invoices["id"])[:4] + ["no-such-invoice"]
some = ik.read_central(url, ids=wanted[::-1])
assert list(some.invoices["id"]) == [i for i in wanted[::-1] if i != "no-such-invoice"]
some.invoices[["invoice_number", "currency", "total", "version"]]""", ()),
    ("md", """## A snapshot: later reads fetch only what changed

The first call reads the store and keeps an Arrow copy (a base file and a small delta, each
replaced atomically, so several analysts may share a folder). Here three invoices are edited
centrally; the next call fetches those three and equals a full read.""", ()),
    ("code", """snap = work / "central.arrow"
first = ik.read_central(url, snapshot=snap)
built = snapshot_info(snap)
live = first.invoices[first.invoices["deleted_at"].isna()].sort_values("id").head(3)
edited = live.assign(invoice_number=live["invoice_number"] + "-R", version=live["version"] + 1)
edited["checksum"] = ik.checksum(edited)
ik.write_central(ik.InvoiceSet(edited, first.lines[first.lines["invoice_id"].isin(edited["id"])]), url)
again = ik.read_central(url, snapshot=snap)
refreshed = snapshot_info(snap)
cols = [c for c in again.invoices.columns if c not in ("source", "source_row")]
same = again.invoices[cols].sort_values("id").reset_index(drop=True).equals(
    ik.read_central(url).invoices[cols].sort_values("id").reset_index(drop=True))
assert (built.mode, refreshed.mode, refreshed.fetched, same) == ("built", "refreshed", 3, True)
pd.DataFrame({"call": ["first", "after 3 edits"], "mode": [built.mode, refreshed.mode],
              "invoices": [built.rows, refreshed.rows], "fetched from the store": [built.fetched, refreshed.fetched]})""",
     ()),
    ("md", """A snapshot file that is truncated, from another store, or of an older format is rebuilt
with a logged warning, never used:""", ()),
    ("code", """snap.write_bytes(snap.read_bytes()[:1000])  # a copy torn half-way
rebuilt = ik.read_central(url, snapshot=snap)
info = snapshot_info(snap)
assert info.mode == "built" and len(rebuilt) == len(again)
print(info.mode, "|", info.reason.split(" (")[0])""", ()),
    ("md", """## Several central stores at once

A list of stores reads each with the same options and stacks them; `source` tells the rows
apart (here the store and last year's archive, a second store).""", ()),
    ("code", """archive = f"sqlite:///{(work / 'archive.sqlite').as_posix()}"
ik.init_db(archive)
ik.write_central(ik.samples.make_invoices(25, seed=2025), archive)
both = ik.read_central([url, archive], lines=False)
per_store = both.invoices.groupby(both.invoices["source"].astype(str).str.rsplit("/", n=1).str[-1]).size()
assert per_store.sum() == len(central_set) + 25
per_store.rename("invoices").to_frame()""", ()),
    ("md", """The temporary folder goes:""", ()),
    ("code", """shutil.rmtree(work)
assert not work.exists()""", ()),
]


def main() -> int:
    return execute(CELLS, TARGET)


if __name__ == "__main__":
    sys.exit(main())
