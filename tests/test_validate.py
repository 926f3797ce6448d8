import json

import pandas as pd
import pyarrow as pa
import pytest

import invoicekit as ik
from invoicekit.samples import make_invoices
from invoicekit.validate import RULES
from tests._build import device_row, write_device_store


def load(tmp_path, rows, **kw):
    path = tmp_path / "d.sqlite"
    write_device_store(path, rows, **kw)
    return ik.read_local(path), str(path)


def rules_of(report):
    return sorted(zip(report.problems["source_row"], report.problems["rule"], report.problems["field"]))


def test_clean_store_has_no_problems(tmp_path):
    s, _ = load(tmp_path, [device_row(i) for i in range(5)], settings={"default_currency": json.dumps("EUR")})
    report = ik.validate(s)
    assert report.ok and report.n_invoices == 5
    assert ik.validate(s, strict=True).ok


def test_every_rule_names_the_row_and_field(tmp_path):
    items = lambda q, p: json.dumps([{"description": "x", "quantity": q, "unit_price": p}])  # noqa: E731
    rows = [
        device_row(1),  # fine
        device_row(2, client_data="{not json"),
        device_row(3, line_items="[{"),
        device_row(4, total_amount="twelve"),
        device_row(5, line_items=items("two", 1.0), total_amount=0.0),
        device_row(6, line_items=items(-1, 5.0), total_amount=-5.0),
        device_row(7, line_items=items(1, 5.0), total_amount=6.0),
        device_row(8, invoice_number=""),
        device_row(9, created_at="yesterday"),
        device_row(10, version=0),
        device_row(11, sync_status="lost"),
        device_row(12, line_items=items(1, 5.001), total_amount=5.0),
    ]
    s, path = load(tmp_path, rows, settings={"default_currency": json.dumps("EUR")})
    report = ik.validate(s)
    found = rules_of(report)
    assert (2, "unparseable_json", "client_data") in found
    assert (3, "unparseable_json", "line_items") in found
    assert (4, "not_numeric", "total") in found
    assert (5, "not_numeric", "line_items[1].quantity") in found
    assert (6, "negative_amount", "line_items[1].quantity") in found
    assert (7, "total_mismatch", "total") in found
    assert (8, "missing_required", "invoice_number") in found
    assert (9, "bad_timestamp", "created_at") in found
    assert (10, "bad_version", "version") in found
    assert (11, "bad_sync_status", "sync_status") in found
    assert (12, "not_numeric", "line_items[1].unit_price") in found
    assert not any(r == 1 for r, _, _ in found)
    assert set(report.problems["rule"]) <= set(RULES)
    assert (report.problems["source"] == path).all()
    # a broken JSON client is reported once, not again as a missing name
    assert [f for r, _, f in found if r == 2] == ["client_data"]
    assert report.summary().set_index("rule").loc["unparseable_json", "problems"] == 2


def test_currency_rules(tmp_path):
    s, _ = load(tmp_path, [device_row(1)])  # no currency column, no default: missing
    report = ik.validate(s)
    assert list(zip(report.problems["rule"], report.problems["field"])) == [("missing_required", "currency")]
    other = tmp_path / "o.sqlite"
    write_device_store(other, [device_row(1)], settings={"default_currency": json.dumps("XYZ")})
    report = ik.validate(ik.read_local(other))
    assert list(report.problems["rule"]) == ["unknown_currency"]


def test_duplicate_ids_across_stores(tmp_path):
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    write_device_store(a, [device_row(1), device_row(2)], settings={"default_currency": '"EUR"'})
    write_device_store(b, [device_row(2)], settings={"default_currency": '"EUR"'})
    both = ik.InvoiceSet.concat([ik.read_local(a), ik.read_local(b)])
    report = ik.validate(both)
    dup = report.problems[report.problems["rule"] == "duplicate_id"]
    assert sorted(dup["source"]) == sorted([str(a), str(b)])
    assert set(dup["id"]) == {device_row(2)["id"]}


def test_strict_raises_typed_error_with_rows(tmp_path):
    s, path = load(tmp_path, [device_row(1), device_row(2, client_data="nope")],
                   settings={"default_currency": '"EUR"'})
    with pytest.raises(ik.ValidationError) as info:
        ik.validate(s, strict=True)
    err = info.value
    assert isinstance(err, ik.InvoicekitError)
    assert isinstance(err.problems, pd.DataFrame) and len(err.problems) == 1
    assert path in str(err) and "row 2" in str(err) and "unparseable_json" in str(err)


def test_report_renders_html(tmp_path):
    s, _ = load(tmp_path, [device_row(2, client_data="<script>alert(1)</script>")],
                settings={"default_currency": '"EUR"'})
    html = ik.validate(s)._repr_html_()
    assert "unparseable_json" in html and "<script>" not in html


def test_repeated_ids_are_duplicates_not_total_mismatches(tmp_path):
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    rows = [device_row(i) for i in range(4)]
    write_device_store(a, rows, settings={"default_currency": '"EUR"'})
    write_device_store(b, rows, settings={"default_currency": '"EUR"'})
    report = ik.validate(ik.InvoiceSet.concat([ik.read_local(a), ik.read_local(b)]))
    assert set(report.problems["rule"]) == {"duplicate_id"} and len(report.problems) == 8


# -- what the central store cannot hold (invoicekit.io._central_sql) -------------------------------
def _items(q, p, d="Work"):
    return json.dumps([{"description": d, "quantity": q, "unit_price": p}])


#: name -> (device_row overrides, the (rule, field) reported); each value is one the central
#: PostgreSQL store refuses (text holds no NUL, jsonb no \u0000, NUMERIC(12,2)/(12,3), INTEGER)
#: or its clients cannot read back (timestamps outside years 1..9999)
POISONED = {
    "nul_invoice_number": (dict(invoice_number="INV\x00-1"), ("nul_character", "invoice_number")),
    "nul_client_raw": (dict(client_data='{"name": "A\x00B"}'), ("nul_character", "client_data")),
    "nul_client_escape": (dict(client_data=json.dumps({"name": "A\x00B"})), ("nul_character", "client_data")),
    "nul_client_key": (dict(client_data='{"name": "A", "n\\u0000": 1}'), ("nul_character", "client_data")),
    "nul_client_after_escaped_backslash": (dict(client_data='{"name": "A\\\\\\u0000"}'),
                                           ("nul_character", "client_data")),
    "nul_description": (dict(line_items=_items(1, 25.0, "a\x00b"), total_amount=25.0),
                        ("nul_character", "line_items[1].description")),
    "nul_line_items_raw": (dict(line_items='[{"description": "a\x00", "quantity": 1, "unit_price": 25.0}]',
                                total_amount=25.0), ("nul_character", "line_items")),
    "total_overflow": (dict(total_amount=1e13), ("out_of_range", "total")),
    "total_one_cent_over": (dict(total_amount=10000000000.0), ("out_of_range", "total")),
    "total_text_overflow": (dict(total_amount="12345678901.00"), ("out_of_range", "total")),
    "total_50_digits": (dict(total_amount="1" + "0" * 50), ("out_of_range", "total")),
    "unit_price_overflow": (dict(line_items=_items(1, 1e10), total_amount=1e10),
                            ("out_of_range", "line_items[1].unit_price")),
    "unit_price_1e400": (dict(line_items='[{"description": "x", "quantity": 1, "unit_price": 1e400}]'),
                         ("out_of_range", "line_items[1].unit_price")),
    "quantity_overflow": (dict(line_items=_items(1e9, 1.0), total_amount=1e9),
                          ("out_of_range", "line_items[1].quantity")),
    "negative_quantity_overflow": (dict(line_items=_items(-1e9, 1.0), total_amount=0.0),
                                   ("out_of_range", "line_items[1].quantity")),
    # both fit their columns, their product does not (and overflowed DuckDB's 64-bit multiply)
    "line_total_overflow": (dict(line_items=_items(999999999, 9999999999.99), total_amount=9999999999.99),
                            ("out_of_range", "line_items[1].line_total")),
    "line_total_just_over": (dict(line_items=_items(1.001, 9999999999.99), total_amount=9999999999.99),
                             ("out_of_range", "line_items[1].line_total")),
    "year_0": (dict(created_at="0000-01-01T00:00:00"), ("bad_timestamp", "created_at")),
    "year_10000": (dict(created_at="10000-01-01T00:00:00"), ("bad_timestamp", "created_at")),
    "after_9999_in_utc": (dict(modified_at="9999-12-31T23:00:00-05:00"), ("bad_timestamp", "modified_at")),
    "before_year_1_in_utc": (dict(created_at="0001-01-01T00:30:00+01:00"), ("bad_timestamp", "created_at")),
    "version_2_31": (dict(version=2**31), ("bad_version", "version")),
    "version_2_63": (dict(version=2**63 - 1), ("bad_version", "version")),
}


@pytest.mark.parametrize("name", sorted(POISONED))
def test_values_the_central_store_cannot_hold_are_reported_and_the_row_kept(tmp_path, name):
    over, (rule, field) = POISONED[name]
    s, _ = load(tmp_path, [device_row(1), device_row(2, **over), device_row(3)],
                settings={"default_currency": '"EUR"'})
    assert len(s) == 3 and list(s.invoices["source_row"]) == [1, 2, 3]  # loaded, nothing dropped
    report = ik.validate(s)
    found = rules_of(report)
    assert (2, rule, field) in found
    assert {r for r, _, _ in found} == {2}
    assert set(report.problems["rule"]) <= set(RULES)
    with pytest.raises(ik.ValidationError, match=rule):
        ik.validate(s, strict=True)


def test_largest_storable_values_pass(tmp_path):
    rows = [
        device_row(1, line_items=_items(1, 9999999999.99), total_amount=9999999999.99),
        device_row(2, line_items=_items(999999999.999, 10.0), total_amount=9999999999.99),
        device_row(3, line_items=_items(999999999.999, 0.01), total_amount=10000000.0),
        device_row(4, created_at="0001-01-01T00:00:00", modified_at="9999-12-31T23:59:59.999999", version=2**31 - 1),
        # an escaped backslash before "u0000" is text, not a NUL: jsonb takes it
        device_row(5, client_data=json.dumps({"name": "C:\\u0000", "address": "tab\t bell\x07"})),
        device_row(6, created_at="9999-12-31T18:59:59+05:00", total_amount="9999999999.99",
                   line_items=_items("1", "9999999999.99")),
    ]
    s, _ = load(tmp_path, rows, settings={"default_currency": '"EUR"'})
    report = ik.validate(s)
    assert report.ok, report.problems
    assert [str(t) for t in s.invoices["total"]] == ["9999999999.99", "9999999999.99", "10000000.00", "25.00",
                                                      "25.00", "9999999999.99"]
    assert str(s.lines["quantity"].max()) == "999999999.999"


def test_sets_built_from_frames_are_checked_too():
    s = make_invoices(4)
    inv = s.invoices.copy()
    inv.loc[0, "currency"] = "EU\x00R"
    inv.loc[1, "id"] = inv.loc[1, "id"] + "\x00"
    micros = s.invoices_table().column("created_at").cast(pa.int64()).to_pylist()
    micros[2] = 253402300800000000  # 10000-01-01T00:00:00Z: Arrow holds it, Python's datetime does not
    inv["created_at"] = pd.arrays.ArrowExtensionArray(pa.array(micros, pa.int64()).cast(pa.timestamp("us", "UTC")))
    report = ik.validate(ik.InvoiceSet(inv, s.lines))
    got = set(zip(report.problems["source_row"], report.problems["rule"], report.problems["field"]))
    rows = inv["source_row"]
    assert (rows[0], "nul_character", "currency") in got
    assert (rows[1], "nul_character", "id") in got
    assert (rows[2], "bad_timestamp", "created_at") in got
    nul = report.problems[report.problems["rule"] == "nul_character"]
    assert list(nul["value"]) == ["EU\\x00R", inv.loc[1, "id"].replace("\x00", "\\x00")]  # NULs made visible
    assert "nul_character" in report._repr_html_()


def test_reconcile_of_poisoned_rows_does_not_raise(tmp_path):
    rows = [device_row(i + 1, **over) for i, (over, _) in enumerate(POISONED.values())]
    s, _ = load(tmp_path, rows, settings={"default_currency": '"EUR"'})
    clean = tmp_path / "clean.sqlite"
    write_device_store(clean, [device_row(i + 1) for i in range(len(rows))], settings={"default_currency": '"EUR"'})
    result = ik.reconcile(s, ik.read_local(clean))
    assert len(result.status) == len(rows)
    assert len(ik.reconcile(s, s).status) == len(rows)
    report = ik.validate(s)
    assert set(report.problems["source_row"]) == set(range(1, len(rows) + 1))


def test_largest_storable_values_round_trip_through_postgresql(tmp_path, central_pg_url):
    rows = [
        device_row(1, line_items=_items(1, 9999999999.99), total_amount=9999999999.99),
        device_row(2, line_items=_items(999999999.999, 10.0), total_amount=9999999999.99),
        device_row(3, created_at="0001-01-01T00:00:00", modified_at="9999-12-31T23:59:59.999999", version=2**31 - 1),
        device_row(4, client_data=json.dumps({"name": "C:\\u0000", "address": "tab\t bell\x07"}),
                   line_items=_items(2, 10.25, "say \\u0000 \u2400"), total_amount=20.5),
    ]
    s, _ = load(tmp_path, rows, settings={"default_currency": '"EUR"'})
    assert ik.validate(s).ok
    ik.init_db(central_pg_url)
    assert ik.write_central(s, central_pg_url).inserted == 4
    back = ik.read_central(central_pg_url)
    cols = ["id", "invoice_number", "client_name", "client_address", "client_data", "line_items", "total",
            "created_at", "modified_at", "version", "checksum"]
    local = s.invoices[cols].sort_values("id").reset_index(drop=True)
    central = back.invoices[cols].sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(local, central, check_dtype=False)
    line_cols = ["invoice_id", "line_no", "description", "quantity", "unit_price", "line_total"]
    pd.testing.assert_frame_equal(s.lines[line_cols].sort_values(["invoice_id", "line_no"]).reset_index(drop=True),
                                  back.lines[line_cols].sort_values(["invoice_id", "line_no"]).reset_index(drop=True),
                                  check_dtype=False)
    assert str(back.invoices["total"].max()) == "9999999999.99"
    assert back.invoices["version"].max() == 2**31 - 1


@pytest.mark.parametrize("name", ["nul_invoice_number", "nul_client_escape", "nul_description", "version_2_31"])
def test_what_validation_rejects_postgresql_refuses(tmp_path, central_pg_url, name):
    """The rules are not stricter than needed: bypassing validation, the store refuses the row."""
    over, _ = POISONED[name]
    s, _ = load(tmp_path, [device_row(1, **over)], settings={"default_currency": '"EUR"'})
    ik.init_db(central_pg_url)
    with pytest.raises(Exception) as info:  # a driver error today; a typed error is another bullet's work
        ik.write_central(s, central_pg_url, validate=False)
    assert not isinstance(info.value, AssertionError)
    assert len(ik.read_central(central_pg_url)) == 0


#: client_data text DuckDB reads as a JSON object: jsonb (the central column) refuses some of it
CLIENT_JSON = [
    '{"name": "A", "x": NaN}', '{"name": "A", "x": -Infinity}', '{"name":"A","x":inf}', '{"name": "A", "x": [NaN]}',
    '{"name": "A",}', '{"name": "A" , }', '{"name": "A", "x": [1, ]}', '{"name": "A", "x": {"y": 1,}}',
    '{\n  "name": "A",\n}', '{\n  "name": "A",\n  "x": 1\n}',
    '{"name": "A", "x": 1e131071}', '{"name": "A", "x": 1e131072}', '{"name": "A", "x": 12e131070}',
    '{"name": "A", "x": 0.12e131072}', '{"name": "A", "x": 0e200000}', '{"name": "A", "x": 0.0e-200000}',
    '{"name": "A", "x": 1e-16383}', '{"name": "A", "x": 1e-16384}', '{"name": "A", "x": 100e-16385}',
    '{"name": "A", "x": 1' + "0" * 131071 + "}", '{"name": "A", "x": 1' + "0" * 131072 + "}",
    '{"name": "A", "x": 0.' + "0" * 16382 + "1}", '{"name": "A", "x": 0.' + "0" * 16383 + "1}",
    '{"name": "A", "x": 1e99999999999999999999999}', '{"name": "A", "x": 0e-99999999999999999999}',
    '{"name": "NaN, Infinity,}", "x": 1.5}', '{"name": "Nancy", "n": null, "t": true, "f": false, "z": -0.5e-3}',
    '{"name": "a\\"b, }"}', '{"name": "A", "x": -1E+5}',
]


def test_client_json_is_read_as_postgresql_jsonb_reads_it(tmp_path, pg_url):
    """unparseable_json for client_data exactly where PostgreSQL's jsonb refuses the text."""
    import psycopg

    refused = []
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for text in CLIENT_JSON:
            try:
                conn.execute("SELECT %s::jsonb", [text])
                refused.append(False)
            except psycopg.Error:
                refused.append(True)
    assert 5 < sum(refused) < len(CLIENT_JSON) - 5  # both kinds are tried
    s, _ = load(tmp_path, [device_row(i + 1, client_data=t) for i, t in enumerate(CLIENT_JSON)],
                settings={"default_currency": '"EUR"'})
    flagged = set(ik.validate(s).problems.query("rule == 'unparseable_json'")["source_row"])
    assert [i + 1 in flagged for i in range(len(CLIENT_JSON))] == refused
    assert s.invoices.set_index("source_row").loc[sorted(flagged), "client_name"].isna().all()
