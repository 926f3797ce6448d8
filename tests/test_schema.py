from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest

import invoicekit as ik
from invoicekit.samples import make_invoices
from invoicekit.schema import INVOICE_SCHEMA, LINE_SCHEMA


def test_dtypes_are_documented_arrow_types():
    s = make_invoices(20, seed=1)
    for name, field in zip(INVOICE_SCHEMA.names, INVOICE_SCHEMA):
        assert s.invoices[name].dtype == pd.ArrowDtype(field.type), name
    for name, field in zip(LINE_SCHEMA.names, LINE_SCHEMA):
        assert s.lines[name].dtype == pd.ArrowDtype(field.type), name
    assert str(s.invoices["total"].dtype) == "decimal128(12, 2)[pyarrow]"
    assert str(s.invoices["created_at"].dtype) == "timestamp[us, tz=UTC][pyarrow]"


def test_from_frames_casts_and_names_missing_columns():
    s = make_invoices(5, seed=2)
    plain = s.invoices.astype(object)
    rebuilt = ik.InvoiceSet.from_frames(plain, s.lines)
    pd.testing.assert_frame_equal(rebuilt.invoices, s.invoices)
    with pytest.raises(ik.UsageError, match="total"):
        ik.InvoiceSet.from_frames(s.invoices.drop(columns=["total"]), s.lines)


def test_summary_totals_are_exact_and_skip_tombstones():
    s = make_invoices(300, seed=3)
    inv = s.invoices.copy()
    inv.loc[0, "deleted_at"] = inv.loc[0, "created_at"]
    t = ik.InvoiceSet(inv, s.lines)
    summary = t.summary().set_index("currency")
    live = inv[inv["deleted_at"].isna()]
    for cur, group in live.groupby("currency"):
        expected = sum((Decimal(str(x)) for x in group["total"]), Decimal("0"))
        assert Decimal(str(summary.loc[cur, "total"])) == expected
    assert summary.attrs["deleted"] == 1 and int(summary["invoices"].sum()) == 299


def test_concat_and_display(tmp_path):
    a, b = make_invoices(3, seed=4), make_invoices(4, seed=5)
    both = ik.InvoiceSet.concat([a, b])
    assert len(both) == 7 and len(both.lines) == len(a.lines) + len(b.lines)
    assert "7 invoices" in both._repr_html_() and "7 invoices" in repr(both)
    both.to_html(str(tmp_path / "s.html"))
    assert "<table" in (tmp_path / "s.html").read_text()
    assert len(ik.InvoiceSet.concat([])) == 0


def test_money_is_never_float():
    s = make_invoices(50, seed=6)
    for frame in (s.invoices, s.lines):
        for col in frame.columns:
            assert not pa.types.is_floating(frame[col].dtype.pyarrow_dtype), col


def test_summary_does_not_overflow_on_large_sums():
    s = make_invoices(3, seed=7)
    inv = s.invoices.copy()
    inv["currency"] = "EUR"
    inv["total"] = pd.Series([Decimal("9000000000.00")] * 3, dtype=pd.ArrowDtype(pa.decimal128(12, 2)))
    summary = ik.InvoiceSet(inv, s.lines).summary()
    assert Decimal(str(summary.loc[0, "total"])) == Decimal("27000000000.00")


def test_showing_a_loaded_set_does_not_parse_its_line_items(samples_dir):
    import invoicekit as ik

    s = ik.read_local(samples_dir / "device_b.sqlite")
    assert s.lines_deferred
    text, html, attrs = repr(s), s._repr_html_(), s.summary().attrs
    assert s.lines_deferred  # still deferred after repr, _repr_html_ and summary()
    assert "not parsed yet" in text and "not parsed yet" in html and attrs["lines_parsed"] is False
    n_lines = len(s.lines)  # now parsed: the counts shown before were the real ones
    assert f"{n_lines:,} lines" in text and attrs["lines"] == n_lines
    assert attrs["problems"] == len(s.problems)
    assert "not parsed yet" not in repr(s)
