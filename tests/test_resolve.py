"""Behaviour of ``resolve``: actions per status, every strategy, decisions, quarantine.

Expectations come from ``invoicekit.resolve``'s module doc: merges are recomputed here from
the base/local/central lines (keyed by description and occurrence), never copied from output.
"""

import json
import sqlite3
from collections import Counter
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import pytest

import invoicekit as ik
from invoicekit.resolve import STRATEGIES
from invoicekit.samples import make_invoices, make_scenario
from tests._build import device_row, write_device_store
from tests.test_reconcile import (
    DAY,
    assert_unchanged,
    insert_line,
    keyed,
    reprice,
    requantify,
    snapshot,
    status_of,
    with_cols,
)

NOW = datetime(2027, 1, 15, 12, 0, tzinfo=timezone.utc)
CENT = Decimal("0.01")
CONTENT = ["invoice_number", "client_data", "line_items", "total", "currency"]
PUSHED = ("local_only", "local_ahead", "deleted_local")
PULLED = ("central_ahead", "deleted_central")
QUIET = ("same", "central_only")


@pytest.fixture(scope="module")
def sc():
    return make_scenario()


@pytest.fixture(scope="module")
def dev(sc):
    return sc.devices["device_a"]


@pytest.fixture(scope="module")
def rec(sc, dev):
    return ik.reconcile(dev, sc.central)


@pytest.fixture(scope="module")
def resolved(rec):
    cache = {}

    def get(strategy):
        if strategy not in cache:
            cache[strategy] = ik.resolve(rec, strategy=strategy, now=NOW)
        return cache[strategy]

    return get


@pytest.fixture(scope="module")
def plain():
    return make_invoices(8, seed=5, source="plain")


def row(frame: pd.DataFrame, i: str) -> pd.Series:
    m = frame[frame["id"] == i]
    assert len(m) == 1, f"{i}: {len(m)} rows"
    return m.iloc[0]


def same_content(a: pd.Series, b: pd.Series) -> bool:
    return all(a[c] == b[c] for c in CONTENT) and (pd.isna(a["deleted_at"]) == pd.isna(b["deleted_at"]))


def ids_with(rec, *statuses) -> list[str]:
    return list(rec.status["id"][rec.status["status"].isin(statuses)])


def expected_merge(b: dict, lo: dict, c: dict, strategy: str, local_newer: bool):
    """Merge keyed lines as the module doc says: (merged lines or None, unresolved fields)."""
    merged, unresolved = {}, {}
    for key in set(b) | set(lo) | set(c):
        parts = []
        for pos, part in enumerate(("quantity", "unit_price")):
            vb, vl, vc = (side[key][pos] if key in side else None for side in (b, lo, c))
            if vl == vc:
                v = vl
            elif vl == vb:
                v = vc
            elif vc == vb:
                v = vl
            elif strategy == "three_way":
                unresolved[f"lines[{key}].{part}"] = (vb, vl, vc)
                v = None
            else:  # merge_fields: the newer side's value
                v = vl if local_newer else vc
            parts.append(v)
        if None not in parts:
            merged[key] = tuple(parts)
    return (None if unresolved else merged), unresolved


def assert_well_formed(res) -> None:
    """Target invoices valid, checksums right, totals = sum of exact line totals."""
    t = res.target
    assert ik.validate(t).ok
    assert ik.verify(t.invoices).all()
    assert (t.invoices["sync_status"] == "synced").all()
    lines = t.lines
    q = [Decimal(str(x)) for x in lines["quantity"]]
    p = [Decimal(str(x)) for x in lines["unit_price"]]
    exact = [(a * b).quantize(CENT, ROUND_HALF_UP) for a, b in zip(q, p)]
    assert [Decimal(str(x)) for x in lines["line_total"]] == exact
    sums = Counter()
    for i, lt in zip(lines["invoice_id"], lines["line_total"]):
        sums[i] += Decimal(str(lt))
    for i, total in zip(t.invoices["id"], t.invoices["total"]):
        assert Decimal(str(total)) == sums[i], i
    for i, grp in lines.groupby("invoice_id"):
        assert sorted(grp["line_no"]) == list(range(1, len(grp) + 1)), i


# -- non-conflicts ------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_non_conflicts_resolve_themselves(rec, dev, sc, resolved, strategy):
    res = resolved(strategy)
    act = res.actions.set_index("id")
    assert set(act.index) == set(rec.status["id"])
    assert dict(zip(res.actions["id"], res.actions["status"])) == status_of(rec)
    loc, cen = dev.invoices, sc.central.invoices
    for i in ids_with(rec, *QUIET):
        assert act.loc[i, "action"] == "none"
    for i in ids_with(rec, *PUSHED):
        a, t, lrow = act.loc[i], row(res.invoices, i), row(loc, i)
        assert (a["action"], a["winner"]) == ("push", "local")
        assert same_content(t, lrow)
        assert keyed(res.lines, i) == keyed(dev.lines, i)
        if a["status"] == "local_only":
            assert pd.isna(a["expected_central_version"]) and a["new_version"] == lrow["version"]
        else:
            crow = row(cen, i)
            assert a["expected_central_version"] == crow["version"]
            assert a["new_version"] == crow["version"] + 1 == lrow["version"]
        assert t["version"] == a["new_version"]
    for i in ids_with(rec, *PULLED):
        a, t, crow = act.loc[i], row(res.invoices, i), row(cen, i)
        assert (a["action"], a["winner"]) == ("pull", "central")
        assert same_content(t, crow) and t["version"] == crow["version"] == a["new_version"]
        assert keyed(res.lines, i) == keyed(sc.central.lines, i)
    deleted = ids_with(rec, "deleted_local", "deleted_central")
    assert deleted and res.invoices[res.invoices["id"].isin(deleted)]["deleted_at"].notna().all()
    written = set(res.invoices["id"])
    assert not written & set(ids_with(rec, *QUIET))
    assert set(ids_with(rec, *PUSHED, *PULLED)) <= written
    assert res.invoices["id"].is_unique
    assert set(res.lines["invoice_id"]) == written
    assert (res.actions["action"] != "quarantine").all()
    assert_well_formed(res)


# -- whole-invoice strategies -----------------------------------------------------------------------
def test_prefer_local_pushes_local_content(rec, dev, sc, resolved):
    res = resolved("prefer_local")
    conflicts = ids_with(rec, "conflict")
    assert conflicts
    for i in conflicts:
        a, t = row(res.actions, i), row(res.invoices, i)
        lrow, crow = row(dev.invoices, i), row(sc.central.invoices, i)
        assert (a["action"], a["winner"]) == ("push", "local")
        assert a["new_version"] == max(lrow["version"], crow["version"]) + 1 == t["version"]
        assert a["expected_central_version"] == crow["version"]
        assert same_content(t, lrow) and not same_content(t, crow)
        assert keyed(res.lines, i) == keyed(dev.lines, i)
    assert len(res.unresolved) == 0


def test_prefer_central_pulls_central_content(rec, dev, sc, resolved):
    res = resolved("prefer_central")
    for i in ids_with(rec, "conflict"):
        a, t, crow = row(res.actions, i), row(res.invoices, i), row(sc.central.invoices, i)
        lrow = row(dev.invoices, i)
        assert same_content(t, crow)
        assert keyed(res.lines, i) == keyed(sc.central.lines, i)
        if crow["version"] > lrow["version"]:  # a pull, at central's version
            assert (a["action"], a["winner"]) == ("pull", "central") and t["version"] == crow["version"]
        else:  # the device is as far or further: central's content pushed past both, never a lower version
            assert (a["action"], a["winner"]) == ("push", "central")
            assert t["version"] == a["new_version"] == max(lrow["version"], crow["version"]) + 1
            assert a["expected_central_version"] == crow["version"]


def _lww_check(res, local, central, conflicts, winner):
    for i in conflicts:
        a, t = row(res.actions, i), row(res.invoices, i)
        lrow, crow = row(local.invoices, i), row(central.invoices, i)
        assert (a["action"], a["winner"]) == ("push", winner), i
        assert a["new_version"] == max(lrow["version"], crow["version"]) + 1 == t["version"]
        assert a["expected_central_version"] == crow["version"]
        src = lrow if winner == "local" else crow
        assert same_content(t, src)
        assert keyed(res.lines, i) == keyed((local if winner == "local" else central).lines, i)


def test_last_write_wins_central_newer(rec, dev, sc, resolved):
    conflicts = ids_with(rec, "conflict")
    lm = dev.invoices.set_index("id")["modified_at"]
    cm = sc.central.invoices.set_index("id")["modified_at"]
    assert (cm.loc[conflicts] > lm.loc[conflicts]).all()  # the scenario's central edits came later
    _lww_check(resolved("last_write_wins"), dev, sc.central, conflicts, "central")
    assert_well_formed(resolved("last_write_wins"))


def test_last_write_wins_local_newer_and_tie(rec, dev, sc):
    conflicts = ids_with(rec, "conflict")
    cm = sc.central.invoices.set_index("id")["modified_at"]
    newer = with_cols(dev, conflicts, modified_at=lambda c: c + 5 * DAY)  # base kept
    assert (newer.invoices.set_index("id")["modified_at"].loc[conflicts] > cm.loc[conflicts]).all()
    r = ik.reconcile(newer, sc.central)
    assert set(ids_with(r, "conflict")) == set(conflicts)
    res = ik.resolve(r, strategy="last_write_wins", now=NOW)
    _lww_check(res, newer, sc.central, conflicts, "local")
    assert_well_formed(res)
    # a tie goes to central
    inv = dev.invoices.copy()
    m = inv["id"].isin(conflicts)
    inv.loc[m, "modified_at"] = inv.loc[m, "id"].map(cm).astype(inv["modified_at"].dtype)
    tie = ik.InvoiceSet(inv, dev.lines).with_base(dev.base)
    res = ik.resolve(ik.reconcile(tie, sc.central), strategy="last_write_wins", now=NOW)
    _lww_check(res, tie, sc.central, conflicts, "central")


# -- merging strategies --------------------------------------------------------------------------
def _merge_expectations(rec, dev, sc, strategy):
    out = {}
    cm = sc.central.invoices.set_index("id")["modified_at"]
    lm = dev.invoices.set_index("id")["modified_at"]
    for i in ids_with(rec, "conflict"):
        out[i] = expected_merge(keyed(dev.base.lines, i), keyed(dev.lines, i), keyed(sc.central.lines, i),
                                strategy, bool(lm[i] > cm[i]))
    return out


@pytest.mark.parametrize("strategy", ["three_way", "merge_fields"])
def test_merges_follow_the_base(rec, dev, sc, resolved, strategy):
    res = resolved(strategy)
    expectations = _merge_expectations(rec, dev, sc, strategy)
    outcomes = Counter()
    for i, (merged, unresolved) in expectations.items():
        a = row(res.actions, i)
        lrow, crow = row(dev.invoices, i), row(sc.central.invoices, i)
        got_unresolved = res.unresolved[res.unresolved["id"] == i]
        if merged is None:
            outcomes["unresolved"] += 1
            assert a["action"] == "unresolved" and pd.isna(a["winner"]) and pd.isna(a["new_version"])
            assert i not in set(res.invoices["id"]) and i not in set(res.lines["invoice_id"])
            assert {r.field: (r.base, r.local, r.central) for r in got_unresolved.itertuples()} == {
                f: tuple(str(v) for v in vals) for f, vals in unresolved.items()}
            continue
        outcomes["merged"] += 1
        assert len(got_unresolved) == 0
        t = row(res.invoices, i)
        assert (a["action"], a["winner"]) == ("push", "merged")
        assert a["new_version"] == max(lrow["version"], crow["version"]) + 1 == t["version"]
        assert a["expected_central_version"] == crow["version"]
        assert keyed(res.lines, i) == merged
        # merged lines keep the local order (no line was added in the scenario)
        mine = res.lines[res.lines["invoice_id"] == i].sort_values("line_no")
        local_order = dev.lines[dev.lines["invoice_id"] == i].sort_values("line_no")["description"]
        assert list(mine["description"]) == list(local_order)
        total = sum((q * p).quantize(CENT, ROUND_HALF_UP) for q, p in merged.values())
        assert t["total"] == total
        for col in ("invoice_number", "client_name", "client_email", "client_data", "currency", "created_at"):
            assert t[col] == lrow[col] == crow[col], col
        assert pd.isna(t["deleted_at"])
        assert t["modified_at"] == pd.Timestamp(NOW)
    if strategy == "three_way":
        assert outcomes["unresolved"] and outcomes["merged"]  # both kinds of edited_both occur
        assert set(res.unresolved["id"]) == {i for i, (m, _) in expectations.items() if m is None}
    else:
        assert outcomes == Counter({"merged": len(expectations)}) and len(res.unresolved) == 0
    assert_well_formed(res)


def _one_sided_line_case(plain, side: str):
    """Base = plain; ``side`` inserts a line at position 2 of one invoice, the other side reprices line 1."""
    counts = plain.lines.groupby("invoice_id").size()
    i = counts[counts >= 2].index[0]
    added = insert_line(plain, i, f"Added on {side}", "3", "7.50", at=2)
    edited = reprice(plain, [i], "4.00", line_no=1)
    if side == "local":
        local, central = added, edited
    else:
        local, central = edited, added
    local = with_cols(local, [i], version=2, sync_status="pending", modified_at=lambda c: c + DAY)
    central = with_cols(central, [i], version=2, modified_at=lambda c: c + 2 * DAY)
    return local, central, i


@pytest.mark.parametrize("side", ["local", "central"])
@pytest.mark.parametrize("strategy", ["three_way", "merge_fields"])
def test_a_line_added_on_one_side_survives_a_merge(plain, side, strategy):
    local, central, i = _one_sided_line_case(plain, side)
    rec = ik.reconcile(local.with_base(plain), central)
    assert status_of(rec)[i] == "conflict"
    res = ik.resolve(rec, strategy=strategy, now=NOW)
    a = row(res.actions, i)
    assert (a["action"], a["winner"]) == ("push", "merged")
    base = keyed(plain.lines, i)
    first = next(iter(base))  # line 1's identity
    expected = dict(base)
    expected[first] = (base[first][0], base[first][1] + Decimal("4.00"))
    expected[f"Added on {side}#1"] = (Decimal("3.000"), Decimal("7.50"))
    assert keyed(res.lines, i) == expected
    assert_well_formed(res)
    # other invoices are the same on both sides: nothing to write
    assert set(res.actions["id"][res.actions["action"] != "none"]) == {i}


def test_without_base_merge_fields_keeps_lines_from_both_sides_three_way_asks(plain):
    counts = plain.lines.groupby("invoice_id").size()
    i = counts[counts >= 2].index[0]
    local = with_cols(insert_line(plain, i, "Local extra", "1", "2.00", at=1), [i], version=2,
                      sync_status="pending")
    central = with_cols(insert_line(plain, i, "Central extra", "5", "1.10", at=3), [i], version=2)
    rec = ik.reconcile(local, central)
    assert status_of(rec)[i] == "conflict" and not rec.status["has_base"].any()
    res = ik.resolve(rec, strategy="merge_fields", now=NOW)
    assert row(res.actions, i)["action"] == "push"
    expected = dict(keyed(plain.lines, i))
    expected["Local extra#1"] = (Decimal("1.000"), Decimal("2.00"))
    expected["Central extra#1"] = (Decimal("5.000"), Decimal("1.10"))
    assert keyed(res.lines, i) == expected
    assert_well_formed(res)
    # three_way has no base to compare with: every differing field needs a decision
    res3 = ik.resolve(rec, strategy="three_way", now=NOW)
    assert row(res3.actions, i)["action"] == "unresolved"
    assert set(res3.unresolved["field"]) == {
        "lines[Local extra#1].quantity", "lines[Local extra#1].unit_price",
        "lines[Central extra#1].quantity", "lines[Central extra#1].unit_price"}
    assert i not in set(res3.invoices["id"])


# -- decisions ------------------------------------------------------------------------------------
def test_decisions_resolve_every_unresolved_field(rec, dev, sc, resolved):
    open_ = resolved("three_way").unresolved
    assert len(open_)
    choices = ["local", "central", "base"]
    decisions = open_[["id", "field"]].copy()
    decisions["choice"] = [choices[k % 3] for k in range(len(decisions))]
    before = decisions.copy()
    res = ik.resolve(rec, strategy="three_way", decisions=decisions, now=NOW)
    pd.testing.assert_frame_equal(decisions, before)
    assert len(res.unresolved) == 0
    assert not (res.actions["action"] == "unresolved").any()
    expectations = _merge_expectations(rec, dev, sc, "three_way")
    for i, grp in decisions.groupby("id"):
        a = row(res.actions, i)
        assert (a["action"], a["winner"]) == ("push", "merged")
        got = keyed(res.lines, i)
        _, unresolved = expectations[i]
        for field, choice in zip(grp["field"], grp["choice"]):
            key, part = field[len("lines["):].rsplit("].", 1)
            want = unresolved[field][("base", "local", "central").index(choice)]  # tuples are (base, local, central)
            assert got[key][("quantity", "unit_price").index(part)] == want, (i, field, choice)
    assert_well_formed(res)


@pytest.mark.parametrize("choice", ["local", "central", "base"])
def test_star_decision_takes_the_whole_invoice(rec, dev, sc, resolved, choice):
    i = resolved("three_way").unresolved["id"].iloc[0]
    res = ik.resolve(rec, strategy="three_way", now=NOW,
                     decisions=pd.DataFrame({"id": [i], "field": ["*"], "choice": [choice]}))
    a, t = row(res.actions, i), row(res.invoices, i)
    lrow, crow = row(dev.invoices, i), row(sc.central.invoices, i)
    side = {"local": dev, "central": sc.central, "base": dev.base}[choice]
    assert same_content(t, row(side.invoices, i))
    assert keyed(res.lines, i) == keyed(side.lines, i)
    if choice == "central" and crow["version"] > lrow["version"]:
        assert a["action"] == "pull" and t["version"] == crow["version"]
    else:  # central's content over a device as far or further is pushed past both, like the others
        assert a["action"] == "push"
        assert a["new_version"] == max(lrow["version"], crow["version"]) + 1 == t["version"]
        assert a["expected_central_version"] == crow["version"]
    assert i not in set(res.unresolved["id"])
    assert_well_formed(res)


@pytest.mark.parametrize("strategy", ["prefer_local", "prefer_central", "last_write_wins"])
def test_field_decisions_override_whole_invoice_strategies(rec, dev, sc, resolved, strategy):
    """A decision overrides the strategy for the field it names; the rest follows the strategy."""
    u = resolved("three_way").unresolved.iloc[0]
    i, field = u["id"], u["field"]
    other = "central" if strategy == "prefer_local" else "local"
    res = ik.resolve(rec, strategy=strategy, now=NOW,
                     decisions=pd.DataFrame({"id": [i], "field": [field], "choice": [other]}))
    a = row(res.actions, i)
    assert a["action"] == "push"
    winner = dev if strategy == "prefer_local" else sc.central  # central is newer in the scenario
    expected = dict(keyed(winner.lines, i))
    key, part = field[len("lines["):].rsplit("].", 1)
    pos = ("quantity", "unit_price").index(part)
    chosen = keyed((dev if other == "local" else sc.central).lines, i)[key][pos]
    expected[key] = tuple(chosen if k == pos else v for k, v in enumerate(expected[key]))
    assert keyed(res.lines, i) == expected
    assert a["new_version"] == max(a["local_version"], a["central_version"]) + 1
    assert_well_formed(res)
    # every other conflict still follows the strategy
    plain_res = resolved(strategy)
    others = [x for x in ids_with(rec, "conflict") if x != i]
    pd.testing.assert_frame_equal(
        res.actions[res.actions["id"].isin(others)].reset_index(drop=True),
        plain_res.actions[plain_res.actions["id"].isin(others)].reset_index(drop=True))


def test_bad_decisions_are_usage_errors(rec, resolved, plain):
    u = resolved("three_way").unresolved.iloc[0]
    i, field = u["id"], u["field"]
    bad = {
        "choice": pd.DataFrame({"id": [i], "field": [field], "choice": ["mine"]}),
        "unknown id": pd.DataFrame({"id": ["no-such-invoice"], "field": [field], "choice": ["local"]}),
        "duplicate": pd.DataFrame({"id": [i, i], "field": [field, field], "choice": ["local", "central"]}),
        "columns": pd.DataFrame({"id": [i], "choice": ["local"]}),
    }
    for decisions in bad.values():
        with pytest.raises(ik.UsageError):
            ik.resolve(rec, strategy="three_way", decisions=decisions)
    with pytest.raises(ik.UsageError, match="strategy"):
        ik.resolve(rec, strategy="coin_flip")
    # 'base' names a snapshot: an invoice without one cannot take it
    j = plain.invoices["id"].iloc[0]
    no_base = ik.reconcile(requantify(plain, [j]), plain)
    assert status_of(no_base)[j] == "conflict"
    for f in ("*", "lines[x#1].quantity"):
        with pytest.raises(ik.UsageError, match="base"):
            ik.resolve(no_base, strategy="three_way",
                       decisions=pd.DataFrame({"id": [j], "field": [f], "choice": ["base"]}))


# -- quarantine -----------------------------------------------------------------------------------
def test_rows_failing_their_checksum_are_quarantined(tmp_path):
    settings = {"default_currency": json.dumps("EUR")}
    rows = [device_row(k) for k in range(1, 5)] + [device_row(k, sync_status="pending") for k in (5, 6)]
    local_path, central_path = tmp_path / "device.sqlite", tmp_path / "central.sqlite"
    write_device_store(local_path, rows, settings=settings)
    write_device_store(central_path, rows[:4], settings=settings)
    synced_bad, new_bad, new_ok = rows[1]["id"], rows[4]["id"], rows[5]["id"]
    conn = sqlite3.connect(local_path)
    conn.execute("UPDATE transactions SET total_amount = 99.0 WHERE id IN (?, ?)", (synced_bad, new_bad))
    conn.commit()
    conn.close()
    local, central = ik.read_local(local_path), ik.read_local(central_path)
    assert set(local.invoices["id"][~ik.verify(local.invoices)]) == {synced_bad, new_bad}
    rec = ik.reconcile(local, central)
    # the content comparison sees the altered total, whatever the stale checksum says
    assert status_of(rec)[synced_bad] == "conflict" and status_of(rec)[new_bad] == "local_only"
    for strategy in STRATEGIES:
        res = ik.resolve(rec, strategy=strategy, now=NOW)
        act = res.actions.set_index("id")
        for i in (synced_bad, new_bad):
            assert act.loc[i, "action"] == "quarantine", strategy
            reason = act.loc[i, "quarantine_reason"]
            assert isinstance(reason, str) and "checksum" in reason
            assert pd.isna(act.loc[i, "new_version"])
        assert act.loc[new_ok, "action"] == "push" and pd.isna(act.loc[new_ok, "quarantine_reason"])
        assert set(res.invoices["id"]) == {new_ok}
        assert set(res.lines["invoice_id"]) == {new_ok}
        assert set(act.index[act["action"] == "none"]) == {r["id"] for r in rows[:4]} - {synced_bad}


def test_rows_that_do_not_parse_are_quarantined(tmp_path):
    path = tmp_path / "device.sqlite"
    broken = device_row(7, sync_status="pending", line_items='[{"description": "x", "quantity": 1')
    write_device_store(path, [device_row(1, sync_status="pending"), broken],
                       settings={"default_currency": json.dumps("EUR")})
    local = ik.read_local(path)
    assert broken["id"] in set(local.problems["id"])
    empty_central = ik.InvoiceSet(local.invoices.iloc[:0], local.lines.iloc[:0])
    res = ik.resolve(ik.reconcile(local, empty_central), strategy="prefer_local", now=NOW)
    act = res.actions.set_index("id")
    assert act.loc[broken["id"], "action"] == "quarantine"
    assert "parse" in act.loc[broken["id"], "quarantine_reason"]
    assert act.loc[device_row(1)["id"], "action"] == "push"
    assert broken["id"] not in set(res.invoices["id"])


# -- contracts --------------------------------------------------------------------------------------
def test_resolve_does_not_mutate_the_reconciliation(sc):
    local = sc.devices["device_b"]
    rec = ik.reconcile(local, sc.central)
    status, fields = rec.status.copy(deep=True), rec.fields.copy(deep=True)
    before_l, before_c = snapshot(rec.local), snapshot(rec.central)
    u = ik.resolve(rec, strategy="three_way").unresolved
    decisions = u[["id", "field"]].assign(choice="local")
    for strategy in STRATEGIES:
        ik.resolve(rec, strategy=strategy, decisions=decisions, now=NOW)
    pd.testing.assert_frame_equal(rec.status, status)
    pd.testing.assert_frame_equal(rec.fields, fields)
    assert_unchanged(rec.local, before_l)
    assert_unchanged(rec.central, before_c)
    assert rec.local is local


def test_summary_and_reports(rec, resolved, tmp_path):
    res = resolved("three_way")
    s = res.summary()
    assert s["invoices"].sum() == len(rec.status)
    by = {(r.status, r.action): r.invoices for r in s.itertuples()}
    assert by[("same", "none")] == rec.counts()["same"]
    assert by.get(("conflict", "unresolved"), 0) == res.unresolved["id"].nunique() > 0
    path = tmp_path / "res.html"
    res.to_html(str(path))
    text = path.read_text(encoding="utf-8")
    assert "three_way" in text and "unresolved" in text
    assert "Resolution(three_way:" in repr(res)
