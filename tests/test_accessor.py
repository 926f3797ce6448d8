"""The ``.ik`` DataFrame accessor and ``InvoiceSet.live()``: exact totals of live invoices,
floats only when asked, line items joined."""

from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import invoicekit as ik
from invoicekit._payload import rebuild
from invoicekit.samples import make_invoices

D = Decimal
UTC = pa.timestamp("us", tz="UTC")

# (currency, created_at, lines as (description, quantity, unit_price), deleted)
SPEC = [
    ("EUR", "2024-01-05T10:00:00Z", [("Tea", "1", "0.10")], False),
    ("EUR", "2024-01-20T10:00:00Z", [("Tea", "1", "0.20")], False),
    ("EUR", "2024-01-31T23:30:00-02:00", [("Cake", "1", "1.05")], False),  # 2024-02-01 01:30 UTC
    ("EUR", "2024-02-10T10:00:00Z", [("Piano", "1", "999.99")], True),
    ("CHF", "2024-01-15T10:00:00Z", [("Cheese", "2", "6.17")], False),
    ("CHF", "2024-03-01T00:00:00Z", [("Chocolate", "1", "7.66")], False),
    ("CHF", "2024-03-02T10:00:00Z", [("Watch", "1", "100.00")], True),
    ("USD", "2024-02-28T10:00:00Z", [("Stamp", "1", "0.01"), ("Pens", "3", "0.33")], False),
]

LIVE_TOTALS = {  # (currency, month) -> (invoices, exact total)
    ("CHF", "2024-01-01"): (1, D("12.34")),
    ("CHF", "2024-03-01"): (1, D("7.66")),
    ("EUR", "2024-01-01"): (2, D("0.30")),
    ("EUR", "2024-02-01"): (1, D("1.05")),
    ("USD", "2024-02-01"): (1, D("1.00")),
}
ALL_TOTALS = {**LIVE_TOTALS, ("CHF", "2024-03-01"): (2, D("107.66")), ("EUR", "2024-02-01"): (2, D("1001.04"))}


def build(spec=SPEC, *, source="hand") -> ik.InvoiceSet:
    base = make_invoices(len(spec), seed=12, source=source)
    inv = base.invoices_table()
    ids = inv.column("id").to_pylist()
    created = pd.to_datetime([s[1] for s in spec], utc=True)
    deleted = [created[i] + pd.Timedelta(days=1) if s[3] else None for i, s in enumerate(spec)]
    inv = (inv.set_column(inv.schema.get_field_index("currency"), "currency", pa.array([s[0] for s in spec]))
              .set_column(inv.schema.get_field_index("created_at"), "created_at", pa.array(created).cast(UTC))
              .set_column(inv.schema.get_field_index("modified_at"), "modified_at", pa.array(created).cast(UTC))
              .set_column(inv.schema.get_field_index("deleted_at"), "deleted_at",
                          pa.array(pd.Series(deleted, dtype="datetime64[us, UTC]")).cast(UTC)))
    rows = [(ids[i], n + 1, d, D(q), D(p)) for i, s in enumerate(spec) for n, (d, q, p) in enumerate(s[2])]
    lines = pa.table({
        "invoice_id": pa.array([r[0] for r in rows]),
        "line_no": pa.array([r[1] for r in rows], pa.int32()),
        "description": pa.array([r[2] for r in rows]),
        "quantity": pa.array([r[3] for r in rows], pa.decimal128(12, 3)),
        "unit_price": pa.array([r[4] for r in rows], pa.decimal128(12, 2)),
        "line_total": pa.array([(r[3] * r[4]).quantize(D("0.01")) for r in rows], pa.decimal128(12, 2)),
    })
    return rebuild(inv, lines)


def as_dict(totals: pd.DataFrame) -> dict:
    return {(c, str(m.date())): (int(n), v)
            for c, m, n, v in zip(totals["currency"], totals["month"], totals["invoices"], totals["total"])}


@pytest.fixture(scope="module")
def hand():
    return build()


def test_totals_are_exact_live_by_currency_and_month(hand):
    before = hand.invoices.copy()
    t = hand.invoices.ik.totals()
    assert list(t.columns) == ["currency", "month", "invoices", "total"]
    assert as_dict(t) == LIVE_TOTALS
    assert all(isinstance(v, Decimal) for v in t["total"])  # exact, never float
    assert t["total"].dtype == pd.ArrowDtype(pa.decimal128(38, 2))
    assert t["month"].dtype == pd.ArrowDtype(UTC)
    assert list(zip(t["currency"], t["month"].astype(str))) == sorted(zip(t["currency"], t["month"].astype(str)))
    pd.testing.assert_frame_equal(hand.invoices, before)  # the input is not mutated


def test_totals_with_tombstones_on_request(hand):
    assert as_dict(hand.invoices.ik.totals(include_deleted=True)) == ALL_TOTALS
    assert as_dict(hand.totals(include_deleted=True)) == ALL_TOTALS
    assert as_dict(hand.totals()) == LIVE_TOTALS


def test_a_month_is_a_utc_month(hand):
    """Created 23:30 on 31 January at UTC-2 is February in UTC."""
    t = hand.invoices.ik.totals(by=("currency", "month"))
    assert ("EUR", "2024-02-01") in as_dict(t) and as_dict(t)[("EUR", "2024-01-01")][0] == 2


def test_other_periods_and_columns(hand):
    years = hand.invoices.ik.totals(by=("currency", "year"))
    assert dict(zip(years["currency"], years["total"])) == {"CHF": D("20.00"), "EUR": D("1.35"), "USD": D("1.00")}
    eur = hand.invoices[hand.invoices["currency"] == "EUR"]
    by_client = eur.ik.totals(by="month")  # one currency: no currency needed in by
    assert dict(zip(by_client["month"].astype(str).str[:10], by_client["total"])) == {
        "2024-01-01": D("0.30"), "2024-02-01": D("1.05")}
    weeks = eur.ik.totals(by="week", include_deleted=True)
    assert all(m.dayofweek == 0 for m in weeks["week"])  # weeks start on Monday
    assert sum(weeks["total"], D(0)) == D("1001.34")


def test_totals_never_add_currencies(hand):
    with pytest.raises(ik.UsageError, match="3 currencies .*put 'currency' in by") as err:
        hand.invoices.ik.totals(by="month")
    assert err.value.reason == "mixed_currencies"


def test_totals_as_float_for_plotting(hand):
    t = hand.invoices.ik.totals(float=True)
    assert t["total"].dtype == np.float64
    wide = t.pivot(index="month", columns="currency", values="total")  # what a plot takes
    assert wide.loc[pd.Timestamp("2024-01-01", tz="UTC"), "EUR"] == pytest.approx(0.30)


def test_sums_beyond_twelve_digits_stay_exact():
    big = D("9999999999.99")  # the largest NUMERIC(12,2)
    frame = pd.DataFrame({
        "currency": pd.Series(["EUR"] * 1000, dtype=pd.ArrowDtype(pa.string())),
        "created_at": pd.Series(pd.to_datetime(["2024-05-05"] * 1000, utc=True)),
        "total": pd.Series([big] * 1000, dtype=pd.ArrowDtype(pa.decimal128(12, 2))),
    })
    t = frame.ik.totals()
    assert t["total"].tolist() == [big * 1000] and t["invoices"].tolist() == [1000]


def test_live_and_deleted_split_the_frame(hand):
    inv = hand.invoices
    live, dead = inv.ik.live(), inv.ik.deleted()
    assert len(live) == 6 and len(dead) == 2
    assert live["deleted_at"].isna().all() and dead["deleted_at"].notna().all()
    assert sorted([*live.index, *dead.index]) == list(inv.index)  # index kept: aligns with the input
    assert sum(live["total"], D(0)) == D("22.35")


def test_money_stays_exact_unless_asked(hand):
    inv = hand.invoices
    assert inv.ik.money_columns == ["total"]
    exact = inv.ik.money()
    assert exact["total"].dtype == pd.ArrowDtype(pa.decimal128(12, 2))
    floats = inv.ik.live().ik.money(float=True)
    assert floats["total"].dtype == np.float64
    stats = floats["total"].describe()  # invoices.total.describe() fails on decimals; this works
    assert stats["count"] == 6 and stats["max"] == pytest.approx(12.34) and stats["min"] == pytest.approx(0.10)
    whole = inv.ik.as_float()
    assert whole["total"].dtype == np.float64 and whole["currency"].dtype == inv["currency"].dtype
    lines = hand.lines.ik.as_float()
    assert {c for c in lines if lines[c].dtype == np.float64} == {"quantity", "unit_price", "line_total"}
    assert inv["total"].dtype == pd.ArrowDtype(pa.decimal128(12, 2))  # the input is untouched


def test_describe_is_per_currency_and_live(hand):
    d = hand.invoices.ik.describe()
    assert d.loc["EUR", ("total", "count")] == 3 and d.loc["CHF", ("total", "max")] == pytest.approx(12.34)
    assert hand.invoices.ik.describe(include_deleted=True).loc["EUR", ("total", "count")] == 4
    assert hand.invoices.ik.describe(by=None).loc["count", "total"] == 6


def test_lines_joined_to_their_invoices(hand):
    joined = hand.invoices.ik.live().ik.lines()
    assert list(joined.columns) == ["invoice_id", "invoice_number", "client_name", "currency", "created_at",
                                    "deleted_at", "line_no", "description", "quantity", "unit_price", "line_total"]
    assert len(joined) == 7  # six live invoices, one with two lines
    usd = joined[joined["currency"] == "USD"]
    assert usd["description"].tolist() == ["Stamp", "Pens"] and usd["line_no"].tolist() == [1, 2]
    assert sum(usd["line_total"], D(0)) == D("1.00")
    per_invoice = joined.groupby("invoice_id")["line_total"].sum()
    totals = hand.invoices.set_index("id")["total"]
    assert all(per_invoice[i] == totals[i] for i in per_invoice.index)
    lt = joined.ik.totals(value="line_total", by=("currency", "description"))
    assert list(lt.columns) == ["currency", "description", "lines", "line_total"]
    assert dict(zip(zip(lt["currency"], lt["description"]), lt["line_total"]))[("EUR", "Tea")] == D("0.30")


def test_lines_of_a_frame_match_the_sets_own(hand):
    via_text = hand.invoices.ik.lines()[["invoice_id", "line_no", "description", "quantity", "line_total"]]
    via_set = hand.invoices.ik.lines(hand.lines)[["invoice_id", "line_no", "description", "quantity", "line_total"]]
    key = ["invoice_id", "line_no"]
    pd.testing.assert_frame_equal(via_text.sort_values(key).reset_index(drop=True),
                                  via_set.sort_values(key).reset_index(drop=True), check_dtype=False)


def test_an_id_on_two_devices_keeps_each_rows_items():
    a = build(source="a.sqlite")
    b_spec = [(c, t, [("Other " + d, q, p) for d, q, p in items], dead) for c, t, items, dead in SPEC]
    both = ik.InvoiceSet.concat([a, build(b_spec, source="b.sqlite")])  # same ids (same seed), other items
    joined = both.invoices.ik.lines(columns=["source"])
    assert len(joined) == 2 * 9
    assert (joined[joined["source"] == "b.sqlite"]["description"].str.startswith("Other ")).all()
    assert not (joined[joined["source"] == "a.sqlite"]["description"].str.startswith("Other ")).any()


def test_missing_columns_are_named():
    frame = pd.DataFrame({"id": ["x"]})
    with pytest.raises(ik.UsageError, match="lacks column.*deleted_at"):
        frame.ik.live()
    with pytest.raises(ik.UsageError, match="no money column"):
        frame.ik.money()
    with pytest.raises(ik.UsageError, match="lacks column.*line_items"):
        frame.ik.lines(columns=[])


def test_bad_totals_arguments(hand):
    with pytest.raises(ik.UsageError, match="'fortnight' is neither a column"):
        hand.invoices.ik.totals(by=("currency", "fortnight"))
    with pytest.raises(ik.UsageError, match="'version' is not an exact"):
        hand.invoices.ik.totals(value="version")
    with pytest.raises(ik.UsageError, match="not a timestamp"):
        hand.invoices.ik.totals(by=("currency", "month"), on="invoice_number")


def test_invoice_set_live_drops_tombstones_lines_and_problems(hand):
    live = hand.live()
    assert len(live) == 6 and live.invoices["deleted_at"].isna().all()
    dead_ids = set(hand.invoices.ik.deleted()["id"])
    assert not dead_ids & set(live.lines["invoice_id"]) and len(live.lines) == 7
    assert live.invoices.index.equals(pd.RangeIndex(6))
    assert live.live() is live  # nothing left to drop
    assert len(hand) == 8  # the set itself is unchanged


def test_through_a_real_store(tmp_path, hand):
    """Tombstones written to an offline store, read back: totals leave them out, lines stay deferred."""
    path = tmp_path / "device.sqlite"
    written = ik.write_local(hand, path)
    assert written.count("inserted") == 8
    s = ik.read_local(path)
    assert s.invoices["deleted_at"].notna().sum() == 2
    assert as_dict(s.invoices.ik.totals()) == LIVE_TOTALS and as_dict(s.totals()) == LIVE_TOTALS
    live = s.live()
    assert live.lines_deferred and len(live) == 6
    assert len(live.lines) == 7 and set(live.lines["invoice_id"]) == set(live.invoices["id"])
    # the set's own summary (live, per currency) agrees with the accessor
    per_currency = s.invoices.ik.totals(by="currency")
    summary = s.summary()
    assert dict(zip(per_currency["currency"], per_currency["total"])) == dict(zip(summary["currency"],
                                                                                   summary["total"]))
