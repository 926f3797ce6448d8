"""PostgreSQL's ``invoice_lines`` from schema version 11: a view deriving the lines from
``line_items_text`` (``invoicekit.io._lines_view``).

What must hold: the view has the version-10 table's columns and types; for any line-item
text a writer may send, it returns exactly the lines the toolkit's own parser gives (or the
lines a hand-built set carried), whether written by ``write_central`` or by a sync batch;
the upgrade from version 10 keeps every stored line, and stops, changing nothing, where
someone else's object is attached to the old table. Real PostgreSQL, no mocks.
"""

from __future__ import annotations

import json
import uuid

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import invoicekit as ik
from invoicekit._normalize import explode_lines
from invoicekit.io.central import SCHEMA_VERSION, CentralStore
from invoicekit.samples import make_invoices
from tests._pg_versions import central_at_version_10, version

_LINES = ("SELECT invoice_id, line_no, description, quantity::text, unit_price::text, line_total::text "
          "FROM invoice_lines {where} ORDER BY invoice_id, line_no")
_COLS = ["invoice_id", "line_no", "description", "quantity", "unit_price", "line_total"]


def view_lines(store: CentralStore, ids=None) -> list[tuple]:
    with store.pg() as conn:
        if ids is None:
            return [tuple(r) for r in conn.execute(_LINES.format(where="")).fetchall()]
        return [tuple(r) for r in conn.execute(_LINES.format(where="WHERE invoice_id = ANY(%s)"), (list(ids),))]


def as_rows(lines: pd.DataFrame | pa.Table) -> list[tuple]:
    """Lines as the view's text rows (decimals as PostgreSQL prints them), sorted."""
    table = lines if isinstance(lines, pa.Table) else pa.Table.from_pandas(lines, preserve_index=False)
    out = []
    for r in table.select(_COLS).to_pylist():
        out.append((r["invoice_id"], int(r["line_no"]), r["description"],
                    *(None if r[c] is None else str(r[c]) for c in ("quantity", "unit_price", "line_total"))))
    return sorted(out, key=lambda r: (r[0], r[1]))


def kept(store: CentralStore) -> set[str]:
    with store.pg() as conn:
        return {r[0] for r in conn.execute("SELECT invoice_id FROM invoicekit_kept")}


def columns(store: CentralStore, relation: str) -> list[tuple]:
    with store.pg() as conn:
        return conn.execute(
            "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            (relation,)).fetchall()


def _with_items(s: ik.InvoiceSet, texts: list[str]) -> tuple[ik.InvoiceSet, pa.Table]:
    """``s``'s first invoices with fresh ids and ``texts`` as line items, with the lines the
    toolkit parses from them, less the invoices with a line no central store can hold (an
    amount it cannot parse: validation refuses them, and the lines' columns are NOT NULL; a
    description holding U+0000, which PostgreSQL's text cannot, as before version 11)."""
    inv = s.invoices.iloc[:len(texts)].copy()
    inv["id"] = [str(uuid.uuid4()) for _ in texts]
    inv["line_items"] = pd.Series(texts, dtype=inv["line_items"].dtype, index=inv.index)
    items = pa.table({"id": pa.array(inv["id"].tolist()), "line_items": pa.array(texts),
                      "source": pa.array(["t"] * len(texts)), "source_row": pa.array(range(len(texts)), pa.int64())})
    lines, _ = explode_lines(items)
    frame = lines.to_pandas(types_mapper=pd.ArrowDtype)
    nul = frame["description"].fillna("").str.contains("\x00", regex=False).astype(bool)
    bad = set(frame.loc[frame[["quantity", "unit_price", "line_total"]].isna().any(axis=1) | nul, "invoice_id"])
    keep = ~inv["id"].isin(bad)
    refused = pa.array(sorted(bad), pa.string())
    lines = lines.filter(pa.compute.invert(pa.compute.is_in(lines.column("invoice_id"), value_set=refused)))
    frame = lines.to_pandas(types_mapper=pd.ArrowDtype)
    return ik.InvoiceSet(inv[keep].reset_index(drop=True), frame), lines


def push_created(store: CentralStore, s: ik.InvoiceSet) -> set:
    """``s`` pushed as creations through one sync batch."""
    inv, lines = store.central_rows(s)
    n = inv.num_rows
    inv = inv.append_column("op_id", pa.array([f"op-{uuid.uuid4()}" for _ in range(n)])).append_column(
        "expected", pa.array([None] * n, pa.int32())).append_column("content_sha", pa.array(["sha"] * n))
    applied, _ = store.apply_batch(inv, lines, actor="t", strategy="s")
    return applied


# -- adversarial line items -------------------------------------------------------------------
_SIGNS = st.sampled_from(["", "-", "+"])


@st.composite
def number_token(draw) -> str:
    """Raw JSON number text, valid or not for PostgreSQL (an exponent, many digits, NaN)."""
    kind = draw(st.sampled_from(["plain", "plain", "plain", "exp", "odd"]))
    if kind == "odd":
        return draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "0.1000000000000000055511",
                                     "123456789012345678901234567890", "-0", "0.0", "1.", ".5", "01"]))
    whole = draw(st.integers(0, 10 ** draw(st.integers(0, 11))))
    frac = draw(st.text("0123456789", max_size=5))
    text = draw(st.sampled_from(["", "-"])) + str(whole) + (f".{frac}" if frac else "")
    if kind == "exp":
        text += draw(st.sampled_from(["e2", "E-1", "e+0", "e-3"]))
    return text


@st.composite
def amount(draw) -> str | None:
    """A quantity or price as JSON text: a number, a string of one (maybe padded), another JSON
    value, or None for a missing key."""
    kind = draw(st.sampled_from(["number", "number", "string", "string", "other", "missing"]))
    if kind == "number":
        return draw(number_token())
    if kind == "string":
        pad = draw(st.sampled_from(["", "", " ", "\t"]))
        return json.dumps(pad + draw(_SIGNS) + draw(number_token()).lstrip("-") + pad)
    if kind == "other":
        return draw(st.sampled_from(["true", "null", "{}", "[1]", '"abc"', '""']))
    return None


_TEXT = st.text(st.characters(codec=None, exclude_categories=["Cs"]), max_size=6)
_SURROGATE_TEXT = st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=3)


@st.composite
def description(draw, ascii_only: bool) -> str | None:
    kind = draw(st.sampled_from(["text", "text", "text", "escapes", "other", "missing"]))
    if kind == "text":
        return json.dumps(draw(_TEXT), ensure_ascii=ascii_only)
    if kind == "escapes":  # \u0000, lone or paired surrogates, escaped backslashes, raw controls
        raw = draw(st.sampled_from(['"a\\u0000b"', '"\\ud83d\\ude00"', '"\\ud83d"', '"\\ude00x"', '"C:\\\\u1"',
                                    '"tab\tin"', '"line\nbreak"', '"q\\"uote"']))
        return raw if draw(st.booleans()) else json.dumps(draw(_SURROGATE_TEXT), ensure_ascii=True)
    if kind == "other":
        return draw(st.sampled_from(["12", "1.50", "null", "true", '{"a": 1}', "[1, 2]"]))
    return None


@st.composite
def item(draw, ascii_only: bool) -> str:
    if draw(st.integers(0, 20)) == 0:
        return draw(st.sampled_from(["5", "null", '"text"', "[]"]))
    fields = [("description", draw(description(ascii_only))), ("quantity", draw(amount())),
              ("unit_price", draw(amount()))]
    if draw(st.integers(0, 8)) == 0:  # a key twice
        fields.append((draw(st.sampled_from(["description", "quantity", "unit_price"])), draw(amount()) or "1"))
    if draw(st.booleans()):
        fields.append(("sku", json.dumps(draw(_TEXT))))
    fields = draw(st.permutations(fields))
    sep = draw(st.sampled_from([", ", ",", ",\n  "]))
    return "{" + sep.join(f'"{k}": {v}' for k, v in fields if v is not None) + "}"


@st.composite
def line_items_text(draw) -> str:
    if draw(st.integers(0, 15)) == 0:
        return draw(st.sampled_from(['{"not": "an array"}', "[]", " [ ]", "\n[]"]))
    ascii_only = draw(st.booleans())
    items = draw(st.lists(item(ascii_only), min_size=1, max_size=4))
    text = "[" + ", ".join(items) + (", " if draw(st.integers(0, 10)) == 0 else "") + "]"
    return (" " + text) if draw(st.integers(0, 10)) == 0 else text


# -- tests ------------------------------------------------------------------------------------------
def test_view_has_the_columns_and_types_of_the_version_10_table(central_pg_url, pg_schemas):
    store = CentralStore(central_pg_url)
    ik.init_db(central_pg_url)
    old = central_at_version_10(pg_schemas(), make_invoices(3, seed=1))
    assert version(old) == 10 and version(store) == SCHEMA_VERSION == 11
    assert columns(store, "invoice_lines") == columns(old, "invoice_lines")
    assert [c[0] for c in columns(store, "invoice_lines")] == _COLS


def test_sample_invoices_are_derived_and_keep_nothing(central_pg_url):
    """The usual case, written and pushed: every line comes from the text, none is stored."""
    store = CentralStore(central_pg_url)
    ik.init_db(central_pg_url)
    s = make_invoices(300, seed=2)
    first, second = s.invoices["id"].iloc[:150], s.invoices["id"].iloc[150:]

    def part(ids) -> ik.InvoiceSet:
        return ik.InvoiceSet(s.invoices[s.invoices["id"].isin(ids)].reset_index(drop=True),
                             s.lines[s.lines["invoice_id"].isin(ids)].reset_index(drop=True))

    ik.write_central(part(first), central_pg_url)
    assert len(push_created(store, part(second))) == 150
    assert view_lines(store) == as_rows(s.lines)
    assert kept(store) == set()


#: texts each check of _lines_view.kept_ids exists for (a mutation of any check fails on one)
TRICKY = [
    r'[{"description": "a\u0000b", "quantity": 1, "unit_price": 1}]',
    r'[{"description": "d", "sku": "a\u0000", "quantity": 1, "unit_price": 1}]',
    r'[{"description": "x", "quantity": 0.1000000000000000055511, "unit_price": 1}]',
    r'[{"description": "C:\\ud83d\ude00", "quantity": 1, "unit_price": 1}]',
    r'[{"description": "\ud83d\ude00 ok", "quantity": 2, "unit_price": "1.50"}]',
    r'[{"description": "\ud83d", "quantity": 2, "unit_price": "1.50"}]',
    r'[{"description": "a", "description": "b", "quantity": 1, "unit_price": 1}]',
    r'[{"description": "a", "description": "b", "quantity": 1, "unit_price": 1}, {"quantity": 2, "unit_price": 1}]',
    r'[{"description": "k", "quantity": 1, "quan\u0074ity": 2, "unit_price": 1}]',
    r'[{"description": 12, "quantity": 1, "unit_price": 1}]',
    r'[{"description": {"a":1}, "quantity": 1, "unit_price": 1}]',
    r'[{"description": "t", "quantity": " 1.5", "unit_price": 1}]',
    r'[{"description": "e", "quantity": 1e2, "unit_price": 1.5E-1}]',
    r'[{"description": "tc", "quantity": 1, "unit_price": 1},]',
    '[{"description": "line\nbreak", "quantity": 1, "unit_price": 1}]'.replace("\\n", "\n"),
    r'[{"description": "nan", "quantity": NaN, "unit_price": 1}]',
    r'[{"description": "n", "sku": -Infinity, "quantity": 1, "unit_price": 1}]',
    r'{"not": "an array"}',
    '\n\t [{"description": "after JSON whitespace", "quantity": 1, "unit_price": 2}]',
    '[{"description": "DEL \x7f and \\u007f", "quantity": 1, "unit_price": 2},\n {"quantity": 2, "unit_price": 1}]',
    "not json",
    r'[{"description": "ok", "quantity": "2.500", "unit_price": "19.99"}, {"quantity": 3, "unit_price": 0.5}]',
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(texts=st.lists(line_items_text(), min_size=2, max_size=8))
@example(texts=TRICKY)
def test_view_gives_the_toolkits_lines_for_any_line_items(central_pg_url, texts):
    """Whatever text a writer sends (exponents, many digits, strings with spaces, duplicate
    keys, descriptions that are no strings, \\u0000, lone surrogates, trailing commas), a
    query of the view never fails and returns the toolkit's lines, through write_central and
    through a sync batch alike."""
    store = CentralStore(central_pg_url)
    ik.init_db(central_pg_url)
    s, lines = _with_items(make_invoices(len(texts), seed=3), texts)
    ids = s.invoices["id"].tolist()
    half = len(ids) // 2
    written = ik.InvoiceSet(s.invoices.iloc[:half].reset_index(drop=True),
                            s.lines[s.lines["invoice_id"].isin(ids[:half])].reset_index(drop=True))
    pushed = ik.InvoiceSet(s.invoices.iloc[half:].reset_index(drop=True),
                           s.lines[s.lines["invoice_id"].isin(ids[half:])].reset_index(drop=True))
    ik.write_central(written, central_pg_url, validate=False)
    push_created(store, pushed)
    assert view_lines(store, ids) == as_rows(lines)
    view_lines(store)  # the whole view, every earlier example included, still reads


def test_hand_built_lines_that_are_not_the_texts_are_stored_as_given(central_pg_url):
    store = CentralStore(central_pg_url)
    ik.init_db(central_pg_url)
    s = make_invoices(4, seed=4)
    odd = s.invoices["id"].iloc[0]
    lines = s.lines.copy()
    lines.loc[lines["invoice_id"] == odd, "description"] = "not what the text says"
    given = ik.InvoiceSet(s.invoices, lines)
    ik.write_central(given, central_pg_url, validate=False)
    assert view_lines(store) == as_rows(lines)
    assert kept(store) == {odd}
    # written again with lines that agree with its text: derived, nothing kept
    bumped = s.invoices.copy()
    bumped["version"] += 1
    ik.write_central(ik.InvoiceSet(bumped, s.lines), central_pg_url, validate=False)
    assert view_lines(store) == as_rows(s.lines)
    assert kept(store) == set()


def _tamper(conn, s: ik.InvoiceSet) -> dict[str, str]:
    """Version-10 line rows that differ from their invoice's text, as other software (or an
    older toolkit) may have left them; returns id -> what was done."""
    ids = sorted(s.invoices["id"])
    done = {}
    conn.execute("UPDATE invoice_lines SET description = 'edited in SQL' WHERE invoice_id = %s AND line_no = 1",
                 (ids[0],))
    done[ids[0]] = "description"
    conn.execute("INSERT INTO invoice_lines SELECT invoice_id, 99, 'extra', 1, 2, 2 FROM invoice_lines "
                 "WHERE invoice_id = %s AND line_no = 1", (ids[1],))
    done[ids[1]] = "extra line"
    conn.execute("DELETE FROM invoice_lines WHERE invoice_id = %s AND line_no = 1", (ids[2],))
    done[ids[2]] = "missing line"
    for i, text in ((3, '{"not": "an array"}'), (4, '[{"description": "a\\u0000b", "quantity": 1, "unit_price": 1}]'),
                    (5, "not json at all"), (6, '[{"quantity": 1, "unit_price": 1},]')):
        conn.execute("UPDATE invoices SET line_items_text = %s WHERE id = %s", (text, ids[i]))
        done[ids[i]] = text
    conn.execute("DELETE FROM invoice_lines WHERE invoice_id = %s", (ids[7],))
    conn.execute("UPDATE invoices SET line_items_text = 'garbage' WHERE id = %s", (ids[7],))
    done[ids[7]] = "unreadable text, no lines"
    conn.execute("UPDATE invoice_lines SET quantity = quantity + 0.001 WHERE invoice_id = %s", (ids[8],))
    done[ids[8]] = "quantity"
    return done


def test_upgrade_to_version_11_keeps_every_line(central_pg_url):
    s = make_invoices(40, seed=5)
    store = central_at_version_10(central_pg_url, s)
    with store.pg() as conn:
        done = _tamper(conn, s)
        before = [tuple(r) for r in conn.execute(_LINES.format(where=""))]
    assert ik.init_db(central_pg_url) == SCHEMA_VERSION and version(store) == 11
    assert view_lines(store) == before  # every line, exactly as stored
    assert kept(store) == set(done)  # only the invoices whose lines the text would not give
    assert len(ik.read_central(central_pg_url).invoices) == 40
    # a plain write of a kept invoice replaces what was kept by its text's lines
    one = sorted(done)[0]
    fresh = s.invoices[s.invoices["id"] == one].copy()
    fresh["version"] += 1
    ik.write_central(ik.InvoiceSet(fresh.reset_index(drop=True), s.lines[s.lines["invoice_id"] == one]),
                     central_pg_url, validate=False)
    assert view_lines(store, [one]) == as_rows(s.lines[s.lines["invoice_id"] == one])
    assert one not in kept(store)


def test_upgrade_stops_where_someone_elses_object_is_on_the_table(central_pg_url):
    s = make_invoices(10, seed=6)
    store = central_at_version_10(central_pg_url, s)
    with store.pg() as conn:
        conn.execute("CREATE VIEW my_big_lines AS SELECT * FROM invoice_lines WHERE line_total > 100")
        conn.execute("CREATE INDEX my_description_idx ON invoice_lines (description)")
    with pytest.raises(ik.StoreError) as err:
        ik.init_db(central_pg_url)
    message = str(err.value)
    assert "view my_big_lines" in message and "my_description_idx" in message and "nothing was changed" in message
    assert version(store) == 10
    with store.pg() as conn:
        assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'invoice_lines'::regclass").fetchone()[0] == "r"
        assert conn.execute("SELECT count(*) FROM invoice_lines").fetchone()[0] == len(s.lines)
        assert conn.execute("SELECT to_regclass('invoicekit_kept')").fetchone()[0] is None
        conn.execute("DROP VIEW my_big_lines")
        conn.execute("DROP INDEX my_description_idx")
    assert ik.init_db(central_pg_url) == SCHEMA_VERSION
    assert view_lines(store) == as_rows(s.lines)
