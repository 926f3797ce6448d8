"""encrypt / decrypt: whole columns of an InvoiceSet, each distinct value once, in parallel."""

from __future__ import annotations

import logging
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .._args import expect
from ..errors import DecryptionError, UsageError
from ..schema import InvoiceSet
from . import _pool
from ._keys import Keys, as_keys, resolve_keys
from ._tokens import ENVELOPE_COLUMNS, ENVELOPE_HEAD, PREFIX, token_reason

__all__ = ["encrypt", "decrypt", "DEFAULT_FIELDS", "ENCRYPTABLE", "encrypted_mask"]

log = logging.getLogger("invoicekit.security")

#: the sensitive client fields: email, address, tax id, and ``client_data`` (the client JSON
#: as stored, which carries them and any bank details)
DEFAULT_FIELDS = ("client_email", "client_address", "client_tax_id", "client_data")
#: every column that may be encrypted (text columns about the client; the invoice's number,
#: amounts, line items and bookkeeping columns stay readable)
ENCRYPTABLE = ("client_name", *DEFAULT_FIELDS)

_STRING = pd.ArrowDtype(pa.string())


def _fields(fields: Iterable[str], invoices: pd.DataFrame, *, func: str) -> tuple[str, ...]:
    if isinstance(fields, str):
        fields = (fields,)
    fields = tuple(dict.fromkeys(fields))
    wrong = [f for f in fields if f not in ENCRYPTABLE]
    if wrong:
        raise UsageError(f"{func}: cannot encrypt {wrong}; fields= takes any of {list(ENCRYPTABLE)}")
    missing = [f for f in fields if f not in invoices.columns]
    if missing:
        raise UsageError(f"{func}: the invoices frame has no column(s) {missing}")
    return fields


def _column(invoices: pd.DataFrame, name: str) -> pa.ChunkedArray:
    return pa.chunked_array(pa.array(invoices[name].astype(_STRING)), pa.string())


def encrypted_mask(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """True where a text value is marked encrypted (``fernet:...`` or the client_data
    envelope), False elsewhere and for nulls."""
    marked = pc.or_(pc.starts_with(values, PREFIX), pc.starts_with(values, ENVELOPE_HEAD))
    return pc.fill_null(marked, False)


def _name_json(invoices: pd.DataFrame) -> pa.ChunkedArray:
    """``,"name":<JSON of client_name>`` per row (one vectorised JSON encode)."""
    import polars as pl

    names = pl.from_arrow(pa.table({"name": _column(invoices, "client_name")}))
    encoded = names.select(pl.struct("name").struct.json_encode()).to_series().to_arrow().cast(pa.string())
    return pc.binary_join_element_wise(",", pc.utf8_slice_codeunits(encoded, 1), "")


def _wrap(column: str, tokens: pa.ChunkedArray, invoices: pd.DataFrame, fields: tuple[str, ...]):
    if column not in ENVELOPE_COLUMNS:
        return pc.binary_join_element_wise(PREFIX, tokens, "")
    if "client_name" in fields or "client_name" not in invoices.columns:
        return pc.binary_join_element_wise(ENVELOPE_HEAD, tokens, '"}', "")
    return pc.binary_join_element_wise(ENVELOPE_HEAD, tokens, '"', _name_json(invoices), "")


def _encrypt_frame(invoices: pd.DataFrame, keys: Keys, fields: tuple[str, ...], workers: int | None) -> pd.DataFrame:
    cols = {f: _column(invoices, f) for f in fields}
    plain = {f: pc.invert(encrypted_mask(c)) for f, c in cols.items()}
    distinct = {f: pc.unique(c.filter(pc.and_(plain[f], pc.is_valid(c)))) for f, c in cols.items()}
    values = [v for f in fields for v in distinct[f].to_pylist()]
    tokens = pa.array(_pool.run("encrypt", keys.material(), values, workers=workers), pa.string())
    log.debug("encrypt: %d field(s), %d row(s), %d distinct value(s)", len(fields), len(invoices), len(values))
    out, offset = {}, 0
    for f in fields:
        n = len(distinct[f])
        mapped = pc.take(tokens.slice(offset, n), pc.index_in(cols[f], value_set=distinct[f]))
        offset += n
        if not isinstance(mapped, pa.ChunkedArray):
            mapped = pa.chunked_array([mapped])
        wrapped = _wrap(f, mapped, invoices, fields)
        out[f] = pd.Series(pd.arrays.ArrowExtensionArray(pc.if_else(plain[f], wrapped, cols[f])),
                           index=invoices.index, name=f)
    return invoices.assign(**out)


def encrypt(invoice_set: InvoiceSet, *, keys: Any = None, fields: Iterable[str] = DEFAULT_FIELDS,
            workers: int | None = None) -> InvoiceSet:
    """A new set whose ``fields`` hold Fernet tokens (under the newest key) instead of text.

    ``keys``: Fernet keys, newest first (a list of str/bytes, or :class:`Keys`); by default
    ``INVOICEKIT_KEYS`` (comma-separated), else ``INVOICEKIT_KEY_FILE`` (one per line); none
    is a :class:`~invoicekit.errors.KeyConfigError` saying how to supply one. Nulls stay
    null; values already encrypted are left as they are (no double encryption); each
    distinct value is encrypted once, in parallel chunks over ``workers`` processes
    (default: every core). The base snapshot, if any, is encrypted alike. Checksums are
    not touched: they stay those of the plaintext. Does not mutate ``invoice_set``.
    """
    keys = as_keys(keys, func="encrypt")
    invoice_set = expect(invoice_set, InvoiceSet, func="encrypt", param="invoice_set")
    fields = _fields(fields, invoice_set.invoices, func="encrypt")
    keys = resolve_keys(keys, func="encrypt")
    base = invoice_set.base
    frame = _encrypt_frame(invoice_set.invoices, keys, fields, workers)
    if base is not None:
        base = encrypt(base, keys=keys, fields=fields, workers=workers)
    return invoice_set.with_invoices(frame).with_base(base)


def _token_column(values: pa.ChunkedArray, marked) -> pa.ChunkedArray:
    envelope = pc.starts_with(values, ENVELOPE_HEAD)
    inner = pc.if_else(envelope, pc.utf8_slice_codeunits(values, len(ENVELOPE_HEAD)),
                       pc.utf8_slice_codeunits(values, len(PREFIX)))
    token = pc.list_element(pc.split_pattern(inner, '"', max_splits=1), 0)
    return pc.if_else(marked, token, pa.scalar(None, pa.string()))


def _failures(invoices: pd.DataFrame, column: str, tokens: pa.ChunkedArray, bad: list[str]) -> pd.DataFrame:
    hit = pc.fill_null(pc.is_in(tokens, value_set=pa.array(bad, pa.string())), False).to_numpy(zero_copy_only=False)
    reasons = {t: token_reason(t) for t in bad}
    failed = tokens.filter(pa.array(hit)).to_pylist()
    ids = invoices["id"].astype(object).to_numpy()[hit] if "id" in invoices.columns else [None] * len(failed)
    return pd.DataFrame({"id": list(ids), "column": column, "reason": [reasons[t] for t in failed]})


_HINTS = {
    "truncated_token": "the stored token is cut short or damaged; restore the value from a backup or the "
                       "central store",
    "foreign_token": "the value is marked encrypted but holds no Fernet token",
    "invalid_token": "the token was tampered with, or encrypted under a key that is not configured; add that "
                     "key to INVOICEKIT_KEYS after the newest one",
}


def _raise_failures(failures: pd.DataFrame, func: str) -> None:
    first = failures.iloc[0]
    more = f" ({len(failures)} value(s) in all fail; see .failures)" if len(failures) > 1 else ""
    raise DecryptionError(
        f"{func}: invoice {first['id']!r} column {first['column']!r}: no configured key opens its token"
        f"{more}; {_HINTS[first['reason']]}",
        invoice_id=first["id"], column=first["column"], failures=failures, reason=first["reason"])


def _decrypt_frame(invoices: pd.DataFrame, keys: Any, fields: tuple[str, ...], workers: int | None,
                   func: str) -> pd.DataFrame:
    cols = {f: _column(invoices, f) for f in fields}
    marked = {f: encrypted_mask(c) for f, c in cols.items()}
    fields = tuple(f for f in fields if pc.any(marked[f]).as_py())
    if not fields:
        return invoices
    keys = resolve_keys(keys, func=func)
    tokens = {f: _token_column(cols[f], marked[f]) for f in fields}
    distinct = {f: pc.unique(tokens[f].filter(marked[f])) for f in fields}
    values = [v for f in fields for v in distinct[f].to_pylist()]
    plain, bad = _pool.run("decrypt", keys.material(), values, workers=workers)
    log.debug("decrypt: %d field(s), %d row(s), %d distinct token(s)", len(fields), len(invoices), len(values))
    if bad:
        bad_tokens = {values[i] for i in bad}
        _raise_failures(pd.concat([_failures(invoices, f, tokens[f], [t for t in distinct[f].to_pylist()
                                                                       if t in bad_tokens]) for f in fields],
                                  ignore_index=True), func)
    plain_arr, out, offset = pa.array(plain, pa.string()), {}, 0
    for f in fields:
        n = len(distinct[f])
        mapped = pc.take(plain_arr.slice(offset, n), pc.index_in(tokens[f], value_set=distinct[f]))
        offset += n
        out[f] = pd.Series(pd.arrays.ArrowExtensionArray(pc.if_else(marked[f], mapped, cols[f])),
                           index=invoices.index, name=f)
    return invoices.assign(**out)


#: parsed client columns a loader takes from ``client_data`` (the envelope holds only the name)
_PARSED = {"client_email": "$.email", "client_address": "$.address", "client_tax_id": "$.tax_id"}


def _reparse(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Where ``client_data`` was just decrypted and a parsed client column is null (a loader
    parsed it from the envelope), that column as the loader parses it from the plaintext."""
    wanted = [c for c in _PARSED if c in after.columns]
    if "client_data" not in after.columns or not wanted:
        return after
    was = encrypted_mask(_column(before, "client_data"))
    if not pc.any(was).as_py():
        return after
    import duckdb

    paths = ", ".join(f"'{_PARSED[c]}'" for c in wanted)
    con = duckdb.connect()
    try:
        con.register("t", pa.table({"c": _column(after, "client_data")}))
        parsed = con.sql(f"SELECT TRY(json_extract_string(c, [{paths}])) AS v FROM t").to_arrow_table().column("v")
    finally:
        con.close()
    out = {}
    for i, c in enumerate(wanted):
        current = _column(after, c)
        fill = pc.and_(was, pc.is_null(current))
        value = pc.list_element(parsed, i).cast(pa.string())
        out[c] = pd.Series(pd.arrays.ArrowExtensionArray(pc.if_else(fill, value, current)), index=after.index, name=c)
    return after.assign(**out)


def decrypt(invoice_set: InvoiceSet, *, keys: Any = None, fields: Iterable[str] = ENCRYPTABLE,
            workers: int | None = None) -> InvoiceSet:
    """A new set whose encrypted ``fields`` hold their plaintext again (exactly the text
    encrypted, so checksums verify).

    Values that are not encrypted are left as they are, and a set with nothing encrypted
    needs no key. ``keys`` as for :func:`encrypt` (any of them may open a token). A value no
    key opens raises :class:`~invoicekit.errors.DecryptionError` naming the invoice and
    column (``failures`` lists every one). A store holds the client fields only inside
    ``client_data``, so a loader parses just the name from an encrypted one: where
    ``client_email``, ``client_address`` or ``client_tax_id`` is null on a row whose
    ``client_data`` is decrypted, it is parsed from the plaintext as a loader would. Does
    not mutate ``invoice_set``.
    """
    keys = as_keys(keys, func="decrypt")
    invoice_set = expect(invoice_set, InvoiceSet, func="decrypt", param="invoice_set")
    fields = _fields(fields, invoice_set.invoices, func="decrypt")
    frame = _decrypt_frame(invoice_set.invoices, keys, fields, workers, "decrypt")
    if "client_data" in fields:
        frame = _reparse(invoice_set.invoices, frame)
    base = invoice_set.base
    if base is not None:
        base = decrypt(base, keys=keys, fields=fields, workers=workers)
    return invoice_set.with_invoices(frame).with_base(base)
