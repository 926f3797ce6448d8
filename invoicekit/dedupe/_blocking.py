"""Candidate pairs from several blocking rules, as integer index arrays (never N x N).

Each rule is a *sorted window*: rows are sorted by (group key, sort keys) and every row is
paired with the next ``window`` rows of the same group that pass the rule's filter. So a
rule yields at most ``n * window`` pairs however large a group is (50,000 invoices of one
client on one day stay bounded), and rows that sort close (same amount, nearby dates)
are paired first. A null group key (no tax id, no number) never groups.

Each rule costs one sort of one int64 key (the integer codes of its sort keys packed
together, the date-and-id order last) and a few whole-array comparisons per window step.
In incremental runs (``is_new``) a rule sorts only the groups that hold a new row (for the
neighbourhood, the stretch of names around a new row's) and looks only at the new rows'
neighbours, so its pairs are exactly those of a run over all rows that touch a new row.

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
import polars as pl

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
    rank: np.ndarray  # tie-break among rows of the same ``created`` (the id's rank), so results do not
    # depend on row order; ``(created, rank)`` is unique per row


_FITS = 1 << 62


def _dense(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Order-preserving dense codes ``0..m-1`` of ``x``, and ``m`` (a count over the range of
    values when it is small, a sort otherwise)."""
    if not len(x):
        return np.zeros(0, np.int64), 1
    lo, hi = int(x.min()), int(x.max())
    if hi - lo < 4 * len(x) + 16:
        shifted = x.astype(np.int64) - lo
        present = np.bincount(shifted, minlength=hi - lo + 1) > 0
        if present.all():
            return shifted, hi - lo + 1
        return (np.cumsum(present) - 1)[shifted], int(present.sum())
    codes = pl.Series(x).rank("dense").cast(pl.Int64).to_numpy() - 1
    return codes, int(codes.max()) + 1


def _order(columns: list[np.ndarray]) -> np.ndarray:
    """Row order sorted by ``columns`` (the last one unique per row): their dense codes packed
    into one int64 key (re-densified whenever the next code would overflow it), one sort."""
    key, size = np.zeros(len(columns[0]), np.int64), 1
    for col in columns:
        codes, m = _dense(col)
        if size * m >= _FITS:
            key, size = _dense(key)
        key, size = key * m + codes, size * m
    return pl.Series(key).arg_sort().to_numpy()


def _near_new(codes: np.ndarray, is_new: np.ndarray, span: int) -> np.ndarray:
    """The rows a new row can be paired with by a rule grouping (``span`` 0) or sorting first
    (``span``: its window) by ``codes``: those whose code is within ``span`` codes of a new row's.
    Whole groups, so the rule's windows over them are the windows over all rows."""
    dense, m = _dense(codes)
    valid = codes >= 0 if span == 0 else np.ones(len(codes), bool)
    at = np.unique(dense[is_new & valid])
    edges = np.zeros(m + 1, np.int64)
    np.add.at(edges, np.maximum(at - span, 0), 1)
    np.add.at(edges, np.minimum(at + span + 1, m), -1)
    return np.flatnonzero((np.cumsum(edges)[:m] > 0)[dense] & valid)


def _window(order: np.ndarray, group: np.ndarray, window: int, keep, new: np.ndarray | None):
    """Pairs (a, b) of rows of the same group (``>= 0``) within ``window`` places in ``order``
    that ``keep(i, j)`` accepts (``i``, ``j``: sorted positions); with ``new`` (the sorted
    positions of new rows), only pairs that touch one."""
    g = group[order]
    n = len(order)
    out_a, out_b = [], []
    for k in range(1, window + 1):
        if k >= n:
            break
        if new is None:
            same = (g[:-k] == g[k:]) & (g[k:] >= 0)
            if not same.any():
                break  # groups are contiguous: none is larger than k
            i = np.flatnonzero(same & keep(slice(0, n - k), slice(k, n)))
        else:
            i = np.unique(np.r_[new[new < n - k], new[new >= k] - k])
            i = i[(g[i] == g[i + k]) & (g[i] >= 0)]
            i = i[keep(i, i + k)]
        out_a.append(order[i])
        out_b.append(order[i + k])
    if not out_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_a), np.concatenate(out_b)


def _close(created: np.ndarray, currency: np.ndarray, cents: np.ndarray | None, days: int):
    """The rule's filter over sorted positions ``i``, ``j``: dates within ``days``, same
    currency and (with ``cents``) amounts within a cent."""
    def keep(i, j):
        m = (np.abs(created[i] - created[j]) <= days * _DAY) & (currency[i] == currency[j])
        if cents is not None:
            m &= np.abs(cents[i] - cents[j]) <= 1
        return m
    return keep


def candidate_pairs(keys: Keys, *, window: int = 8, is_new: np.ndarray | None = None):
    """Deduplicated candidate pairs ``(a, b, rules)`` with ``a < b`` (row positions) and the
    bit mask of the rules that proposed each; with ``is_new``, only pairs touching a new row."""
    k = keys
    n = len(k.cents)
    # one time order (date, then id rank) serves as the last sort key of every rule
    by_time = pl.DataFrame({"t": k.created, "r": k.rank}).select(pl.arg_sort_by(["t", "r"])).to_series().to_numpy()
    tpos = np.empty(n, np.int64)
    tpos[by_time] = np.arange(n)
    cents = _dense(k.cents)[0] if is_new is None else k.cents  # densified once, or per subset below
    half = np.where(k.has_cents, k.cents // 2, -1)
    half_up = np.where(k.has_cents, (k.cents + 1) // 2, -1)
    rules = [
        ("tax_id", k.tax, (cents,), 15, True),
        ("client_name", k.name, (cents,), 15, True),
        ("invoice_number", k.number, (cents,), 30, False),
        ("number_anagram", k.anagram, (cents,), 30, True),
        ("amount_date", half, (), 11, False),
        ("amount_date", half_up, (), 11, False),
        ("neighbourhood", None, (k.name, k.tail), 15, True),
    ]
    found_a, found_b, found_bits = [], [], []
    for name, group, order_keys, days, with_cents in rules:
        w = 4 if name == "neighbourhood" else window
        if is_new is None:
            rows = slice(None)
        else:  # only the groups (or the stretch of the sort) that hold a new row
            rows = _near_new(k.name, is_new, w) if group is None else _near_new(group, is_new, 0)
        group = np.zeros(n, np.int64) if group is None else group
        order = np.arange(n)[rows][_order([c[rows] for c in (group, *order_keys, tpos)])]
        keep = _close(k.created[order], k.currency[order], k.cents[order] if with_cents else None, days)
        new = None if is_new is None else np.flatnonzero(is_new[order])
        a, b = _window(order, group, w, keep, new)
        found_a.append(np.minimum(a, b))
        found_b.append(np.maximum(a, b))
        found_bits.append(np.full(len(a), RULES[name], np.int64))
    return _dedupe(np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_bits), n)


def _dedupe(a: np.ndarray, b: np.ndarray, bits: np.ndarray, n: int):
    """One row per pair, its rules' bits or-ed: pairs and bits packed in one int64, sorted."""
    n = max(n, 1)
    key = np.sort((a.astype(np.int64) * n + b) * 64 + bits)
    pair = key >> 6
    first = np.ones(len(key), bool)
    first[1:] = pair[1:] != pair[:-1]
    starts = np.flatnonzero(first)
    mask = np.bitwise_or.reduceat(key & 63, starts) if len(starts) else bits[:0]
    uk = pair[starts]
    return uk // n, uk % n, mask
