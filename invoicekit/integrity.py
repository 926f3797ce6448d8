"""SHA-256 row checksums, byte-identical to the field devices' and vectorised.

A device computes, for a stored row::

    relevant = ['invoice_number', 'client_data', 'line_items', 'total_amount']
    json_str = json.dumps({k: row.get(k) for k in relevant}, sort_keys=True, separators=(',', ':'))
    sha256(json_str.encode()).hexdigest()

with ``client_data``/``line_items`` as their stored JSON text and ``total_amount`` as a
Python float. :func:`checksum` builds the same JSON text for whole columns with Polars
(its JSON encoder escapes quotes, backslashes and control characters exactly as
``json.dumps`` does) and hashes it with ``polars-hash`` (Rust, SHA-NI where the CPU has
it). Rows holding DEL or non-ASCII text, which ``json.dumps`` escapes as ``\\uXXXX``, get
their strings from ``json.dumps`` itself, one call per column, so every row matches byte
for byte. ``total`` is a 2-decimal value: its cents divided by 100 (an IEEE division, the
correctly rounded float ``float(Decimal)`` gives) go into the same JSON pass, which writes
floats as Python's ``repr`` does in this range; totals of other types take the text rule
(``repr`` of a float with at most 2 decimals is its decimal text without trailing zeros:
``12.50`` -> ``12.5``, ``3.00`` -> ``3.0``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._args import as_invoices_frame
from ._html import frame_html

__all__ = ["checksum", "verify", "tampered", "row_checksum", "nested_checksum"]

_COLS = ["invoice_number", "client_data", "line_items", "total"]


_TEXT = ("client_data", "invoice_number", "line_items")  # the devices' keys, sorted


def _total_text(pl, *, two_decimals: bool = False):
    """``repr(float(total))`` of a 2-decimal value: its decimal text without trailing zeros.

    ``two_decimals``: the column is a decimal of scale 2, whose text always ends in two
    digits, so dropping one final ``0`` is enough (``12.50`` -> ``12.5``, ``3.00`` -> ``3.0``)
    and no regular expression is needed.
    """
    text = pl.col("total").cast(pl.Utf8)
    if two_decimals:
        tot = pl.when(text.str.ends_with("0")).then(text.str.head(-1)).otherwise(text)
    else:
        tot = text.str.replace(r"0+$", "").str.replace(r"\.$", ".0")
    return pl.when(pl.col("total").is_null()).then(pl.lit("null")).otherwise(tot)


def _escaped_ascii(values: pa.ChunkedArray) -> pa.Array:
    """``json.dumps`` of every string (``null`` for None), with ``ensure_ascii``: one C call
    over the whole column. Inside an encoded string every ``"`` is escaped, so ``","``
    only ever separates two elements."""
    texts = values.to_pylist()
    encoded = json.dumps(["" if t is None else t for t in texts], separators=(",", ":"))[2:-2].split('","')
    return pc.if_else(values.is_null(), "null", pc.binary_join_element_wise('"', pa.array(encoded), '"', ""))


#: the largest precision of a 2-decimal total read by :func:`_float_total`: its cents are below
#: 2**53 (exact as a float64, so cents / 100 is the correctly rounded float Python's
#: ``float(Decimal)`` gives) and its magnitude below 1e16 (where ``repr`` keeps fixed notation)
_CENTS_PRECISION = 15


def _float_total(total: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """``float(total)`` as the devices hash it, for a 2-decimal ``total`` of at most
    :data:`_CENTS_PRECISION` digits (else None): its cents, read from the buffers (the low
    word of each int128), divided by 100 by NumPy (an IEEE division, correctly rounded;
    Polars would multiply by 0.01, which is not)."""
    kind = total.type
    if not (pa.types.is_decimal(kind) and kind.bit_width == 128 and kind.scale == 2
            and kind.precision <= _CENTS_PRECISION and sys.byteorder == "little"):
        return None
    chunks = []
    for chunk in total.chunks:
        if not len(chunk):
            continue
        # each value is a two's-complement int128; below 2**63 its low word is the value
        words = np.frombuffer(chunk.buffers()[1], dtype=np.int64, count=2 * (chunk.offset + len(chunk)))
        mask = chunk.is_null().to_numpy(zero_copy_only=False) if chunk.null_count else None
        chunks.append(pa.array(words[2 * chunk.offset::2] / 100.0, pa.float64(), mask=mask))
    return pa.chunked_array(chunks, pa.float64())


def _checksum_table(table: pa.Table) -> pa.Array:
    """SHA-256 hex of the devices' JSON text of every row of ``table`` (columns _COLS)."""
    import polars as pl
    import polars_hash as plh

    total = table.schema.field("total").type
    if pa.types.is_integer(total) or (pa.types.is_decimal(total) and total.scale == 0):
        # whole numbers: their float repr ends in ".0", which a text rule needs a decimal point for
        table = table.set_column(table.schema.get_field_index("total"), "total",
                                 table.column("total").cast(pa.decimal128(38, 1)))
    floats = _float_total(table.column("total")) if table.num_rows else None
    df = pl.from_arrow(table if floats is None else table.append_column("total_amount", floats))
    if not isinstance(df, pl.DataFrame) or df.height == 0:
        return pa.array([], pa.string())
    two = pa.types.is_decimal(total) and total.scale == 2
    # JSON encoders agree on escaping printable ASCII and control characters; json.dumps
    # also escapes DEL and everything non-ASCII as \uXXXX, which those rows get below
    # (found on the encoded text itself: its keys and total are ASCII)
    if floats is not None:
        # the usual case, in one pass: the total as the float the devices hash, which Polars
        # writes as Python's repr does (shortest round trip, fixed notation in this range)
        text = pl.struct([*_TEXT, "total_amount"]).struct.json_encode()
    else:
        text = pl.concat_str([pl.struct(list(_TEXT)).struct.json_encode().str.head(-1), pl.lit(',"total_amount":'),
                              _total_text(pl, two_decimals=two), pl.lit("}")])
    encoded = pl.col("text")
    slow_rows = (encoded.str.len_bytes() != encoded.str.len_chars()) | encoded.str.contains("\x7f", literal=True)
    # one lazy query per slice, run side by side by Polars' thread pool (a single query
    # over one chunk would encode and hash on one core)
    step = -(-df.height // max(1, min(pl.thread_pool_size(), df.height // 50_000 or 1)))
    parts = [df.slice(i, step).lazy().with_columns(text.alias("text")).select(
        plh.col("text").chash.sha2_256().alias("sha"), slow_rows.alias("slow")) for i in range(0, df.height, step)]
    out = pl.concat(parts).collect()
    sha, slow = out.get_column("sha"), out.get_column("slow")
    if slow.any():
        sub = table.filter(slow.to_arrow())
        escaped = [_escaped_ascii(sub.column(c)) for c in _TEXT]
        tot = pl.from_arrow(sub.select(["total"])).select(_total_text(pl)).to_series().to_arrow().cast(pa.string())
        exact = pc.binary_join_element_wise('{"client_data":', escaped[0], ',"invoice_number":', escaped[1],
                                            ',"line_items":', escaped[2], ',"total_amount":', tot, "}", "")
        fixed = pl.DataFrame({"t": pl.from_arrow(exact)}).select(plh.col("t").chash.sha2_256()).to_series()
        sha = sha.scatter(slow.arg_true(), fixed)
    return sha.to_arrow()


def _plaintext(invoices: pd.DataFrame, *, func: str) -> pd.DataFrame:
    """``invoices`` with encrypted ``client_data`` decrypted (checksums are over the
    plaintext), using the configured keys; a KeyConfigError when none are configured.
    One vectorised prefix test when nothing is encrypted; ``security`` is imported only
    when something is."""
    if "client_data" not in invoices.columns:
        return invoices
    data = pa.array(invoices["client_data"].astype(pd.ArrowDtype(pa.string())))
    if not pc.any(pc.starts_with(data, '{"encrypted":"fernet:')).as_py():
        return invoices
    from .errors import KeyConfigError
    from .security import KEY_HELP, configured_keys, decrypt

    keys = configured_keys()
    if keys is None:
        n = int(pc.sum(pc.starts_with(data, '{"encrypted":"fernet:')).as_py())
        raise KeyConfigError(f"{func}: {n:,} row(s) hold encrypted client_data and checksums are taken over the "
                             f"plaintext: decrypt first (invoicekit.decrypt(invoice_set, keys=...)), or {KEY_HELP}",
                             reason="encrypted_without_key")
    from .schema import InvoiceSet

    return decrypt(InvoiceSet(invoices), keys=keys, fields=["client_data"]).invoices


def row_checksum(row: dict) -> str:
    """The devices' checksum of one offline-schema row (``total_amount`` may be a Decimal).

    This is the reference definition; :func:`checksum` computes the same for columns.
    """
    data = {k: row.get(k) for k in ["invoice_number", "client_data", "line_items", "total_amount"]}
    if isinstance(data["total_amount"], Decimal):
        data["total_amount"] = float(data["total_amount"])
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def checksum(invoices: pd.DataFrame) -> pd.Series:
    """SHA-256 hex of every row of ``invoices`` (canonical columns ``invoice_number``,
    ``client_data``, ``line_items``, ``total``), as the devices compute it.

    Returns a string Series aligned with ``invoices``' index. Does not mutate the input.
    ``invoices`` may also be an InvoiceSet or a store path or URL (loaded for you).
    Encrypted ``client_data`` (:func:`invoicekit.encrypt`) is checksummed as its plaintext,
    decrypted with the configured keys (``INVOICEKIT_KEYS`` / ``INVOICEKIT_KEY_FILE``); with
    none configured it is a :class:`~invoicekit.errors.KeyConfigError`, never a checksum of
    the ciphertext.
    """
    invoices = _plaintext(as_invoices_frame(invoices, func="checksum", columns=_COLS), func="checksum")
    table = pa.Table.from_pandas(invoices[_COLS], preserve_index=False)
    sha = pd.Series(_checksum_table(table), index=invoices.index, dtype=pd.ArrowDtype(pa.string()))
    return sha.rename("checksum")


def nested_checksum(invoices: pd.DataFrame) -> pd.Series:
    """The devices' checksum taken over the *parsed* client and line-item JSON.

    A device that holds ``client_data`` and ``line_items`` as objects when it checksums
    (the design's function handed dicts) hashes them nested, keys sorted, compactly; the
    text it then stores may be spaced or ordered otherwise. Both readings are genuine. Null
    where the text does not parse. One ``json`` round trip per row: :func:`verify` uses it
    only for the rows whose text reading fails.
    """
    out = []
    for number, client, items, total in zip(invoices["invoice_number"].astype(object),
                                            invoices["client_data"].astype(object),
                                            invoices["line_items"].astype(object), invoices["total"].astype(object)):
        try:
            data = {"invoice_number": None if pd.isna(number) else number,
                    "client_data": json.loads(client), "line_items": json.loads(items),
                    "total_amount": None if pd.isna(total) else float(total)}
            text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            out.append(None)
            continue
        out.append(hashlib.sha256(text.encode()).hexdigest())
    return pd.Series(out, index=invoices.index, dtype=pd.ArrowDtype(pa.string()), name="checksum")


def verify(invoices: pd.DataFrame) -> pd.Series:
    """Boolean Series: True where the stored ``checksum`` equals the recomputed one, over the
    stored JSON text or (for a device that checksummed objects) over the parsed JSON."""
    invoices = _plaintext(as_invoices_frame(invoices, func="verify", columns=[*_COLS, "checksum"]), func="verify")
    ok = (checksum(invoices) == invoices["checksum"]).fillna(False).astype(bool)
    if not ok.all():
        rest = invoices[~ok.to_numpy()]
        ok[~ok.to_numpy()] = (nested_checksum(rest) == rest["checksum"]).fillna(False).astype(bool).to_numpy()
    return ok.rename("checksum_ok")


class TamperReport(pd.DataFrame):
    """Rows whose stored checksum does not match their content."""

    @property
    def _constructor(self):  # keep the subclass through pandas operations
        return TamperReport

    def _repr_html_(self) -> str:  # pragma: no cover - display only
        return f"<b>{len(self):,} row(s) fail their checksum</b>" + frame_html(pd.DataFrame(self))


def tampered(invoices: pd.DataFrame) -> pd.DataFrame:
    """The rows failing :func:`verify`: id, source, source_row, stored and computed checksum."""
    columns = [*_COLS, "id", "source", "source_row", "checksum"]
    invoices = _plaintext(as_invoices_frame(invoices, func="tampered", columns=columns), func="tampered")
    computed = checksum(invoices)
    bad = ~verify(invoices).to_numpy()
    out = invoices.loc[bad, ["id", "source", "source_row", "checksum"]].rename(columns={"checksum": "stored"})
    out["computed"] = computed[bad]
    return out.reset_index(drop=True)
