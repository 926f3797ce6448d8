"""Normalised forms of the compared fields, all columns in one parallel polars pass.

:func:`normalised` takes Arrow string columns and returns a polars DataFrame with one
column per form below (null stays null; text that normalises to nothing becomes null, so
an empty client name never matches another). Text is cut to :data:`CUT` characters first,
so a 1 MB value costs no more than a short one.

Invoice numbers:

``number_plain``   upper case, every separator (space, dash, dot, slash, ...) removed:
                   ``inv-2026 000123`` -> ``INV2026000123``
``number_folded``  plain after OCR confusions are folded (O/Q/D->0, I/L->1, S->5, B->8, Z->2)
``number_fixed``   folded, and leading zeros of each digit group dropped:
                   ``INV-2O26-000I23`` -> ``1NV2026123``
``number_nozero``  folded with every zero removed (zero padding inside a number whose
                   separators were dropped: ``INV2026000123`` ~ ``INV-2026-123``)
``number_tail``    the last digit group of the folded number without leading zeros, for
                   numbers retyped without their prefix
``number_anagram`` the folded number's characters sorted (one transposition -> same key)

Client fields: ``name`` (case-folded, ``&`` -> ``and``, punctuation removed, legal form
such as GmbH/G.m.b.H./Ltd/Limited/Inc/SARL/BV dropped), ``name_key`` (name without
spaces), ``email`` (case-folded), ``address`` (case-folded, Street/St., straße/str.,
Road/Rd, Avenue/Ave unified), ``tax`` (upper case, separators removed).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

__all__ = ["normalised", "normalised_numbers", "CUT", "TEXT_FORMS"]

CUT = 200
_SEP = r"[^\p{L}\p{N}]+"
_OCR_FROM = ["O", "Q", "D", "I", "L", "S", "B", "Z"]
_OCR_TO = ["0", "0", "0", "1", "1", "5", "8", "2"]
#: legal forms dropped from client names (after lower-casing and removing dots)
_LEGAL = ["gmbh", "mbh", "ltd", "limited", "inc", "incorporated", "sarl", "sa", "sas", "bv", "nv", "ag", "kg",
          "llc", "plc", "co", "corp", "srl", "sl", "spzoo", "sp z oo", "aps", "ab", "aktiebolag", "oy", "as", "e k",
          "gbr", "ug"]
_LEGAL_RE = r"\s+(?:" + "|".join(sorted(_LEGAL, key=len, reverse=True)) + r")$"
_ADDRESS = [(r"\bstreet\b", "st"), (r"\bst\b", "st"), (r"straße\b", "str"), (r"strasse\b", "str"),
            (r"\broad\b", "rd"), (r"\bavenue\b", "ave"), (r"\bplace\b", "pl"), (r"\bsquare\b", "sq"),
            (r"\bboulevard\b", "blvd")]
#: the normalised text forms :func:`normalised` returns
TEXT_FORMS = ("number_plain", "number_folded", "number_fixed", "number_nozero", "number_tail", "tax", "name",
              "email", "address")


def _nonempty(e: pl.Expr) -> pl.Expr:
    return pl.when(e.str.len_chars() > 0).then(e).otherwise(None)


def _text(name: str) -> pl.Expr:
    return pl.col(name).str.slice(0, CUT).str.strip_chars()


def _folded(name: str) -> pl.Expr:
    return _text(name).str.to_uppercase().str.replace_many(_OCR_FROM, _OCR_TO).str.replace_all(_SEP, " ")


def _name(name: str) -> pl.Expr:
    e = _text(name).str.to_lowercase().str.replace_all("&", " and ", literal=True)
    e = e.str.replace_all(".", "", literal=True).str.replace_all(_SEP, " ").str.strip_chars()
    e = e.str.replace(_LEGAL_RE, "").str.replace(_LEGAL_RE, "")  # "Ltd Co"
    return e.str.strip_chars()


def _address(name: str) -> pl.Expr:
    e = _text(name).str.to_lowercase()
    for pattern, repl in _ADDRESS:
        e = e.str.replace_all(pattern, repl)
    return e.str.replace_all(_SEP, " ").str.strip_chars()


def normalised_numbers(numbers: pa.Array) -> pl.Series:
    """``number_nozero`` (the invoice-number blocking key) of ``numbers`` alone."""
    df = pl.from_arrow(pa.table({"invoice_number": numbers}))
    return df.select(_nonempty(_folded("invoice_number").str.replace_all(r"[ 0]+", ""))).to_series()


def number_weeks(numbers: pa.Array, weeks) -> pl.Series:
    """``number_nozero`` joined with a week number: the key of the invoice-number rule's
    neighbourhood in incremental runs (null where there is no number)."""
    return pl.select(normalised_numbers(numbers) + "|" + pl.Series(weeks).cast(pl.String)).to_series()


def normalised(columns: dict[str, pa.Array]) -> pl.DataFrame:
    """The normalised forms (see module doc) of ``invoice_number``, ``client_tax_id``,
    ``client_name``, ``client_email`` and ``client_address``."""
    df = pl.from_arrow(pa.table({k: columns[k] for k in ("invoice_number", "client_tax_id", "client_name",
                                                          "client_email", "client_address")}))
    base = df.select(
        number_plain=_nonempty(_text("invoice_number").str.to_uppercase().str.replace_all(_SEP, "")),
        folded=_folded("invoice_number"),
        tax=_nonempty(_text("client_tax_id").str.to_uppercase().str.replace_all(_SEP, "")),
        name=_nonempty(_name("client_name")),
        email=_nonempty(_text("client_email").str.to_lowercase()),
        address=_nonempty(_address("client_address")),
    )
    folded = pl.col("folded")
    out = base.select(
        "number_plain",
        number_folded=_nonempty(folded.str.replace_all(" ", "", literal=True)),
        number_fixed=_nonempty((pl.lit(" ") + folded).str.replace_all(r"([^0-9])0+([0-9])", "${1}${2}")
                               .str.replace_all(" ", "", literal=True)),
        number_nozero=_nonempty(folded.str.replace_all(r"[ 0]+", "")),
        number_tail=_nonempty(folded.str.extract(r"([0-9]+)[^0-9]*$", 1).str.replace(r"^0+([0-9])", "${1}")),
        tax="tax", name="name", email="email", address="address",
        name_key=pl.col("name").str.replace_all(" ", "", literal=True),
    )
    return out.with_columns(number_anagram=anagram_codes(out.get_column("number_folded")))


def anagram_codes(values: pl.Series, width: int = 32) -> pl.Series:
    """Dense codes of each string's bytes sorted (first ``width`` bytes), so strings that
    differ by a transposition share a code; null for null. Whole-array numpy, no loop."""
    arr = values.to_arrow()
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    arr = arr.cast(pa.large_string())
    n = len(arr)
    if n == 0:
        return pl.Series("number_anagram", [], dtype=pl.Int64)
    _, offs_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offs_buf, dtype=np.int64)[arr.offset:arr.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None and data_buf.size else np.zeros(1, np.uint8)
    idx = offsets[:-1, None] + np.arange(width)
    inside = idx < offsets[1:, None]
    mat = np.where(inside, data[np.minimum(idx, len(data) - 1)], 0).astype(np.uint8)
    mat.sort(axis=1)
    keys = np.ascontiguousarray(mat).view(f"V{width}").ravel()
    _, codes = np.unique(keys, return_inverse=True)
    out = pl.Series("number_anagram", codes.astype(np.int64))
    return pl.select(pl.when(values.is_not_null()).then(out).otherwise(None)).to_series().alias("number_anagram")
