"""Build and execute ``notebooks/03_pdf_batch.ipynb`` (run from the repository root).

    .venv/bin/python scripts/build_notebook_03.py

The notebook is committed executed; ``make test`` re-runs it under nbval and compares the
outputs, so every printed value must be deterministic: the sample data are seeded and the
renderer's bytes depend only on the invoice, the template and the options. What legitimately
changes between runs (the temporary folder's path, a batch's seconds and invoices per
second, the progress bar's timings) is rewritten by ``notebooks/nbval_sanitize.cfg`` before
the comparison. The key results are asserted in the cells, and the temporary folder is
removed by the last cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _notebooks import execute  # scripts/ is sys.path[0] when run

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "notebooks" / "03_pdf_batch.ipynb"

CELLS: list[tuple[str, str]] = [
    ("md", """# 03 · Invoice PDFs in batches: template, locale, preview, failures, e-invoices

`ik.render_batch` renders the live invoices of a set (or those `where=` selects) from the
package's Jinja templates with WeasyPrint, one `<number>_<id>.pdf` each, plain or as Factur-X
e-invoices; `RenderBatch` puts the same in a widget. This notebook chooses a template and a
locale, previews page 1, renders a batch with a progress bar, looks at the invoices that
failed, and makes an e-invoice.

The seller's details are a setting, never hard-coded: `seller=` a mapping, else the JSON
under the store's `app_settings` key `seller` (the sample device `device_b` has none, so it
is passed here). The PDFs go to a temporary folder, removed at the end."""),
    ("code", """import hashlib
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

import invoicekit as ik
from invoicekit.samples import SAMPLE_SELLER
from invoicekit.widgets import RenderBatch

pd.set_option("display.max_colwidth", 100)
SAMPLES = Path("../data/samples") if Path("../data/samples").exists() else Path("data/samples")
work = Path(tempfile.mkdtemp(prefix="invoicekit-03-"))
device = ik.read_local(SAMPLES / "device_b.sqlite")
live = device.invoices[device.invoices["deleted_at"].isna()].sort_values("invoice_number")
chosen = live["invoice_number"].head(3).tolist()
print("seller:", SAMPLE_SELLER["name"], "|", SAMPLE_SELLER["vat_id"], "| invoices:", chosen)
print("templates:", list(ik.render.TEMPLATES))"""),
    ("md", """## 1. Choose the template and the locale, preview page 1

`RenderBatch` has pickers for the template (the shipped `invoice`, `invoice_multipage` and
`credit_note`, or the path of your own `.html`), the locale (dates, numbers and money are
formatted with Babel) and the output (a plain PDF or a Factur-X e-invoice), a preview of page
1 of the picked invoice, a run button with a progress bar, and the results. The starting
choices are arguments; here German formatting. The tests compare the widget's static view
(its interactive view is new every run)."""),
    ("code", """inv = device.invoices
three = device.with_invoices(inv[inv["invoice_number"].isin(chosen)].reset_index(drop=True))
batch = RenderBatch(three, work / "pdf-widget", seller=SAMPLE_SELLER, template="invoice", locale="de_DE")
assert batch.options == {"template": "invoice", "locale": "de_DE", "einvoice": None}
batch"""),
    ("md", """The preview button renders the picked invoice with the current choices and shows page 1
(rasterised by poppler's `pdftoppm`); `batch.preview()` does the same from code and returns
the PNG."""),
    ("code", """png = batch.preview()
assert png.startswith(b"\\x89PNG")
display(Image(data=png, width=420))"""),
    ("md", """## 2. Render a batch, with a progress bar

The chosen invoices plus the two rows that rotted in the field on this device (the
`damaged` rows of `situations.csv`). `progress=True` shows a bar (a widget in Jupyter, text
in a terminal; by default only batches of 100,000 invoices or more show one). Totals are
recomputed exactly from the lines: an invoice that cannot be rendered faithfully fails
alone, and the batch goes on. The result shows its counts, the failures first, the files and
a thumbnail of page 1."""),
    ("code", """situations = pd.read_csv(SAMPLES / "situations.csv")
damaged_ids = situations.loc[(situations["device"] == "device_b") & (situations["situation"] == "damaged"), "id"]
damaged = sorted(live.loc[live["id"].isin(damaged_ids), "invoice_number"])
pdf_dir = work / "pdf"
rendered = ik.render_batch(device, pdf_dir, where={"invoice_number": chosen + damaged}, seller=SAMPLE_SELLER,
                           locale="de_DE", workers=1, progress=True)
assert rendered.counts()["rendered"] == len(chosen) and rendered.counts()["failed"] == len(damaged) == 2
rendered"""),
    ("code", """def files(result):
    out = result.files.drop(columns=["path", "error"]).assign(file=result.files["path"].map(
        lambda p: Path(p).name if isinstance(p, str) else None))
    return out.assign(sha256=out["sha256"].str.slice(0, 16))


print(rendered.counts())
files(rendered)"""),
    ("md", """## 3. Inspect the failures

`result.failures` lists each failed invoice with the reason. One stored total is 10.00 more
than the sum of its lines; the other's `line_items` JSON is cut short, so no line could be
parsed and its lines sum to 0.00. Neither gets a PDF, and the rest of the batch is not held
up."""),
    ("code", """failures = rendered.failures
assert sorted(failures["invoice_number"]) == damaged
assert sorted(p.name.split("_")[0] for p in pdf_dir.glob("*.pdf")) == chosen  # no PDF for a failure
failures"""),
    ("md", """Once someone has looked at them, such invoices can still be rendered on purpose with
`allow_mismatch=True`: the PDF then shows the totals recomputed from the lines it could read
(`invoicekit render --allow-mismatch` on the command line)."""),
    ("code", """forced = ik.render_batch(device, work / "pdf-forced", where={"invoice_number": damaged},
                         seller=SAMPLE_SELLER, locale="de_DE", workers=1, progress=False, allow_mismatch=True)
assert forced.ok and forced.counts()["rendered"] == 2
forced.files[["invoice_number", "ok", "pages", "error"]]"""),
    ("md", """## 4. Resumable and deterministic

Run it again: every PDF is already there with a sidecar naming the invoice's checksum, the
template and the options, so nothing is rendered again (an interrupted batch resumes where it
stopped) and the failures are tried again."""),
    ("code", """rerun = ik.render_batch(device, pdf_dir, where={"invoice_number": chosen + damaged},
                        seller=SAMPLE_SELLER, locale="de_DE", workers=1, progress=False)
ok = rerun.files["ok"]
assert rerun.files.loc[ok, "skipped"].all() and rerun.counts()["failed"] == 2
assert rerun.files.loc[ok, "sha256"].tolist() == rendered.files.loc[rendered.files["ok"], "sha256"].tolist()
print(rerun.counts())"""),
    ("md", """Dates and metadata come from the invoice, not the clock, so the same invoice, template and
options give the same bytes: rendered afresh into another folder, and one at a time with
`ik.render_pdf`."""),
    ("code", """good = rendered.files[rendered.files["ok"]]
fresh = ik.render_batch(device, work / "pdf-again", where={"invoice_number": chosen}, seller=SAMPLE_SELLER,
                        locale="de_DE", workers=1, progress=False)
single = [hashlib.sha256(ik.render_pdf(device, i, seller=SAMPLE_SELLER, locale="de_DE")).hexdigest()
          for i in good["id"]]
on_disk = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in good["path"]]
assert list(fresh.files["sha256"]) == on_disk == single == list(good["sha256"])
for number, digest in zip(good["invoice_number"], on_disk):
    print(f"{number}  sha256 {digest}")"""),
    ("md", """## 5. E-invoices: Factur-X

`einvoice="factur-x"` makes a PDF/A-3b with the invoice's CII XML (EN 16931 profile)
embedded. Read back with the `factur-x` package: the XML is there, at the EN 16931 level,
and valid against the official XSD."""),
    ("code", """import facturx
from lxml import etree

xinv = ik.render_batch(device, work / "factur-x", where={"invoice_number": chosen[:1]}, seller=SAMPLE_SELLER,
                       einvoice="factur-x", workers=1, progress=False)
pdf = Path(xinv.files["path"].iloc[0]).read_bytes()
name, xml = facturx.get_xml_from_pdf(pdf, check_xsd=False)
level = facturx.get_level(etree.fromstring(xml))
assert xinv.ok and facturx.xml_check_xsd(xml, flavor="factur-x", level=level)
print(f"embedded {name} ({len(xml):,} bytes), level {level}, valid against the XSD")
root = etree.fromstring(xml)
ns = {"ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}
print("seller:", root.findtext(".//ram:SellerTradeParty/ram:Name", namespaces=ns),
      "| grand total:", root.findtext(".//ram:GrandTotalAmount", namespaces=ns))"""),
    ("md", """## 6. The whole batch from the widget

The widget's run button renders every live invoice of its set with the current choices, step
by step, moving the bar; `batch.run()` does the same from code and returns the same
`RenderResult`, which the widget then shows."""),
    ("code", """done = batch.run()  # what the run button does
assert done.counts()["rendered"] == len(chosen) and done.ok
batch"""),
    ("code", """shutil.rmtree(work)  # the temporary PDFs
assert not work.exists()"""),
]


def main() -> int:
    return execute(CELLS, TARGET)


if __name__ == "__main__":
    sys.exit(main())
