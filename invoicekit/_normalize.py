"""Raw store-shaped rows -> canonical :class:`InvoiceSet`, in one vectorised DuckDB pass.

Every loader (offline SQLite, central database, sample files) produces an Arrow table
in the *raw* shape below and hands it here, so parsing rules live in one place:

``source_row`` int64, ``id``, ``invoice_number``, ``client_data`` (JSON text),
``line_items`` (JSON text), ``total_amount`` (double, as SQLite hands it, or null),
``total_text`` (decimal or unparseable text, used when ``total_amount`` is null),
``currency``, ``created_at``/``modified_at``/``deleted_at`` (text or timestamps),
``version``, ``sync_status``, ``checksum``, ``source``.

What cannot be parsed is not dropped: the canonical field becomes null and a row in
``problems`` says which source row, field and rule.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from . import _duck
from .schema import INVOICE_SCHEMA, LINE_SCHEMA, PROBLEM_SCHEMA, InvoiceSet, merge_problems, to_frame

RAW_COLUMNS = [
    "source_row", "id", "invoice_number", "client_data", "line_items", "total_amount",
    "total_text", "currency", "created_at", "modified_at", "deleted_at", "version",
    "sync_status", "checksum", "source",
]

_LINE_STRUCT = '[{"description":"VARCHAR","quantity":"VARCHAR","unit_price":"VARCHAR"}]'

_INVOICES_SQL = """
WITH base AS (
  SELECT *,
    coalesce(TRY(json_type(client_data)) = 'OBJECT', false) AS client_ok,
    CASE WHEN total_amount IS NOT NULL THEN TRY_CAST(total_amount AS DECIMAL(12,2))
         ELSE TRY_CAST(trim(total_text) AS DECIMAL(12,2)) END AS total_dec,
    TRY_CAST(created_at AS TIMESTAMPTZ) AS created_ts,
    TRY_CAST(modified_at AS TIMESTAMPTZ) AS modified_ts,
    TRY_CAST(deleted_at AS TIMESTAMPTZ) AS deleted_ts
  FROM raw
), checked AS (
  SELECT *,
    CASE WHEN total_amount IS NOT NULL THEN TRY_CAST(total_dec AS DOUBLE) = total_amount
         ELSE TRY_CAST(trim(total_text) AS DECIMAL(38,10)) = total_dec END AS total_exact,
    CASE WHEN client_ok THEN json_extract_string(client_data, ['$.name', '$.email', '$.address', '$.tax_id'])
    END AS c
  FROM base
)
SELECT
  source_row::BIGINT AS source_row,
  c[1] AS client_name, c[2] AS client_email, c[3] AS client_address, c[4] AS client_tax_id,
  CASE WHEN total_exact THEN total_dec END AS total,
  created_ts AS created_at, modified_ts AS modified_at,
  TRY_CAST(version AS BIGINT) AS version,
  deleted_ts AS deleted_at,
  -- what did not parse (raw text kept only for those rows, for the problem report)
  client_data IS NOT NULL AND NOT client_ok AS client_bad,
  (total_amount IS NOT NULL OR total_text IS NOT NULL) AND NOT coalesce(total_exact, false) AS total_bad,
  created_at IS NOT NULL AND created_ts IS NULL AS created_bad,
  modified_at IS NOT NULL AND modified_ts IS NULL AS modified_bad,
  deleted_at IS NOT NULL AND deleted_ts IS NULL AS deleted_bad,
  CASE WHEN client_data IS NOT NULL AND NOT client_ok THEN left(client_data, 80) END AS client_raw,
  CASE WHEN (total_amount IS NOT NULL OR total_text IS NOT NULL) AND NOT coalesce(total_exact, false)
       THEN coalesce(total_amount::VARCHAR, total_text) END AS total_raw,
  CASE WHEN created_ts IS NULL THEN created_at::VARCHAR END AS created_raw,
  CASE WHEN modified_ts IS NULL THEN modified_at::VARCHAR END AS modified_raw,
  CASE WHEN deleted_ts IS NULL THEN deleted_at::VARCHAR END AS deleted_raw
FROM checked
"""

_LINES_SQL = f"""
CREATE TEMP TABLE ln AS
WITH checked AS (
  SELECT *, coalesce(CASE WHEN json_valid(line_items) THEN json_type(line_items) END = 'ARRAY', false) AS lines_ok
  FROM items
), parsed AS (
  SELECT id AS invoice_id, source, source_row,
    unnest(from_json(line_items, '{_LINE_STRUCT}')) AS item,
    unnest(range(1, json_array_length(line_items)::BIGINT + 1)) AS line_no
  FROM checked WHERE lines_ok
)
SELECT invoice_id, line_no::INTEGER AS line_no, source, source_row,
  item.description AS description,
  TRY_CAST(trim(item.quantity) AS DECIMAL(12,3)) AS quantity,
  TRY_CAST(trim(item.unit_price) AS DECIMAL(12,2)) AS unit_price,
  item.quantity AS quantity_raw, item.unit_price AS unit_price_raw,
  TRY_CAST(trim(item.quantity) AS DECIMAL(38,10)) AS quantity_wide,
  TRY_CAST(trim(item.unit_price) AS DECIMAL(38,10)) AS unit_price_wide
FROM parsed
"""

_BAD_JSON_ITEMS_SQL = """
SELECT source, source_row, id, 'unparseable_json' AS rule, 'line_items' AS field, left(line_items, 80) AS value,
       'line_items is not a JSON array' AS message
FROM items
WHERE line_items IS NOT NULL
  AND NOT coalesce(CASE WHEN json_valid(line_items) THEN json_type(line_items) END = 'ARRAY', false)
"""

_BAD_ITEMS_SQL = _BAD_JSON_ITEMS_SQL + """UNION ALL
SELECT source, source_row, invoice_id, 'not_numeric', 'line_items[' || line_no || '].quantity',
       quantity_raw, 'quantity is missing or not a number with at most 3 decimals'
FROM ln WHERE quantity IS NULL OR quantity_wide IS DISTINCT FROM quantity
UNION ALL
SELECT source, source_row, invoice_id, 'not_numeric', 'line_items[' || line_no || '].unit_price',
       unit_price_raw, 'unit_price is missing or not a number with at most 2 decimals'
FROM ln WHERE unit_price IS NULL OR unit_price_wide IS DISTINCT FROM unit_price
"""

_PROBLEMS_SQL = """
SELECT source, source_row, id, 'unparseable_json' AS rule, 'client_data' AS field,
       client_raw AS value,
       'client_data is not a JSON object' AS message
FROM inv WHERE client_bad
UNION ALL
SELECT source, source_row, id, 'not_numeric', 'total', total_raw,
       'total_amount is not a number with at most 2 decimals'
FROM inv WHERE total_bad
UNION ALL
SELECT source, source_row, id, 'bad_timestamp', 'created_at', created_raw, 'created_at is not a timestamp'
FROM inv WHERE created_bad
UNION ALL
SELECT source, source_row, id, 'bad_timestamp', 'modified_at', modified_raw, 'modified_at is not a timestamp'
FROM inv WHERE modified_bad
UNION ALL
SELECT source, source_row, id, 'bad_timestamp', 'deleted_at', deleted_raw, 'deleted_at is not a timestamp'
FROM inv WHERE deleted_bad
"""


TIMESTAMP_COLUMNS = ("created_at", "modified_at", "deleted_at")

_NAIVE, _UTC = pa.timestamp("us"), pa.timestamp("us", "UTC")


def _fast_timestamps(raw: pa.Table) -> pa.Table:
    """Timestamp text parsed by Arrow's ISO 8601 cast where a whole column takes it.

    Arrow parses the devices' ``isoformat()`` text about 7x faster than DuckDB's cast. It is
    stricter: a column it rejects anywhere (a leading space, ``24:00:00``, more than six
    fractional digits, naive and zoned values mixed, or text that is no timestamp at all)
    is left as text for DuckDB's ``TRY_CAST``, which also reports what does not parse. The
    one form Arrow takes and DuckDB does not, an hour without minutes, is screened out first
    (see :func:`_iso_cast`).
    Where Arrow accepts a value, both read it alike: naive text is UTC, an offset is
    applied (checked by a test against DuckDB).
    """
    for name in TIMESTAMP_COLUMNS:
        col = raw.column(name)
        if not pa.types.is_string(col.type) or col.null_count == len(col):
            continue
        parsed = _iso_cast(col)
        if parsed is not None:
            raw = raw.set_column(raw.schema.get_field_index(name), name, parsed)
    return raw


def _iso_cast(col: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """``col`` cast by Arrow to UTC timestamps, or None where DuckDB must decide.

    Arrow also takes an hour without minutes (``2026-03-01T10``, ``2026-03-01 10+02:00``),
    which DuckDB rejects and reports; such a column is left to DuckDB. Naive text of that
    form is exactly 13 characters long (every other naive form Arrow takes is 10, 16 or 19
    and more), which a length check finds without looking at the text; zoned text is
    checked for the ``:`` after the hour.
    """
    lengths = pc.binary_length(col)
    if not pc.any(pc.equal(lengths, 13)).as_py():
        try:
            return col.cast(_NAIVE).cast(_UTC)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    minutes = pc.or_(pc.equal(lengths, 10), pc.equal(pc.utf8_slice_codeunits(col, 13, 14), ":"))
    if not pc.all(minutes).as_py():
        return None
    try:
        return col.cast(_UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


#: the parse-failure flags of ``_INVOICES_SQL``, one per problem kind of ``_PROBLEMS_SQL``
_FLAGS = ("client_bad", "total_bad", "created_bad", "modified_bad", "deleted_bad")

ITEM_COLUMNS = ["id", "line_items", "source", "source_row"]
_PASSTHROUGH = ["id", "invoice_number", "client_data", "line_items", "currency", "sync_status", "checksum", "source"]


def explode_lines(items: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(lines, problems) parsed from the ``line_items`` text of ``items`` (columns
    :data:`ITEM_COLUMNS`), in one vectorised DuckDB pass."""
    con = _duck.connect(items=items.select(ITEM_COLUMNS))
    try:
        con.execute(_LINES_SQL)
        lines = _duck.arrow(
            con,
            """SELECT invoice_id, line_no, description,
                      CASE WHEN quantity_wide = quantity THEN quantity END AS quantity,
                      CASE WHEN unit_price_wide = unit_price THEN unit_price END AS unit_price,
                      CASE WHEN quantity_wide = quantity AND unit_price_wide = unit_price
                           THEN ROUND(quantity * unit_price, 2)::DECIMAL(12,2) END AS line_total
               FROM ln""",
        )
        problems = _duck.arrow(con, _BAD_ITEMS_SQL)
    finally:
        con.close()
    return lines.cast(LINE_SCHEMA), problems.cast(PROBLEM_SCHEMA)


def normalize(raw: pa.Table, *, lines: bool = True) -> InvoiceSet:
    """Parse a raw store-shaped Arrow table into an :class:`InvoiceSet` (see module doc).

    Line items are deferred: the set parses them on first use (see :class:`InvoiceSet`).
    ``lines=False`` leaves the lines frame empty (the ``line_items`` text is kept).
    """
    raw = _fast_timestamps(raw.select(RAW_COLUMNS))
    con = _duck.connect(raw=raw)
    try:
        # DuckDB computes only what needs parsing; the text columns pass through from the
        # raw table without a copy (DuckDB keeps the input order: checked on source_row)
        parsed = _duck.arrow(con, _INVOICES_SQL)
        if not parsed.column("source_row").equals(raw.column("source_row").cast(pa.int64())):
            raise AssertionError("normalize: parsed rows out of input order")  # pragma: no cover
        columns = {name: parsed.column(name) for name in parsed.column_names}
        for name in _PASSTHROUGH:
            columns[name] = raw.column(name).cast(pa.string())
        table = pa.table(columns)
        if any(pc.any(parsed.column(flag)).as_py() for flag in _FLAGS):
            con.register("inv", table)  # the problems are a filter over the flags
            problems = _duck.arrow(con, _PROBLEMS_SQL + " ORDER BY source, source_row, field")
        else:  # a clean store (the usual case) skips the five filters
            problems = PROBLEM_SCHEMA.empty_table()
    finally:
        con.close()
    invoices = table.select(INVOICE_SCHEMA.names).cast(INVOICE_SCHEMA)
    inv, probs = to_frame(invoices, INVOICE_SCHEMA), to_frame(problems.cast(PROBLEM_SCHEMA), PROBLEM_SCHEMA)
    if not lines:  # no line items wanted, but line_items text that is not a JSON array is still reported
        con = _duck.connect(items=invoices.select(ITEM_COLUMNS))
        try:
            bad = _duck.arrow(con, _BAD_JSON_ITEMS_SQL)
        finally:
            con.close()
        return InvoiceSet(inv, None, merge_problems(problems, bad) if bad.num_rows else probs)
    return InvoiceSet(inv, None, probs, pending_lines=invoices.select(ITEM_COLUMNS))
