"""Build and execute ``notebooks/02_reconcile_sync.ipynb`` (run from the repository root).

    .venv/bin/python scripts/build_notebook_02.py

The notebook is committed executed; ``make test`` re-runs it under nbval and compares the
outputs, so every printed value here must be deterministic (sample data are seeded;
anything depending on the clock or on fresh uuids is kept out of the outputs).
"""

from __future__ import annotations

import sys
from pathlib import Path

from _notebooks import execute  # scripts/ is sys.path[0] when run

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "notebooks" / "02_reconcile_sync.ipynb"

CELLS: list[tuple[str, str]] = [
    ("md", """# 02 · Reconcile the devices with the central store, resolve, sync back

The analyst's main job: find out exactly how each offline store differs from the central
database, decide what should win, and write the result to both sides **once**, with an audit
trail. Everything runs on the committed sample data against an embedded central store
(SQLite, in a temporary directory); point `url` at a `postgresql://` URL for the real thing,
the calls are the same."""),
    ("code", """%matplotlib inline
import shutil
import sqlite3
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import invoicekit as ik
from invoicekit.samples import read_jsonl

SAMPLES = Path("../data/samples") if Path("../data/samples").exists() else Path("data/samples")
work = Path(tempfile.mkdtemp(prefix="invoicekit-02-"))
url = "sqlite:///" + (work / "central.sqlite").as_posix()
print("schema version:", ik.init_db(url))
print("central invoices written:", ik.write_central(read_jsonl(SAMPLES / "central.jsonl"), url).written)
for name in ("device_a", "device_b"):  # sync copies: the committed samples stay as they are
    shutil.copy(SAMPLES / f"{name}.sqlite", work / f"{name}.sqlite")"""),
    ("md", """## 1. Reconcile

`ik.reconcile(local, central)` gives every invoice a status. The toolkit's own store
(`device_a`) records the base each offline edit started from, so *ahead* versus *conflict*
is an exact three-way decision; `device_b` is a legacy store without bases, judged by
versions, `sync_status` and `modified_at` (the rules are in `invoicekit.reconcile`'s
docstring)."""),
    ("code", """central = ik.read_central(url)
rec_a = ik.reconcile(ik.read_local(work / "device_a.sqlite"), central)
rec_a"""),
    ("md", """The samples come with the truth: `situations.csv` says which sync situation each device
invoice was put in. Statuses found (columns) against the truth (rows):"""),
    ("code", """truth = pd.read_csv(SAMPLES / "situations.csv")
rec_b = ik.reconcile(ik.read_local(work / "device_b.sqlite"), central)
crosstabs = {}
for name, rec in (("device_a", rec_a), ("device_b", rec_b)):
    found = truth[truth["device"] == name].merge(rec.status[["id", "status"]].astype(object), on="id")
    crosstabs[name] = pd.crosstab(found["situation"], found["status"])
crosstabs["device_a"]"""),
    ("code", """crosstabs["device_b"]"""),
    ("md", """`device_b` has no bases: an invoice edited on both sides is a `conflict` only when its
versions say so, and the two `damaged` rows (tampered after writing) show up as differing.
The counts side by side:"""),
    ("code", """# NBVAL_IGNORE_OUTPUT
counts = pd.DataFrame({"device_a": rec_a.counts(), "device_b": rec_b.counts()})
ax = counts.drop(index="central_only").plot.barh(figsize=(8, 3.8), width=0.8)
ax.invert_yaxis()
ax.set_xlabel("invoices")
ax.set_title("Reconcile status per device (central-only invoices left out)")
plt.tight_layout()"""),
    ("code", """counts"""),
    ("md", """## 2. What exactly differs

`rec.fields` has one row per differing field, with the base, local and central value and
which side changed it. Line items are compared line by line, a line being identified by
its description and occurrence (`lines[Installation#1].quantity`)."""),
    ("code", """conflicts = rec_a.status.loc[rec_a.status["status"] == "conflict", "id"]
example = conflicts.iloc[0]
rec_a.fields[rec_a.fields["id"] == example]"""),
    ("md", """## 3. Resolve

`three_way` takes every field changed on one side only from that side, accepts fields
changed alike on both, and leaves the rest for a decision. Nothing unresolved is written."""),
    ("code", """res = ik.resolve(rec_a, strategy="three_way")
res"""),
    ("code", """res.unresolved[["id", "field", "base", "local", "central"]]"""),
    ("md", """The analyst decides in `ConflictReview`: one conflict at a time, base / local / central side
by side with the changes highlighted, a toggle per field, "whole invoice" and "take all"
buttons, a progress bar, and a key box (ipywidgets has no key events of its own: letters
typed there run commands, listed in the widget). In JupyterLab you click; the widget is
shown here, and its output is not compared by the tests (a widget's view is new every run)."""),
    ("code", """# NBVAL_IGNORE_OUTPUT
from invoicekit.widgets import ConflictReview

review = ConflictReview(res)  # the Resolution keeps the Reconciliation it decided
review"""),
    ("md", """Every button and key is also a method, so a review can be scripted (or checked): here the
central value for quantities and the local one for everything else, and one invoice taken
whole from the device with `field="*"`. `review.decisions` is exactly the `(id, field,
choice)` frame `resolve` takes, and `review.apply()` re-resolves with it."""),
    ("code", """whole = res.unresolved["id"].iloc[-1]
for inv, field in res.unresolved[["id", "field"]].itertuples(index=False):
    if inv != whole:
        review.choose(inv, field, "central" if field.endswith(".quantity") else "local")
review.choose(whole, "*", "local")
decided, total = review.progress()
assert decided == total == res.unresolved["id"].nunique()
print(f"decided {decided} of {total} conflicts")
review.decisions.assign(id=review.decisions["id"].str[:8])"""),
    ("code", """res = review.apply()
assert (res.actions["action"] == "unresolved").sum() == 0
assert res.actions.set_index("id").loc[whole, "winner"] == "local"
print("left unresolved:", int((res.actions["action"] == "unresolved").sum()))
res.actions["action"].value_counts()"""),
    ("md", """## 4. Plan (a dry run), then sync

`plan_sync` lists every operation before anything is written: its deterministic op id, the
central version it expects and the version it writes, the payload checksum."""),
    ("code", """plan = ik.plan_sync(res)
plan.summary()"""),
    ("code", """plan.ops[["kind", "invoice_id", "status", "expected_central_version", "new_version"]].head(8)"""),
    ("code", """result = ik.apply_sync(plan, local=work / "device_a.sqlite", central=url, actor="notebook-02")
result.summary()"""),
    ("md", """Running the same plan again changes nothing: every operation is in the central ledger and
in the device's own ledger already."""),
    ("code", """again = ik.apply_sync(plan, local=work / "device_a.sqlite", central=url, actor="notebook-02")
again.results[["central", "local"]].value_counts()"""),
    ("code", """after = ik.reconcile(ik.read_local(work / "device_a.sqlite"), ik.read_central(url))
{k: v for k, v in after.counts().items() if v}"""),
    ("md", """The central store's append-only audit trail: who, which strategy, versions and checksums
before and after, one row per applied operation (the initial `write_central` has its own
rows, strategy `write_central`, left out here)."""),
    ("code", """with sqlite3.connect(work / "central.sqlite") as conn:
    audit = pd.read_sql("SELECT actor, kind, strategy, before_version, after_version, after_checksum "
                        "FROM invoicekit_audit WHERE strategy <> 'write_central'", conn)  # the sync's rows
print(len(audit), "audit rows for", len(plan.ops[plan.ops["kind"] == "push"]), "pushes")
(audit.assign(before_version=audit["before_version"].astype("Int64"))
      .groupby(["actor", "kind", "strategy", "before_version", "after_version"], dropna=False)
      .size().rename("operations").reset_index())"""),
    ("md", """## 5. A version that moved meanwhile is a conflict, never a lost update

Plan against `device_b`, then let someone change one of the planned invoices centrally before
the plan is applied: that push is refused and comes back as a conflict."""),
    ("code", """rec = ik.reconcile(ik.read_local(work / "device_b.sqlite"), ik.read_central(url))
plan_b = ik.plan_sync(ik.resolve(rec, strategy="last_write_wins"))
victim = plan_b.ops.loc[(plan_b.ops["kind"] == "push") & plan_b.ops["expected_central_version"].notna(),
                        "invoice_id"].iloc[0]
with sqlite3.connect(work / "central.sqlite") as conn:  # a concurrent central edit
    conn.execute("UPDATE invoices SET version = version + 1 WHERE id = ?", (victim,))
out = ik.apply_sync(plan_b, local=work / "device_b.sqlite", central=url, actor="notebook-02")
print("refused:", list(out.conflicts["invoice_id"]) == [victim])
out.summary()"""),
    ("md", """## 6. On the device: every change queued, drained exactly once

`LocalStore` writes the invoice row and its `sync_queue` operation in one transaction;
`SyncEngine` drains the queue oldest first in batches, retrying connection trouble with
exponential backoff."""),
    ("code", """store = ik.LocalStore(work / "device_a.sqlite")
new_id = store.create(invoice_number="INV-NB-0001", currency="EUR", client={"name": "Notebook Ltd"},
                      line_items=[{"description": "Training day", "quantity": 2, "unit_price": "850.00"}])
store.update(new_id, line_items=[{"description": "Training day", "quantity": 3, "unit_price": "850.00"}])
print(list(store.queue()["operation"]))
drained = ik.SyncEngine(work / "device_a.sqlite", url, actor="notebook-02").drain()
drained.summary()"""),
    ("code", """row = ik.read_central(url, where={"id": new_id}).invoices.iloc[0]
print(row["invoice_number"], row["total"], "version", row["version"], "| queue left:", len(store.queue()))"""),
    ("md", """## 7. Every write is compare-and-set

An analyst who writes an old copy of the central set again (here: the sample set loaded at
the top, before the syncs above) lowers no version, revives no deleted invoice and
overwrites nothing: `write_central` returns a `WriteResult` that counts each outcome and
lists every refused row with its reason. Only `force=True` overwrites, and the audit trail
names it."""),
    ("code", """again = ik.write_central(read_jsonl(SAMPLES / "central.jsonl"), url)
print(again.refused["reason"].value_counts().to_dict())
again.summary()"""),
    ("md", """## 8. A store written by other software

The devices' schema leaves much open. `invoicekit.foreign` writes stores the way other
software does (plain `sqlite3`, no toolkit conventions); this one honours `sync_queue`'s
foreign key, so a deleted invoice keeps its row and only a queued `delete` says it is gone,
and it stores timestamps as epoch numbers in some rows. Reconcile sees the deletions, and a
sync pushes them as tombstones one version up."""),
    ("code", """from invoicekit.foreign import write_foreign_store

fk = write_foreign_store(work / "foreign.sqlite", kind="kept_row_delete", seed=1)
fk.write_central_seed(work / "foreign_seed.sqlite")
print(ik.write_central(ik.read_local(work / "foreign_seed.sqlite"), url).summary().to_dict("records"))
rec_f = ik.reconcile(ik.read_local(fk.path), url)
print({k: v for k, v in rec_f.counts().items() if v})
out_f = ik.apply_sync(ik.plan_sync(ik.resolve(rec_f)), local=fk.path, central=url, actor="notebook-02")
now = ik.read_central(url, lines=False).invoices.set_index("id")
want = fk.expected[fk.expected["present"]].set_index("id")
print("ok:", out_f.ok, "| deleted as the truth says:",
      bool((now.loc[want.index, "deleted_at"].notna().to_numpy() == want["deleted"].to_numpy(bool)).all()))"""),
]


def main() -> int:
    return execute(CELLS, TARGET)


if __name__ == "__main__":
    sys.exit(main())
