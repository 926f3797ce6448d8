"""Raw store-shaped rows -> canonical :class:`InvoiceSet`, in one vectorised DuckDB pass.

Every loader (offline SQLite, central database, sample files) produces an Arrow table
in the *raw* shape below and hands it here, so parsing rules live in one place:

``source_row`` int64, ``id``, ``invoice_number``, ``client_data`` (JSON text),
``line_items`` (JSON text), ``total_amount`` (double, as SQLite hands it, or null),
``total_text`` (decimal or unparseable text, used when ``total_amount`` is null),
``currency``, ``created_at``/``modified_at``/``deleted_at`` (text or timestamps),
``version``, ``sync_status``, ``checksum``, ``source``.

What cannot be parsed is not dropped: the canonical field becomes null and a row in
``problems`` says which source row, field and rule. That includes values that parse but
that the central store cannot hold (see :mod:`invoicekit.io._central_sql`): an amount
beyond ``NUMERIC(12,2)`` (total, unit price, line total) or a quantity beyond
``NUMERIC(12,3)`` is ``out_of_range``; a timestamp outside years 1 to 9999 UTC (what
every client's date type holds) is ``bad_timestamp``. Such a row is kept.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from . import _duck
from .schema import INVOICE_SCHEMA, LINE_SCHEMA, MONEY, PROBLEM_SCHEMA, QUANTITY, InvoiceSet, merge_problems, to_frame


def _largest(kind: pa.Decimal128Type) -> Decimal:
    return Decimal(10) ** (kind.precision - kind.scale) - Decimal(1).scaleb(-kind.scale)


# -- what the central store can hold (invoicekit.io._central_sql), declared once ---------
#: the largest amount (total, unit price, line total) ``NUMERIC(12,2)`` holds, either sign
MAX_MONEY = _largest(MONEY)
#: the largest quantity ``NUMERIC(12,3)`` holds, either sign
MAX_QUANTITY = _largest(QUANTITY)
#: the largest version the central ``INTEGER`` column holds
MAX_VERSION = 2**31 - 1
#: the timestamps every client can read back (Python's datetime: years 1 to 9999), in UTC
TIMESTAMP_RANGE = ("0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00")
#: SQL: the timestamp before it lies in :data:`TIMESTAMP_RANGE`
IN_TIMESTAMP_RANGE = f"BETWEEN TIMESTAMPTZ '{TIMESTAMP_RANGE[0]}' AND TIMESTAMPTZ '{TIMESTAMP_RANGE[1]}'"
#: a number of seconds since 1970-01-01 UTC, as SQLite's ``CAST(x AS TEXT)`` writes an INTEGER or
#: REAL column (at most 6 decimals: a REAL keeps 15 significant digits, so microseconds of a
#: REAL epoch are not all kept by the device either); a magnitude of 1e11 and more is read as
#: milliseconds (1e11 seconds is the year 5138; every millisecond count since March 1973 is
#: larger)
EPOCH_PATTERN = r"[+-]?[0-9]{1,15}(\.[0-9]{0,6})?"


def timestamptz_sql(expr: str) -> str:
    """SQL (DuckDB) reading ``expr`` (text) as a TIMESTAMPTZ, or NULL where it is none.

    ISO 8601 text in every form DuckDB's cast takes (``T`` or a space, any fraction, ``Z``,
    an offset), and epoch numbers (:data:`EPOCH_PATTERN`): devices written by other
    software store ``created_at`` as ``INTEGER`` or ``REAL`` seconds.
    """
    text = f"trim(CAST({expr} AS VARCHAR))"
    number = f"TRY_CAST({text} AS DECIMAL(21,6))"
    return (f"coalesce(TRY_CAST({expr} AS TIMESTAMPTZ), "
            f"CASE WHEN regexp_full_match({text}, '{EPOCH_PATTERN}') "
            f"THEN TRY(make_timestamp(CAST({number} * CASE WHEN abs({number}) >= 1e11 THEN 1000 ELSE 1000000 END"
            f" AS BIGINT))::TIMESTAMPTZ) END)")


#: a JSON ``\u0000`` escape (an odd number of backslashes before ``u0000``), which PostgreSQL's
#: ``jsonb`` refuses; the same pattern in DuckDB (RE2) and Python ``re``
NUL_ESCAPE = r"(^|[^\\])(\\\\)*\\u0000"


def _beyond(text: str, largest: Decimal) -> str:
    """SQL: ``text`` is a number (not NaN or Infinity) whose magnitude rounds beyond ``largest``."""
    half = Decimal(5).scaleb(largest.as_tuple().exponent - 1)
    return (f"coalesce(regexp_matches({text}, '^[-+]?\\.?[0-9]') "
            f"AND abs(TRY_CAST({text} AS DOUBLE)) >= {largest + half}, false)")


#: PostgreSQL's numeric (what jsonb keeps a JSON number as): at most 131072 digits before the
#: decimal point and 16383 after it, counted from the number as written
_PG_NUMERIC_DIGITS = (131072, 16383)

# A JSON number token's digits before the point (i), after it (f) and exponent (e), for
# _pg_refuses_json; e is a DOUBLE, so an exponent too long for any integer is infinite
_TOKEN_PARTS = ("regexp_extract(n, '^[0-9]+')", "regexp_extract(n, '\\.([0-9]+)', 1)",
                "coalesce(TRY_CAST(nullif(regexp_extract(n, '[eE]([-+]?[0-9]+)', 1), '') AS DOUBLE), 0)")
_NUMBER_BEYOND = (
    "length({f}) - {e} > {after} OR ((ltrim({i}, '0') <> '' OR ltrim({f}, '0') <> '') AND "
    "CASE WHEN ltrim({i}, '0') <> '' THEN length(ltrim({i}, '0')) + {e} "
    "ELSE {e} - (length({f}) - length(ltrim({f}, '0'))) END > {before})"
).format(i=_TOKEN_PARTS[0], f=_TOKEN_PARTS[1], e=_TOKEN_PARTS[2], before=_PG_NUMERIC_DIGITS[0],
         after=_PG_NUMERIC_DIGITS[1])


def _pg_refuses_json(text: str) -> str:
    """SQL: JSON that DuckDB reads but PostgreSQL's json/jsonb parser refuses: NaN or Infinity
    (any case), a trailing comma, or a number beyond numeric's digits. ``text`` is valid
    JSON to DuckDB. Most text passes a cheap screen (every value after a colon a string or
    null, the text ending in a string or null and its brace; anything nested is screened
    in); the rest is looked at with its strings blanked out, so only structure and numbers
    remain."""
    bare = f"""regexp_replace({text}, '"(?:[^"\\\\]|\\\\.)*"', '""', 'g')"""
    exact = (f"(regexp_matches({bare}, '(?i)nan|inf') OR regexp_matches({bare}, ',\\s*[\\]}}]') "
             f"OR coalesce(list_bool_or(list_transform("
             f"regexp_extract_all({bare}, '[0-9]+(?:\\.[0-9]+)?(?:[eE][-+]?[0-9]+)?'), lambda n: {_NUMBER_BEYOND})), "
             "false))")
    screen = (f"""(regexp_matches({text}, ':\\s*(?:[^"\\sn]|n[^u])') """
              f"""OR NOT (suffix({text}, '"}}') OR suffix({text}, 'null}}')))""")
    return f"CASE WHEN {screen} THEN {exact} ELSE false END"


def _double_beyond(value: str, largest: Decimal) -> str:
    """SQL: the DOUBLE ``value`` is finite and its magnitude rounds beyond ``largest``."""
    half = Decimal(5).scaleb(largest.as_tuple().exponent - 1)
    return f"coalesce(isfinite({value}) AND abs({value}) >= {largest + half}, false)"

RAW_COLUMNS = [
    "source_row", "id", "invoice_number", "client_data", "line_items", "total_amount",
    "total_text", "currency", "created_at", "modified_at", "deleted_at", "version",
    "sync_status", "checksum", "source",
]

_LINE_STRUCT = '[{"description":"VARCHAR","quantity":"VARCHAR","unit_price":"VARCHAR"}]'

_INVOICES_SQL = f"""
WITH base AS (
  SELECT *,
    coalesce(TRY(json_type(client_data)) = 'OBJECT', false) AS client_json,
    -- jsonb (the central client_data) parses strictly, DuckDB does not
    client_json AND NOT {_pg_refuses_json("client_data")} AS client_ok,
    CASE WHEN total_amount IS NOT NULL THEN TRY_CAST(total_amount AS DECIMAL(12,2))
         ELSE TRY_CAST(trim(total_text) AS DECIMAL(12,2)) END AS total_dec,
    {timestamptz_sql("created_at")} AS created_any,
    {timestamptz_sql("modified_at")} AS modified_any,
    {timestamptz_sql("deleted_at")} AS deleted_any
  FROM raw
), checked AS (
  SELECT *,
    CASE WHEN total_amount IS NOT NULL THEN TRY_CAST(total_dec AS DOUBLE) = total_amount
         ELSE TRY_CAST(trim(total_text) AS DECIMAL(38,10)) = total_dec END AS total_exact,
    -- a number too large for NUMERIC(12,2) (the cast failed: rounding never fails it)
    total_dec IS NULL AND CASE WHEN total_amount IS NOT NULL THEN {_double_beyond("total_amount", MAX_MONEY)}
                               ELSE {_beyond("trim(total_text)", MAX_MONEY)} END AS total_oor,
    CASE WHEN created_any {IN_TIMESTAMP_RANGE} THEN created_any END AS created_ts,
    CASE WHEN modified_any {IN_TIMESTAMP_RANGE} THEN modified_any END AS modified_ts,
    CASE WHEN deleted_any {IN_TIMESTAMP_RANGE} THEN deleted_any END AS deleted_ts,
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
  client_json AND NOT client_ok AS client_lenient,
  (total_amount IS NOT NULL OR total_text IS NOT NULL) AND NOT coalesce(total_exact, false) AND NOT total_oor
    AS total_bad,
  total_oor,
  created_at IS NOT NULL AND created_ts IS NULL AS created_bad,
  modified_at IS NOT NULL AND modified_ts IS NULL AS modified_bad,
  deleted_at IS NOT NULL AND deleted_ts IS NULL AS deleted_bad,
  CASE WHEN client_data IS NOT NULL AND NOT client_ok THEN left(client_data, 80) END AS client_raw,
  CASE WHEN (total_amount IS NOT NULL OR total_text IS NOT NULL) AND NOT coalesce(total_exact, false)
       THEN coalesce(total_amount::VARCHAR, total_text) END AS total_raw,
  CASE WHEN created_ts IS NULL THEN created_at::VARCHAR END AS created_raw,
  CASE WHEN modified_ts IS NULL THEN modified_at::VARCHAR END AS modified_raw,
  CASE WHEN deleted_ts IS NULL THEN deleted_at::VARCHAR END AS deleted_raw,
  created_any IS NOT NULL AND created_ts IS NULL AS created_oor,
  modified_any IS NOT NULL AND modified_ts IS NULL AS modified_oor,
  deleted_any IS NOT NULL AND deleted_ts IS NULL AS deleted_oor
FROM checked
"""

_LINES_QUERY = f"""
WITH checked AS (
  SELECT *, coalesce(CASE WHEN json_valid(line_items) THEN json_type(line_items) END = 'ARRAY', false) AS lines_ok
  FROM items
), parsed AS (
  SELECT id AS invoice_id, source, source_row,
    unnest(from_json(line_items, '{_LINE_STRUCT}')) AS item,
    unnest(range(1, json_array_length(line_items)::BIGINT + 1)) AS line_no
  FROM checked WHERE lines_ok
), amounts AS (
  SELECT invoice_id, line_no::INTEGER AS line_no, source, source_row,
    item.description AS description,
    TRY_CAST(trim(item.quantity) AS DECIMAL(12,3)) AS quantity,
    TRY_CAST(trim(item.unit_price) AS DECIMAL(12,2)) AS unit_price,
    item.quantity AS quantity_raw, item.unit_price AS unit_price_raw,
    TRY_CAST(trim(item.quantity) AS DECIMAL(38,10)) AS quantity_wide,
    TRY_CAST(trim(item.unit_price) AS DECIMAL(38,10)) AS unit_price_wide
  FROM parsed
)
-- a line total beyond NUMERIC(12,2) is null (and reported as out_of_range). DuckDB multiplies
-- these decimals in 64 bits, which overflows (an error, even under TRY_CAST) for products of
-- 1e13 and more, so a product far beyond the largest line total is never computed
SELECT *,
  CASE WHEN quantity_wide = quantity AND unit_price_wide = unit_price
            AND abs(quantity::DOUBLE * unit_price::DOUBLE) < 1e11
       THEN TRY_CAST(ROUND(quantity * unit_price, 2) AS DECIMAL(12,2)) END AS line_total
FROM amounts
"""
_LINES_SQL = "CREATE TEMP TABLE ln AS" + _LINES_QUERY

#: the lines as :func:`explode_lines` returns them, from ``ln`` (or the query making it)
_LINES_OUT = """SELECT invoice_id, line_no, description,
       CASE WHEN quantity_wide = quantity THEN quantity END AS quantity,
       CASE WHEN unit_price_wide = unit_price THEN unit_price END AS unit_price,
       line_total
FROM {ln}"""


_BAD_JSON_ITEMS_SQL = """
SELECT source, source_row, id, 'unparseable_json' AS rule, 'line_items' AS field, left(line_items, 80) AS value,
       'line_items is not a JSON array' AS message
FROM items
WHERE line_items IS NOT NULL
  AND NOT coalesce(CASE WHEN json_valid(line_items) THEN json_type(line_items) END = 'ARRAY', false)
"""

_QUANTITY_BEYOND = _beyond("trim(quantity_raw)", MAX_QUANTITY)
_PRICE_BEYOND = _beyond("trim(unit_price_raw)", MAX_MONEY)

_BAD_ITEMS_SQL = _BAD_JSON_ITEMS_SQL + f"""UNION ALL
SELECT source, source_row, invoice_id, 'not_numeric', 'line_items[' || line_no || '].quantity',
       quantity_raw, 'quantity is missing or not a number with at most 3 decimals'
FROM ln WHERE (quantity IS NULL OR quantity_wide IS DISTINCT FROM quantity) AND NOT {_QUANTITY_BEYOND}
UNION ALL
SELECT source, source_row, invoice_id, 'out_of_range', 'line_items[' || line_no || '].quantity',
       quantity_raw, 'quantity ' || trim(quantity_raw) || ' is beyond ±{MAX_QUANTITY}, '
                     || 'the most the central store''s NUMERIC(12,3) holds'
FROM ln WHERE quantity IS NULL AND {_QUANTITY_BEYOND}
UNION ALL
SELECT source, source_row, invoice_id, 'not_numeric', 'line_items[' || line_no || '].unit_price',
       unit_price_raw, 'unit_price is missing or not a number with at most 2 decimals'
FROM ln WHERE (unit_price IS NULL OR unit_price_wide IS DISTINCT FROM unit_price) AND NOT {_PRICE_BEYOND}
UNION ALL
SELECT source, source_row, invoice_id, 'out_of_range', 'line_items[' || line_no || '].unit_price',
       unit_price_raw, 'unit_price ' || trim(unit_price_raw) || ' is beyond ±{MAX_MONEY}, '
                       || 'the most the central store''s NUMERIC(12,2) holds'
FROM ln WHERE unit_price IS NULL AND {_PRICE_BEYOND}
UNION ALL
SELECT source, source_row, invoice_id, 'out_of_range', 'line_items[' || line_no || '].line_total',
       CAST(ROUND(CAST(quantity AS DECIMAL(38,3)) * unit_price, 2) AS VARCHAR),
       'line total (quantity x unit_price) ' || CAST(ROUND(CAST(quantity AS DECIMAL(38,3)) * unit_price, 2) AS VARCHAR)
       || ' is beyond ±{MAX_MONEY}, the most the central store''s NUMERIC(12,2) holds'
FROM ln WHERE line_total IS NULL AND quantity_wide = quantity AND unit_price_wide = unit_price
"""


def _timestamp_problems(field: str) -> str:
    flag = field.removesuffix("_at")  # created_bad, created_oor, created_raw
    return f"""
SELECT source, source_row, id, 'bad_timestamp', '{field}', {flag}_raw,
       CASE WHEN {flag}_oor THEN '{field} ' || {flag}_raw || ' is outside years 1 to 9999 UTC, '
                                 || 'which the central store and its clients hold'
            ELSE '{field} is not a timestamp' END
FROM inv WHERE {flag}_bad"""


_PROBLEMS_SQL = f"""
SELECT source, source_row, id, 'unparseable_json' AS rule, 'client_data' AS field,
       client_raw AS value,
       CASE WHEN client_lenient THEN 'client_data is not JSON that the central store (PostgreSQL jsonb) reads: '
                                     || 'NaN or Infinity, a trailing comma, or a number beyond numeric''s digits'
            ELSE 'client_data is not a JSON object' END AS message
FROM inv WHERE client_bad
UNION ALL
SELECT source, source_row, id, 'not_numeric', 'total', total_raw,
       'total_amount is not a number with at most 2 decimals'
FROM inv WHERE total_bad
UNION ALL
SELECT source, source_row, id, 'out_of_range', 'total', total_raw,
       'total ' || total_raw || ' is beyond ±{MAX_MONEY}, the most the central store''s NUMERIC(12,2) holds'
FROM inv WHERE total_oor
UNION ALL{" UNION ALL".join(_timestamp_problems(name) for name in ("created_at", "modified_at", "deleted_at"))}
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


#: the naive ISO text devices write (``datetime.isoformat()``): read alike by Arrow, DuckDB and
#: Python, and never outside :data:`TIMESTAMP_RANGE` when Python's datetime parses it
_DEVICE_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?")


def timestamp_problem(text: str) -> str | None:
    """Why the loader would refuse one timestamp ``text`` (``bad_timestamp``), or None.

    For a single value (:class:`~invoicekit.device.LocalStore` checks what it stores): the
    devices' own format is checked in Python, anything else by DuckDB's cast as the loader
    does it.
    """
    if _DEVICE_TIMESTAMP.fullmatch(text):
        try:
            datetime.fromisoformat(text)
            return None
        except ValueError:
            pass
    con = _duck.connect()
    try:
        parsed, inside = con.execute(
            f"SELECT t IS NOT NULL, coalesce(t {IN_TIMESTAMP_RANGE}, false) "
            f"FROM (SELECT {timestamptz_sql('$1')} AS t)", [text]).fetchone()
    finally:
        con.close()
    if not parsed:
        return f"{text!r} is not a timestamp"
    if not inside:
        return f"{text!r} is outside years 1 to 9999 UTC, which the central store and its clients hold"
    return None


#: the parse-failure flags of ``_INVOICES_SQL``, one per problem kind of ``_PROBLEMS_SQL``
_FLAGS = ("client_bad", "total_bad", "total_oor", "created_bad", "modified_bad", "deleted_bad")

ITEM_COLUMNS = ["id", "line_items", "source", "source_row"]
_PASSTHROUGH = ["id", "invoice_number", "client_data", "line_items", "currency", "sync_status", "checksum", "source"]


def explode_lines(items: pa.Table, *, problems: bool = True) -> tuple[pa.Table, pa.Table | None]:
    """(lines, problems) parsed from the ``line_items`` text of ``items`` (columns
    :data:`ITEM_COLUMNS`), in one vectorised DuckDB pass. ``problems=False`` parses the
    lines only (one query, nothing materialised) and returns None for the problems."""
    con = _duck.connect(items=items.select(ITEM_COLUMNS))
    try:
        if not problems:
            return _duck.arrow(con, _LINES_OUT.format(ln=f"({_LINES_QUERY})")).cast(LINE_SCHEMA), None
        con.execute(_LINES_SQL)
        lines = _duck.arrow(con, _LINES_OUT.format(ln="ln"))
        found = _duck.arrow(con, _BAD_ITEMS_SQL)
    finally:
        con.close()
    return lines.cast(LINE_SCHEMA), found.cast(PROBLEM_SCHEMA)


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
