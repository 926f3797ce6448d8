"""Build and execute ``notebooks/02_duplicates.ipynb`` (run from the repository root).

    .venv/bin/python scripts/build_notebook_02.py

The notebook is committed executed; ``make test`` re-runs it under nbval and compares the
outputs, so every printed value must be deterministic: the sample data are seeded, the
cleanup id is derived from what it removes, and what legitimately changes between runs (the
temporary folder's path in a result's header) is rewritten by
``notebooks/nbval_sanitize.cfg`` before the comparison. The key results are asserted in the
cells, and the temporary folder is removed by the last cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _notebooks import execute  # scripts/ is sys.path[0] when run

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "notebooks" / "02_duplicates.ipynb"

CELLS: list[tuple[str, str, tuple[str, ...]]] = [
    ("md", """# 02 · Duplicate invoices: find, explore, review, clean up reversibly

After the sync: find the invoices that were entered more than once (re-keyed on a second
device, imported twice, retyped from paper), explore their scores and reasons, review the
clusters, remove the copies from the central store with an audit trail, and take that back.

Everything runs on the committed, seeded sample data against an embedded central store
(SQLite, in a temporary directory); point `url` at a `postgresql://` URL for the real thing,
the calls are the same.""", ()),
    ("code", """import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd

import invoicekit as ik
from invoicekit.io.records import read_audit
from invoicekit.samples import read_jsonl

SAMPLES = Path("../data/samples") if Path("../data/samples").exists() else Path("data/samples")
work = Path(tempfile.mkdtemp(prefix="invoicekit-02-"))
url = "sqlite:///" + (work / "central.sqlite").as_posix()
print("schema version:", ik.init_db(url))
ik.write_central(read_jsonl(SAMPLES / "central.jsonl"), url).summary()""", ()),
    ("md", """## 1. Find the duplicates

`ik.find_duplicates` never builds an N×N matrix: several blocking rules (tax id, normalised
client name, normalised invoice number, amount within a date window, a sorted neighbourhood)
propose candidate pairs, and every candidate is compared field by field over whole arrays.
Tombstones are ignored. The result shows itself: counts by action, a score histogram and the
pairs, best first.""", ()),
    ("code", """invoices = ik.read_central(url)
pairs = ik.find_duplicates(invoices, progress=False)
print(f"{len(invoices):,} invoices in the store ({int(invoices.invoices['deleted_at'].isna().sum())} live):",
      pairs.stats)
pairs""", ()),
    ("md", """Each pair has one similarity per field (`sim_<field>`, 0–1), a `score`, the decision
`is_duplicate` at the preset's fixed threshold, an `action` and a `reason` a person reads.
`action` is `skip` for a plain re-entry (number, total, client name and lines all agree: drop
the copy), `merge` when the copies differ (merge fields into the survivor), `review` below the
threshold. The samples come with the truth (`duplicates.csv`: which invoice is a copy of which,
and how the copy was made); one pair of each kind:""", ()),
    ("code", """truth = pd.read_csv(SAMPLES / "duplicates.csv")
truth[["id_a", "id_b"]] = pd.DataFrame(sorted(p) for p in zip(truth["id"], truth["duplicate_of"]))
found = pairs.pairs.astype({"id_a": str, "id_b": str}).merge(truth[["id_a", "id_b", "kind"]], how="left")
pd.set_option("display.max_colwidth", 120)
one_of_each = found.sort_values(["kind", "score"]).drop_duplicates("kind")
one_of_each[["kind", "sim_client_name", "sim_invoice_number", "score", "action", "reason"]]""", ()),
    ("md", """Pairwise precision and recall against the truth, for the default `invoice` preset and for
`preset="seed"`, the design's weighted similarity (invoice number 0.3, total 0.25, client 0.25,
date 0.2; duplicate from 0.85). On this small sample both are right; the seed preset's scores
sit much closer to its threshold, and it calls fewer pairs plain re-entries. The harder,
adversarial data (subscriptions, shared numbers, lost tax ids) are in
`benchmarks/dedupe_bench.py`.""", ()),
    ("code", """TRUE_PAIRS = set(zip(truth["id_a"], truth["id_b"]))


def accuracy(result):
    found = set(zip(result.duplicates["id_a"].astype(str), result.duplicates["id_b"].astype(str)))
    hits = len(found & TRUE_PAIRS)
    precision, recall = hits / max(len(found), 1), hits / len(TRUE_PAIRS)
    return {"preset": result.preset, "threshold": result.threshold, "duplicates": len(found),
            "precision": round(precision, 3), "recall": round(recall, 3),
            "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 3)}


seed = ik.find_duplicates(invoices, preset="seed", progress=False)
scores = pd.DataFrame([accuracy(r) | {"lowest score": r.duplicates["score"].min().round(3)}
                       | r.duplicates["action"].value_counts().to_dict() for r in (pairs, seed)]).fillna(0)
assert (scores["f1"] == 1.0).all()  # both presets find exactly the true pairs here
scores""",
     ()),
    ("md", """## 2. Cluster, choose the survivors

`cluster_duplicates` groups the duplicate pairs into entries of the same invoice. The cluster
id is the smallest member id, so it is the same on every run and in every row order; a weak
link cannot chain unrelated invoices (lone weak bridges are cut, oversized groups left out).
`resolve_duplicates(..., keep="most_complete")` keeps, per cluster, the entry with the most
filled client, number and line fields (then the earliest). Nothing is written yet.""", ()),
    ("code", """clusters = ik.cluster_duplicates(pairs)
print("clusters by size:", clusters.summary().to_dict("records"), "|", clusters.summary().attrs)
resolution = ik.resolve_duplicates(invoices, clusters, keep="most_complete")
print(repr(resolution))
resolution.summary()""", ()),
    ("md", """`invoices left` counts the whole set minus the removed entries, tombstones included; the live
invoices left are fewer. What survives, for the first clusters: each removed entry next to
its survivor.""", ()),
    ("code", """print("live invoices left:", int(resolution.invoices["deleted_at"].isna().sum()))
fields = ["id", "invoice_number", "client_name", "client_email", "total", "created_at"]
inv = invoices.invoices[fields].astype({"id": str})
shown = (resolution.removed.astype({"id": str, "survivor_id": str}).head(4)[["id", "survivor_id", "score"]]
         .merge(inv, on="id").merge(inv, left_on="survivor_id", right_on="id", suffixes=("_removed", "_kept")))
shown[["score", "invoice_number_removed", "invoice_number_kept", "client_name_removed", "client_name_kept",
       "created_at_removed", "created_at_kept"]]""", ()),
    ("md", """## 3. A reviewer's decision

A reviewer looks at the weakest pair and decides the two invoices are *not* the same.
`ik.record_decisions` keeps that in the store (the latest decision on a pair wins), and
`find_duplicates(..., decisions=store)` respects it on every later run: the pair is no
longer a duplicate, and its reason names the reviewer.""", ()),
    ("code", """weakest = pairs.duplicates.sort_values(["score", "id_a"]).iloc[0]
recorded = ik.record_decisions(url, [(weakest["id_a"], weakest["id_b"], False)], actor="reviewer@example")
print("stored:", recorded.drop(columns="at").to_dict("records"))
reviewed = ik.find_duplicates(invoices, decisions=url, progress=False)
print(repr(reviewed), "| decisions applied:", reviewed.stats["decisions"])
row = reviewed.pairs.set_index(["id_a", "id_b"]).loc[(weakest["id_a"], weakest["id_b"])]
print("is_duplicate:", bool(row["is_duplicate"]), "| action:", row["action"])
print("reason:", row["reason"])""", ()),
    ("md", """In a notebook the reviewer does this in `DuplicateReview`: pair (or cluster) cards with
the differing fields highlighted, "same" / "not the same" / "skip for now" buttons and keys,
and `save()`, which records the answers in the store. Pairs the store already holds a
decision on are left out, so the weakest pair decided above does not come back. The tests
compare its static view (the interactive one is new each run); the scripted calls below are
what the buttons do.""", ()),
    ("code", """from invoicekit.widgets import DuplicateReview

review = DuplicateReview(pairs, store=url, invoices=invoices)
review""", ()),
    ("code", """assert review.left_out == 1  # the pair decided above is not asked again
first = review.pairs.iloc[0]
review.mark(first["id_a"], first["id_b"], True)  # "same"
print("answers:", len(review.decisions), "| left out (already decided):", review.left_out)
saved = review.save()
print("saved:", len(saved), "| saving again writes:", len(review.save()))""", ()),
    ("md", """Note that `action` says `skip` both for a plain re-entry and for a pair marked not the same;
`is_duplicate` is what tells them apart, and what clustering uses.

## 4. Apply the cleanup to the store, then undo it

`ik.apply_duplicates` turns every removed entry into a tombstone (version + 1, content kept)
through the compare-and-set write path, in one transaction, with an audit row each (who,
survivor, score). The cleanup id is derived from what it removes, so applying the same
resolution twice is one cleanup.""", ()),
    ("code", """resolution = ik.resolve_duplicates(invoices, ik.cluster_duplicates(reviewed), keep="most_complete")
before = ik.read_central(url, lines=False).invoices.set_index("id")
applied = ik.apply_duplicates(resolution, store=url, actor="analyst@example")
applied""", ()),
    ("code", """during = ik.read_central(url, lines=False).invoices
print("cleanup id:", applied.cleanup_id, "| ok:", applied.ok, "| written:", applied.written)
print("live invoices:", int(before["deleted_at"].isna().sum()), "->", int(during["deleted_at"].isna().sum()))
again = ik.apply_duplicates(resolution, store=url, actor="analyst@example")
print("applying it again: same cleanup id", again.cleanup_id == applied.cleanup_id, dict(again.summary().values))
left = ik.find_duplicates(during, decisions=url, progress=False)
print("duplicates left among the live invoices:", len(left.duplicates),
      "| without the reviewer's decision:", len(ik.find_duplicates(during, progress=False).duplicates))
assert applied.ok and again.cleanup_id == applied.cleanup_id and again.count("removed") == 0
assert left.duplicates.empty
applied.removed.head()""", ()),
    ("md", """`ik.undo_duplicates(store, cleanup_id)` brings the entries back through the write path's one
door out of a tombstone: content as before, one version more, audited as `undelete` under the
same cleanup id.""", ()),
    ("code", """undone = ik.undo_duplicates(url, applied.cleanup_id, actor="analyst@example")
print(undone.action, undone.cleanup_id, "| ok:", undone.ok, dict(undone.summary().values))
after = ik.read_central(url, lines=False).invoices.set_index("id").loc[before.index]
print("live invoices after the undo:", int(after["deleted_at"].isna().sum()))
print("every checksum as before:", bool((after["checksum"] == before["checksum"]).all()),
      f"({len(after)} invoices)")
moved = after["version"] - before["version"]
print("versions:", moved.value_counts().sort_index().rename("invoices").to_dict(),
      "(the cleaned entries went up twice: tombstone, then undelete)")
audit = read_audit(url, op_id=applied.cleanup_id)
print("audit trail of the cleanup:", audit.groupby(["kind", "actor"]).size().rename("rows").to_dict())
print("one audit detail:", json.loads(audit["detail"].iloc[0]))
assert undone.ok and (after["checksum"] == before["checksum"]).all()
assert after["deleted_at"].isna().sum() == before["deleted_at"].isna().sum()""", ()),
    ("md", """Notebook 03 renders invoice PDFs. The temporary folder goes:""", ()),
    ("code", """shutil.rmtree(work)  # the temporary central store
assert not work.exists()""", ()),
]


def main() -> int:
    return execute(CELLS, TARGET)


if __name__ == "__main__":
    sys.exit(main())
