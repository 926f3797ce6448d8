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

__all__ = ["prepare", "compare", "FIELDS", "NUMBER_LEVELS", "TAX_LEVELS"]

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
_CODED = ("number_plain", "number_folded", "number_fixed", "number_nozero", "number_tail", "tax", "email", "name_key",
          "number_anagram")


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


def prepare(inv: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-row normalised values, validity, codes and blocking keys of the invoices frame.

    Text values are numpy object arrays (``None`` for null); ``<name>_ok`` says where a
    value exists and ``<name>_code`` holds dense integer codes (-1: null) for exact
    equality. The line multisets are added later, for the rows in candidate pairs only
    (:func:`add_lines`).
    """
    forms = N.normalised({c: _strings(inv, c) for c in ("invoice_number", "client_tax_id", "client_name",
                                                          "client_email", "client_address")})
    codes = forms.select([(pl.col(c).rank("dense").cast(pl.Int64).fill_null(0) - 1).alias(c) for c in _CODED])
    out: dict[str, np.ndarray] = {}
    for key in N.TEXT_FORMS:
        values = forms.get_column(key)
        out[key] = values.to_numpy()
        out[f"{key}_ok"] = values.is_not_null().to_numpy()
    for key in _CODED:
        out[f"{key}_code"] = codes.get_column(key).to_numpy()
    bare = pl.col("number_fixed").str.contains(r"^[0-9]+$").fill_null(False)
    out["number_bare"] = forms.select(bare).to_series().to_numpy()
    cents, has_cents = _cents(_arrow(inv, "total"))
    created = pc.cast(_arrow(inv, "created_at"), pa.timestamp("us", tz="UTC")).cast(pa.int64())
    currency = pl.from_arrow(_strings(inv, "currency")).str.strip_chars().str.to_uppercase()
    out.update({
        "cents": cents, "has_cents": has_cents,
        "currency": currency.rank("dense").cast(pl.Int64).fill_null(0).to_numpy(),
        "created": pc.fill_null(created, 0).to_numpy(zero_copy_only=False),
    })
    return out


def add_lines(p: dict[str, np.ndarray], inv: pd.DataFrame, rows: np.ndarray) -> None:
    """Fill ``p["lines"]``/``p["lines_ok"]`` for ``rows`` (others stay missing)."""
    bags = np.full(len(p["cents"]), None, dtype=object)
    if len(rows):
        bags[rows] = line_bags(_strings(inv, "line_items").take(pa.array(rows)))
    p["lines"] = bags
    p["lines_ok"] = pd.notna(bags)


def _rapidfuzz():
    """rapidfuzz's ``fuzz``, ``process``, ``OSA`` and ``Levenshtein`` (the ``dedupe`` extra)."""
    try:
        from rapidfuzz import fuzz, process
        from rapidfuzz.distance import OSA, Levenshtein
    except ImportError:
        raise MissingDependencyError("rapidfuzz", "dedupe") from None
    return fuzz, process, OSA, Levenshtein


def _pair(scorer, sa: dict, sb: dict, key: str, workers: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``scorer`` over aligned values (missing -> ''), and where both sides exist."""
    ok = sa[f"{key}_ok"] & sb[f"{key}_ok"]
    if not len(ok):
        return np.zeros(0), ok
    aa = np.where(ok, sa[key], "")
    bb = np.where(ok, sb[key], "")
    out = _rapidfuzz()[1].cpdist(list(aa), list(bb), scorer=scorer, workers=workers)
    return np.asarray(out, dtype=np.float64), ok


def _pair_where(scorer, sa: dict, sb: dict, key: str, w: int, where: np.ndarray) -> np.ndarray:
    """Scores of ``scorer`` only for the pairs in ``where`` (0 elsewhere): saves the work."""
    out = np.zeros(len(where))
    idx = np.flatnonzero(where & sa[f"{key}_ok"] & sb[f"{key}_ok"])
    if len(idx):
        out[idx] = _rapidfuzz()[1].cpdist(list(sa[key][idx]), list(sb[key][idx]), scorer=scorer, workers=w)
    return out


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
    osa, ok_num = _pair(OSA.distance, sa, sb, "number_folded", w)
    lev = _pair_where(Levenshtein.distance, sa, sb, "number_folded", w, (osa == 1) & ~eq_fixed)
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

    tax_osa, ok_tax = _pair(OSA.distance, sa, sb, "tax", w)
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


