"""Short human reasons for pairs, built column-wise (numpy string ops, no per-pair Python).

Example: ``"same tax id, invoice number equal after OCR fixes, same amount, 2 days apart"``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["reasons"]


def _join(parts: list[np.ndarray]) -> np.ndarray:
    out = np.zeros(len(parts[0]), dtype="U1")[:0] if not len(parts[0]) else np.full(len(parts[0]), "", dtype="U1")
    for part in parts:
        part = part.astype(str)
        sep = np.where((np.char.str_len(out) > 0) & (np.char.str_len(part) > 0), ", ", "")
        out = np.char.add(np.char.add(out, sep), part)
    return out


def reasons(c: dict) -> np.ndarray:
    """One reason string per pair from the comparison arrays ``c``."""
    tax, level = c["tax_level"], c["number_level"]
    name, lines, cents, days = c["sim_client_name"], c["sim_line_items"], c["cents_diff"], c["days"]
    tax_part = np.select([tax == 3, tax == 2, tax == 1],
                         ["same tax id", "tax id one character off", "different tax ids"], "")
    name_part = np.select([np.isnan(name), name >= 0.92, name >= 0.7],
                          ["", "same client name", "similar client name"], "different client names")
    name_part = np.where((tax == 3) & (name >= 0.92), "", name_part)
    number_part = np.select(
        [level == 5, level == 4, level == 3, level == 2, level == 1],
        ["same invoice number", "invoice number equal after OCR fixes", "invoice numbers one transposition apart",
         "invoice number equal without its prefix", "different invoice numbers"], "invoice number missing")
    amount_part = np.select([cents == 0, cents == 1, cents < 0], ["same amount", "amounts 1 cent apart", ""],
                            "different amounts")
    lines_part = np.select([np.isnan(lines), lines >= 0.97, lines >= 0.85], ["", "same lines", "similar lines"],
                           "different lines")
    whole = np.floor(days).astype(np.int64)
    day_part = np.where(whole == 0, "same day",
                        np.char.add(whole.astype(str), np.where(whole == 1, " day apart", " days apart")))
    currency_part = np.where(c["same_currency"], "", "different currencies")
    return _join([tax_part, name_part, number_part, amount_part, lines_part, day_part, currency_part])
