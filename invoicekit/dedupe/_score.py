"""Scoring presets: comparison arrays -> ``score`` (0-1), ``is_duplicate`` and ``action``.

``invoice`` (default)
    Fixed evidence weights (log-odds, set by reasoning about how invoices are re-entered;
    nothing is fitted to any truth at run time), in three groups so that evidence which
    recurs between *different* invoices of one client cannot add up to a match:

    * *client* (tax id, name, e-mail, address): says "same client", capped at +3;
      clearly different clients go down to -8;
    * *content* (total in minor units, line multiset): says "same basket", capped at +3,
      because a client's monthly subscription has the same basket every month;
    * *identity* (invoice number, date): what tells a re-entry from a recurring invoice.
      Numbers that differ even after OCR fixes, zero padding and one transposition, or
      dates more than 20 days apart, are decisive against.

    ``score`` is the logistic of the sum; ``is_duplicate`` is ``score >= 0.5``. Pairs from
    0.05 are kept for review. ``action``: ``skip`` for a duplicate whose number, total,
    client name and lines all agree (a plain re-entry: drop the copy), ``merge`` for other
    duplicates (the copies differ; merge fields into the survivor), ``review`` below the
    threshold.
``seed``
    The design's weighted similarity: invoice number 0.3, total 0.25, client 0.25,
    created_at 0.2 (similarities as in ``sim_<field>``; missing counts 0), duplicate
    above 0.85; ``merge`` below 0.95, ``skip`` from 0.95 (the design's
    ``suggested_action``), ``review`` for pairs from 0.7 below the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Preset", "PRESETS"]


@dataclass(frozen=True)
class Preset:
    """A scoring model with its fixed decision threshold and review level."""

    name: str
    threshold: float
    review: float
    score: Callable[[dict], np.ndarray]
    action: Callable[[dict, np.ndarray, float], np.ndarray]


def _nz(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(x, nan=0.0)


def _log_odds(c: dict) -> np.ndarray:
    name = c["sim_client_name"]
    tax = c["tax_level"]
    name_w = np.select([np.isnan(name), name >= 0.92, name >= 0.8, name >= 0.7], [0, 2, 1, -2], -8)
    name_w = np.where(tax == 3, np.maximum(name_w, -1), name_w)  # renamed client: the tax id says it all
    email, addr = c["sim_client_email"], c["sim_client_address"]
    client = (np.select([tax == 3, tax == 2, tax == 1], [3, 0.5, -6], 0) + name_w
              + np.select([email == 1, email == 0], [1, -0.5], 0)
              + np.select([addr >= 0.9, addr < 0.6], [0.5, -0.5], 0))
    nothing = (tax == 0) & np.isnan(name) & np.isnan(email) & np.isnan(addr)
    client = np.where(nothing, -3, client)  # no client on one side: nothing says it is the same one
    client = np.clip(client, -8, 3)

    cents = c["cents_diff"]
    lines = c["sim_line_items"]
    content = (np.select([cents == 0, cents == 1, cents == 2, cents < 0], [2.5, 1.5, 0.5, 0], -8)
               + np.select([np.isnan(lines), lines >= 0.97, lines >= 0.85, lines >= 0.6], [0, 2, 1, -1], -4))
    content = np.clip(content, -10, 3)

    number = np.select([c["number_level"] >= 4, c["number_level"] == 3, c["number_level"] == 2,
                        c["number_level"] == 0], [5, 3.5, 2.5, 0], -12)
    days = c["days"]
    when = np.select([days <= 2, days <= 11, days <= 20], [1, 0, -3], -12)
    currency = np.where(c["same_currency"], 0, -6)
    return -2 + client + content + number + when + currency


def _invoice_score(c: dict) -> np.ndarray:
    return 1 / (1 + np.exp(-_log_odds(c)))


def _invoice_action(c: dict, score: np.ndarray, threshold: float) -> np.ndarray:
    plain = ((c["number_level"] >= 4) & (c["cents_diff"] == 0) & (_nz(c["sim_client_name"]) >= 0.92)
             & (np.nan_to_num(c["sim_line_items"], nan=1.0) >= 0.97))
    return np.where(score >= threshold, np.where(plain, "skip", "merge"), "review")


def _seed_score(c: dict) -> np.ndarray:
    return (0.3 * _nz(c["sim_invoice_number"]) + 0.25 * _nz(c["sim_total"]) + 0.25 * _nz(c["sim_client_name"])
            + 0.2 * _nz(c["sim_created_at"]))


def _seed_action(c: dict, score: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(score >= threshold, np.where(score < 0.95, "merge", "skip"), "review")


PRESETS = {
    "invoice": Preset("invoice", 0.5, 0.05, _invoice_score, _invoice_action),
    "seed": Preset("seed", 0.85, 0.7, _seed_score, _seed_action),
}
