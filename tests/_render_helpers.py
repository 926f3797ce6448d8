"""Shared helpers of the render tests: small invoice sets built by hand, PDF read-back."""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import pytest

from invoicekit.samples import make_invoices
from invoicekit.schema import InvoiceSet

SELLER = {"name": "Nordlicht Rechnungsbüro GmbH", "address": "Hauptstraße 5, 10115 Berlin", "country": "DE",
          "vat_id": "DE123456789", "iban": "DE89 3704 0044 0532 0130 00", "email": "billing@nordlicht.example"}
SELLER_NO_IBAN = {k: v for k, v in SELLER.items() if k != "iban"}

needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")


def invoice_set(specs: list[dict]) -> InvoiceSet:
    """An InvoiceSet with one invoice per spec: keys ``id``, ``number``, ``client`` (name),
    ``lines`` [(description, quantity, unit_price)], optional ``currency``, ``total``,
    ``address``, ``email``, ``tax_id``, ``rates`` (per line, percent), ``client_extra`` (more
    keys of the stored client JSON, e.g. ``{"country": "AT"}``)."""
    base = make_invoices(1).invoices.iloc[[0]]
    rows, lines = [], []
    for spec in specs:
        row = base.iloc[0].to_dict()
        items, total = [], Decimal("0.00")
        for no, (desc, qty, price) in enumerate(spec["lines"], 1):
            q, p = Decimal(str(qty)), Decimal(str(price))
            lt = (q * p).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            total += lt
            lines.append({"invoice_id": spec["id"], "line_no": no, "description": desc, "quantity": q,
                          "unit_price": p, "line_total": lt})
            item = {"description": desc, "quantity": float(q), "unit_price": float(p)}
            if spec.get("rates"):
                item["tax_rate"] = spec["rates"][no - 1]
            items.append(item)
        client = {"name": spec["client"], "email": spec.get("email", "ap@client.example"),
                  "address": spec.get("address", "1 Client Road, Dublin"), "tax_id": spec.get("tax_id", "IE1234567T")}
        stored = {**client, **spec.get("client_extra", {})}
        row.update(id=spec["id"], invoice_number=spec["number"], client_name=client["name"],
                   client_email=client["email"], client_address=client["address"], client_tax_id=client["tax_id"],
                   client_data=json.dumps(stored), line_items=json.dumps(items),
                   currency=spec.get("currency", "EUR"), total=spec.get("total", total),
                   checksum=spec.get("checksum", f"sum-{spec['id']}-{total}"), source=spec.get("source", "test"))
        rows.append(row)
    return InvoiceSet.from_frames(pd.DataFrame(rows), pd.DataFrame(lines))


def pdf_text(path_or_bytes, tmp_path, *, first: int | None = None, last: int | None = None) -> str:
    """pdftotext of a PDF (bytes or path), optionally of a page range."""
    path = path_or_bytes
    if isinstance(path_or_bytes, bytes):
        path = tmp_path / "read.pdf"
        path.write_bytes(path_or_bytes)
    cmd = ["pdftotext", "-layout"]
    if first:
        cmd += ["-f", str(first)]
    if last:
        cmd += ["-l", str(last)]
    return subprocess.run([*cmd, str(path), "-"], check=True, capture_output=True, text=True).stdout


def ink_fraction(pdf: bytes, tmp_path, page: int = 1) -> float:
    """The share of non-white pixels of ``page`` rendered at 20 dpi in grey (pdftoppm)."""
    src = tmp_path / "ink.pdf"
    src.write_bytes(pdf)
    out = subprocess.run(["pdftoppm", "-r", "20", "-gray", "-f", str(page), "-l", str(page), str(src)],
                         check=True, capture_output=True).stdout
    # binary PGM: "P5\n<w> <h>\n255\n" then one byte per pixel
    header, _, rest = out.partition(b"\n255\n")
    w, h = map(int, header.split()[1:3])
    pixels = rest[: w * h]
    return sum(1 for b in pixels if b < 200) / len(pixels)


def page_count(pdf: bytes) -> int:
    """Pages of a PDF (pypdf)."""
    import io

    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(pdf)).pages)
