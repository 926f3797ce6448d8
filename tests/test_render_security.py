"""invoicekit.render is safe by construction: payloads in every text field and in a user
template are neither fetched, embedded nor evaluated, and invoice text appears literally."""

from __future__ import annotations

import http.server
import io
import subprocess
import threading

import pytest

pytest.importorskip("weasyprint")

from invoicekit.render import render_batch, render_pdf  # noqa: E402
from tests._render_helpers import SELLER, invoice_set, needs_poppler, pdf_text  # noqa: E402

pytestmark = needs_poppler


@pytest.fixture
def watched_server():
    """A tiny HTTP server on 127.0.0.1 recording every request it gets."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def _payloads(base: str) -> list[str]:
    return [
        '<img src="file:///etc/passwd">',
        '<link rel="attachment" href="file:///etc/passwd">',
        f"<style>body {{ background: url({base}/css-in-text) }}</style>",
        f'<div style="background: url({base}/inline-style)">x</div>',
        "{{ 7*7 }}",
        "{% raw %}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    ]


def _attachments(pdf: bytes, tmp_path) -> list[str]:
    """Embedded files of every kind (name tree and file attachment annotations), by pdfdetach,
    cross-checked with pypdf's name tree."""
    from pypdf import PdfReader

    path = tmp_path / "attached.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdfdetach", "-list", str(path)], check=True, capture_output=True, text=True).stdout
    names = [line.split(":", 1)[1].strip() for line in out.splitlines()[1:] if ":" in line]
    return names + list(PdfReader(io.BytesIO(pdf)).attachments)


def test_payloads_in_every_text_field_are_inert_and_literal(watched_server, tmp_path):
    base, hits = watched_server
    payloads = _payloads(base)
    joined = " ".join(payloads)
    spec = {"id": "evil", "number": "{{ 7*7 }}", "client": joined, "address": payloads[0], "email": payloads[2],
            "tax_id": payloads[5],
            "lines": [(p, 1, "1.00") for p in payloads] + [("A" * 1_000_000, 1, "1.00")]}
    seller = {**SELLER, "name": joined[:300], "address": payloads[3], "email": payloads[1]}
    pdf = render_pdf(invoice_set([spec]), "evil", seller=seller)
    text = " ".join(pdf_text(pdf, tmp_path).split())
    assert hits == []  # nothing fetched
    assert _attachments(pdf, tmp_path) == []  # nothing embedded
    assert b"root:x:0:0" not in pdf
    for p in ("<img src=\"file:///etc/passwd\">", "{{ 7*7 }}", "{% raw %}", "{{ ''.__class__"):
        assert p in text  # shown literally, not evaluated
    assert "AAAAAAAAAA" in text and text.count("A" * 50) < 100  # the 1 MB description is cut, not 300 pages


def test_user_template_cannot_reach_files_or_network(watched_server, tmp_path):
    base, hits = watched_server
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "asset.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                                      '<rect width="10" height="10"/></svg>')
    (folder / "evil.css").write_text(f"body {{ background: url({base}/from-css) }}\n"
                                     "h1 { background: url(file:///etc/passwd) }\n")
    (folder / "evil.html").write_text(
        "<html><head>"
        '<link rel="attachment" href="file:///etc/passwd">'
        f'<link rel="stylesheet" href="{base}/remote.css">'
        "</head><body>"
        "{% for inv in invoices %}<section id=\"{{ inv.anchor }}\">"
        "<h1>{{ inv.number }} {{ 7*7 }}</h1>"
        '<img src="file:///etc/passwd"><img src="../../../../etc/passwd">'
        f'<img src="{base}/img.png"><img src="asset.svg">'
        '<a rel="attachment" href="file:///etc/hostname">x</a><a rel="attachment" href="asset.svg">y</a>'
        "{{ ''.__class__.__mro__[1].__subclasses__() }}"
        "</section>{% endfor %}</body></html>")
    s = invoice_set([{"id": "u", "number": "U-1", "client": "User", "lines": [("x", 1, "1.00")]}])
    with pytest.raises(Exception, match="unsafe|SecurityError|access"):
        render_pdf(s, "u", template=str(folder / "evil.html"), seller=SELLER)
    (folder / "evil.html").write_text((folder / "evil.html").read_text().replace(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}", ""))
    pdf = render_pdf(s, "u", template=str(folder / "evil.html"), seller=SELLER)
    assert hits == []
    assert _attachments(pdf, tmp_path) == []
    assert b"root:x:0:0" not in pdf
    assert "U-1 49" in pdf_text(pdf, tmp_path)  # the template's own expressions do run


def test_allow_list_lets_only_listed_urls_through(watched_server, tmp_path):
    base, hits = watched_server
    folder = tmp_path / "tpl"
    folder.mkdir()
    (folder / "remote.html").write_text(
        "{% for inv in invoices %}<section id=\"{{ inv.anchor }}\">"
        f'<img src="{base}/allowed/logo.png"><img src="{base}/other.png">{{{{ inv.number }}}}'
        "</section>{% endfor %}")
    s = invoice_set([{"id": "r", "number": "R-1", "client": "Remote", "lines": [("x", 1, "1.00")]}])
    render_batch(s, tmp_path / "out", template=str(folder / "remote.html"), seller=SELLER, workers=1,
                 allow_urls=[f"{base}/allowed/"])
    assert hits == ["/allowed/logo.png"]


def test_facturx_xml_holds_payloads_as_text_and_is_the_only_attachment(watched_server, tmp_path):
    facturx = pytest.importorskip("facturx")
    from lxml import etree

    base, hits = watched_server
    payloads = _payloads(base)
    spec = {"id": "evil-fx", "number": "FX-{{ 7*7 }}", "client": payloads[0], "email": payloads[4],
            "address": f"{payloads[1]}, {payloads[2]}", "tax_id": "DE999999999",
            "client_extra": {"city": payloads[6]}, "lines": [(p, 1, "1.00") for p in payloads]}
    pdf = render_pdf(invoice_set([spec]), "evil-fx", seller=SELLER, einvoice="factur-x")
    assert hits == [] and b"root:x:0:0" not in pdf
    assert _attachments(pdf, tmp_path) == ["factur-x.xml", "factur-x.xml"]  # pdfdetach + pypdf: the one file
    _, xml = facturx.get_facturx_xml_from_pdf(pdf, check_xsd=True)
    root = etree.fromstring(xml)
    ram = "{urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100}"
    buyer = root.find(f".//{ram}BuyerTradeParty")
    assert buyer.findtext(f"{ram}Name") == payloads[0]  # text, not markup
    assert buyer.findtext(f"{ram}PostalTradeAddress/{ram}CityName") == payloads[6]
    assert [d.text for d in root.iter(f"{ram}Name") if d.getparent().tag == f"{ram}SpecifiedTradeProduct"] == payloads
    assert root.findtext(".//{*}ExchangedDocument/{*}ID") == "FX-{{ 7*7 }}"  # not evaluated
