"""Factur-X (EN 16931 profile): the CII XML built with lxml, checked against the official
XSD by the ``factur-x`` package, embedded by WeasyPrint in a PDF/A-3b with the Factur-X
XMP extension. WeasyPrint writes the whole file, so it stays byte-identical for the same
invoice (the ``factur-x`` package's own writer stamps the clock).
"""

from __future__ import annotations

import json
import re
from datetime import timezone
from decimal import Decimal
from functools import lru_cache

from ..errors import RenderError

__all__ = ["einvoice_writer", "cii_xml", "postal_address", "FacturX", "FACTURX_FILENAME"]

FACTURX_FILENAME = "factur-x.xml"
GUIDELINE_EN16931 = "urn:cen.eu:en16931:2017"
NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
}
_FX = "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_FX_PROPERTIES = (("DocumentFileName", "The name of the embedded XML document"),
                  ("DocumentType", "The type of the hybrid document in capital letters, e.g. INVOICE or ORDER"),
                  ("Version", "The actual version of the standard applying to the embedded XML document"),
                  ("ConformanceLevel", "The conformance level of the embedded XML document"))


def einvoice_writer(kind: str | None):
    """The writer for ``kind`` (``"factur-x"``) or None."""
    return FacturX() if kind == "factur-x" else None


def _amount(value: Decimal) -> str:
    return str(Decimal(value).quantize(Decimal("0.01")))


def _category(rate: Decimal | None) -> str:
    return "O" if rate is None else ("Z" if rate == 0 else "S")


class _Builder:
    """Small helpers over lxml's ElementMaker for the CII namespaces."""

    def __init__(self) -> None:
        from lxml import etree

        self.etree = etree

    def el(self, parent, tag: str, text=None, **attrs):
        prefix, name = tag.split(":")
        node = self.etree.SubElement(parent, f"{{{NS[prefix]}}}{name}", attrs) if parent is not None else \
            self.etree.Element(f"{{{NS[prefix]}}}{name}", attrs, nsmap=NS)
        if text is not None:
            node.text = str(text)
        return node


#: VAT-id prefixes that are not the ISO 3166 code of their country
_VAT_PREFIX = {"EL": "GR", "XI": "GB"}
_POSTCODE = re.compile(r"^(\d[\d-]{2,9})\s+(\S.*)$")
_LINE_KEYS = ("street", "line1", "street2", "line2", "line3")
_CITY_KEYS = ("city", "town", "locality")
_POSTCODE_KEYS = ("postcode", "postal_code", "zip", "zip_code")


@lru_cache(maxsize=1)
def _iso_countries() -> frozenset:
    """ISO 3166 alpha-2 codes (Babel's territories)."""
    from babel import Locale

    return frozenset(code for code in Locale("en").territories if len(code) == 2 and code.isalpha())


def _country(value) -> str | None:
    code = str(value or "").strip().upper()
    code = _VAT_PREFIX.get(code, code)
    return code if code in _iso_countries() else None


def postal_address(address, *, country=None, tax_id=None, client_data=None) -> dict:
    """The CII ``PostalTradeAddress`` parts of a party: ``lines`` (at most three),
    ``postcode``, ``city``, ``country`` (ISO 3166 alpha-2 or None).

    Structured keys in ``client_data`` (JSON: ``country``/``country_code``, ``postcode``/
    ``postal_code``/``zip``, ``city``, ``line1``..``line3``/``street``, or an ``address``
    object with those keys) win; otherwise the one-line ``address`` is split at commas or
    line breaks: the last part is the city (a leading numeric postcode split off), the
    parts before it the address lines. Without a country key, the country comes from
    ``country`` or from the VAT id's prefix (``DE123...`` -> DE, ``EL`` -> GR)."""
    data = {}
    if client_data:
        try:
            parsed = json.loads(client_data) if isinstance(client_data, str) else client_data
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            data = dict(parsed)
            if isinstance(parsed.get("address"), dict):
                data.update(parsed["address"])
    pick = lambda keys: next((str(data[k]).strip() for k in keys if data.get(k)), None)  # noqa: E731
    lines = [str(data[k]).strip() for k in _LINE_KEYS if data.get(k)]
    city, postcode = pick(_CITY_KEYS), pick(_POSTCODE_KEYS)
    if not (lines or city or postcode) and address:
        parts = [p.strip() for p in re.split(r"[,\n]", str(address)) if p.strip()]
        if len(parts) > 1:
            city = parts.pop()
            found = _POSTCODE.match(city)
            if found:
                postcode, city = found.groups()
        lines = parts
    if len(lines) > 3:
        lines = lines[:2] + [", ".join(lines[2:])]
    code = _country(pick(("country_code", "country"))) or _country(country)
    if code is None and tax_id:
        prefix = re.match(r"^\s*([A-Za-z]{2})[A-Za-z0-9]", str(tax_id))
        code = _country(prefix.group(1)) if prefix else None
    return {"lines": [line[:200] for line in lines], "postcode": postcode and postcode[:20],
            "city": city and city[:200], "country": code}


def _party(b: _Builder, parent, tag: str, *, name, address: dict, email=None, vat_id=None):
    party = b.el(parent, tag)
    b.el(party, "ram:Name", name or "-")
    addr = b.el(party, "ram:PostalTradeAddress")  # EN 16931 BG-5 / BG-8: required, with a country
    if address["postcode"]:
        b.el(addr, "ram:PostcodeCode", address["postcode"])
    for tag_, line in zip(("ram:LineOne", "ram:LineTwo", "ram:LineThree"), address["lines"]):
        b.el(addr, tag_, line)
    if address["city"]:
        b.el(addr, "ram:CityName", address["city"])
    b.el(addr, "ram:CountryID", address["country"])
    if email:
        b.el(b.el(party, "ram:URIUniversalCommunication"), "ram:URIID", email, schemeID="EM")
    if vat_id:
        b.el(b.el(party, "ram:SpecifiedTaxRegistration"), "ram:ID", vat_id, schemeID="VA")
    return party


def _line(b: _Builder, tx, ln: dict, rate: Decimal | None) -> None:
    item = b.el(tx, "ram:IncludedSupplyChainTradeLineItem")
    b.el(b.el(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", ln["line_no"])
    b.el(b.el(item, "ram:SpecifiedTradeProduct"), "ram:Name", (ln["description"] or "-")[:1000])
    price = b.el(b.el(item, "ram:SpecifiedLineTradeAgreement"), "ram:NetPriceProductTradePrice")
    b.el(price, "ram:ChargeAmount", _amount(ln["unit_price"]))
    b.el(b.el(item, "ram:SpecifiedLineTradeDelivery"), "ram:BilledQuantity", ln["quantity"], unitCode="C62")
    settle = b.el(item, "ram:SpecifiedLineTradeSettlement")
    tax = b.el(settle, "ram:ApplicableTradeTax")
    b.el(tax, "ram:TypeCode", "VAT")
    b.el(tax, "ram:CategoryCode", _category(rate))
    if rate is not None:
        b.el(tax, "ram:RateApplicablePercent", format(rate, "f"))
    b.el(b.el(settle, "ram:SpecifiedTradeSettlementLineMonetarySummation"), "ram:LineTotalAmount",
         _amount(ln["line_total"]))


def _header_taxes(b: _Builder, settle, amounts: dict) -> None:
    taxes = amounts["taxes"] or [{"rate": None, "basis": amounts["net"], "amount": Decimal("0.00")}]
    for t in taxes:
        tax = b.el(settle, "ram:ApplicableTradeTax")
        b.el(tax, "ram:CalculatedAmount", _amount(t["amount"]))
        b.el(tax, "ram:TypeCode", "VAT")
        if t["rate"] is None:
            b.el(tax, "ram:ExemptionReason", "Not subject to VAT")
        b.el(tax, "ram:BasisAmount", _amount(t["basis"]))
        b.el(tax, "ram:CategoryCode", _category(t["rate"]))
        if t["rate"] is not None:
            b.el(tax, "ram:RateApplicablePercent", format(t["rate"], "f"))


def cii_xml(ctx: dict, seller: dict, *, type_code: str = "380") -> bytes:
    """The UN/CEFACT CII XML (Factur-X EN 16931) of one invoice context, as UTF-8 bytes."""
    b = _Builder()
    row, amounts = ctx["_row"], ctx["amounts"]
    if any(r is None for r in amounts["rates"]) and amounts["taxes"]:
        raise RenderError("factur-x: some lines have a tax rate and some have none; give every line a rate",
                          invoice_id=ctx["id"], reason="mixed_tax_rates")
    root = b.el(None, "rsm:CrossIndustryInvoice")
    b.el(b.el(b.el(root, "rsm:ExchangedDocumentContext"), "ram:GuidelineSpecifiedDocumentContextParameter"),
         "ram:ID", GUIDELINE_EN16931)
    doc = b.el(root, "rsm:ExchangedDocument")
    b.el(doc, "ram:ID", ctx["number"])
    b.el(doc, "ram:TypeCode", type_code)
    issued = row["created_at"].astimezone(timezone.utc).strftime("%Y%m%d")
    b.el(b.el(doc, "ram:IssueDateTime"), "udt:DateTimeString", issued, format="102")
    tx = b.el(root, "rsm:SupplyChainTradeTransaction")
    for ln, rate in zip(row["lines"], amounts["rates"]):
        _line(b, tx, ln, rate)
    agreement = b.el(tx, "ram:ApplicableHeaderTradeAgreement")
    own = postal_address(seller.get("address"), country=seller["country"])
    own["country"] = own["country"] or seller["country"]  # checked as ISO alpha-2 with the seller settings
    _party(b, agreement, "ram:SellerTradeParty", name=seller["name"], email=seller.get("email"), address=own,
           vat_id=seller.get("vat_id"))
    client = ctx["client"]
    buyer = postal_address(row.get("client_address"), tax_id=row.get("client_tax_id"),
                           client_data=row.get("client_data"))
    if buyer["country"] is None:
        raise RenderError("factur-x: the buyer's country (EN 16931 BT-55) is unknown: add \"country\": \"DE\" "
                          "(ISO 3166 alpha-2) to the client's data, or give the client a VAT id with its "
                          "country prefix", invoice_id=ctx["id"], reason="no_buyer_country")
    _party(b, agreement, "ram:BuyerTradeParty", name=client["name"], email=client["email"], address=buyer,
           vat_id=client["tax_id"])
    b.el(tx, "ram:ApplicableHeaderTradeDelivery")
    settle = b.el(tx, "ram:ApplicableHeaderTradeSettlement")
    b.el(settle, "ram:PaymentReference", ctx["number"])
    b.el(settle, "ram:InvoiceCurrencyCode", ctx["currency"])
    if seller.get("iban"):
        means = b.el(settle, "ram:SpecifiedTradeSettlementPaymentMeans")
        b.el(means, "ram:TypeCode", "58")  # SEPA credit transfer
        b.el(b.el(means, "ram:PayeePartyCreditorFinancialAccount"), "ram:IBANID", seller["iban"])
    _header_taxes(b, settle, amounts)
    total = b.el(settle, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    b.el(total, "ram:LineTotalAmount", _amount(amounts["net"]))
    b.el(total, "ram:TaxBasisTotalAmount", _amount(amounts["net"]))
    b.el(total, "ram:TaxTotalAmount", _amount(amounts["tax"]), currencyID=ctx["currency"])
    b.el(total, "ram:GrandTotalAmount", _amount(amounts["due"]))
    b.el(total, "ram:DuePayableAmount", _amount(amounts["due"]))
    return b.etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _xmp() -> bytes:
    """The Factur-X XMP properties and their PDF/A extension schema description."""
    from lxml import etree

    pdfa_ext, pdfa_schema = "http://www.aiim.org/pdfa/ns/extension/", "http://www.aiim.org/pdfa/ns/schema#"
    pdfa_prop = "http://www.aiim.org/pdfa/ns/property#"
    rdf = etree.Element(f"{{{_RDF}}}RDF", nsmap={"rdf": _RDF})
    fx = etree.SubElement(rdf, f"{{{_RDF}}}Description", {f"{{{_RDF}}}about": ""}, nsmap={"fx": _FX})
    for name, value in (("DocumentType", "INVOICE"), ("DocumentFileName", FACTURX_FILENAME), ("Version", "1.0"),
                        ("ConformanceLevel", "EN 16931")):
        etree.SubElement(fx, f"{{{_FX}}}{name}").text = value
    ext = etree.SubElement(rdf, f"{{{_RDF}}}Description", {f"{{{_RDF}}}about": ""},
                           nsmap={"pdfaExtension": pdfa_ext, "pdfaSchema": pdfa_schema, "pdfaProperty": pdfa_prop})
    bag = etree.SubElement(etree.SubElement(ext, f"{{{pdfa_ext}}}schemas"), f"{{{_RDF}}}Bag")
    li = etree.SubElement(bag, f"{{{_RDF}}}li", {f"{{{_RDF}}}parseType": "Resource"})
    etree.SubElement(li, f"{{{pdfa_schema}}}schema").text = "Factur-X PDFA Extension Schema"
    etree.SubElement(li, f"{{{pdfa_schema}}}namespaceURI").text = _FX
    etree.SubElement(li, f"{{{pdfa_schema}}}prefix").text = "fx"
    seq = etree.SubElement(etree.SubElement(li, f"{{{pdfa_schema}}}property"), f"{{{_RDF}}}Seq")
    for name, description in _FX_PROPERTIES:
        prop = etree.SubElement(seq, f"{{{_RDF}}}li", {f"{{{_RDF}}}parseType": "Resource"})
        for key, value in (("name", name), ("valueType", "Text"), ("category", "external"),
                           ("description", description)):
            etree.SubElement(prop, f"{{{pdfa_prop}}}{key}").text = value
    return etree.tostring(rdf, encoding="UTF-8")


class FacturX:
    """Adds the Factur-X XML, its XMP and PDF/A-3b to one invoice's PDF options."""

    def pdf_options(self, document, ctx: dict, seller: dict, *, template: str = "invoice.html") -> dict:
        """WeasyPrint ``write_pdf`` options (and metadata) embedding the checked CII XML."""
        import facturx
        from weasyprint import Attachment

        xml = cii_xml(ctx, seller, type_code="381" if template.startswith("credit_note") else "380")
        try:
            facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
        except Exception as exc:  # the package raises plain Exceptions naming the XSD error
            raise RenderError(f"factur-x XML does not validate against the EN 16931 XSD: {exc}",
                              invoice_id=ctx["id"], reason="einvoice_invalid") from None
        stamp = ctx["_modified_at"].astimezone(timezone.utc).replace(tzinfo=None)
        document.metadata.attachments = [Attachment(
            string=xml, name=FACTURX_FILENAME, description="Factur-X invoice (EN 16931)", relationship="Data",
            created=stamp, modified=stamp, url_fetcher=document.url_fetcher)]
        document.metadata.xmp_metadata = [_xmp()]
        return {"pdf_variant": "pdf/a-3b", "finisher": _finish}


def _finish(document, pdf) -> None:
    """The last touches on WeasyPrint's PDF objects (a ``write_pdf`` finisher)."""
    _one_af(pdf)
    _one_rdf(pdf)


def _one_af(pdf) -> None:
    """Each associated file once in the catalog's ``/AF`` array: WeasyPrint's PDF/A-3 step
    adds every attachment twice (once from the ``EmbeddedFiles`` name tree, once as a
    ``/Filespec`` object), and PDF/A validators and Factur-X readers expect one entry."""
    import pydyf

    refs = pdf.catalog.get("AF")
    if refs:
        seen = []
        for ref in refs:
            if ref not in seen:
                seen.append(ref)
        pdf.catalog["AF"] = pydyf.Array(seen)


def _one_rdf(pdf) -> None:
    """Merge the Factur-X ``rdf:RDF`` into WeasyPrint's, so the XMP packet has exactly one
    (WeasyPrint appends extra XMP after its own ``rdf:RDF``)."""
    ref = pdf.catalog.get("Metadata")
    if not ref:
        return
    stream = pdf.objects[int((ref.decode() if isinstance(ref, bytes) else str(ref)).split()[0])]
    data = b"".join(part if isinstance(part, bytes) else str(part).encode() for part in stream.stream)
    merged = data.replace(f'</rdf:RDF>\n<rdf:RDF xmlns:rdf="{_RDF}">'.encode(), b"", 1)
    stream.stream = [merged]
