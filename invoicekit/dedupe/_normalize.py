"""Normalised forms of the compared fields, each distinct value normalised once (polars).

:func:`coded` takes Arrow string columns and returns, per form below, the sorted distinct
normalised values and one integer code per row (-1: null), so equality is a comparison
of integers and a client's name, repeated on thousands of invoices, is normalised once;
:func:`normalised` expands them to a polars DataFrame with one column per form. Null stays
null; text that normalises to nothing becomes null, so an empty client name never matches
another. Text is cut to :data:`CUT` characters first, so a 1 MB value costs no more than a
short one.

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
``number_anagram`` code of the folded number's multiset of characters (one transposition
                   -> same code)

Client fields: ``name`` (case-folded, ``&`` -> ``and``, punctuation removed, legal form
such as GmbH/G.m.b.H./Ltd/Limited/Inc/SARL/BV dropped), ``name_key`` (name without
spaces), ``email`` (case-folded), ``address`` (case-folded, Street/St., straße/str.,
Road/Rd, Avenue/Ave unified), ``tax`` (upper case, separators removed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Coded", "coded", "distinct", "code", "normalised", "anagram_codes", "CUT", "FORMS", "TEXT_FORMS"]

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


@dataclass(frozen=True)
class Coded:
    """One normalised form: ``values`` its distinct values (numpy object array), ``codes``
    one per row (-1: null) indexing them. Values are sorted, so codes follow the values'
    order and never the rows', except for the forms in :data:`_UNORDERED` (only ever tested
    for equality or fed to symmetric scorers, so any consistent code does)."""

    values: np.ndarray
    codes: np.ndarray

    def per_row(self) -> np.ndarray:
        """The form's value of each row (object array, ``None`` for null)."""
        return np.append(self.values, None)[self.codes]


#: forms only ever compared for equality (or by symmetric scorers), coded by hashing alone; the
#: others (sort keys of the neighbourhood rule, and the client fields) also sort their distinct values
_UNORDERED = ("number_plain", "number_folded", "number_fixed", "number_nozero")


def _client_forms() -> dict[str, tuple[str, pl.Expr]]:
    return {
        "tax": ("client_tax_id", _nonempty(_text("client_tax_id").str.to_uppercase().str.replace_all(_SEP, ""))),
        "name": ("client_name", _nonempty(_name("client_name"))),
        "email": ("client_email", _nonempty(_text("client_email").str.to_lowercase())),
        "address": ("client_address", _nonempty(_address("client_address"))),
    }


def _number_forms() -> dict[str, pl.Expr]:
    """Forms of the invoice number, over its OCR-folded text ``folded``."""
    folded = pl.col("folded")
    return {
        "number_folded": _nonempty(folded.str.replace_all(" ", "", literal=True)),
        "number_fixed": _nonempty((pl.lit(" ") + folded).str.replace_all(r"([^0-9])0+([0-9])", "${1}${2}")
                                  .str.replace_all(" ", "", literal=True)),
        "number_nozero": _nonempty(folded.str.replace_all(r"[ 0]+", "")),
        "number_tail": _nonempty(folded.str.extract(r"([0-9]+)[^0-9]*$", 1).str.replace(r"^0+([0-9])", "${1}")),
    }


def distinct(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The distinct values of ``arr`` (in no particular order) and each row's index into them (-1: null)."""
    if isinstance(arr, pa.ChunkedArray):
        enc = pc.dictionary_encode(arr)  # one dictionary for all chunks: no copy of the text
        dictionaries = {len(c.dictionary) for c in enc.chunks}
        if enc.num_chunks and len(dictionaries) == 1:
            indices = pa.chunked_array([c.indices for c in enc.chunks])
            return enc.chunk(0).dictionary, pc.fill_null(indices, -1).to_numpy().astype(np.int64)
        arr = arr.combine_chunks()
    enc = pc.dictionary_encode(arr)
    idx = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return enc.dictionary, idx


def _select(df: pl.DataFrame, *stages: dict[str, pl.Expr]) -> pl.DataFrame:
    """``df.select(stages[0]).with_columns(stages[1])...`` on polars' streaming engine, which
    runs one expression over several cores (the eager engine runs each on one)."""
    lazy = df.lazy().select(**stages[0])
    for stage in stages[1:]:
        lazy = lazy.with_columns(**stage)
    return lazy.collect(engine="streaming")


def code(values: pl.Series, idx: np.ndarray, ordered: bool = True) -> Coded:
    """:class:`Coded` of the rows whose value is ``values[idx]`` (``idx`` -1: null): equal
    values found by hashing, then (``ordered``) sorted, so codes follow the values' order."""
    uniq, codes = distinct(values.to_arrow())
    if ordered:
        rank = pl.from_arrow(uniq).rank("dense").cast(pl.Int64).to_numpy() - 1
        codes = np.append(rank, -1)[codes]
        uniq = uniq.take(pa.array(np.argsort(rank)))
    return Coded(uniq.to_numpy(zero_copy_only=False), np.append(codes, -1)[idx])


def _numbers(numbers: pa.Array, wanted: set[str]) -> dict[str, Coded]:
    """The invoice-number forms in ``wanted`` (all its forms are computed from distinct numbers)."""
    dictionary, idx = distinct(numbers)
    base = pl.from_arrow(pa.table({"invoice_number": dictionary.cast(pa.string())}))
    first = {"folded": _folded("invoice_number")}
    if "number_plain" in wanted:
        first["number_plain"] = _nonempty(_text("invoice_number").str.to_uppercase().str.replace_all(_SEP, ""))
    need = set(wanted) | ({"number_folded"} if "number_anagram" in wanted else set()) \
        | ({"number_fixed"} if "number_bare" in wanted else set())
    df = _select(base, first, {k: e for k, e in _number_forms().items() if k in need})
    out = {k: code(df.get_column(k), idx, k not in _UNORDERED) for k in df.columns if k in wanted}
    if "number_anagram" in wanted:
        anagram = anagram_codes(df.get_column("number_folded"))
        size = int(anagram.max()) + 1 if len(anagram) else 0
        out["number_anagram"] = Coded(np.arange(size), np.append(anagram, -1)[idx])
    if "number_bare" in wanted:
        bare = df.select(pl.col("number_fixed").str.contains(r"^[0-9]+$").fill_null(False)).to_series()
        out["number_bare"] = Coded(np.array([False, True]), np.append(bare.cast(pl.Int64).to_numpy(), 0)[idx])
    return out


#: every form :func:`coded` can return
FORMS = (*TEXT_FORMS, "name_key", "number_anagram", "number_bare")


def coded(columns: dict[str, pa.Array], forms=FORMS) -> dict[str, Coded]:
    """The ``forms`` (see module doc; default all) of the source columns given, each distinct
    source value normalised once."""
    wanted = set(forms)
    out: dict[str, Coded] = {}
    if "invoice_number" in columns:
        out.update(_numbers(columns["invoice_number"], {f for f in wanted if f.startswith("number_")}))
    for name, (source, expr) in _client_forms().items():
        if source not in columns or not ({name, "name_key"} if name == "name" else {name}) & wanted:
            continue
        dictionary, idx = distinct(columns[source])
        stages = [{name: expr}]
        if name == "name":
            stages.append({"name_key": pl.col("name").str.replace_all(" ", "", literal=True)})
        df = _select(pl.from_arrow(pa.table({source: dictionary.cast(pa.string())})), *stages)
        out.update({k: code(df.get_column(k), idx) for k in df.columns if k in wanted})
    return out


def normalised(columns: dict[str, pa.Array]) -> pl.DataFrame:
    """The normalised forms (see module doc) of ``invoice_number``, ``client_tax_id``,
    ``client_name``, ``client_email`` and ``client_address``, one row per input row."""
    forms = coded(columns)
    out = {name: pl.Series(name, forms[name].per_row(), dtype=pl.String) for name in (*TEXT_FORMS, "name_key")}
    anagram = forms["number_anagram"].codes
    out["number_anagram"] = pl.Series("number_anagram", anagram).set(pl.Series(anagram < 0), None)
    return pl.DataFrame(out)


#: a random 64-bit key per byte value: a string's multiset key is the sum of its bytes' keys
_BYTE_KEYS = np.random.default_rng(20261203).integers(0, 2**64, size=256, dtype=np.uint64)


def anagram_codes(values: pl.Series, width: int = 32) -> np.ndarray:
    """Codes of the multiset of each string's first ``width`` bytes, so strings that differ
    by a transposition share a code (-1: null). The multiset's key is the sum (mod 2**64) of
    a random 64-bit key per byte: order-free, so no sort per string and no loop (two
    different multisets share a key with odds of about 2**-60, which would only propose one
    more candidate pair); equal keys are then coded by hashing."""
    arr = values.to_arrow()
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    arr = arr.cast(pa.large_string())
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.int64)
    _, offs_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offs_buf, dtype=np.int64)[arr.offset:arr.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None and data_buf.size else np.zeros(1, np.uint8)
    lengths = np.diff(offsets)
    if lengths.max() <= width:  # the usual case: every byte counts, in place
        kept, starts = data[offsets[0]:offsets[-1]], offsets[:-1] - offsets[0]
    else:
        lengths = np.minimum(lengths, width)
        row = np.repeat(np.arange(n), lengths)
        starts = np.cumsum(lengths) - lengths  # where each row's bytes start among the bytes kept
        kept = data[np.arange(len(row)) - starts[row] + offsets[:-1][row]]
    total = np.concatenate([np.zeros(1, np.uint64), np.cumsum(_BYTE_KEYS[kept], dtype=np.uint64)])
    keys = total[starts + lengths] - total[starts]  # wraps mod 2**64, like the sum
    _, codes = distinct(pa.array(keys))
    return np.where(values.is_not_null().to_numpy(), codes, -1)
