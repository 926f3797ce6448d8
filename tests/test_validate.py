import json

import pandas as pd
import pytest

import invoicekit as ik
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
