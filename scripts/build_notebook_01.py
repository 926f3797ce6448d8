"""Build and execute ``notebooks/01_quick_start.ipynb`` (run from the repository root).

    .venv/bin/python scripts/build_notebook_01.py

The notebook is committed executed; ``make test`` re-runs it under nbval and compares the
outputs, so every printed value must be deterministic: the sample data are seeded, and what
legitimately changes between runs (the temporary folder's path) is rewritten by
``notebooks/nbval_sanitize.cfg`` before the comparison. The key results are asserted in
the cells themselves, and the temporary folder is removed by the last cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _notebooks import execute  # scripts/ is sys.path[0] when run

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "notebooks" / "01_quick_start.ipynb"

CELLS: list[tuple[str, str]] = [
    ("md", """# 01 · Quick start: load, validate, reconcile, decide, dry-run, sync

The analyst's main job, end to end on the committed sample data:

1. **Load** the two offline device stores (SQLite) and the central set into `InvoiceSet`s.
2. **Validate** them and **verify** the devices' checksums.
3. Write the central set to an embedded **central store** and look at its money through the
   `.ik` accessor (exact decimals, never float).
4. **Reconcile** a device against the central store, **resolve**, and **decide** the conflicts
   in `ConflictReview`.
5. **Dry-run** the sync plan (nothing written), then **apply** it, exactly once.

The central store is an embedded SQLite file in a temporary folder, removed at the end;
point `url` at a `postgresql://` URL for the real thing, the calls are the same. The sample
data are generated deterministically (`make samples`)."""),
    ("code", """%matplotlib inline
import hashlib
import json
import shutil
import sqlite3
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import invoicekit as ik
from invoicekit.samples import read_jsonl

pd.set_option("display.max_colwidth", 60)
# Jupyter and nbval run a notebook in its own folder; from the repository root works too
SAMPLES = Path("../data/samples") if Path("../data/samples").exists() else Path("data/samples")
work = Path(tempfile.mkdtemp(prefix="invoicekit-01-"))
for name in ("device_a", "device_b"):  # the sync writes to copies: the committed samples stay as they are
    shutil.copy(SAMPLES / f"{name}.sqlite", work / f"{name}.sqlite")
print("invoicekit", ik.__version__)
print("samples:", ", ".join(sorted(f.name for f in SAMPLES.iterdir() if not f.name.endswith(("-wal", "-shm")))))"""),
    ("md", """## 1. Load

`ik.read_local` reads an offline store (the devices' SQLite schema) into an `InvoiceSet`: an
`invoices` frame, a `lines` frame (parsed from the `line_items` JSON when first used) and
`problems` for anything the loader could not parse. Nothing is dropped.

* `device_a` was written by the toolkit: it keeps deletions as tombstones and records the
  last-synced snapshot of each invoice (`.base`), so reconcile can compare three ways.
* `device_b` is a legacy store in the bare device schema: no currency column (the loader
  takes the store's `default_currency`), deletions are real `DELETE`s (recovered from the
  queued `delete` operations as tombstones), no snapshots, and two rows rotted in the field.

An `InvoiceSet` shows itself as a summary per currency plus its first rows."""),
    ("code", """device_a = ik.read_local(work / "device_a.sqlite")
device_a"""),
    ("code", """device_b = ik.read_local(work / "device_b.sqlite")
print(f"device_a: {len(device_a.base)} last-synced snapshots for {len(device_a)} invoices;",
      "device_b keeps none:", device_b.base is None)
assert device_b.base is None and len(device_a.base) > 0
device_b"""),
    ("md", """Every column has a documented, pyarrow-backed type. Money is **never** `float64`: `total` is
`decimal128(12, 2)`, the stores' own exact type, so sums are exact to the cent."""),
    ("code", """totals = device_a.invoices["total"]
assert str(totals.dtype) == "decimal128(12, 2)[pyarrow]"
as_float = sum(float(t) for t in totals.tolist())  # what a float64 column would give
print(f"exact sum: {totals.sum()} | the same sum in floats: {as_float!r}")"""),
    ("md", """## 2. Validate and verify

`ik.validate` checks every rule (unparseable JSON, non-numeric or negative amounts, missing
fields, totals that differ from their lines, unknown currencies, duplicate ids, bad versions)
and returns a report with one row per broken rule and offending row; it never modifies the
set. `ik.tampered` recomputes every row's SHA-256 (vectorised) and lists the rows whose
content no longer matches the checksum the device stored."""),
    ("code", """report_a, report_b = ik.validate(device_a), ik.validate(device_b)
assert report_a.ok and not report_b.ok
report_b"""),
    ("code", """tampered_b = ik.tampered(device_b.invoices)
situations = pd.read_csv(SAMPLES / "situations.csv")
damaged = set(situations.loc[situations["situation"] == "damaged", "id"])
assert ik.tampered(device_a.invoices).empty
assert set(tampered_b["id"]) == damaged == set(report_b.problems["id"])
print("tampered rows == rows failing validation == the rows the scenario damaged:", len(damaged))
tampered_b[["id", "source_row", "stored", "computed"]]"""),
    ("md", """`ik.checksum` must be byte-identical to what the devices compute: a SHA-256 of the JSON of
`invoice_number`, `client_data`, `line_items` and `total_amount` (as the float the device
holds). The devices' own per-row formula, applied to every row read straight from the file:"""),
    ("code", """def device_checksum(row: dict) -> str:
    relevant = {k: row[k] for k in ("invoice_number", "client_data", "line_items")}
    relevant["total_amount"] = float(row["total_amount"])  # SQLite hands whole amounts back as int
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


with sqlite3.connect(f"file:{(SAMPLES / 'device_a.sqlite').as_posix()}?mode=ro", uri=True) as con:
    con.row_factory = sqlite3.Row
    raw = {r["id"]: dict(r) for r in con.execute("SELECT * FROM transactions")}
con.close()
ours = dict(zip(device_a.invoices["id"], ik.checksum(device_a.invoices)))
assert all(ours[i] == device_checksum(r) == r["checksum"] for i, r in raw.items())
print(f"{len(raw)} of {len(device_a)} rows: ik.checksum == the device formula == the stored checksum")"""),
    ("md", """## 3. The central store, and money through the `.ik` accessor

The central set (`central.jsonl`) holds every invoice the server knows. It must validate
before it can be written: `write_central` is compare-and-set and all or nothing. Written to
an embedded central store and read back, it is exactly the same."""),
    ("code", """central_set = read_jsonl(SAMPLES / "central.jsonl")
assert ik.validate(central_set).ok
url = "sqlite:///" + (work / "central.sqlite").as_posix()
print("schema version:", ik.init_db(url))
written = ik.write_central(central_set, url)
print("written:", written.written, "| refused:", len(written.refused))
central = ik.read_central(url)


def canonical(inv):
    return inv.drop(columns=["source", "source_row"]).sort_values("id").reset_index(drop=True)


pd.testing.assert_frame_equal(canonical(central.invoices), canonical(central_set.invoices))
eur = ik.read_central(url, where={"currency": "EUR"})  # values bound as SQL parameters
assert set(eur.invoices["currency"]) == {"EUR"}
central"""),
    ("md", """`invoices.ik` is the toolkit's pandas accessor: `.ik.live()` leaves the tombstones out (index
kept), `.ik.totals()` sums money exactly per currency and month (UTC), and only
`float=True` turns it into floats, for plotting."""),
    ("code", """monthly = central.invoices.ik.totals(by=("month", "currency"))
assert monthly["total"].dtype.pyarrow_dtype.scale == 2  # exact: decimal, never float
assert monthly["invoices"].sum() == len(central.invoices.ik.live())
(monthly.assign(month=monthly["month"].dt.strftime("%Y-%m"))
        .pivot(index="month", columns="currency", values="total"))"""),
    ("code", """plot = central.invoices.ik.totals(by=("month", "currency"), float=True)  # float sums: plotting only
ax = (plot.assign(month=plot["month"].dt.strftime("%m"))
          .pivot(index="month", columns="currency", values="total").div(1000)
          .plot.bar(figsize=(10, 3.5), width=0.85))
ax.set_ylabel("thousand (own currency)")
ax.set_title("Central set: invoiced per month, live invoices")
plt.tight_layout()"""),
    ("md", """## 4. Reconcile

`ik.reconcile(local, central)` gives every invoice a status. `device_a` records the base each
offline edit started from, so *ahead* versus *conflict* is an exact three-way decision. The
samples come with the truth (`situations.csv`: which sync situation each device invoice was
put in); statuses found (columns) against the truth (rows):"""),
    ("code", """rec = ik.reconcile(device_a, central)
found = situations[situations["device"] == "device_a"].merge(rec.status[["id", "status"]].astype(object), on="id")
crosstab = pd.crosstab(found["situation"], found["status"])
assert set(found.loc[found["situation"] == "synced", "status"]) == {"same"}
assert set(found.loc[found["situation"] == "new_offline", "status"]) == {"local_only"}
crosstab"""),
    ("code", """rec"""),
    ("md", """`rec.fields` has one row per differing field, with the base, local and central value and
which side changed it; line items are compared line by line."""),
    ("code", """example = rec.status.loc[rec.status["status"] == "conflict", "id"].iloc[0]
rec.fields[rec.fields["id"] == example]"""),
    ("md", """## 5. Resolve, and decide in `ConflictReview`

`three_way` takes every field changed on one side only from that side, accepts fields
changed alike on both, and leaves the rest for a decision. Nothing unresolved is written."""),
    ("code", """res = ik.resolve(rec, strategy="three_way")
assert len(res.unresolved) > 0
res"""),
    ("md", """The analyst decides in `ConflictReview`: one conflict at a time, base / local / central side
by side with the changes highlighted, a toggle per field, "whole invoice" and "take all"
buttons, a progress bar and keys. In JupyterLab you click (the interactive view is not
compared by the tests; its static view below is)."""),
    ("code", """from invoicekit.widgets import ConflictReview

review = ConflictReview(res)  # the Resolution keeps the Reconciliation it decided
review"""),
    ("md", """Every button and key is also a method, so a review can be scripted (or checked): the central
value for quantities and the local one for everything else, and one invoice taken whole
from the device (`field="*"`). `review.decisions` is the `(id, field, choice)` frame
`resolve` takes, and `review.apply()` re-resolves with it."""),
    ("code", """whole = res.unresolved["id"].iloc[-1]
for inv, field in res.unresolved[["id", "field"]].itertuples(index=False):
    if inv != whole:
        review.choose(inv, field, "central" if field.endswith(".quantity") else "local")
review.choose(whole, "*", "local")
decided, total = review.progress()
assert decided == total == res.unresolved["id"].nunique()
res = review.apply()
assert (res.actions["action"] == "unresolved").sum() == 0
assert res.actions.set_index("id").loc[whole, "winner"] == "local"
print(f"decided {decided} of {total} conflicts; left unresolved:", int((res.actions["action"] == "unresolved").sum()))
res.actions["action"].value_counts()"""),
    ("md", """## 6. Dry-run the plan

`plan_sync` is the dry run: every operation before anything is written, with its
deterministic op id, the central version it expects, the version it writes and the payload
checksum. Planning writes nothing to either store."""),
    ("code", """def state(where):
    s = ik.read_central(where, lines=False) if "://" in str(where) else ik.read_local(where, lines=False)
    return s.invoices[["id", "version", "checksum", "deleted_at"]].sort_values("id").reset_index(drop=True)


before = state(url), state(work / "device_a.sqlite")
plan = ik.plan_sync(res)
pd.testing.assert_frame_equal(state(url), before[0])
pd.testing.assert_frame_equal(state(work / "device_a.sqlite"), before[1])
plan"""),
    ("code", """plan.ops[["kind", "invoice_id", "status", "expected_central_version", "new_version"]].head(8)"""),
    ("md", """## 7. Apply, exactly once

`apply_sync` validates the pushes, writes them to the central store in batches
(compare-and-set on the version the plan expected), then acknowledges, pulls, flags and
quarantines on the device in one transaction. Both sides keep a ledger of op ids."""),
    ("code", """result = ik.apply_sync(plan, local=work / "device_a.sqlite", central=url, actor="notebook-01")
assert result.ok
result"""),
    ("md", """Running the same plan again changes nothing: every operation is in both ledgers already.
Reconciled afresh, every invoice of the device is the same on both sides; the rest is what
only the central store holds (other devices' invoices)."""),
    ("code", """again = ik.apply_sync(plan, local=work / "device_a.sqlite", central=url, actor="notebook-01")
assert set(again.results["central"]) <= {"already_applied", "not_needed"}
after = ik.reconcile(ik.read_local(work / "device_a.sqlite"), ik.read_central(url))
assert after.counts()["same"] == len(device_a) and not after.fields.size
print("second run:", again.results[["central", "local"]].value_counts().to_dict())
{k: v for k, v in after.counts().items() if v}"""),
    ("md", """The central store's append-only audit trail: who, which strategy, versions before and after,
one row per applied operation (the initial `write_central` has its own rows, left out)."""),
    ("code", """with sqlite3.connect(work / "central.sqlite") as conn:
    audit = pd.read_sql("SELECT actor, kind, strategy, before_version, after_version "
                        "FROM invoicekit_audit WHERE strategy <> 'write_central'", conn)
conn.close()
assert len(audit) == (result.results["central"] == "applied").sum()
(audit.assign(before_version=audit["before_version"].astype("Int64"))
      .groupby(["actor", "kind", "strategy", "before_version", "after_version"], dropna=False)
      .size().rename("operations").reset_index())"""),
    ("md", """## 8. A version that moved meanwhile is a conflict, never a lost update

Plan against `device_b`, then let someone change one of the planned invoices centrally before
the plan is applied: that push is refused and comes back as a conflict."""),
    ("code", """rec_b = ik.reconcile(device_b, ik.read_central(url))
plan_b = ik.plan_sync(ik.resolve(rec_b, strategy="last_write_wins"))
victim = plan_b.ops.loc[(plan_b.ops["kind"] == "push") & plan_b.ops["expected_central_version"].notna(),
                        "invoice_id"].iloc[0]
with sqlite3.connect(work / "central.sqlite") as conn:  # a concurrent central edit
    conn.execute("UPDATE invoices SET version = version + 1 WHERE id = ?", (victim,))
conn.close()
out = ik.apply_sync(plan_b, local=work / "device_b.sqlite", central=url, actor="notebook-01")
assert list(out.conflicts["invoice_id"]) == [victim] and not out.ok
out.summary()"""),
    ("md", """## 9. Every write is compare-and-set

Writing an old copy of the central set again (the sample set loaded at the top, before the
syncs) lowers no version, revives no deleted invoice and overwrites nothing: the
`WriteResult` counts each outcome and lists every refused row with its reason. Only
`force=True` overwrites, and the audit trail names it."""),
    ("code", """stale = ik.write_central(central_set, url)
assert stale.written == 0 and not stale.ok
print(stale.refused["reason"].value_counts().to_dict())
stale.summary()"""),
    ("md", """Notebook 02 finds and cleans up duplicate invoices, 03 renders PDFs, 04 follows a device
through a day offline. The temporary folder goes:"""),
    ("code", """shutil.rmtree(work)
assert not work.exists()"""),
]


def main() -> int:
    return execute(CELLS, TARGET)


if __name__ == "__main__":
    sys.exit(main())
