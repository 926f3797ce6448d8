"""The central ``invoice_lines`` relation on PostgreSQL from schema version 11: a view that
derives each invoice's lines from its ``line_items_text``, the text the devices checksum.

Until version 10 the lines were a table the writers filled beside the text; keeping it cost
about 30% of a push (BENCHMARKS.md). The view gives SQL users the same relation (same
columns and types) without a write. Its values are those the toolkit's own parser gives
(:func:`invoicekit._normalize.explode_lines`): ``line_no`` the 1-based position,
``quantity`` / ``unit_price`` exact decimals, ``line_total`` their product rounded half away
from zero to the cent.

Where PostgreSQL's JSON functions would not read an invoice's items exactly as the toolkit
does (a description that is no string, a number written with an exponent or more digits
than the columns hold, a duplicate key, JSON that ``jsonb`` refuses, an amount the toolkit
could not parse), the invoice is *kept*: its lines, as the toolkit parsed them, are stored
in ``invoicekit_kept_lines`` (``invoicekit_kept`` names the invoice and why) and the view
returns those instead. :func:`kept_ids` decides it on the client, conservatively: an
invoice in doubt is kept, which costs a few rows, never a wrong line. The upgrade to
version 11 keeps, the same way, every invoice whose stored lines differ from what the view
would derive, so no line is lost or changed by it.

A ``line_items_text`` written by other software that is not JSON makes a query of the view
raise (the toolkit never writes one: its validation refuses such text).
"""

from __future__ import annotations

import pyarrow as pa

from .. import _duck
from .._normalize import _LINES_OUT, _LINES_QUERY
from ..schema import LINE_SCHEMA

__all__ = ["MIGRATION", "WRITE_KEPT", "PUSH_KEPT", "kept_ids"]

#: columns the view and the kept lines share with the version-10 table
_COLS = "invoice_id, line_no, description, quantity, unit_price, line_total"


def _of(alias: str) -> str:
    """:data:`_COLS` of the relation ``alias``."""
    return ", ".join(f"{alias}.{c}" for c in _COLS.split(", "))

# exact decimals, NULL (never an error) for text that is not a plain decimal in range (the
# upgrade's derivation); the functions are inlined into its query (LANGUAGE sql, IMMUTABLE;
# PostgreSQL drops a function result's type modifier, so the query casts)
_FUNCTIONS = [
    r"""CREATE OR REPLACE FUNCTION invoicekit_quantity(t text) RETURNS numeric
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
        $$ SELECT CASE WHEN t ~ '^-?[0-9]{1,9}(\.[0-9]+)?$' THEN
                    CASE WHEN round(t::numeric, 3) = t::numeric THEN t::numeric(12,3) END END $$""",
    r"""CREATE OR REPLACE FUNCTION invoicekit_money(t text) RETURNS numeric
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
        $$ SELECT CASE WHEN t ~ '^-?[0-9]{1,10}(\.[0-9]+)?$' THEN
                    CASE WHEN round(t::numeric, 2) = t::numeric THEN t::numeric(12,2) END END $$""",
    # the product rounded half away from zero (PostgreSQL's round of numeric, as DuckDB's),
    # NULL where it is beyond NUMERIC(12,2)
    """CREATE OR REPLACE FUNCTION invoicekit_line_total(q numeric, p numeric) RETURNS numeric
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
        $$ SELECT CASE WHEN abs(round(q * p, 2)) < 1e10 THEN round(q * p, 2)::numeric(12,2) END $$""",
]

#: the invoices that are not kept, each line of their items as a JSON value (text that does
#: not start as an array gives none: the toolkit keeps such an invoice, and a query never
#: fails on a JSON object)
_ITEMS = """
FROM invoices i LEFT JOIN invoicekit_kept k ON k.invoice_id = i.id
CROSS JOIN LATERAL jsonb_array_elements(
       CASE WHEN k.invoice_id IS NULL AND left(ltrim(i.line_items_text, E' \\t\\n\\r'), 1) = '['
            THEN i.line_items_text::jsonb END)
     WITH ORDINALITY AS e(item, line_no)
"""

#: the view's lines: plain casts, which the writers make safe (an invoice whose amounts are
#: not plain decimals in range is kept, see kept_ids) and which cost a quarter of the guarded
#: derivation (2.5 s against 9.1 s for 3M lines, BENCHMARKS.md). A row of ``invoices``
#: written by other software with an amount that is no number makes a query of the view
#: raise PostgreSQL's cast error for it.
DERIVED = f"""
SELECT i.id AS invoice_id, e.line_no::integer AS line_no, e.item->>'description' AS description,
       (e.item->>'quantity')::numeric(12,3) AS quantity,
       (e.item->>'unit_price')::numeric(12,2) AS unit_price,
       round((e.item->>'quantity')::numeric * (e.item->>'unit_price')::numeric, 2)::numeric(12,2) AS line_total
{_ITEMS}"""

#: the upgrade's derivation, guarded: NULL, never an error, for whatever older rows hold
#: (an invoice whose stored lines differ from it keeps them)
_DERIVED_SAFE = f"""
SELECT i.id AS invoice_id, e.line_no::integer AS line_no, e.item->>'description' AS description,
       invoicekit_quantity(e.item->>'quantity')::numeric(12,3) AS quantity,
       invoicekit_money(e.item->>'unit_price')::numeric(12,2) AS unit_price,
       invoicekit_line_total(invoicekit_quantity(e.item->>'quantity'),
                             invoicekit_money(e.item->>'unit_price'))::numeric(12,2) AS line_total
{_ITEMS}"""

_VIEW = f"""CREATE VIEW invoice_lines AS {DERIVED}
UNION ALL
SELECT {_of("l")}
FROM invoicekit_kept_lines l JOIN invoices i ON i.id = l.invoice_id"""

_KEPT_TABLES = [
    """CREATE TABLE IF NOT EXISTS invoicekit_kept (
            invoice_id TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            kept_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )""",
    # the version-10 table's columns, types and NOT NULLs (taken from it, before it goes)
    """CREATE TABLE IF NOT EXISTS invoicekit_kept_lines (
            LIKE invoice_lines,
            PRIMARY KEY (invoice_id, line_no),
            FOREIGN KEY (invoice_id) REFERENCES invoicekit_kept(invoice_id) ON DELETE CASCADE
        )""",
]

#: reasons an invoice is kept
KEPT_BY_UPGRADE = "stored lines differ from what its line_items_text gives (kept by the upgrade to version 11)"
KEPT_BY_WRITE = "line items PostgreSQL's JSON functions do not read as the toolkit does"


def _literal(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"

# The upgrade compares the version-10 table with the derivation, line by line, over the
# invoices whose text PostgreSQL reads (``ik_readable``, filled by the DO block below: one
# statement for the whole table, or, where some text is no JSON PostgreSQL takes, one parse
# per invoice in its own subtransaction); an invoice with any difference, or whose text it
# cannot read, keeps its stored lines.
_UPGRADE = [
    "CREATE TEMP TABLE ik_readable (id TEXT PRIMARY KEY) ON COMMIT DROP",
    """DO $$ BEGIN
         BEGIN
           INSERT INTO ik_readable SELECT id FROM invoices WHERE jsonb_typeof(line_items_text::jsonb) = 'array';
         EXCEPTION WHEN others THEN  -- (the block's insert is rolled back)
           DECLARE r record; BEGIN
             FOR r IN SELECT id, line_items_text FROM invoices LOOP
               BEGIN
                 IF jsonb_typeof(r.line_items_text::jsonb) = 'array' THEN
                   INSERT INTO ik_readable VALUES (r.id);
                 END IF;
               EXCEPTION WHEN others THEN NULL;
               END;
             END LOOP;
           END;
         END;
       END $$""",
    f"""CREATE TEMP TABLE ik_derived ON COMMIT DROP AS
        {_DERIVED_SAFE.replace("FROM invoices i", "FROM invoices i JOIN ik_readable r ON r.id = i.id")}""",
    f"""INSERT INTO invoicekit_kept (invoice_id, reason)
        SELECT id, {_literal(KEPT_BY_UPGRADE)} FROM invoices i
        WHERE NOT EXISTS (SELECT 1 FROM ik_readable r WHERE r.id = i.id)
        UNION
        SELECT coalesce(o.invoice_id, d.invoice_id), {_literal(KEPT_BY_UPGRADE)}
        FROM invoice_lines o FULL JOIN ik_derived d ON d.invoice_id = o.invoice_id AND d.line_no = o.line_no
        WHERE (o.invoice_id, o.line_no, o.description, o.quantity, o.unit_price, o.line_total)
              IS DISTINCT FROM (d.invoice_id, d.line_no, d.description, d.quantity, d.unit_price, d.line_total)
        ON CONFLICT (invoice_id) DO NOTHING""",
    # an invoice kept for its text may have no stored lines; one kept for a stored line whose
    # invoice is gone (only possible before version 5) has no invoice: both are harmless
    f"""INSERT INTO invoicekit_kept_lines ({_COLS})
        SELECT {_COLS} FROM invoice_lines o
        WHERE EXISTS (SELECT 1 FROM invoicekit_kept k WHERE k.invoice_id = o.invoice_id)""",
]

# a store whose signed identities were turned on before this version: the push role reads
# the view and writes the kept tables under the same row-level security as the other pushed
# tables (see _central_sql.PG_IDENTITY_ON, which does the same from now on)
_IDENTITY = """DO $$ DECLARE r text; t text; s text := current_schema(); BEGIN
     SELECT push_role INTO r FROM invoicekit_identity;
     IF r IS NULL OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN RETURN; END IF;
     EXECUTE format('GRANT SELECT ON %I.invoice_lines TO %I', s, r);
     FOREACH t IN ARRAY ARRAY['invoicekit_kept', 'invoicekit_kept_lines'] LOOP
       EXECUTE format('GRANT SELECT, INSERT, DELETE ON %I.%I TO %I', s, t, r);
       EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', s, t);
       EXECUTE format('CREATE POLICY invoicekit_push_select ON %I.%I FOR SELECT TO %I USING (true)', s, t, r);
       EXECUTE format('CREATE POLICY invoicekit_push_insert ON %I.%I FOR INSERT TO %I '
                      'WITH CHECK ((SELECT %I.invoicekit_token_subject()) IS NOT NULL)', s, t, r, s);
       EXECUTE format('CREATE POLICY invoicekit_push_delete ON %I.%I FOR DELETE TO %I '
                      'USING ((SELECT %I.invoicekit_token_subject()) IS NOT NULL)', s, t, r, s);
     END LOOP;
   END $$"""

# the upgrade drops the version-10 table; what someone else attached to it (or built on it)
# would go with it, so the upgrade stops first, naming every such object
_NOT_OURS = r"""DO $$ DECLARE found text; BEGIN
     SELECT string_agg(what, ', ' ORDER BY what) INTO found FROM (
       SELECT 'constraint ' || conname AS what FROM pg_constraint
         WHERE conrelid = 'invoice_lines'::regclass AND contype <> 'p'
       UNION ALL SELECT 'foreign key ' || conname || ' of table ' || conrelid::regclass::text FROM pg_constraint
         WHERE confrelid = 'invoice_lines'::regclass
       UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger
         WHERE tgrelid = 'invoice_lines'::regclass AND NOT tgisinternal AND tgname NOT LIKE 'invoicekit\_%'
       UNION ALL SELECT 'index ' || indexrelid::regclass::text FROM pg_index
         WHERE indrelid = 'invoice_lines'::regclass AND NOT indisprimary
       UNION ALL SELECT 'policy ' || polname FROM pg_policy
         WHERE polrelid = 'invoice_lines'::regclass AND polname NOT LIKE 'invoicekit\_%'
       UNION ALL SELECT DISTINCT 'view ' || r.ev_class::regclass::text FROM pg_depend d
         JOIN pg_rewrite r ON r.oid = d.objid
         WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = 'invoice_lines'::regclass
           AND r.ev_class <> 'invoice_lines'::regclass) o;
     IF found IS NOT NULL THEN
       RAISE EXCEPTION 'schema version 11 replaces the table invoice_lines by a view of the same name '
         '(lines derived from line_items_text), and these objects on the table are not the toolkit''s: %; '
         'drop them, run init_db again, then recreate on the view those that still apply (nothing was changed)',
         found USING ERRCODE = 'dependent_objects_still_exist';
     END IF;
   END $$"""

#: schema version 11 on PostgreSQL (in the one transaction of the upgrade: all or nothing)
MIGRATION = [
    *_FUNCTIONS,
    *_KEPT_TABLES,
    _NOT_OURS,
    *_UPGRADE,
    "DROP TABLE invoice_lines",
    "DROP FUNCTION IF EXISTS invoicekit_lines_have_invoice()",
    _VIEW,
    _IDENTITY,
]

# -- writes: the kept lines of the invoices written ----------------------------------------
#: write_central: the invoices written (``ik_written``) lose what was kept of them; those the
#: client found underivable (``ik_stage_kept``) keep their staged lines (``ik_stage_lines``)
WRITE_KEPT = [
    "DELETE FROM invoicekit_kept WHERE invoice_id IN (SELECT id FROM ik_written)",
    f"INSERT INTO invoicekit_kept (invoice_id, reason) SELECT id, {_literal(KEPT_BY_WRITE)} FROM ik_stage_kept "
    "WHERE id IN (SELECT id FROM ik_written)",
    f"INSERT INTO invoicekit_kept_lines ({_COLS}) SELECT {_COLS} FROM ik_stage_lines "
    "WHERE invoice_id IN (SELECT id FROM ik_written)",
]
#: a sync batch: the same for the applied operations whose line items text changed
PUSH_KEPT = [
    "DELETE FROM invoicekit_kept k USING ik_applied a WHERE a.lines_changed AND k.invoice_id = a.id",
    f"INSERT INTO invoicekit_kept (invoice_id, reason) SELECT s.id, {_literal(KEPT_BY_WRITE)} FROM ik_push_kept s "
    "JOIN ik_applied a ON a.id = s.id AND a.lines_changed",
    f"INSERT INTO invoicekit_kept_lines ({_COLS}) SELECT {_of('s')} "
    "FROM ik_push_lines s JOIN ik_applied a ON a.id = s.invoice_id AND a.lines_changed",
]
#: the staging tables of the kept invoices and their lines, per write kind
STAGE_KEPT = "CREATE TEMP TABLE {ids} (id TEXT PRIMARY KEY) ON COMMIT DROP"
STAGE_KEPT_LINES = "CREATE TEMP TABLE {lines} (LIKE invoicekit_kept_lines) ON COMMIT DROP"

# -- on the client: which invoices of a write are kept --------------------------------------

#: text DuckDB reads as JSON but PostgreSQL's jsonb refuses or reads otherwise, found with one
#: regular expression over the raw text (a match inside a string only keeps an invoice that
#: did not need it): NaN or Infinity and trailing commas (DuckDB allows them), the escape
#: \u0000, an escaped printable ASCII character (a key could hide so: "quan\u0074ity"), and a
#: number with an exponent, four decimals or eleven integer digits (DuckDB reads JSON numbers
#: as doubles, PostgreSQL exactly). A surrogate not in a pair, or a control character inside
#: a string, DuckDB refuses already (not JSON: kept).
_ODD_TEXT = (r"'(?i)\\u0000|\\u00[2-7][0-9a-f]|,\s*[\]}]|[\[:,]\s*-?(?:nan|inf)"
             r"|[\[:,]\s*-?(?:[0-9]{11}|[0-9]+\.[0-9]{4}|[0-9][0-9.]*e)'")
#: an amount both read alike: a plain decimal, as a JSON number or a JSON string (``{d}``:
#: integer digits at most)
_PLAIN = (r"""regexp_full_match(coalesce({f}::VARCHAR, ''), """
          r"""'(-?[0-9]{{1,{d}}}(\.[0-9]+)?)|"(-?[0-9]{{1,{d}}}(\.[0-9]+)?)"')""")
#: each item's three fields as DuckDB re-serialises them (NULL: missing or JSON null)
_FIELDS = '[{"description":"JSON","quantity":"JSON","unit_price":"JSON"}]'


def _occurrences(key: str) -> str:
    """SQL: how often ``"key"`` appears in ``t`` (a key given twice in an item counts twice;
    DuckDB keeps the first of duplicate keys, PostgreSQL the last)."""
    quoted = f'"{key}"'
    return f"(strlen(t) - strlen(replace(t, '{quoted}', ''))) // {len(quoted)}"


_KEPT_SQL = f"""
WITH inv AS (
  SELECT id, line_items AS t FROM items
), texts AS (
  SELECT id, t,
    coalesce(CASE WHEN json_valid(t) THEN json_type(t) END = 'ARRAY', false)
      AND NOT regexp_matches(t, {_ODD_TEXT}) AS clean,
    {_occurrences("description")} AS n_d, {_occurrences("quantity")} AS n_q, {_occurrences("unit_price")} AS n_p
  FROM inv
), elems AS (
  SELECT id, n_d, n_q, n_p, unnest(from_json(t, '{_FIELDS}')) AS it FROM texts WHERE clean
), odd_items AS (
  SELECT id FROM elems GROUP BY id, n_d, n_q, n_p
  HAVING NOT (bool_and({_PLAIN.format(f="it.quantity", d=9)} AND {_PLAIN.format(f="it.unit_price", d=10)}
                       AND coalesce(left(it.description::VARCHAR, 1) = '"', true))
              AND count(*) = n_q AND count(*) = n_p AND count(it.description) = n_d)
)
SELECT id FROM texts WHERE NOT clean
UNION SELECT id FROM odd_items
-- an amount the toolkit could not parse: kept, so that the kept lines' NOT NULL refuses the
-- write as version 10's table did (validation refuses it before, unless switched off)
UNION SELECT invoice_id FROM ln WHERE quantity IS NULL OR unit_price IS NULL OR line_total IS NULL
-- lines that are not those of the text (a hand-built set may pair them so): stored as given
UNION SELECT coalesce(d.invoice_id, g.invoice_id) FROM ({_LINES_OUT.format(ln=f"({_LINES_QUERY})")}) d
  FULL JOIN ln g ON g.invoice_id = d.invoice_id AND g.line_no = d.line_no
  WHERE (d.invoice_id, d.line_no, d.description, d.quantity, d.unit_price, d.line_total)
        IS DISTINCT FROM (g.invoice_id, g.line_no, g.description, g.quantity, g.unit_price, g.line_total)
"""


def kept_ids(inv: pa.Table, lines: pa.Table) -> pa.Array:
    """Ids of the invoices of ``inv`` (central rows: ``id``, ``line_items_text``) whose lines
    the version-11 view would not derive exactly as ``lines`` (the lines written, columns of
    ``invoice_lines``) has them: their lines are stored as they are. One DuckDB query."""
    n = inv.num_rows  # (the columns explode_lines' query reads)
    items = pa.table({"id": inv.column("id"), "line_items": inv.column("line_items_text"),
                      "source": pa.nulls(n, pa.string()), "source_row": pa.nulls(n, pa.int64())})
    con = _duck.connect(items=items, ln=lines.select(list(LINE_SCHEMA.names)).cast(LINE_SCHEMA))
    try:
        found = _duck.arrow(con, _KEPT_SQL)
    finally:
        con.close()
    return found.column("id").combine_chunks().cast(pa.string())
