"""Candidate pairs from several blocking rules, as integer index arrays (never N x N).

Each rule is a *sorted window*: rows are sorted by (group key, sort keys) and every row is
paired with the next ``window`` rows of the same group that pass the rule's filter. So a
rule yields at most ``n * window`` pairs however large a group is (50,000 invoices of one
client on one day stay bounded), and rows that sort close (same amount, nearby dates)
are paired first. A null group key (no tax id, no number) never groups.

Rules (bit in the ``rules`` mask, name):

====  ===============  ==============================================  =====================
bit   name             group / sort                                     keeps pairs with
====  ===============  ==============================================  =====================
1     tax_id           tax id / amount, date                            amount +-1 cent, 15 d
2     client_name      normalised name key / amount, date               amount +-1 cent, 15 d
4     invoice_number   fixed number / amount, date                      30 days
8     number_anagram   sorted characters of the number / amount, date   amount +-1 cent, 30 d
16    amount_date      amount in minor units (+-1 cent) / date          11 days
32    neighbourhood    (none) / name key, number tail, date             amount +-1 cent, 15 d
====  ===============  ==============================================  =====================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Keys", "candidate_pairs", "RULES"]

RULES = {"tax_id": 1, "client_name": 2, "invoice_number": 4, "number_anagram": 8, "amount_date": 16,
         "neighbourhood": 32}
_DAY = 86_400_000_000  # microseconds


@dataclass(frozen=True)
class Keys:
    """Integer blocking keys per row (-1: none)."""

    tax: np.ndarray
    name: np.ndarray
    number: np.ndarray
    anagram: np.ndarray
    tail: np.ndarray
    cents: np.ndarray  # int64 minor units; rows without a total get a unique sentinel
    has_cents: np.ndarray
    currency: np.ndarray
    created: np.ndarray  # int64 microseconds
    rank: np.ndarray  # rank of the id: the last sort key, so results do not depend on row order


def _window(group: np.ndarray, order_keys: tuple[np.ndarray, ...], window: int, keep) -> tuple[np.ndarray, ...]:
    """Pairs (a, b) of rows in the same group within ``window`` places in the sort order
    (the last of ``order_keys`` must be unique per row, so the order is total)."""
    order = np.lexsort(tuple(reversed((group,) + order_keys)))
    g = group[order]
    out_a, out_b = [], []
    for k in range(1, window + 1):
        if k >= len(order):
            break
        same = (g[:-k] == g[k:]) & (g[k:] >= 0)
        if not same.any():
            break  # groups are contiguous: none is larger than k
        a, b = order[:-k][same], order[k:][same]
        m = keep(a, b)
        out_a.append(a[m])
        out_b.append(b[m])
    if not out_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_a), np.concatenate(out_b)


def candidate_pairs(keys: Keys, *, window: int = 8, is_new: np.ndarray | None = None):
    """Deduplicated candidate pairs ``(a, b, rules)`` with ``a < b`` (row positions) and the
    bit mask of the rules that proposed each; with ``is_new``, only pairs touching a new row."""
    k = keys

    def close(days: int, cents: bool):
        def keep(a, b):
            m = (np.abs(k.created[a] - k.created[b]) <= days * _DAY) & (k.currency[a] == k.currency[b])
            if cents:
                m &= np.abs(k.cents[a] - k.cents[b]) <= 1
            if is_new is not None:
                m &= is_new[a] | is_new[b]
            return m
        return keep

    half = np.where(k.has_cents, k.cents // 2, -1)
    half_up = np.where(k.has_cents, (k.cents + 1) // 2, -1)
    everyone = np.zeros(len(k.cents), np.int64)
    rules = [
        ("tax_id", k.tax, (k.cents, k.created), close(15, True)),
        ("client_name", k.name, (k.cents, k.created), close(15, True)),
        ("invoice_number", k.number, (k.cents, k.created), close(30, False)),
        ("number_anagram", k.anagram, (k.cents, k.created), close(30, True)),
        ("amount_date", half, (k.created,), close(11, False)),
        ("amount_date", half_up, (k.created,), close(11, False)),
        ("neighbourhood", everyone, (k.name, k.tail, k.created), close(15, True)),
    ]
    found_a, found_b, found_bits = [], [], []
    for name, group, order_keys, keep in rules:
        w = 4 if name == "neighbourhood" else window
        a, b = _window(group, order_keys + (k.rank,), w, keep)
        found_a.append(np.minimum(a, b))
        found_b.append(np.maximum(a, b))
        found_bits.append(np.full(len(a), RULES[name], np.int64))
    return _dedupe(np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_bits), len(k.cents))


def _dedupe(a: np.ndarray, b: np.ndarray, bits: np.ndarray, n: int):
    key = a.astype(np.int64) * max(n, 1) + b
    order = np.argsort(key, kind="stable")
    key, bits = key[order], bits[order]
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(first)
    mask = np.bitwise_or.reduceat(bits, starts) if len(starts) else bits[:0]
    uk = key[starts]
    return uk // max(n, 1), uk % max(n, 1), mask
