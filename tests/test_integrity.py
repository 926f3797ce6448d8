import json
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import invoicekit as ik
from invoicekit.schema import MONEY
from tests._build import device_checksum, device_row, write_device_store

texts = st.one_of(st.none(), st.text(max_size=30))  # any unicode, control characters included
# ASCII only (control characters, quotes and backslashes included): the all-vectorised path
ascii_texts = st.one_of(st.none(), st.text(st.characters(max_codepoint=126), max_size=30))
money = st.one_of(st.none(), st.decimals(min_value=Decimal("-99999999.99"), max_value=Decimal("99999999.99"),
                                         places=2, allow_nan=False, allow_infinity=False))


def frame(rows):
    df = pd.DataFrame(rows, columns=["invoice_number", "client_data", "line_items", "total"])
    for c in ["invoice_number", "client_data", "line_items"]:
        df[c] = df[c].astype("string[pyarrow]")
    df["total"] = pd.Series(pa.array(df["total"].tolist(), MONEY), dtype=pd.ArrowDtype(MONEY))
    return df


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.tuples(texts, texts, texts, money),
                          st.tuples(ascii_texts, ascii_texts, ascii_texts, money)),
                min_size=1, max_size=40))
def test_checksum_is_byte_identical_to_the_device_formula(rows):
    got = ik.checksum(frame(rows)).tolist()
    expected = [
        device_checksum({"invoice_number": n, "client_data": c, "line_items": li,
                         "total_amount": None if t is None else float(t)})
        for n, c, li, t in rows
    ]
    assert got == expected


def test_large_sets_are_hashed_in_slices_with_exact_rows_anywhere():
    """Above 100k rows the work is split into slices; rows needing json.dumps' escaping sit
    at slice edges and inside slices, and every row still matches the devices' formula."""
    n = 130_001
    rows = [(f"INV-{i}", '{"name": "C%d"}' % i, '[{"q": "%d"}]' % (i % 7), Decimal(i % 1000) / 4) for i in range(n)]
    odd = {0: "Müller €", 1: "tab\there", 65_000: "del\x7f", 65_001: "Ωmega", n - 1: "line\nbreak \"q\""}
    for i, text in odd.items():
        rows[i] = (rows[i][0], json.dumps({"name": text}, ensure_ascii=False), rows[i][2], None)
    got = ik.checksum(frame(rows))
    check = sorted(set(odd) | set(range(0, n, 9_973)) | {64_999, 65_002, 100_000})
    expected = [device_checksum({"invoice_number": rows[i][0], "client_data": rows[i][1], "line_items": rows[i][2],
                                 "total_amount": None if rows[i][3] is None else float(rows[i][3])}) for i in check]
    assert got.iloc[check].tolist() == expected


def test_checksum_of_a_store_matches_what_devices_stored(tmp_path):
    rows = [device_row(i, client_data=json.dumps({"name": "Müller\tGmbH \u2603"}, ensure_ascii=False))
            if i % 3 == 0 else device_row(i) for i in range(30)]
    write_device_store(tmp_path / "d.sqlite", rows)
    s = ik.read_local(tmp_path / "d.sqlite")
    assert ik.verify(s.invoices).all()
    assert ik.checksum(s.invoices).tolist() == [r["checksum"] for r in rows]


def test_tampered_rows_are_reported_by_id(tmp_path):
    rows = [device_row(i) for i in range(10)]
    rows[4]["total_amount"] = 99.0  # changed after the checksum was computed
    rows[7]["checksum"] = "0" * 64
    write_device_store(tmp_path / "d.sqlite", rows)
    s = ik.read_local(tmp_path / "d.sqlite")
    bad = ik.tampered(s.invoices)
    assert sorted(bad["id"]) == sorted([rows[4]["id"], rows[7]["id"]])
    assert set(bad.columns) == {"id", "source", "source_row", "stored", "computed"}
    assert (bad["source"] == str(tmp_path / "d.sqlite")).all()
    assert ik.verify(s.invoices).sum() == 8


def test_checksum_does_not_mutate_and_keeps_index():
    df = frame([("A", "{}", "[]", Decimal("1.50")), ("B", None, None, None)])
    df.index = [10, 20]
    before = df.copy()
    out = ik.checksum(df)
    assert list(out.index) == [10, 20]
    pd.testing.assert_frame_equal(df, before)


def test_float_repr_cases():
    cases = [Decimal("0.00"), Decimal("1.00"), Decimal("1.10"), Decimal("-5.05"), Decimal("12345678.90"),
             Decimal("0.01"), Decimal("-0.10")]
    got = ik.checksum(frame([("n", "c", "l", d) for d in cases])).tolist()
    assert got == [device_checksum({"invoice_number": "n", "client_data": "c", "line_items": "l",
                                    "total_amount": float(d)}) for d in cases]


@pytest.mark.parametrize("scale", [0, 1, 3])
def test_totals_of_other_scales_take_the_general_text_rule(scale):
    """A frame whose total is not the canonical 2-decimal type still hashes as the devices do."""
    cases = [Decimal("10"), Decimal("3"), Decimal("0.5"), Decimal("-2.5"), Decimal("1.125"), Decimal("100.100")]
    cases = [d for d in cases if -d.as_tuple().exponent <= scale]
    typ = pa.decimal128(12, scale)
    df = pd.DataFrame({"invoice_number": ["n"] * len(cases), "client_data": ["c"] * len(cases),
                       "line_items": ["l"] * len(cases)})
    df["total"] = pd.Series(pa.array(cases, typ), dtype=pd.ArrowDtype(typ))
    got = ik.checksum(df).tolist()
    assert got == [device_checksum({"invoice_number": "n", "client_data": "c", "line_items": "l",
                                    "total_amount": float(d)}) for d in cases]
