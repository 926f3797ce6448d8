"""Field comparisons over whole arrays of pairs (rapidfuzz ``cpdist``, numpy), no per-pair Python.

:func:`prepare` turns the invoices into per-row arrays of normalised values (strings cut
to a bounded length, so a 1 MB description costs no more than a short one);
:func:`compare` takes those values for the two sides of a chunk of pairs and returns
one array per similarity (``sim_<field>``, 0-1, NaN where a side is missing) and the
discrete levels the scorers and reasons use. ``compare`` is a pure function of plain
numpy arrays, so chunks can run on any ``concurrent.futures.Executor``.

Line items are compared as a multiset: each invoice's lines become
``description x quantity @ unit price`` strings, sorted and joined, so two invoices with
the same lines in another order compare equal and a typo costs a little.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .. import _duck
from ..errors import MissingDependencyError
from . import _normalize as N

__all__ = ["prepare", "block_columns", "add_lines", "compare", "FIELDS", "INPUTS", "NUMBER_LEVELS", "TAX_LEVELS"]

#: the compared fields, in the order of the ``sim_<field>`` columns
FIELDS = ("invoice_number", "client_tax_id", "client_name", "client_email", "client_address", "total",
          "created_at", "line_items")
#: invoice-number agreement levels (higher is closer)
NUMBER_LEVELS = {0: "missing", 1: "different", 2: "same digits, prefix dropped", 3: "one transposition",
                 4: "equal after OCR fixes", 5: "equal"}
TAX_LEVELS = {0: "missing", 1: "different", 2: "one character off", 3: "equal"}
_LINES_SQL = """
SELECT left(array_to_string(list_sort(list_transform(
         TRY(json_transform(line_items,
             '[{"description": "VARCHAR", "quantity": "DECIMAL(18,3)", "unit_price": "DECIMAL(18,2)"}]')),
         lambda x: left(lower(trim(coalesce(x.description, ''))), 60)
                   || ' x' || coalesce(x.quantity::VARCHAR, '?') || ' @' || coalesce(x.unit_price::VARCHAR, '?'))),
       ' | '), 600) AS bag
FROM t
"""
#: the forms that block (:func:`block_columns`) and what :func:`compare` reads
_KEY_FORMS = ("tax", "name_key", "number_nozero", "number_anagram", "number_tail")
_CODED = ("number_plain", "number_folded", "number_fixed", "number_nozero", "number_tail", "tax", "email", "name_key",
          "number_anagram", "name", "address")
INPUTS = ("number_plain_code", "number_fixed_code", "number_folded_code", "number_tail_code", "number_folded",
          "number_folded_ok", "number_fixed", "number_fixed_ok", "number_bare", "tax", "tax_ok", "tax_code", "name",
          "name_ok", "name_code", "address", "address_ok", "address_code", "lines", "lines_ok", "lines_code",
          "email_ok", "email_code", "cents", "has_cents", "created", "currency")
#: the forms whose text :func:`prepare` returns (the others are needed as codes only)
_VALUES = ("number_folded", "number_fixed", "tax", "name", "email", "address")
_SOURCE_COLUMNS = ("invoice_number", "client_tax_id", "client_name", "client_email", "client_address")


def _arrow(frame: pd.DataFrame, name: str) -> pa.Array:
    values = frame[name]
    arrow = getattr(values.array, "_pa_array", None)
    arr = arrow if arrow is not None else pa.array(values, from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _strings(frame: pd.DataFrame, name: str) -> pa.Array:
    arr = _arrow(frame, name)
    return arr if pa.types.is_string(arr.type) else arr.cast(pa.string())


def line_bags(line_items: pa.Array) -> np.ndarray:
    """The sorted line multiset of each invoice as one string (None: no parseable lines)."""
    con = _duck.connect(t=pa.table({"line_items": line_items}))
    try:
        bag = _duck.arrow(con, _LINES_SQL).column("bag")
    finally:
        con.close()
    bags = pl.from_arrow(bag)
    return pl.select(pl.when(bags.str.len_chars() > 0).then(bags).otherwise(None)).to_series().to_numpy()


def _cents(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Exact minor units (int64) and validity of a decimal total column."""
    if not pa.types.is_decimal(arr.type):
        arr = arr.cast(pa.decimal128(18, 2))
    scaled = pc.multiply(arr.cast(pa.decimal128(max(arr.type.precision, 16) + 2, 2)),
                         pa.scalar(100, pa.decimal128(3, 0)))
    valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    cents = pc.fill_null(scaled.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    return cents, valid


def _column(frames: list[pd.DataFrame], name: str) -> pa.Array | pa.ChunkedArray:
    """String column ``name`` of ``frames``, one after the other (chunked: not copied)."""
    arrays = [_strings(f, name) for f in frames]
    return arrays[0] if len(arrays) == 1 else pa.chunked_array(arrays, pa.string())


def _scalars(frames: list[pd.DataFrame]) -> dict[str, np.ndarray]:
    """Minor units, date (microseconds) and currency code of each row."""
    cents, has_cents, created = [], [], []
    for f in frames:
        c, ok = _cents(_arrow(f, "total"))
        us = pc.cast(_arrow(f, "created_at"), pa.timestamp("us", tz="UTC")).cast(pa.int64())
        cents.append(c)
        has_cents.append(ok)
        created.append(pc.fill_null(us, 0).to_numpy(zero_copy_only=False))
    values, idx = N.distinct(_column(frames, "currency"))
    currency = pl.from_arrow(values.cast(pa.string())).str.strip_chars().str.to_uppercase()
    rank = currency.rank("dense").cast(pl.Int64).fill_null(0).to_numpy()
    return {"cents": np.concatenate(cents), "has_cents": np.concatenate(has_cents),
            "currency": np.append(rank, 0)[idx], "created": np.concatenate(created)}


def block_columns(frames: list[pd.DataFrame]) -> dict[str, np.ndarray]:
    """What blocking needs of the rows of ``frames`` (one after the other): the codes of the
    key forms, minor units, date and currency; cheaper than :func:`prepare`."""
    forms = N.coded({c: _column(frames, c) for c in ("invoice_number", "client_tax_id", "client_name")},
                    _KEY_FORMS)
    out = {f"{key}_code": forms[key].codes for key in _KEY_FORMS}
    out.update(_scalars(frames))
    return out


def prepare(inv: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-row normalised values, validity, codes and blocking keys of the invoices frame.

    Text values (the forms in :data:`_VALUES`) are numpy object arrays (``None`` for null);
    ``<name>_ok`` says where a value exists and ``<name>_code`` holds dense integer codes
    (-1: null) for exact equality. Each distinct value is normalised once. The line
    multisets are added later, for the rows in candidate pairs only (:func:`add_lines`).
    """
    forms = N.coded({c: _strings(inv, c) for c in _SOURCE_COLUMNS})
    out: dict[str, np.ndarray] = {}
    for key in N.TEXT_FORMS:
        if key in _VALUES:
            out[key] = forms[key].per_row()
        out[f"{key}_ok"] = forms[key].codes >= 0
    for key in _CODED:
        out[f"{key}_code"] = forms[key].codes
    out["number_bare"] = forms["number_bare"].per_row().astype(bool)
    out.update(_scalars([inv]))
    return out


def add_lines(p: dict[str, np.ndarray], inv: pd.DataFrame, rows: np.ndarray) -> None:
    """Fill ``p["lines"]``/``p["lines_ok"]``/``p["lines_code"]`` for ``rows`` (others stay
    missing); each distinct line-items text is parsed once."""
    codes = np.full(len(p["cents"]), -1, np.int64)
    values = np.zeros(0, dtype=object)
    if len(rows):
        texts, idx = N.distinct(_strings(inv, "line_items").take(pa.array(rows)))
        bags = N.code(pl.Series(line_bags(texts.cast(pa.string())), dtype=pl.String), idx)
        codes[rows], values = bags.codes, bags.values
    p["lines"] = N.Coded(values, codes).per_row()
    p["lines_ok"] = codes >= 0
    p["lines_code"] = codes


def _rapidfuzz():
    """rapidfuzz's ``fuzz``, ``process``, ``OSA`` and ``Levenshtein`` (the ``dedupe`` extra)."""
    try:
        from rapidfuzz import fuzz, process
        from rapidfuzz.distance import OSA, Levenshtein
    except ImportError:
        raise MissingDependencyError("rapidfuzz", "dedupe") from None
    return fuzz, process, OSA, Levenshtein


def _scores(scorer, sa: dict, sb: dict, key: str, w: int, where: np.ndarray | None, same: float) -> np.ndarray:
    """``scorer`` of the pairs in ``where`` (default all) where both sides exist, 0 elsewhere:
    ``same`` where the two values are equal (equal codes), and one ``cpdist`` call over the
    distinct pairs of unequal values only (the scorers are symmetric, so a pair's two values
    go in code order and each distinct pair is scored once)."""
    ca, cb = sa[f"{key}_code"], sb[f"{key}_code"]
    sel = sa[f"{key}_ok"] & sb[f"{key}_ok"]
    if where is not None:
        sel = sel & where
    out = np.zeros(len(ca))
    out[sel & (ca == cb)] = same
    idx = np.flatnonzero(sel & (ca != cb))
    if not len(idx):
        return out
    lo, hi = np.minimum(ca[idx], cb[idx]), np.maximum(ca[idx], cb[idx])
    uniq, pair = N.distinct(pa.array(lo * (int(hi.max()) + 1) + hi))
    first = np.zeros(len(uniq), np.int64)
    first[pair] = idx
    va, vb = sa[key][first], sb[key][first]
    swap = ca[first] > cb[first]
    left, right = np.where(swap, vb, va), np.where(swap, va, vb)
    scores = _rapidfuzz()[1].cpdist(list(left), list(right), scorer=scorer, workers=w)
    out[idx] = np.asarray(scores, dtype=np.float64)[pair]
    return out


def _pair(scorer, sa: dict, sb: dict, key: str, workers: int = -1,
          same: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``scorer`` over aligned values (0 where a side is missing), and where both sides exist."""
    return _scores(scorer, sa, sb, key, workers, None, same), sa[f"{key}_ok"] & sb[f"{key}_ok"]


def _pair_where(scorer, sa: dict, sb: dict, key: str, w: int, where: np.ndarray, same: float = 100.0) -> np.ndarray:
    """Scores of ``scorer`` only for the pairs in ``where`` (0 elsewhere): saves the work."""
    return _scores(scorer, sa, sb, key, w, where, same)


def _eq(sa: dict, sb: dict, key: str) -> np.ndarray:
    """Exact equality (by code), False where either side is missing."""
    a, b = sa[f"{key}_code"], sb[f"{key}_code"]
    return (a == b) & (a >= 0)


def compare(sa: dict[str, np.ndarray], sb: dict[str, np.ndarray], workers: int = -1) -> dict[str, np.ndarray]:
    """Similarities and levels of aligned pairs (``sa[f][i]`` vs ``sb[f][i]``); ``workers``
    threads for rapidfuzz (-1: all cores)."""
    fuzz, _, OSA, Levenshtein = _rapidfuzz()
    w = workers
    out: dict[str, np.ndarray] = {}
    eq_plain = _eq(sa, sb, "number_plain")
    eq_fixed = _eq(sa, sb, "number_fixed") | _eq(sa, sb, "number_folded")
    eq_tail = _eq(sa, sb, "number_tail")
    osa, ok_num = _pair(OSA.distance, sa, sb, "number_folded", w, same=0)
    lev = _pair_where(Levenshtein.distance, sa, sb, "number_folded", w, (osa == 1) & ~eq_fixed, same=0)
    level = np.where(~ok_num, 0, 1)
    bare = sa["number_bare"] | sb["number_bare"]  # one was retyped without its prefix
    level = np.where(ok_num & eq_tail & bare, 2, level)
    level = np.where(ok_num & (osa == 1) & (lev == 2), 3, level)
    level = np.where(eq_fixed, 4, level)
    level = np.where(eq_plain, 5, level)
    out["number_level"] = level.astype(np.int8)
    ratio_num = _pair_where(fuzz.ratio, sa, sb, "number_fixed", w, level == 1)
    sim = np.select([level == 5, level == 4, level == 3, level == 2], [1.0, 0.95, 0.9, 0.8], 0.7 * ratio_num / 100)
    out["sim_invoice_number"] = np.where(ok_num, sim, np.nan)

    tax_osa, ok_tax = _pair(OSA.distance, sa, sb, "tax", w, same=0)
    tlevel = np.select([~ok_tax, tax_osa == 0, tax_osa <= 1], [0, 3, 2], 1)
    out["tax_level"] = tlevel.astype(np.int8)
    tax_ratio = _pair_where(fuzz.ratio, sa, sb, "tax", w, tlevel == 1)
    out["sim_client_tax_id"] = np.where(ok_tax, np.select([tlevel == 3, tlevel == 2], [1.0, 0.9], tax_ratio / 200),
                                        np.nan)
    for field, key, scorer in (("client_name", "name", fuzz.token_sort_ratio),
                               ("client_address", "address", fuzz.token_sort_ratio),
                               ("line_items", "lines", fuzz.ratio)):
        s, ok = _pair(scorer, sa, sb, key, w)
        out[f"sim_{field}"] = np.where(ok, s / 100, np.nan)
    ok_mail = sa["email_ok"] & sb["email_ok"]
    out["sim_client_email"] = np.where(ok_mail, _eq(sa, sb, "email").astype(float), np.nan)
    both = sa["has_cents"] & sb["has_cents"]
    diff = np.abs(sa["cents"] - sb["cents"])
    out["cents_diff"] = np.where(both, diff, -1)
    scale = np.maximum(np.maximum(np.abs(sa["cents"]), np.abs(sb["cents"])), 1)
    out["sim_total"] = np.where(both, np.select([diff == 0, diff <= 1], [1.0, 0.99],
                                                0.9 * np.clip(1 - diff / scale, 0, 1)), np.nan)
    days = np.abs(sa["created"] - sb["created"]) / 86_400e6
    out["days"] = days
    out["sim_created_at"] = np.clip(1 - days / 30, 0, 1)
    out["same_currency"] = sa["currency"] == sb["currency"]
    return out


