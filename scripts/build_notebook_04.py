"""Build and execute ``notebooks/04_duplicates_pdfs.ipynb`` (run from the repository root).

    .venv/bin/python scripts/build_notebook_04.py

The notebook is committed executed; ``make test`` re-runs it under nbval and compares the
outputs, so every printed value must be deterministic: sample data are seeded, ids and
clocks stay out of the outputs, and the cells whose output depends on the machine or on
the temporary folder (timings, the store's path in a result's header) are tagged
``nbval-ignore-output``; each of them is followed by a checked cell with the same facts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _notebooks import IGNORE, execute  # scripts/ is sys.path[0] when run

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "notebooks" / "04_duplicates_pdfs.ipynb"

CELLS: list[tuple[str, str, tuple[str, ...]]] = [
    ("md", """# 04 · Duplicate invoices, cleaned up reversibly; invoice PDFs in batches

Two jobs after the sync: find the invoices that were entered more than once (re-keyed on a
second device, imported twice, retyped from paper), remove the copies from the central store
with an audit trail, and be able to take that back; then render invoices to PDF, plain or as
Factur-X e-invoices.

Everything runs on the committed, seeded sample data against an embedded central store
(SQLite, in a temporary directory); point `url` at a `postgresql://` URL for the real thing,
the calls are the same.""", ()),
    ("code", """import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

import invoicekit as ik
from invoicekit.io.records import read_audit
from invoicekit.samples import SAMPLE_SELLER, read_jsonl

SAMPLES = Path("..") / "data" / "samples"
work = Path(tempfile.mkdtemp(prefix="invoicekit-04-"))
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
pd.DataFrame([accuracy(r) | {"lowest score": r.duplicates["score"].min().round(3)}
              | r.duplicates["action"].value_counts().to_dict() for r in (pairs, seed)]).fillna(0)""",
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
decision on are left out, so the weakest pair decided above does not come back. Its view is
new each run, so that cell's output is not compared; the scripted calls below are what the
buttons do.""", ()),
    ("code", """from invoicekit.widgets import DuplicateReview

review = DuplicateReview(pairs, store=url, invoices=invoices)
review""", (IGNORE,)),
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
resolution twice is one cleanup. The result's header names the store (a temporary path
here), so that cell is not compared by nbval; the next one checks the same facts.""", ()),
    ("code", """resolution = ik.resolve_duplicates(invoices, ik.cluster_duplicates(reviewed), keep="most_complete")
before = ik.read_central(url, lines=False).invoices.set_index("id")
applied = ik.apply_duplicates(resolution, store=url, actor="analyst@example")
applied""", (IGNORE,)),
    ("code", """during = ik.read_central(url, lines=False).invoices
print("cleanup id:", applied.cleanup_id, "| ok:", applied.ok, "| written:", applied.written)
print("live invoices:", int(before["deleted_at"].isna().sum()), "->", int(during["deleted_at"].isna().sum()))
again = ik.apply_duplicates(resolution, store=url, actor="analyst@example")
print("applying it again: same cleanup id", again.cleanup_id == applied.cleanup_id, dict(again.summary().values))
left = ik.find_duplicates(during, decisions=url, progress=False)
print("duplicates left among the live invoices:", len(left.duplicates),
      "| without the reviewer's decision:", len(ik.find_duplicates(during, progress=False).duplicates))
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
print("one audit detail:", json.loads(audit["detail"].iloc[0]))""", ()),
    ("md", """## 5. Invoice PDFs in batches

`ik.render_batch` renders the live invoices of a set (or those `where=` selects) from the
package's Jinja templates with WeasyPrint, one `<number>_<id>.pdf` each. The seller's details
are a setting, never hard-coded: `seller=` a mapping, else the JSON under the store's
`app_settings` key `seller` (the sample device `device_b` has none, so it is passed here).
Totals are recomputed exactly from the lines; an invoice whose stored total disagrees fails
alone, the batch goes on. The result shows timings, so that cell is not compared.""", ()),
    ("code", """device = ik.read_local(SAMPLES / "device_b.sqlite")
live = device.invoices[device.invoices["deleted_at"].isna()].sort_values("invoice_number")
chosen = live["invoice_number"].head(3).tolist()
print("seller:", SAMPLE_SELLER["name"], "|", SAMPLE_SELLER["vat_id"], "| invoices:", chosen)
pdf_dir = work / "pdf"
rendered = ik.render_batch(device, pdf_dir, where={"invoice_number": chosen}, seller=SAMPLE_SELLER,
                           workers=1, progress=False)
rendered""", (IGNORE,)),
    ("code", """def files(result):
    out = result.files.drop(columns=["path", "error"]).assign(file=result.files["path"].map(lambda p: Path(p).name))
    return out.assign(sha256=out["sha256"].str.slice(0, 16))


print(rendered.counts())
files(rendered)""", ()),
    ("md", """Run it again: every PDF is already there with a sidecar naming the invoice's checksum and
the template, so nothing is rendered and an interrupted batch resumes where it stopped.""", ()),
    ("code", """rerun = ik.render_batch(device, pdf_dir, where={"invoice_number": chosen}, seller=SAMPLE_SELLER,
                        workers=1, progress=False)
print(rerun.counts())
print("all skipped:", bool(rerun.files["skipped"].all()),
      "| same files:", rerun.files["sha256"].equals(rendered.files["sha256"]))""",
     ()),
    ("md", """The renderer promises deterministic output: dates and metadata come from the invoice, not the
clock, so the same invoice and template give the same bytes. Rendered afresh into another
folder, and once more one at a time with `ik.render_pdf`:""", ()),
    ("code", """fresh = ik.render_batch(device, work / "pdf-again", where={"invoice_number": chosen},
                        seller=SAMPLE_SELLER, workers=1, progress=False)
single = [hashlib.sha256(ik.render_pdf(device, i, seller=SAMPLE_SELLER)).hexdigest() for i in rendered.files["id"]]
on_disk = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in rendered.files["path"]]
identical = list(fresh.files["sha256"]) == on_disk == single == list(rendered.files["sha256"])
print("rendered afresh:", fresh.counts()["rendered"], "| byte-identical PDFs across renders:", identical)
for number, digest in zip(rendered.files["invoice_number"], on_disk):
    print(f"  {number}  sha256 {digest}")""", ()),
    ("md", """## 6. Factur-X

`einvoice="factur-x"` makes a PDF/A-3b with the invoice's CII XML (EN 16931 profile)
embedded. Reading it back with the `factur-x` package: the XML is there, at the EN 16931
level, and valid against the official XSD.""", ()),
    ("code", """import facturx
from lxml import etree

xinv = ik.render_batch(device, work / "factur-x", where={"invoice_number": chosen[:1]}, seller=SAMPLE_SELLER,
                       einvoice="factur-x", workers=1, progress=False)
print(xinv.counts())
pdf = Path(xinv.files["path"].iloc[0]).read_bytes()
name, xml = facturx.get_xml_from_pdf(pdf, check_xsd=False)
level = facturx.get_level(etree.fromstring(xml))
print(f"embedded {name} ({len(xml):,} bytes), level {level}, valid against the XSD:",
      facturx.xml_check_xsd(xml, flavor="factur-x", level=level))
print("sha256", hashlib.sha256(pdf).hexdigest(), "| same bytes on a second render:",
      hashlib.sha256(ik.render_pdf(device, xinv.files["id"].iloc[0], seller=SAMPLE_SELLER,
                                   einvoice="factur-x")).hexdigest() == hashlib.sha256(pdf).hexdigest())""", ()),
    ("md", """`RenderBatch` puts this in a widget: template, locale and Factur-X pickers, a preview of page
1, a run button with a progress bar, and the results table; `.run()` returns the same
`RenderResult`.""", ()),
    ("code", """from invoicekit.widgets import RenderBatch

three = device.with_invoices(device.invoices[device.invoices["invoice_number"].isin(chosen)].reset_index(drop=True))
batch = RenderBatch(three, work / "pdf-widget", seller=SAMPLE_SELLER)
batch""", (IGNORE,)),
    ("code", """print("templates:", list(ik.render.TEMPLATES))
done = batch.run()  # what the run button does
print(done.counts())
assert done.counts()["rendered"] == len(chosen) and done.files["ok"].all()""", ()),
    ("md", """## 7. What page 1 looks like

Page 1 of the first PDF, converted with poppler's `pdftoppm` at 60 dpi:""", ()),
    ("code", """png = work / "page"
subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", rendered.files["path"].iloc[0], str(png)],
               check=True)
(page_1,) = work.glob("page*.png")
display(Image(data=page_1.read_bytes()))""", ()),
    ("code", """shutil.rmtree(work)  # the temporary central store and PDFs""", ()),
]


def main() -> int:
    return execute(CELLS, TARGET)


if __name__ == "__main__":
    sys.exit(main())
