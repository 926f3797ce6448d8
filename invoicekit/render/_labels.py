"""The words printed on the shipped templates, per language (``t`` in a template).

The locale's language picks the set (``de_AT`` -> ``de``); a language without one prints
English. User templates get the same ``t`` and may ignore it.
"""

from __future__ import annotations

__all__ = ["LABELS", "labels_for"]

_EN = {
    "invoice": "Invoice", "credit_note": "Credit note", "number": "Number", "date": "Date",
    "currency": "Currency", "from": "FROM", "bill_to": "BILL TO", "vat": "VAT", "tax_id": "Tax id",
    "description": "DESCRIPTION", "qty": "QTY", "unit_price": "UNIT PRICE", "tax": "TAX", "amount": "AMOUNT",
    "net_total": "Net total", "tax_line": "Tax", "on": "on", "total_due": "Total due",
    "total_credited": "Total credited", "payment": "Payment", "by_transfer": "by bank transfer",
    "reference": "Reference", "qr_alt": "SEPA payment QR code", "page": "Page", "of": "of",
}

#: language -> label -> text
LABELS: dict[str, dict[str, str]] = {
    "en": _EN,
    "de": {**_EN, "invoice": "Rechnung", "credit_note": "Gutschrift", "number": "Nummer", "date": "Datum",
           "currency": "Währung", "from": "VON", "bill_to": "RECHNUNG AN", "vat": "USt-IdNr.",
           "tax_id": "Steuernummer", "description": "BESCHREIBUNG", "qty": "MENGE", "unit_price": "EINZELPREIS",
           "tax": "USt", "amount": "BETRAG", "net_total": "Nettobetrag", "tax_line": "USt", "on": "auf",
           "total_due": "Zu zahlen", "total_credited": "Gutgeschrieben", "payment": "Zahlung",
           "by_transfer": "per Überweisung", "reference": "Verwendungszweck",
           "qr_alt": "QR-Code für die SEPA-Überweisung", "page": "Seite", "of": "von"},
    "fr": {**_EN, "invoice": "Facture", "credit_note": "Avoir", "number": "Numéro", "date": "Date",
           "currency": "Devise", "from": "DE", "bill_to": "FACTURER À", "vat": "TVA", "tax_id": "N° fiscal",
           "description": "DÉSIGNATION", "qty": "QTÉ", "unit_price": "PRIX UNITAIRE", "tax": "TVA",
           "amount": "MONTANT", "net_total": "Total HT", "tax_line": "TVA", "on": "sur",
           "total_due": "Total à payer", "total_credited": "Total crédité", "payment": "Paiement",
           "by_transfer": "par virement", "reference": "Référence",
           "qr_alt": "QR code de paiement SEPA", "page": "Page", "of": "sur"},
    "es": {**_EN, "invoice": "Factura", "credit_note": "Nota de crédito", "number": "Número", "date": "Fecha",
           "currency": "Moneda", "from": "DE", "bill_to": "FACTURAR A", "vat": "IVA", "tax_id": "NIF",
           "description": "DESCRIPCIÓN", "qty": "CANT.", "unit_price": "PRECIO UNIT.", "tax": "IVA",
           "amount": "IMPORTE", "net_total": "Base imponible", "tax_line": "IVA", "on": "sobre",
           "total_due": "Total a pagar", "total_credited": "Total abonado", "payment": "Pago",
           "by_transfer": "por transferencia", "reference": "Referencia",
           "qr_alt": "Código QR de pago SEPA", "page": "Página", "of": "de"},
    "it": {**_EN, "invoice": "Fattura", "credit_note": "Nota di credito", "number": "Numero", "date": "Data",
           "currency": "Valuta", "from": "DA", "bill_to": "FATTURARE A", "vat": "P. IVA", "tax_id": "Cod. fiscale",
           "description": "DESCRIZIONE", "qty": "Q.TÀ", "unit_price": "PREZZO UNIT.", "tax": "IVA",
           "amount": "IMPORTO", "net_total": "Imponibile", "tax_line": "IVA", "on": "su",
           "total_due": "Totale da pagare", "total_credited": "Totale accreditato", "payment": "Pagamento",
           "by_transfer": "con bonifico", "reference": "Causale",
           "qr_alt": "Codice QR per il pagamento SEPA", "page": "Pagina", "of": "di"},
    "nl": {**_EN, "invoice": "Factuur", "credit_note": "Creditnota", "number": "Nummer", "date": "Datum",
           "currency": "Valuta", "from": "VAN", "bill_to": "FACTUUR AAN", "vat": "Btw-nr.", "tax_id": "Fiscaal nr.",
           "description": "OMSCHRIJVING", "qty": "AANTAL", "unit_price": "STUKPRIJS", "tax": "BTW",
           "amount": "BEDRAG", "net_total": "Totaal excl. btw", "tax_line": "Btw", "on": "over",
           "total_due": "Te betalen", "total_credited": "Gecrediteerd", "payment": "Betaling",
           "by_transfer": "per overschrijving", "reference": "Kenmerk",
           "qr_alt": "SEPA-betaal-QR-code", "page": "Pagina", "of": "van"},
}


def labels_for(lang: str) -> dict[str, str]:
    """The labels of ``lang`` (``de-DE``, ``de_DE`` or ``de``), English when there are none."""
    return LABELS.get(str(lang).replace("_", "-").split("-")[0].lower(), _EN)
