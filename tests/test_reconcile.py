"""Behaviour of ``reconcile``: statuses (with and without a base), the field diff, reports.

Expectations come from the semantics in ``invoicekit.reconcile``'s module doc and from the
scenario's truth table, never from the implementation's own output.
"""

from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import pyarrow as pa
import pytest

import invoicekit as ik
from invoicekit._payload import rebuild
from invoicekit.reconcile import IN_SYNC, STATUSES
from invoicekit.samples import make_invoices, make_scenario
from invoicekit.schema import LINE_SCHEMA

#: the status each scenario situation must get
EXPECTED = {
    "synced": "same",
    "new_offline": "local_only",
    "edited_offline": "local_ahead",
    "edited_centrally": "central_ahead",
    "edited_both": "conflict",
    "deleted_local": "deleted_local",
    "deleted_central": "deleted_central",
}
CENT = Decimal("0.01")
DAY = pd.Timedelta(days=1)
GONE = pd.Timestamp("2026-11-01", tz="UTC")  # a tombstone time after every sample edit


# -- helpers to craft sets (also used by test_resolve) ----------------------------------
def relined(s: ik.InvoiceSet, change) -> ik.InvoiceSet:
    """``s`` with its lines replaced by ``change(list of line dicts)``; line totals, line-item
    JSON, invoice totals and checksums recomputed as a device would. The base is dropped."""
    rows = change([dict(r) for r in s.lines_table().to_pylist()])
    for r in rows:
        r["line_total"] = (r["quantity"] * r["unit_price"]).quantize(CENT, ROUND_HALF_UP)
    return rebuild(s.invoices_table(), pa.Table.from_pylist(rows, schema=LINE_SCHEMA))


def _bump(s: ik.InvoiceSet, ids, column: str, delta: str, line_no: int) -> ik.InvoiceSet:
    """Add ``delta`` to ``column`` of line ``line_no`` of invoices ``ids`` (content edit)."""
    ids = set(ids)

    def change(rows):
        for r in rows:
            if r["invoice_id"] in ids and r["line_no"] == line_no:
                r[column] += Decimal(delta)
        return rows

    return relined(s, change)


def reprice(s: ik.InvoiceSet, ids, delta: str = "1.00", line_no: int = 1) -> ik.InvoiceSet:
    """Add ``delta`` to the unit price of line ``line_no`` of invoices ``ids``."""
    return _bump(s, ids, "unit_price", delta, line_no)


def requantify(s: ik.InvoiceSet, ids, delta: str = "1", line_no: int = 1) -> ik.InvoiceSet:
    """Add ``delta`` to the quantity of line ``line_no`` of invoices ``ids``."""
    return _bump(s, ids, "quantity", delta, line_no)


def insert_line(s: ik.InvoiceSet, invoice_id: str, description: str, quantity: str, unit_price: str,
                at: int = 1) -> ik.InvoiceSet:
    """Insert a new line at position ``at`` of one invoice (later lines move down)."""
    def change(rows):
        for r in rows:
            if r["invoice_id"] == invoice_id and r["line_no"] >= at:
                r["line_no"] += 1
        rows.append({"invoice_id": invoice_id, "line_no": at, "description": description,
                     "quantity": Decimal(quantity), "unit_price": Decimal(unit_price)})
        return rows

    return relined(s, change)


def with_cols(s: ik.InvoiceSet, ids, **cols) -> ik.InvoiceSet:
    """A copy of ``s`` where invoices ``ids`` get new column values (callables get the old ones)."""
    inv = s.invoices.copy()
    mask = inv["id"].isin(list(ids))
    for col, value in cols.items():
        inv.loc[mask, col] = value(inv.loc[mask, col]) if callable(value) else value
    return ik.InvoiceSet.from_frames(inv, s.lines.copy()).with_base(s.base)


def keyed(lines: pd.DataFrame, invoice_id: str) -> dict[str, tuple[Decimal, Decimal]]:
    """Lines of one invoice by identity ``description#occurrence`` -> (quantity, unit_price)."""
    mine = lines[lines["invoice_id"] == invoice_id].sort_values("line_no")
    seen: Counter = Counter()
    out = {}
    for d, q, p in zip(mine["description"], mine["quantity"], mine["unit_price"]):
        seen[d] += 1
        out[f"{d}#{seen[d]}"] = (q, p)
    return out


def snapshot(s: ik.InvoiceSet) -> list[pd.DataFrame]:
    """Deep copies of every frame of ``s`` (and of its base), to check for mutation."""
    frames = [s.invoices, s.lines, s.problems]
    if s.base is not None:
        frames += [s.base.invoices, s.base.lines, s.base.problems]
    return [f.copy(deep=True) for f in frames]


def assert_unchanged(s: ik.InvoiceSet, before: list[pd.DataFrame]) -> None:
    for now, then in zip(snapshot(s), before, strict=True):
        pd.testing.assert_frame_equal(now, then)


def status_of(rec) -> dict[str, str]:
    return dict(zip(rec.status["id"], rec.status["status"]))


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sc():
    return make_scenario()


@pytest.fixture(scope="module")
def rec_a(sc):
    return ik.reconcile(sc.devices["device_a"], sc.central)


def truth_of(sc, device: str) -> pd.Series:
    t = sc.truth[sc.truth["device"] == device]
    return t.set_index("id")["situation"]


# -- statuses on the scenario ---------------------------------------------------------------
@pytest.mark.parametrize("with_base", [True, False], ids=["base", "no_base"])
@pytest.mark.parametrize("device", ["device_a", "device_b"])
def test_scenario_statuses_follow_truth(sc, device, with_base):
    local = sc.devices[device]
    assert local.base is not None  # the scenario's devices record their last-synced snapshot
    if not with_base:
        local = local.with_base(None)
    truth = truth_of(sc, device)
    assert set(truth.index) == set(local.invoices["id"])

    rec = ik.reconcile(local, sc.central)

    expected = {i: EXPECTED[sit] for i, sit in truth.items()}
    for i in set(sc.central.invoices["id"]) - set(local.invoices["id"]):
        expected[i] = "central_only"
    assert rec.status["id"].is_unique
    got = status_of(rec)
    wrong = {i: (got.get(i), e) for i, e in expected.items() if got.get(i) != e}
    assert not wrong, f"{len(wrong)} ids misclassified, e.g. {list(wrong.items())[:3]}"
    assert set(got) == set(expected)
    assert set(got.values()) == set(STATUSES)  # the scenario shows every status

    # the base is used exactly for ids the device has a snapshot of
    base_ids = set(sc.devices[device].base.invoices["id"]) if with_base else set()
    has_base = dict(zip(rec.status["id"], rec.status["has_base"]))
    assert {i for i, b in has_base.items() if b} == base_ids

    # versions are reported from each side
    st = rec.status.set_index("id")
    lv = local.invoices.set_index("id")["version"]
    cv = sc.central.invoices.set_index("id")["version"]
    both = sorted(set(lv.index) & set(cv.index))
    assert (st.loc[both, "local_version"].to_numpy() == lv.loc[both].to_numpy()).all()
    assert (st.loc[both, "central_version"].to_numpy() == cv.loc[both].to_numpy()).all()
    assert st.loc[sorted(set(cv.index) - set(lv.index)), "local_version"].isna().all()


@pytest.mark.parametrize("with_base", [True, False], ids=["base", "no_base"])
def test_status_keeps_the_local_order_then_the_central_order(sc, with_base):
    rng = pd.Series(range(10_000)).sample(frac=1, random_state=7).to_numpy()
    local = sc.devices["device_a"]
    local = ik.InvoiceSet(local.invoices.iloc[rng[rng < len(local)]].reset_index(drop=True), local.lines,
                          base=local.base if with_base else None)
    cen = sc.central.invoices.iloc[rng[rng < len(sc.central)][::-1]].reset_index(drop=True)
    central = ik.InvoiceSet(cen, sc.central.lines)
    rec = ik.reconcile(local, central)
    mine = list(local.invoices["id"])
    only_central = [i for i in cen["id"] if i not in set(mine)]
    assert len(only_central) > 1
    assert list(rec.status["id"]) == mine + only_central
    # every side's columns are those of its own row
    st = rec.status.set_index("id")
    cv = cen.set_index("id")
    assert (st.loc[only_central, "central_checksum"] == cv.loc[only_central, "checksum"]).all()
    assert st.loc[only_central, ["local_version", "local_checksum", "source"]].isna().all().all()
    assert (st.loc[mine, "source"] == local.invoices.set_index("id").loc[mine, "source"]).all()


def test_one_side_empty():
    s = make_invoices(5, seed=3)
    empty = ik.InvoiceSet(s.invoices.iloc[:0], s.lines.iloc[:0])
    assert list(ik.reconcile(s, empty).status["status"]) == ["local_only"] * 5
    rec = ik.reconcile(empty, s)
    assert list(rec.status["status"]) == ["central_only"] * 5
    assert list(rec.status["id"]) == list(s.invoices["id"])
    assert not ik.reconcile(empty, empty).differs


def test_statuses_do_not_need_the_field_diff(sc, rec_a):
    quick = ik.reconcile(sc.devices["device_a"], sc.central, fields=False)
    assert status_of(quick) == status_of(rec_a)
    assert len(quick.fields) == 0
    assert list(quick.fields.columns) == list(rec_a.fields.columns)


# -- crafted cases without a base: one per rule of the module doc ---------------------------
@pytest.fixture(scope="module")
def plain():
    """Eight synced v1 invoices (no base), as both sides last agreed on them."""
    return make_invoices(8, seed=5, source="plain")


def _case(plain, name):
    """(local, central, id, expected status) for a named no-base situation."""
    i = plain.invoices["id"].iloc[2]
    one = [i]
    later = lambda col: col + 2 * DAY  # noqa: E731
    much_later = lambda col: col + 3 * DAY  # noqa: E731
    s = plain
    cases = {
        # 1. same content: same version -> same; different versions -> the higher is ahead
        "same": lambda: (s, s, "same"),
        "same_content_local_higher": lambda: (with_cols(s, one, version=2), s, "local_ahead"),
        "same_content_central_higher": lambda: (s, with_cols(s, one, version=3), "central_ahead"),
        # 2. local pending (any status but synced), central below: local edited on top of central
        "pending_over_lower_central": lambda: (
            with_cols(requantify(s, one), one, version=2, sync_status="pending", modified_at=later), s,
            "local_ahead"),
        "error_status_counts_as_pending": lambda: (
            with_cols(requantify(s, one), one, version=2, sync_status="error", modified_at=later), s,
            "local_ahead"),
        "pending_delete_over_lower_central": lambda: (
            with_cols(s, one, version=2, sync_status="pending", modified_at=later,
                      deleted_at=GONE), s,
            "deleted_local"),
        # 3. local pending, central at or above the local version: central moved too
        "pending_same_version_as_central": lambda: (
            with_cols(requantify(s, one), one, version=2, sync_status="pending"),
            with_cols(reprice(s, one), one, version=2), "conflict"),
        "pending_below_central": lambda: (
            with_cols(requantify(s, one), one, version=2, sync_status="pending"),
            with_cols(reprice(s, one), one, version=3), "conflict"),
        "pending_unbumped_central_untouched": lambda: (
            with_cols(requantify(s, one), one, sync_status="pending"), s, "conflict"),
        # 4. local synced, central above: central is ahead ...
        "synced_below_central": lambda: (s, with_cols(reprice(s, one), one, version=2, modified_at=later),
                                 "central_ahead"),
        "synced_below_central_delete": lambda: (
            s, with_cols(s, one, version=2, modified_at=later,
                         deleted_at=GONE),
            "deleted_central"),
        # ... unless the local row was modified after central's (an edit never queued)
        "synced_modified_after_central": lambda: (
            with_cols(requantify(s, one), one, modified_at=much_later),
            with_cols(reprice(s, one), one, version=2, modified_at=later), "conflict"),
        # 5. local synced, central below: central lost a version the device saw synced
        "central_behind_local_synced": lambda: (
            with_cols(requantify(s, one), one, version=3),
            with_cols(s, one, version=2), "local_ahead"),
        # 6. local synced, same version, different content
        "synced_same_version_other_content": lambda: (requantify(s, one), s, "conflict"),
    }
    local, central, expected = cases[name]()
    return local, central, i, expected


NO_BASE_CASES = [
    "same", "same_content_local_higher", "same_content_central_higher", "pending_over_lower_central",
    "error_status_counts_as_pending", "pending_delete_over_lower_central", "pending_same_version_as_central",
    "pending_below_central", "pending_unbumped_central_untouched", "synced_below_central",
    "synced_below_central_delete", "synced_modified_after_central", "central_behind_local_synced",
    "synced_same_version_other_content",
]


@pytest.mark.parametrize("name", NO_BASE_CASES)
def test_no_base_rules(plain, name):
    local, central, i, expected = _case(plain, name)
    assert local.base is None
    rec = ik.reconcile(local, central)
    got = status_of(rec)
    assert got[i] == expected, rec.status.set_index("id").loc[i, "reason"]
    # every other invoice is untouched on both sides
    assert {k: v for k, v in got.items() if k != i} == {k: "same" for k in got if k != i}
    assert not rec.status["has_base"].any()


def test_synced_modified_before_central_is_not_a_conflict(plain):
    """The modified_at guard needs the local row to be *newer*: an older one is just behind."""
    i = plain.invoices["id"].iloc[4]
    local = with_cols(requantify(plain, [i]), [i], modified_at=lambda c: c + DAY)  # edited, never queued
    central = with_cols(reprice(plain, [i]), [i], version=2, modified_at=lambda c: c + 2 * DAY)
    assert status_of(ik.reconcile(local, central))[i] == "central_ahead"
    local_late = with_cols(local, [i], modified_at=lambda c: c + 2 * DAY)  # now 3 days on, after central
    assert status_of(ik.reconcile(local_late, central))[i] == "conflict"


def test_ids_on_one_side_only(plain):
    ids = list(plain.invoices["id"])
    live, tomb, central_only = ids[0], ids[1], ids[2]
    local = with_cols(plain, [tomb], deleted_at=GONE, sync_status="pending")
    keep = local.invoices["id"] != central_only
    local = ik.InvoiceSet(local.invoices[keep], local.lines[local.lines["invoice_id"] != central_only])
    central = ik.InvoiceSet(plain.invoices[~plain.invoices["id"].isin([live, tomb])],
                            plain.lines[~plain.lines["invoice_id"].isin([live, tomb])])
    got = status_of(ik.reconcile(local, central))
    assert got[live] == "local_only"
    assert got[tomb] == "deleted_local"
    assert got[central_only] == "central_only"
    assert Counter(got.values()) == Counter({"same": 5, "local_only": 1, "deleted_local": 1, "central_only": 1})


def test_with_base_both_sides_reaching_the_same_content(plain):
    """Changed on both sides to the same content: the higher version is ahead, not a conflict."""
    i = plain.invoices["id"].iloc[1]
    edited = reprice(plain, [i], "2.50")
    local = with_cols(edited, [i], version=2, sync_status="pending").with_base(plain)
    central = with_cols(edited, [i], version=3)
    assert status_of(ik.reconcile(local, central))[i] == "central_ahead"
    central = with_cols(edited, [i], version=2)
    assert status_of(ik.reconcile(local, central))[i] == "same"


def test_with_base_exact_three_way(plain):
    """With a base, the base decides who changed, whatever versions and sync_status say."""
    ids = list(plain.invoices["id"])
    lo, ce, bo, dl, dc = ids[:5]
    # versions deliberately uninformative: both sides stay at v1 and 'synced'
    local = with_cols(requantify(plain, [lo, bo, dl]), [dl], deleted_at=GONE)
    central = with_cols(reprice(plain, [ce, bo]), [dc], deleted_at=GONE)
    rec = ik.reconcile(local.with_base(plain), central)
    got = status_of(rec)
    assert (got[lo], got[ce], got[bo], got[dl], got[dc]) == (
        "local_ahead", "central_ahead", "conflict", "deleted_local", "deleted_central")
    assert [got[i] for i in ids[5:]] == ["same"] * 3
    assert rec.status["has_base"].all()


# -- the field diff ---------------------------------------------------------------------------
_SCALARS = {"invoice_number": "invoice_number", "client.name": "client_name", "client.email": "client_email",
            "client.address": "client_address", "client.tax_id": "client_tax_id", "currency": "currency",
            "total": "total"}


def _text(v):
    return None if v is None or pd.isna(v) else str(v)


def expected_fields(base: ik.InvoiceSet, local: ik.InvoiceSet, central: ik.InvoiceSet, i: str) -> dict:
    """field -> (base, local, central, local_changed, central_changed) for what differs, from the frames."""
    rows = {}
    sides = [s.invoices.set_index("id").loc[i] for s in (base, local, central)]
    for field, col in _SCALARS.items():
        b, lo, c = (_text(side[col]) for side in sides)
        if not b == lo == c:
            rows[field] = (b, lo, c, lo != b, c != b)
    kb, kl, kc = (keyed(s.lines, i) for s in (base, local, central))
    for key in set(kb) | set(kl) | set(kc):
        for pos, part in enumerate(("quantity", "unit_price")):
            b, lo, c = (_text(k[key][pos]) if key in k else None for k in (kb, kl, kc))
            if not b == lo == c:
                rows[f"lines[{key}].{part}"] = (b, lo, c, lo != b, c != b)
    return rows


def fields_of(rec, i: str) -> dict:
    f = rec.fields[rec.fields["id"] == i]
    return {
        r.field: (_text(r.base), _text(r.local), _text(r.central), bool(r.local_changed), bool(r.central_changed))
        for r in f.itertuples()
    }


def test_fields_of_edited_both_show_every_side(sc, rec_a):
    dev = sc.devices["device_a"]
    truth = truth_of(sc, "device_a")
    both = list(truth[truth == "edited_both"].index)
    assert both
    kinds = set()
    for i in both:
        expected = expected_fields(dev.base, dev, sc.central, i)
        assert fields_of(rec_a, i) == expected, i
        line_flags = {v[3:] for k, v in expected.items() if k.startswith("lines[")}
        kinds |= line_flags
    # the scenario has both true same-field conflicts and disjoint edits (device: quantity, central: price)
    assert (True, True) in kinds and (True, False) in kinds and (False, True) in kinds


@pytest.mark.parametrize("situation,flags", [("edited_offline", (True, False)), ("edited_centrally", (False, True))])
def test_fields_of_one_sided_edits(sc, rec_a, situation, flags):
    dev = sc.devices["device_a"]
    truth = truth_of(sc, "device_a")
    ids = list(truth[truth == situation].index)
    assert ids
    for i in ids:
        got = fields_of(rec_a, i)
        assert got == expected_fields(dev.base, dev, sc.central, i)
        assert got and {v[3:] for v in got.values()} == {flags}


def test_fields_cover_exactly_the_ids_needing_a_look(sc, rec_a):
    truth = truth_of(sc, "device_a")
    new = set(truth[truth == "new_offline"].index)
    assert new and not new & set(rec_a.fields["id"])  # local_only ids have nothing to compare
    needing = set(rec_a.status["id"][~rec_a.status["status"].isin(IN_SYNC + ("local_only",))])
    assert set(rec_a.fields["id"]) == needing
    deleted = set(truth[truth.isin(["deleted_local", "deleted_central"])].index)
    f = rec_a.fields[rec_a.fields["id"].isin(deleted)]
    assert set(f[f["field"] == "deleted_at"]["id"]) == deleted


def test_a_line_inserted_at_the_top_is_the_only_line_change(plain):
    counts = plain.lines.groupby("invoice_id").size()
    i = counts[counts >= 3].index[0]
    local = insert_line(plain, i, "Brand new service", "2", "10.00", at=1)
    local = with_cols(local, [i], version=2, sync_status="pending").with_base(plain)
    rec = ik.reconcile(local, plain)
    assert status_of(rec)[i] == "local_ahead"
    got = fields_of(rec, i)
    old_total = plain.invoices.set_index("id").loc[i, "total"]
    assert got == {
        "lines[Brand new service#1].quantity": (None, "2.000", None, True, False),
        "lines[Brand new service#1].unit_price": (None, "10.00", None, True, False),
        "total": (str(old_total), str(old_total + Decimal("20.00")), str(old_total), True, False),
    }


# -- summary, differs, reports -------------------------------------------------------------------
def test_summary_counts_every_status(sc, rec_a):
    s = rec_a.summary()
    assert list(s["status"]) == list(STATUSES)
    truth = truth_of(sc, "device_a")
    expected = Counter(EXPECTED[x] for x in truth)
    expected["central_only"] = len(set(sc.central.invoices["id"]) - set(truth.index))
    assert dict(zip(s["status"], s["invoices"])) == {st: expected.get(st, 0) for st in STATUSES}
    assert rec_a.counts() == {st: expected.get(st, 0) for st in STATUSES}
    assert len(rec_a.of("conflict")) == expected["conflict"]
    with pytest.raises(ik.UsageError):
        rec_a.of("bogus")


def test_differs(sc, rec_a, plain):
    assert rec_a.differs
    assert not ik.reconcile(sc.central, sc.central).differs
    # a device holding part of the central set, all in sync: central_only is normal
    held = plain.invoices["id"].iloc[:3]
    part = ik.InvoiceSet(plain.invoices.iloc[:3], plain.lines[plain.lines["invoice_id"].isin(held)])
    rec = ik.reconcile(part, plain)
    assert Counter(status_of(rec).values()) == Counter({"same": 3, "central_only": 5})
    assert not rec.differs
    i = plain.invoices["id"].iloc[0]
    rec = ik.reconcile(with_cols(part, [i], version=2), plain)
    assert rec.differs
    assert {k: v for k, v in rec.counts().items() if v} == {"same": 2, "local_ahead": 1, "central_only": 5}


def _evil(plain):
    """A local edit putting markup into a client name (client JSON and checksum updated)."""
    import json

    i = plain.invoices["id"].iloc[0]
    inv = plain.invoices.copy()
    m = inv["id"] == i
    client = json.loads(inv.loc[m, "client_data"].iloc[0])
    client["name"] = "<script>alert('x')</script> & Co"
    inv.loc[m, "client_name"] = client["name"]
    inv.loc[m, "client_data"] = json.dumps(client)
    inv.loc[m, "version"] = 2
    inv.loc[m, "sync_status"] = "pending"
    inv["checksum"] = ik.checksum(inv)
    return ik.InvoiceSet(inv, plain.lines), i


def test_repr_html_escapes_data(plain):
    local, i = _evil(plain)
    rec = ik.reconcile(local, plain)
    assert status_of(rec)[i] == "local_ahead"
    assert "client.name" in set(rec.fields["field"])
    html = rec._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html and "local_ahead" in html


def test_to_html_writes_every_status(sc, rec_a, tmp_path, plain):
    path = tmp_path / "rec.html"
    rec_a.to_html(str(path))
    text = path.read_text(encoding="utf-8")
    assert text.lower().startswith("<!doctype html>")
    for status in STATUSES:
        assert status in text
    # every invoice needing action is listed, not just the first rows
    for i in rec_a.status["id"][~rec_a.status["status"].isin(IN_SYNC)]:
        assert i in text
    local, _ = _evil(plain)
    evil = tmp_path / "evil.html"
    ik.reconcile(local, plain).to_html(str(evil))
    assert "<script>" not in evil.read_text(encoding="utf-8")


# -- contracts ------------------------------------------------------------------------------------
def test_inputs_are_not_mutated(sc):
    local, central = sc.devices["device_b"], sc.central
    before_l, before_c = snapshot(local), snapshot(central)
    rec = ik.reconcile(local, central)
    rec.summary(), rec.counts(), rec._repr_html_()
    assert_unchanged(local, before_l)
    assert_unchanged(central, before_c)
    assert rec.local is local and rec.central is central


def test_duplicate_ids_are_a_usage_error(plain):
    twice = ik.InvoiceSet.concat([plain, plain])
    with pytest.raises(ik.UsageError, match="local"):
        ik.reconcile(twice, plain)
    with pytest.raises(ik.UsageError, match="central"):
        ik.reconcile(plain, twice)
    # an id repeated only among the ids the other side lacks, on either side
    first = plain.invoices.iloc[[0]]
    head = ik.InvoiceSet(pd.concat([first, first]), plain.lines[plain.lines["invoice_id"] == first["id"].iloc[0]])
    rest = ik.InvoiceSet(plain.invoices.iloc[1:], plain.lines)
    with pytest.raises(ik.UsageError, match="local.*" + first["id"].iloc[0]):
        ik.reconcile(ik.InvoiceSet.concat([rest, head]), rest)
    with pytest.raises(ik.UsageError, match="central.*" + first["id"].iloc[0]):
        ik.reconcile(rest, ik.InvoiceSet.concat([head, rest]))
    # a base with an id twice
    with pytest.raises(ik.UsageError, match="base"):
        ik.reconcile(plain.with_base(twice), plain)
