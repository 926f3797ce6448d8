"""invoicekit.render: real WeasyPrint, PDFs read back with poppler and pypdf."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from decimal import Decimal

import pytest

pytest.importorskip("weasyprint")

from invoicekit.errors import RenderError, UsageError  # noqa: E402
from invoicekit.render import RenderResult, render_batch, render_pdf  # noqa: E402
from tests._render_helpers import (  # noqa: E402
    SELLER,
    SELLER_NO_IBAN,
    ink_fraction,
    invoice_set,
    needs_poppler,
    page_count,
    pdf_text,
)

pytestmark = needs_poppler

UMLAUT_CJK = {"id": "inv-cjk", "number": "R-2026-0042", "client": "Jürgen Müller Großhandel GmbH",
              "address": "Königstraße 7, 70173 Stuttgart",
              "lines": [("Beratung für Änderungen", 3, "120.50"), ("東京オフィスの設置 测试", 1, "999.99")]}


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def cjk_pdf():
    return render_pdf(invoice_set([UMLAUT_CJK]), "inv-cjk", seller=SELLER_NO_IBAN, locale="de_DE")


def test_pdf_has_client_number_totals_umlauts_and_cjk(cjk_pdf, tmp_path):
    text = pdf_text(cjk_pdf, tmp_path)
    assert "Jürgen Müller Großhandel GmbH" in text
    assert "R-2026-0042" in text
    assert "Beratung für Änderungen" in text
    assert "東京オフィスの設置 测试" in text
    assert "1.361,49 €" in text  # 3 x 120.50 + 999.99, German formatting with the euro sign
    assert "Nordlicht Rechnungsbüro GmbH" in text


def test_page_one_is_not_blank(cjk_pdf, tmp_path):
    assert cjk_pdf.startswith(b"%PDF-")
    assert page_count(cjk_pdf) == 1
    assert ink_fraction(cjk_pdf, tmp_path) > 0.01


def test_locale_and_currency_formatting(tmp_path):
    s = invoice_set([
        {"id": "a", "number": "A-1", "client": "Ann", "currency": "JPY", "lines": [("Item", 2, "1500")]},
        {"id": "b", "number": "B-1", "client": "Bob", "currency": "CHF", "lines": [("Item", 1, "1234.5")]}])
    assert "¥3,000" in pdf_text(render_pdf(s, "a", seller=SELLER_NO_IBAN, locale="en_US"), tmp_path)
    assert "CHF 1'234.50" in pdf_text(render_pdf(s, "b", seller=SELLER_NO_IBAN, locale="de_CH"), tmp_path)


def test_tax_lines_per_rate(tmp_path):
    s = invoice_set([{"id": "t", "number": "T-1", "client": "Tax Co", "rates": [19, 7, 19],
                      "lines": [("Service", 1, "100.00"), ("Book", 2, "10.00"), ("Support", 1, "50.00")]}])
    text = pdf_text(render_pdf(s, "t", seller=SELLER_NO_IBAN, locale="en_GB"), tmp_path)
    assert "Net total €170.00" in text
    assert "Tax 7% on €20.00: €1.40" in text
    assert "Tax 19% on €150.00: €28.50" in text
    assert "Total due €199.90" in text


def test_forty_lines_repeat_the_header_on_page_two(tmp_path):
    lines = [(f"Position number {i}", 1, "10.00") for i in range(1, 41)]
    s = invoice_set([{"id": "long", "number": "L-40", "client": "Long Ltd", "lines": lines}])
    pdf = render_pdf(s, "long", template="invoice_multipage", seller=SELLER_NO_IBAN)
    pages = page_count(pdf)
    assert pages >= 2
    page2 = pdf_text(pdf, tmp_path, first=2, last=2)
    assert "DESCRIPTION" in page2 and "UNIT PRICE" in page2
    assert f"Page 2 of {pages}" in page2
    assert "Position number 40" in pdf_text(pdf, tmp_path)


def test_labels_follow_the_locale_language(tmp_path):
    s = invoice_set([{"id": "t", "number": "T-1", "client": "Steuer GmbH", "rates": [19, 7],
                      "lines": [("Beratung", 1, "100.00"), ("Buch", 2, "10.00")]}])
    de = pdf_text(render_pdf(s, "t", seller=SELLER_NO_IBAN, locale="de_DE"), tmp_path)
    assert "Rechnung" in de and "RECHNUNG AN" in de and "BESCHREIBUNG" in de and "Nettobetrag" in de
    assert "Zu zahlen" in de and "USt 19" in de and "Total due" not in de
    fr = pdf_text(render_pdf(s, "t", seller=SELLER_NO_IBAN, locale="fr_FR"), tmp_path)
    assert "Facture" in fr and "Total à payer" in fr and "Total HT" in fr
    other = pdf_text(render_pdf(s, "t", seller=SELLER_NO_IBAN, locale="ja_JP"), tmp_path)
    assert "Invoice" in other and "Total due" in other  # a language without labels prints English
    lines = [(f"Position {i}", 1, "10.00") for i in range(1, 41)]
    long = invoice_set([{"id": "long", "number": "L-40", "client": "Lang AG", "lines": lines}])
    pdf = render_pdf(long, "long", template="invoice_multipage", seller=SELLER_NO_IBAN, locale="de_DE")
    assert f"Seite 2 von {page_count(pdf)}" in pdf_text(pdf, tmp_path, first=2, last=2)
    note = pdf_text(render_pdf(invoice_set([{"id": "cn", "number": "CN-1", "client": "X",
                                             "lines": [("Retoure", 1, "-5.00")]}]),
                               "cn", template="credit_note", seller=SELLER_NO_IBAN, locale="de_DE"), tmp_path)
    assert "Gutschrift" in note and "Gutgeschrieben" in note


def test_credit_note_template(tmp_path):
    s = invoice_set([{"id": "cn", "number": "CN-7", "client": "Refund AG", "lines": [("Returned goods", 1, "-49.90")]}])
    text = pdf_text(render_pdf(s, "cn", template="credit_note", seller=SELLER_NO_IBAN), tmp_path)
    assert "Credit note" in text and "Total credited" in text and "-€49.90" in text


def test_render_pdf_is_byte_identical_twice():
    s = invoice_set([UMLAUT_CJK])
    assert render_pdf(s, "inv-cjk", seller=SELLER) == render_pdf(s, "inv-cjk", seller=SELLER)


def _five():
    return invoice_set([{"id": f"id-{i}", "number": f"N-{i}", "client": f"Client {i}",
                         "lines": [("Work", i, "12.34"), ("More work", 1, "5.00")]} for i in range(1, 6)])


def test_batch_files_result_and_determinism(tmp_path):
    s = _five()
    a = render_batch(s, tmp_path / "a", seller=SELLER, workers=1)
    with ProcessPoolExecutor(2) as pool:  # worker processes: the same bytes
        b = render_batch(s, tmp_path / "b", seller=SELLER, executor=pool)
    assert isinstance(a, RenderResult) and a.ok and b.ok
    assert list(a.files.columns[:8]) == ["id", "invoice_number", "path", "pages", "bytes", "sha256", "ok", "skipped"]
    assert a.counts()["rendered"] == 5 and a.counts()["failed"] == 0
    for pa_, pb in zip(sorted(os.listdir(tmp_path / "a")), sorted(os.listdir(tmp_path / "b"))):
        assert pa_ == pb
        assert _sha(tmp_path / "a" / pa_) == _sha(tmp_path / "b" / pb)
    row = a.files.iloc[0]
    assert _sha(row["path"]) == row["sha256"] and os.path.getsize(row["path"]) == row["bytes"]
    assert "RenderResult" in a._repr_html_() and len(a.summary()) == 1


def test_a_pdf_does_not_depend_on_the_invoices_laid_out_beside_it(tmp_path):
    s = _five()  # the batch lays the five out in one document and splits it
    res = render_batch(s, tmp_path, seller=SELLER, workers=1)
    for row in res.files.itertuples():
        alone = render_pdf(s, row.id, seller=SELLER)  # a document of its own
        assert hashlib.sha256(alone).hexdigest() == row.sha256 == _sha(row.path)


def test_default_template_markup_stays_lean():
    """The shipped one-page template emits one block per printed line (no <br>, no
    inline runs, no inline styles): WeasyPrint's cost grows with the boxes it builds."""
    from invoicekit.render import _batch, _context, _format, _templates

    s = invoice_set([UMLAUT_CJK])
    opts = _batch._options(s, template="invoice", locale="de_DE", seller=SELLER, einvoice=None, allow_urls=())
    plan = _batch._plan(s, opts, where=None, out_dir=None, allow_mismatch=False)
    row = _batch._job(plan, opts, [0], None)["rows"][0]
    seller = opts["sellers"]["test"]
    html = _templates.render_html(opts["spec"], [_context.invoice_context(row, seller, _format.Formatter("de_DE"),
                                                                           "inv-x")], seller, "de-DE")
    body = html[html.index("<body>"):]
    for tag in ("<br", "<b>", "<span", "style=", "<strong"):
        assert tag not in body, tag
    assert len(re.findall(r"<td[ >]", body)) == 2 * 4 and len(re.findall(r"<th[ >]", body)) == 4  # 2 lines, 4 columns
    assert "Jürgen Müller Großhandel GmbH" in body and "Königstraße 7, 70173 Stuttgart" in body


def test_render_leaves_the_callers_gc_setting_alone(tmp_path):
    import gc

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        render_pdf(_five(), "id-1", seller=SELLER)
        assert gc.get_threshold() == (700, 10, 10)
        with ThreadPoolExecutor(2) as pool:  # chunks overlapping in threads of this process
            res = render_batch(invoice_set([{"id": f"t-{i}", "number": f"T-{i}", "client": "C",
                                             "lines": [("x", 1, "1.00")]} for i in range(40)]),
                               tmp_path, seller=SELLER, executor=pool)
        assert res.counts()["rendered"] == 40 and gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)


def test_epc_payload_follows_epc069_12():
    from invoicekit.render._context import epc_payload

    seller = {"name": "Nordlicht Rechnungsbüro GmbH", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}
    assert epc_payload(seller, "R-1", Decimal("1361.49")).split(b"\n") == [
        b"BCD", b"002", b"2", b"SCT", b"COBADEFFXXX", "Nordlicht Rechnungsbüro GmbH".encode("latin-1"),
        b"DE89370400440532013000", b"EUR1361.49", b"", b"", b"Invoice R-1"]
    cjk = epc_payload({**seller, "name": "東京商事", "bic": None}, "R-2", Decimal("20.00")).split(b"\n")
    assert cjk[2] == b"1" and cjk[4] == b"" and cjk[5] == "東京商事".encode() and cjk[7] == b"EUR20"


def test_batch_resumes_and_rerenders_only_changed(tmp_path):
    s = _five()
    first = render_batch(s, tmp_path, seller=SELLER, workers=1)
    again = render_batch(s, tmp_path, seller=SELLER, workers=1)
    assert again.counts() == {**first.counts(), "rendered": 0, "skipped": 5}
    victim = first.files.iloc[2]["path"]
    open(victim, "wb").write(b"%PDF- truncated")  # a damaged file is rendered again
    third = render_batch(s, tmp_path, seller=SELLER, workers=1)
    assert third.counts()["rendered"] == 1 and third.counts()["skipped"] == 4
    assert _sha(victim) == first.files.iloc[2]["sha256"]
    other = render_batch(s, tmp_path, seller=SELLER, workers=1, locale="de_DE")  # other options: all again
    assert other.counts()["rendered"] == 5


def test_broken_and_mismatched_invoices_fail_alone(tmp_path):
    specs = [{"id": f"ok-{i}", "number": f"OK-{i}", "client": "Fine", "lines": [("x", 1, "1.00")]} for i in range(3)]
    specs.insert(1, {"id": "bad-cur", "number": "BAD-1", "client": "Bad", "currency": "XQZ", "lines": [("x", 1, "1")]})
    specs.append({"id": "mismatch", "number": "MIS-1", "client": "Mis", "total": Decimal("99.99"),
                  "lines": [("x", 2, "3.00")]})
    s = invoice_set(specs)
    res = render_batch(s, tmp_path, seller=SELLER_NO_IBAN, workers=1)
    failed = res.failures.set_index("id")["error"]
    assert set(failed.index) == {"bad-cur", "mismatch"}
    assert "XQZ" in failed["bad-cur"] and "total mismatch" in failed["mismatch"] and "99.99" in failed["mismatch"]
    assert res.counts()["rendered"] == 3
    with pytest.raises(RenderError) as err:
        render_pdf(s, "mismatch", seller=SELLER_NO_IBAN)
    assert err.value.reason == "total_mismatch"
    text = pdf_text(render_pdf(s, "mismatch", seller=SELLER_NO_IBAN, allow_mismatch=True), tmp_path)
    assert "€6.00" in text  # the recomputed total, not the stored one


def test_where_filters(tmp_path):
    res = render_batch(_five(), tmp_path, seller=SELLER, workers=1, where={"invoice_number": ["N-2", "N-4"]})
    assert sorted(res.files["invoice_number"]) == ["N-2", "N-4"]
    with pytest.raises(UsageError):
        render_batch(_five(), tmp_path, seller=SELLER, where={"nope": 1})


def test_facturx_embeds_valid_en16931_xml(tmp_path):
    facturx = pytest.importorskip("facturx")
    from lxml import etree

    s = invoice_set([{"id": "fx", "number": "FX-1", "client": "Client SARL", "rates": [20, 5.5],
                      "lines": [("Conseil", 2, "100.00"), ("Livre", 1, "20.00")]}])
    pdf = render_pdf(s, "fx", seller=SELLER, einvoice="factur-x", locale="fr_FR")
    name, xml = facturx.get_facturx_xml_from_pdf(pdf, check_xsd=False)
    assert name == "factur-x.xml"
    facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")  # raises when invalid
    assert facturx.get_level(etree.fromstring(xml)) == "en16931"
    root = etree.fromstring(xml)
    ns = {"ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}
    assert root.findtext(".//ram:GrandTotalAmount", namespaces=ns) == "261.10"  # 220 + 40 + 1.10
    assert root.findtext(".//ram:IBANID", namespaces=ns) == "DE89370400440532013000"
    (tmp_path / "fx.pdf").write_bytes(pdf)
    listing = subprocess.run(["pdfdetach", "-list", str(tmp_path / "fx.pdf")], capture_output=True, text=True).stdout
    assert "1 embedded files" in listing and "factur-x.xml" in listing
    from pypdf import PdfReader

    meta = PdfReader(io.BytesIO(pdf)).trailer["/Root"]["/Metadata"].get_object().get_data()
    assert b'pdfaid:part="3"' in meta and b'pdfaid:conformance="B"' in meta  # PDF/A-3b
    assert meta.count(b"<rdf:RDF") == 1 and b"<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>" in meta
    assert pdf == render_pdf(s, "fx", seller=SELLER, einvoice="factur-x", locale="fr_FR")  # deterministic
    buyer = root.find(".//ram:BuyerTradeParty/ram:PostalTradeAddress", namespaces=ns)  # BG-8, BT-50..55
    assert [(el.tag.split("}")[1], el.text) for el in buyer] == [
        ("LineOne", "1 Client Road"), ("CityName", "Dublin"), ("CountryID", "IE")]  # country from the VAT id
    seller = root.find(".//ram:SellerTradeParty/ram:PostalTradeAddress", namespaces=ns)
    assert [(el.tag.split("}")[1], el.text) for el in seller] == [
        ("PostcodeCode", "10115"), ("LineOne", "Hauptstraße 5"), ("CityName", "Berlin"), ("CountryID", "DE")]


def test_facturx_has_exactly_one_associated_file_entry():
    pytest.importorskip("facturx")
    from pypdf import PdfReader

    s = invoice_set([{"id": "af", "number": "AF-1", "client": "Client SARL", "rates": [20],
                      "lines": [("Conseil", 1, "100.00")]}])
    reader = PdfReader(io.BytesIO(render_pdf(s, "af", seller=SELLER, einvoice="factur-x")))
    catalog = reader.trailer["/Root"]
    af = catalog["/AF"]
    assert len(af) == 1  # WeasyPrint lists it twice unless the finisher merges the entries
    spec = af[0].get_object()
    assert spec["/Type"] == "/Filespec" and spec["/F"] == "factur-x.xml" and spec["/UF"] == "factur-x.xml"
    assert spec["/AFRelationship"] == "/Data"
    names = catalog["/Names"]["/EmbeddedFiles"].get_object()["/Names"]
    assert names[0] == "factur-x.xml" and names[1].get_object() == spec  # the same file the name tree holds


def test_facturx_buyer_address_from_client_data_or_a_clear_error(tmp_path):
    facturx = pytest.importorskip("facturx")
    from lxml import etree

    ns = {"ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}
    s = invoice_set([
        {"id": "st", "number": "ST-1", "client": "Wiener Kaffee KG", "tax_id": "ATU12345678",
         "client_extra": {"country": "at", "address": {"street": "Ringstraße 3", "line2": "Stiege 2",
                                                        "postcode": "1010", "city": "Wien"}},
         "lines": [("Beratung", 1, "100.00")]},
        {"id": "gr", "number": "GR-1", "client": "Athens Ltd", "tax_id": "EL123456789",
         "address": "Odos 5\nFloor 2, 10558 Athina", "lines": [("Work", 1, "10.00")]},
        {"id": "none", "number": "NO-1", "client": "Nowhere Inc", "tax_id": "12-3456789",
         "lines": [("Work", 1, "10.00")]}])

    def buyer(invoice_id):
        _, xml = facturx.get_facturx_xml_from_pdf(render_pdf(s, invoice_id, seller=SELLER, einvoice="factur-x"),
                                                  check_xsd=True)
        addr = etree.fromstring(xml).find(".//ram:BuyerTradeParty/ram:PostalTradeAddress", namespaces=ns)
        return [(el.tag.split("}")[1], el.text) for el in addr]

    assert buyer("st") == [("PostcodeCode", "1010"), ("LineOne", "Ringstraße 3"), ("LineTwo", "Stiege 2"),
                           ("CityName", "Wien"), ("CountryID", "AT")]
    assert buyer("gr") == [("PostcodeCode", "10558"), ("LineOne", "Odos 5"), ("LineTwo", "Floor 2"),
                           ("CityName", "Athina"), ("CountryID", "GR")]  # Greek VAT ids start with EL
    res = render_batch(s, tmp_path, seller=SELLER, einvoice="factur-x", workers=1)
    failed = res.failures.set_index("id")["error"]
    assert list(failed.index) == ["none"] and "BT-55" in failed["none"] and "country" in failed["none"]
    assert res.counts()["rendered"] == 2


def test_epc_qr_only_with_iban(tmp_path):
    s = invoice_set([{"id": "q", "number": "Q-1", "client": "Payer", "lines": [("x", 1, "10.00")]}])

    def images(pdf):
        (tmp_path / "q.pdf").write_bytes(pdf)
        out = subprocess.run(["pdfimages", "-list", str(tmp_path / "q.pdf")], capture_output=True, text=True).stdout
        return len(out.strip().splitlines()) - 2  # two header lines

    assert images(render_pdf(s, "q", seller=SELLER)) == 1
    assert images(render_pdf(s, "q", seller=SELLER_NO_IBAN)) == 0


def test_seller_from_store_settings_or_a_clear_error(tmp_path):
    from invoicekit.io import read_local

    store = tmp_path / "device.sqlite"
    shutil.copy(os.path.join("data", "samples", "device_a.sqlite"), store)
    s = read_local(str(store))
    some = s.invoices["id"].iloc[0]
    with pytest.raises(UsageError, match="app_settings key 'seller'") as err:
        render_pdf(s, some)
    assert err.value.reason == "no_seller"
    with sqlite3.connect(store) as conn:
        conn.execute("INSERT INTO app_settings (key, value) VALUES ('seller', ?)",
                     (json.dumps({"name": "Store Seller Oy", "country": "FI", "address": "Katu 1, Helsinki"}),))
    text = pdf_text(render_pdf(read_local(str(store)), some), tmp_path)
    assert "Store Seller Oy" in text


def test_bad_options_are_usage_errors():
    s = _five()
    for kwargs in ({"template": "nope"}, {"locale": "xx_NOPE"}, {"einvoice": "ubl"},
                   {"seller": {"name": "No Country"}}, {"seller": {**SELLER, "iban": "DE00 1234"}}):
        with pytest.raises(UsageError):
            render_pdf(s, "id-1", **{"seller": SELLER, **kwargs})


def test_dask_executor_gives_identical_files(tmp_path):
    distributed = pytest.importorskip("distributed")
    s = _five()
    local = render_batch(s, tmp_path / "local", seller=SELLER, workers=1)
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as c, \
            distributed.Client(c) as client:
        remote = render_batch(s, tmp_path / "dask", seller=SELLER, executor=client.get_executor())
    assert remote.ok and remote.counts()["rendered"] == 5
    assert list(remote.files["sha256"]) == list(local.files["sha256"])


def _cli(argv):
    from invoicekit.render import cli

    parser = argparse.ArgumentParser(prog="invoicekit")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return cli.run(parser.parse_args(argv))


def test_cli_json_and_exit_codes(tmp_path, capsys):
    store = tmp_path / "device.sqlite"
    shutil.copy(os.path.join("data", "samples", "device_a.sqlite"), store)
    with sqlite3.connect(store) as conn:
        conn.execute("INSERT INTO app_settings (key, value) VALUES ('seller', ?)", (json.dumps(SELLER_NO_IBAN),))
    number = sqlite3.connect(store).execute("SELECT invoice_number FROM transactions LIMIT 1").fetchone()[0]
    code = _cli(["render", "--local", str(store), "--out", str(tmp_path / "out"), "--where",
                 f"invoice_number={number}", "--json", "--workers", "1"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["rendered"] == 1 and out["failed"] == 0 and out["failures"] == []
    with sqlite3.connect(store) as conn:  # break the stored total of that invoice
        conn.execute("UPDATE transactions SET total_amount = total_amount + 1 WHERE invoice_number = ?", (number,))
    code = _cli(["render", "--local", str(store), "--out", str(tmp_path / "out2"), "--where",
                 f"invoice_number={number}", "--workers", "1"])
    text = capsys.readouterr().out
    assert code == 1 and "total mismatch" in text
    with pytest.raises(UsageError):
        _cli(["render", "--local", str(store), "--out", str(tmp_path), "--where", "no-equals-sign"])
    with pytest.raises(UsageError, match="--seller"):
        _cli(["render", "--local", str(store), "--out", str(tmp_path), "--seller", "{not json"])
