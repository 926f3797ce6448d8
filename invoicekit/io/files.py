"""Invoice files that are not stores: JSON Lines and Parquet, and one loader for anything.

:func:`read_file` reads a JSON Lines or Parquet file of invoices into an
:class:`~invoicekit.schema.InvoiceSet` through the same parser as the stores (so every
problem is reported with the file and its row, 1-based). Rows may be in the stores' shape
(``total_amount``, as :func:`invoicekit.samples.write_jsonl` writes) or in the canonical
one (``total``, as ``InvoiceSet.invoices.to_parquet(...)`` writes); ``client_data`` and
``line_items`` are the JSON texts the checksums are taken over. Columns other than those
below are ignored; ``currency``, ``modified_at``, ``deleted_at``, ``version``,
``sync_status`` and ``checksum`` may be missing (null).

:func:`read_any` loads whatever names invoices: a central store URL, a central SQLite
file, an offline store (SQLite), a ``.jsonl``/``.ndjson`` or ``.parquet`` file (by content:
SQLite and Parquet files are recognised by their first bytes, anything else is read as
JSON Lines).
"""

from __future__ import annotations

import os

from .. import _duck
from ..errors import StoreSchemaError, driver_errors, translate
from ..schema import InvoiceSet

__all__ = ["read_file", "read_any", "FILE_COLUMNS", "REQUIRED_FILE_COLUMNS"]

#: the columns read from a file (others are ignored)
FILE_COLUMNS = ("id", "invoice_number", "client_data", "line_items", "total_amount", "total", "currency",
                "created_at", "modified_at", "deleted_at", "version", "sync_status", "checksum")
#: the columns a file must have (and one of ``total_amount`` / ``total``)
REQUIRED_FILE_COLUMNS = ("id", "invoice_number", "client_data", "line_items", "created_at")

_SQLITE_MAGIC = b"SQLite format 3\x00"
_PARQUET_MAGIC = b"PAR1"

_RAW_SQL = """
SELECT row_number() OVER () AS source_row, {id} AS id, {invoice_number} AS invoice_number,
       {client_data} AS client_data, {line_items} AS line_items, NULL::DOUBLE AS total_amount,
       coalesce({total_amount}, {total}) AS total_text, {currency} AS currency, {created_at} AS created_at,
       {modified_at} AS modified_at, {deleted_at} AS deleted_at, {version} AS version,
       {sync_status} AS sync_status, {checksum} AS checksum, $source AS source
FROM {scan}
"""


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(16)
    except OSError as exc:
        raise translate(exc, store=path, context="read_file") from None


def _columns(con, scan: str, params: dict) -> set[str]:
    return {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}", params).fetchall()}


def read_file(path: str | os.PathLike, *, lines: bool = True) -> InvoiceSet:
    """Read a JSON Lines or Parquet file of invoices (see module doc); rows keep their
    1-based position in the file as ``source_row``. A missing required column is a
    :class:`~invoicekit.errors.StoreSchemaError` naming the file and the columns."""
    from .._normalize import RAW_COLUMNS, normalize

    path = os.fspath(path)
    parquet = _head(path).startswith(_PARQUET_MAGIC)
    scan = "read_parquet($path)" if parquet else (
        "read_json($path, format = 'newline_delimited', columns = {"
        + ", ".join(f"{c}: 'VARCHAR'" for c in FILE_COLUMNS) + "})")
    con = _duck.connect()
    params = {"path": path}
    try:
        if parquet:
            have = _columns(con, scan, params)
        else:  # a key absent from every row comes back null: a missing column (an empty file has none)
            rows, *present = con.execute(
                "SELECT count(*), " + ", ".join(f"count({c})" for c in FILE_COLUMNS) + f" FROM {scan}",
                params).fetchall()[0]
            have = {c for c, n in zip(FILE_COLUMNS, present) if n or not rows}
        missing = [c for c in REQUIRED_FILE_COLUMNS if c not in have]
        if not {"total_amount", "total"} & have:
            missing.append("total_amount (or total)")
        if missing:
            raise StoreSchemaError(f"{path}: the file lacks column(s) {', '.join(missing)}; expected invoices in "
                                   "the stores' row shape (invoicekit.samples.write_jsonl) or the canonical one "
                                   "(InvoiceSet.invoices)", store=path, missing=missing)
        cols = {c: f'CAST("{c}" AS VARCHAR)' if c in have else "NULL::VARCHAR" for c in FILE_COLUMNS}
        raw = _duck.arrow(con, _RAW_SQL.format(scan=scan, **cols), {**params, "source": path})
    except driver_errors() as exc:
        raise translate(exc, store=path, context="read_file") from None
    finally:
        con.close()
    return normalize(raw.select(RAW_COLUMNS), lines=lines)


def read_any(source: str | os.PathLike, *, currency: str | None = None, lines: bool = True) -> InvoiceSet:
    """Load ``source``: a central store URL or file, an offline store, a JSON Lines or Parquet
    file (see module doc). ``currency`` is the offline stores' default currency."""
    from .central import read_central
    from .local import read_local

    text = os.fsdecode(os.fspath(source))
    if "://" in text:
        return read_central(text, lines=lines)
    if not _head(text).startswith(_SQLITE_MAGIC):
        return read_file(text, lines=lines)
    try:
        return read_local(text, lines=lines, currency=currency)
    except StoreSchemaError as offline:  # not an offline store: a central SQLite store, or neither
        try:
            return read_central(f"sqlite:///{os.path.abspath(text)}", lines=lines)
        except StoreSchemaError:
            raise offline from None
