"""SHA-256 row checksums, byte-identical to the field devices' and vectorised.

A device computes, for a stored row::

    relevant = ['invoice_number', 'client_data', 'line_items', 'total_amount']
    json_str = json.dumps({k: row.get(k) for k in relevant}, sort_keys=True, separators=(',', ':'))
    sha256(json_str.encode()).hexdigest()

with ``client_data``/``line_items`` as their stored JSON text and ``total_amount`` as a
Python float. :func:`checksum` builds the same JSON text for whole columns in DuckDB and
hashes it there. JSON escaping of printable ASCII is two replacements (``\\`` and
``"``); the rare row holding control or non-ASCII characters (which ``json.dumps``
escapes as ``\\uXXXX``) is serialised by ``json.dumps`` itself, so every row matches
byte for byte. ``total`` is a 2-decimal value, whose Python ``repr`` as a float is its
decimal text without trailing zeros (``12.50`` -> ``12.5``, ``3.00`` -> ``3.0``).
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pandas as pd
import pyarrow as pa

from . import _duck
from ._html import frame_html

__all__ = ["checksum", "verify", "tampered", "row_checksum"]

_COLS = ["invoice_number", "client_data", "line_items", "total"]


def _js(col: str) -> str:
    return (
        f"CASE WHEN {col} IS NULL THEN 'null' "
        f"ELSE '\"' || replace(replace({col}, '\\', '\\\\'), '\"', '\\\"') || '\"' END"
    )


_PYFLOAT = (
    "CASE WHEN total IS NULL THEN 'null' "
    "ELSE regexp_replace(regexp_replace(CAST(total AS VARCHAR), '0+$', ''), '\\.$', '.0') END"
)

_SQL = f"""
SELECT
  regexp_matches(coalesce(invoice_number, '') || coalesce(client_data, '') || coalesce(line_items, ''),
                 '[^ -~]') AS needs_python,
  sha256('{{"client_data":' || {_js('client_data')} || ',"invoice_number":' || {_js('invoice_number')}
         || ',"line_items":' || {_js('line_items')} || ',"total_amount":' || {_PYFLOAT} || '}}') AS sha
FROM t
"""


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
    """
    table = pa.Table.from_pandas(invoices[_COLS], preserve_index=False)
    con = _duck.connect(t=table)
    try:
        out = _duck.arrow(con, _SQL)
    finally:
        con.close()
    sha = out.column("sha").to_pandas(types_mapper=pd.ArrowDtype)
    sha.index = invoices.index
    slow = out.column("needs_python").to_numpy(zero_copy_only=False)
    if slow.any():
        sub = invoices.loc[slow, _COLS]
        sha.loc[slow] = [
            row_checksum(
                {
                    "invoice_number": None if pd.isna(n) else n,
                    "client_data": None if pd.isna(c) else c,
                    "line_items": None if pd.isna(li) else li,
                    "total_amount": None if pd.isna(t) else Decimal(str(t)),
                }
            )
            for n, c, li, t in sub.itertuples(index=False, name=None)
        ]
    return sha.rename("checksum")


def verify(invoices: pd.DataFrame) -> pd.Series:
    """Boolean Series: True where the stored ``checksum`` equals the recomputed one."""
    return (checksum(invoices) == invoices["checksum"]).fillna(False).astype(bool).rename("checksum_ok")


class TamperReport(pd.DataFrame):
    """Rows whose stored checksum does not match their content."""

    @property
    def _constructor(self):  # keep the subclass through pandas operations
        return TamperReport

    def _repr_html_(self) -> str:  # pragma: no cover - display only
        return f"<b>{len(self):,} row(s) fail their checksum</b>" + frame_html(pd.DataFrame(self))


def tampered(invoices: pd.DataFrame) -> pd.DataFrame:
    """The rows failing :func:`verify`: id, source, source_row, stored and computed checksum."""
    computed = checksum(invoices)
    bad = ~(computed == invoices["checksum"]).fillna(False).astype(bool)
    out = invoices.loc[bad, ["id", "source", "source_row", "checksum"]].rename(columns={"checksum": "stored"})
    out["computed"] = computed[bad]
    return out.reset_index(drop=True)
