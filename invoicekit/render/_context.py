"""Who sells (the seller settings) and what a template sees for one invoice.

The seller comes from the caller (``seller=`` mapping) or from the store the invoices were
read from (``app_settings`` key ``seller``, JSON), never from code. The per-invoice
context is a plain dict of already formatted strings (plus the exact amounts), so it
pickles cheaply to worker processes and templates need no logic beyond loops.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from decimal import Decimal

from ..errors import UsageError
from ._format import CENT, Formatter, line_rates, tax_lines

__all__ = ["resolve_sellers", "check_seller", "invoice_context", "SELLER_KEYS", "SELLER_HINT"]

#: the keys a seller mapping may carry (``name`` and ``country`` are required)
SELLER_KEYS = ("name", "address", "country", "vat_id", "iban", "bic", "email", "logo", "tax_rate")
SELLER_HINT = ("pass seller={'name': ..., 'address': ..., 'country': 'DE', 'vat_id': ..., 'iban': ..., "
               "'email': ...} (CLI: store it once as JSON under the store's app_settings key 'seller')")
_LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".svg": "image/svg+xml", ".webp": "image/webp"}
_LOGO_MAX_BYTES = 2_000_000
#: longest text shown per field (characters); longer text is cut with an ellipsis, so a
#: runaway field (a pasted 1 MB description) cannot turn one invoice into hundreds of pages
MAX_DESCRIPTION, MAX_FIELD = 2_000, 500


def _cut(text, limit: int = MAX_FIELD):
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _iban_ok(iban: str) -> bool:
    moved = iban[4:] + iban[:4]
    if not (15 <= len(iban) <= 34 and iban[:2].isalpha() and iban[2:4].isdigit() and moved.isalnum()):
        return False
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _logo_uri(path: str, base: str | None) -> str:
    full = os.path.join(base, path) if base and not os.path.isabs(path) else path
    kind = _LOGO_TYPES.get(os.path.splitext(full)[1].lower())
    if kind is None:
        raise UsageError(f"seller logo {path!r}: expected one of {sorted(_LOGO_TYPES)}", reason="bad_seller")
    try:
        size = os.path.getsize(full)
        if size > _LOGO_MAX_BYTES:
            raise UsageError(f"seller logo {path!r} is {size:,} bytes; at most {_LOGO_MAX_BYTES:,}",
                             reason="bad_seller")
        with open(full, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UsageError(f"seller logo {path!r} cannot be read: {exc.strerror}", reason="bad_seller") from None
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def check_seller(seller, *, where: str = "seller=", base: str | None = None) -> dict:
    """``seller`` checked and normalised: strings stripped, IBAN compacted and checked,
    the logo file read into a ``data:`` URL (relative paths from ``base``)."""
    if not hasattr(seller, "get"):
        raise UsageError(f"{where} must be a mapping; got {type(seller).__name__}. {SELLER_HINT}", reason="bad_seller")
    out = {k: (_cut(str(seller[k]).strip()) if seller.get(k) is not None else None) for k in SELLER_KEYS}
    missing = [k for k in ("name", "country") if not out[k]]
    if missing:
        raise UsageError(f"{where} lacks {missing}. {SELLER_HINT}", reason="bad_seller")
    out["country"] = out["country"].upper()
    if len(out["country"]) != 2 or not out["country"].isalpha():
        raise UsageError(f"{where} country {out['country']!r}: expected an ISO 3166 alpha-2 code such as 'DE'",
                         reason="bad_seller")
    if out["iban"]:
        out["iban"] = "".join(out["iban"].split()).upper()
        if not _iban_ok(out["iban"]):
            raise UsageError(f"{where} iban {seller.get('iban')!r} is not a valid IBAN (check digits)",
                             reason="bad_seller")
    if out["logo"]:
        out["logo"] = _logo_uri(out["logo"], base)
    return out


def _store_seller(source: str) -> tuple[dict | None, str]:
    """The JSON under ``app_settings`` key ``seller`` of the SQLite store ``source`` (or None)."""
    if not source or "://" in source or not os.path.isfile(source):
        return None, source
    try:
        conn = sqlite3.connect(f"file:{os.path.abspath(source)}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM app_settings WHERE key = 'seller'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None, source
    if row is None or row[0] is None:
        return None, source
    try:
        value = json.loads(row[0])
    except ValueError:
        raise UsageError(f"{source}: app_settings 'seller' is not JSON. {SELLER_HINT}", reason="bad_seller") from None
    return value, source


def resolve_sellers(sources, seller) -> dict:
    """``{source: checked seller}`` for every source: the caller's ``seller``, else each store's own."""
    sources = sorted({s for s in sources if s is not None}) or [""]
    if seller is not None:
        checked = check_seller(seller)
        return {s: checked for s in sources}
    out = {}
    for source in sources:
        found, _ = _store_seller(source)
        if found is None:
            shown = source or "(no source)"
            raise UsageError(f"no seller details for invoices from {shown}: the store has no app_settings "
                             f"key 'seller'. {SELLER_HINT}", reason="no_seller")
        out[source] = check_seller(found, where=f"{source}: app_settings 'seller'",
                                   base=os.path.dirname(os.path.abspath(source)))
    return out


#: the QR mask pattern of every EPC code: any of the eight is valid (ISO/IEC 18004 lets the
#: encoder choose); fixing it skips segno's scoring of all eight, ~2/3 of the code's cost
EPC_MASK = 2


def epc_payload(seller: dict, number: str, due: Decimal) -> bytes:
    """The EPC069-12 (version 002) SEPA credit transfer payload: ISO 8859-1 when the text
    fits it (character set 2), else UTF-8 (1); the amount in EUR without trailing zeros."""
    fields = ["BCD", "002", "", "SCT", seller.get("bic") or "", seller["name"][:70], seller["iban"],
              "EUR" + format(due.quantize(CENT).normalize(), "f"), "", "", f"Invoice {number}"[:140]]
    text = "\n".join(fields[:2] + ["2"] + fields[3:])
    try:
        return text.encode("iso-8859-1")
    except UnicodeEncodeError:
        return "\n".join(fields[:2] + ["1"] + fields[3:]).encode("utf-8")


def _epc_qr(seller: dict, number: str, due: Decimal, currency: str) -> str | None:
    """An EPC069-12 (SEPA credit transfer) QR code as a PNG ``data:`` URL: EUR amounts only.
    One pixel per module, drawn without smoothing (``image-rendering: pixelated`` in the
    stylesheet): a small PNG draws several times faster in WeasyPrint than SVG paths."""
    if not seller.get("iban") or currency != "EUR" or not (Decimal("0.01") <= due <= Decimal("999999999.99")):
        return None
    import segno

    qr = segno.make_qr(epc_payload(seller, number, due), mode="byte", error="m", boost_error=False, mask=EPC_MASK)
    return qr.png_data_uri(scale=1, border=0)


def invoice_context(row: dict, seller: dict, fmt: Formatter, anchor: str) -> dict:
    """The template context of one invoice ``row`` (see :func:`invoicekit.render._batch.rows`)."""
    from babel.numbers import is_currency

    currency = row["currency"]
    if not currency or not is_currency(currency):
        raise UsageError(f"currency {currency!r} is no ISO 4217 code", reason="bad_currency")
    lines = row["lines"]
    rates = line_rates(row["line_items"], len(lines), seller.get("tax_rate"))
    totals = [ln["line_total"] for ln in lines]
    net = sum(totals, Decimal("0.00"))
    taxes = tax_lines(totals, rates)
    tax_total = sum((t["amount"] for t in taxes), Decimal("0.00"))
    due = (net + tax_total).quantize(CENT)
    money = lambda v: fmt.money(v, currency)  # noqa: E731 - a short local alias
    return {
        "anchor": anchor, "id": row["id"], "number": _cut(row["invoice_number"] or row["id"], 100),
        "date": fmt.date(row["created_at"]), "date_iso": row["created_at"].date().isoformat(),
        "currency": currency,
        "client": {"name": _cut(row["client_name"]), "email": _cut(row["client_email"]),
                   "address": _cut(row["client_address"]), "tax_id": _cut(row["client_tax_id"])},
        "lines": [{"no": ln["line_no"], "description": _cut(ln["description"], MAX_DESCRIPTION),
                   "quantity": fmt.number(ln["quantity"]),
                   "unit_price": money(ln["unit_price"]), "total": money(ln["line_total"]),
                   "rate": fmt.percent(r) if r is not None else ""} for ln, r in zip(lines, rates)],
        "has_rates": any(r is not None for r in rates),
        "net_total": money(net),
        "taxes": [{"rate": fmt.percent(t["rate"]), "basis": money(t["basis"]), "amount": money(t["amount"])}
                  for t in taxes],
        "tax_total": money(tax_total), "grand_total": money(due),
        "qr": _epc_qr(seller, row["invoice_number"] or row["id"], due, currency),
        "amounts": {"net": net, "tax": tax_total, "due": due, "taxes": taxes, "rates": rates},
    }
