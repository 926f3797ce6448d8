"""Exact money for rendering, and Babel formatting per locale and currency.

Line totals and invoice totals are recomputed (in :mod:`._batch`, vectorised with pyarrow
decimals) from ``quantity`` x ``unit_price``, rounded half away from zero to the cent. Tax is added per rate on
top of the line total: a line carries its rate when its JSON item has ``tax_rate`` (or
``vat_rate``), in percent; else the seller's ``tax_rate`` applies to every line; else the
invoice has no tax lines.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from ..errors import UsageError

__all__ = ["tax_lines", "Formatter", "line_rates", "CENT"]

CENT = Decimal("0.01")
#: the JSON keys of a line item that may carry its tax rate (percent)
RATE_KEYS = ("tax_rate", "vat_rate")


def _rate(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        rate = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise UsageError(f"tax rate {value!r} is not a number (expected percent, e.g. 19 or 7.5)",
                         reason="bad_tax_rate") from None
    if not rate.is_finite() or rate < 0 or rate > 100:
        raise UsageError(f"tax rate {value!r} is outside 0..100 percent", reason="bad_tax_rate")
    return rate.quantize(Decimal(1)) if rate == rate.to_integral() else rate.normalize()


def line_rates(line_items: str | None, n: int, default) -> list[Decimal | None]:
    """The tax rate (percent) of each of the ``n`` lines: the item's own, else ``default``."""
    fallback = _rate(default)
    try:
        items = json.loads(line_items) if line_items else []
    except ValueError:
        items = []
    if not isinstance(items, list):
        items = []
    rates = []
    for i in range(n):
        item = items[i] if i < len(items) and isinstance(items[i], dict) else {}
        own = next((item[k] for k in RATE_KEYS if item.get(k) is not None), None)
        rates.append(_rate(own) if own is not None else fallback)
    return rates


def tax_lines(totals: list[Decimal], rates: list[Decimal | None]) -> list[dict]:
    """One ``{rate, basis, amount}`` per distinct rate (in rate order), amounts exact to the cent."""
    basis: dict[Decimal, Decimal] = {}
    for total, rate in zip(totals, rates):
        if rate is not None:
            basis[rate] = basis.get(rate, Decimal("0.00")) + total
    return [{"rate": r, "basis": b, "amount": (b * r / 100).quantize(CENT, rounding=ROUND_HALF_UP)}
            for r, b in sorted(basis.items())]


class Formatter:
    """Babel formatting for one locale: money in any ISO currency, dates, numbers."""

    def __init__(self, locale: str) -> None:
        from babel import Locale, UnknownLocaleError

        try:
            self.locale = Locale.parse(locale.replace("-", "_"))
        except (UnknownLocaleError, ValueError, TypeError) as exc:
            raise UsageError(f"unknown locale {locale!r}: {exc}; use e.g. 'en_GB', 'de_DE', 'fr_FR', 'ja_JP'",
                             reason="bad_locale") from None

    def money(self, amount: Decimal, currency: str) -> str:
        """``amount`` in ``currency`` as the locale writes it (e.g. ``1.234,50 €``)."""
        from babel.numbers import format_currency

        return format_currency(amount, currency, locale=self.locale, currency_digits=True)

    def number(self, value: Decimal) -> str:
        """A quantity, with as many decimals as it has (up to 3)."""
        from babel.numbers import format_decimal

        return format_decimal(value.quantize(Decimal(1)) if value == value.to_integral() else value.normalize(),
                              locale=self.locale, decimal_quantization=False)

    def percent(self, rate: Decimal) -> str:
        """A tax rate given in percent (``19`` -> ``19 %`` as the locale writes it)."""
        from babel.numbers import format_percent

        return format_percent(rate / 100, locale=self.locale, decimal_quantization=False)

    def date(self, value) -> str:
        """A date in the locale's medium format."""
        from babel.dates import format_date

        return format_date(value, format="medium", locale=self.locale)
