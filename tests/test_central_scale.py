"""Central store at scale: fetch by id (``read_central(url, ids=...)``) and reconcile against
the central store itself (``reconcile(local, url)``, ``scope="device"``).

Every expectation comes from the full-read path (``read_central(url)`` then ``reconcile``),
restricted to the ids the device holds, or from the data the test wrote; both central
backends are real (PostgreSQL in a schema of the run's database, and a SQLite file).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import invoicekit as ik
from invoicekit.io.central import CentralStore
from invoicekit.reconcile import STATUSES
from invoicekit.samples import make_invoices, make_scenario
from invoicekit.schema import INVOICE_SCHEMA
from tests.test_reconcile import EXPECTED, GONE, reprice, requantify, truth_of, with_cols

#: the columns a read fills from the store (``source_row`` is the row's position in the result)
READ_COLUMNS = [c for c in INVOICE_SCHEMA.names if c != "source_row"]


# -- helpers ---------------------------------------------------------------------------------
def _frame(s: ik.InvoiceSet) -> pd.DataFrame:
    return s.invoices[READ_COLUMNS].reset_index(drop=True)


def _lines(s: ik.InvoiceSet) -> pd.DataFrame:
    return s.lines[["invoice_id", "line_no", "description", "quantity", "unit_price", "line_total"]] \
        .sort_values(["invoice_id", "line_no"]).reset_index(drop=True)


def _restricted(rec: ik.Reconciliation) -> pd.DataFrame:
    """The status rows of the ids the device holds (the full-read path without central-only rows)."""
    return rec.status[rec.status["status"] != "central_only"].reset_index(drop=True)


def assert_device_scope_matches_full(local: ik.InvoiceSet, url: str) -> ik.Reconciliation:
    """``reconcile(local, url)`` equals the full-read path restricted to the device's ids:
    statuses (every column, in order) and field differences."""
    full = ik.reconcile(local, ik.read_central(url))
    part = ik.reconcile(local, url)
    assert full.scope == "all" and part.scope == "device"
    assert (part.status["status"] != "central_only").all()
    pd.testing.assert_frame_equal(part.status, _restricted(full))
    pd.testing.assert_frame_equal(part.fields, full.fields)
    # only the device's ids travelled
    fetched = set(part.central.invoices["id"])
    assert fetched <= set(local.invoices["id"])
    assert fetched == set(local.invoices["id"]) & set(full.central.invoices["id"])
    return part


@pytest.fixture(scope="module")
def stored():
    """A set with tombstones and every line shape, as written (the truth of the reads)."""
    s = make_invoices(120, seed=11)
    dead = s.invoices.index[::9]
    inv = s.invoices.copy()
    inv.loc[dead, "deleted_at"] = GONE
    inv.loc[dead, "version"] = 2
    return ik.InvoiceSet(inv, s.lines)


@pytest.fixture
def loaded(central, stored) -> str:
    ik.write_central(stored, central)
    return central


# -- read_central(ids=...) --------------------------------------------------------------------
def test_ids_read_exactly_those_invoices_in_the_order_given_with_their_lines(loaded, stored):
    full = ik.read_central(loaded)
    ids = list(stored.invoices["id"].iloc[[40, 3, 98, 0, 27]])  # 0 and 27 are tombstones
    got = ik.read_central(loaded, ids=ids)
    assert list(got.invoices["id"]) == ids
    want = full.invoices.set_index("id").loc[ids].reset_index()
    pd.testing.assert_frame_equal(_frame(got), want[READ_COLUMNS])
    assert got.invoices["deleted_at"].notna().sum() == 2
    pd.testing.assert_frame_equal(_lines(got), _lines(stored).pipe(
        lambda f: f[f["invoice_id"].isin(ids)].reset_index(drop=True)))
    assert len(got.problems) == 0


def test_ids_not_present_are_absent_and_repeats_and_nulls_are_ignored(loaded, stored):
    known = list(stored.invoices["id"].iloc[[5, 6]])
    got = ik.read_central(loaded, ids=["no-such-id", known[1], None, known[0], known[1], str(uuid.uuid4())])
    assert list(got.invoices["id"]) == [known[1], known[0]]
    assert len(ik.read_central(loaded, ids=["no-such-id"])) == 0
    empty = ik.read_central(loaded, ids=[])
    assert len(empty) == 0 and len(empty.lines) == 0


@pytest.mark.parametrize("kind", ["list", "tuple", "set", "numpy", "series", "arrow_series", "index",
                                  "pyarrow", "chunked", "large_string", "dictionary"])
def test_ids_take_any_list_array_or_series(loaded, stored, kind):
    ids = list(stored.invoices["id"].iloc[10:16])
    given_ids = {
        "list": ids, "tuple": tuple(ids), "set": set(ids), "numpy": np.array(ids, dtype=object),
        "series": pd.Series(ids, dtype=object), "arrow_series": pd.Series(ids, dtype="string[pyarrow]"),
        "index": pd.Index(ids), "pyarrow": pa.array(ids), "chunked": pa.chunked_array([ids[:2], ids[2:]]),
        "large_string": pa.array(ids, pa.large_string()), "dictionary": pa.array(ids).dictionary_encode(),
    }[kind]
    got = ik.read_central(loaded, ids=given_ids)
    assert sorted(got.invoices["id"]) == sorted(ids)
    if kind not in ("set",):
        assert list(got.invoices["id"]) == ids


def test_ids_combine_with_where_and_lines_false(loaded, stored):
    ids = list(stored.invoices["id"].iloc[:60])
    eur = set(stored.invoices.loc[stored.invoices["currency"] == "EUR", "id"]) & set(ids)
    assert 0 < len(eur) < len(ids)
    got = ik.read_central(loaded, ids=ids, where={"currency": "EUR"})
    assert list(got.invoices["id"]) == [i for i in ids if i in eur]
    both = ik.read_central(loaded, ids=ids, where={"id": ids[:3] + ids[-1:]})
    assert list(both.invoices["id"]) == ids[:3] + ids[-1:]
    bare = ik.read_central(loaded, ids=ids[:7], lines=False)
    assert len(bare) == 7 and len(bare.lines) == 0
    assert bare.invoices["line_items"].equals(ik.read_central(loaded, ids=ids[:7]).invoices["line_items"])


def test_many_ids_travel_in_bulk_not_as_a_list_of_parameters(loaded, stored):
    """70,000 ids: more than PostgreSQL (65,535) or SQLite (32,766) take as bound parameters,
    so an ``IN (...)`` list could not carry them."""
    real = list(stored.invoices["id"])
    ids = [str(uuid.UUID(int=i)) for i in range(70_000)]
    ids[1000:1000 + len(real)] = real
    got = ik.read_central(loaded, ids=ids)
    assert list(got.invoices["id"]) == real
    assert len(got.lines) == len(stored.lines)


def test_a_read_split_over_two_sessions_sees_one_snapshot(central_pg_url, stored, monkeypatch):
    """A read of many ids is split over two PostgreSQL sessions; a write committed after the
    first session took its snapshot and before the second one starts is seen by neither."""
    import psycopg

    from invoicekit.io.backends import postgres

    ik.init_db(central_pg_url)
    ik.write_central(stored, central_pg_url)
    ids = sorted(stored.invoices["id"])
    last = ids[-1]  # in the upper half, which the second session reads
    monkeypatch.setattr(postgres, "_SPLIT_IDS", 4)
    original = postgres._AdbcSession.open
    written = []

    def open_after_a_write(self, *, snapshot=None):
        if snapshot is not None and not written:
            with psycopg.connect(CentralStore(central_pg_url).libpq, autocommit=True) as conn:
                conn.execute("UPDATE invoices SET version = version + 5 WHERE id = %s", (last,))
            written.append(last)
        return original(self, snapshot=snapshot)

    monkeypatch.setattr(postgres._AdbcSession, "open", open_after_a_write)
    got = ik.read_central(central_pg_url, ids=ids[::-1])
    assert written == [last]
    assert list(got.invoices["id"]) == ids[::-1]
    before = stored.invoices.set_index("id")["version"]
    assert got.invoices.set_index("id")["version"].astype(int).to_dict() == before.astype(int).to_dict()
    monkeypatch.setattr(postgres._AdbcSession, "open", original)
    assert int(ik.read_central(central_pg_url, ids=[last]).invoices["version"].iloc[0]) == int(before[last]) + 5


def test_ids_staging_leaves_nothing_behind_in_the_store(loaded, stored):
    ik.read_central(loaded, ids=list(stored.invoices["id"]))
    store = CentralStore(loaded)
    assert not store.has_table("ik_read_ids")
    if store.dialect == "postgresql":
        assert store.fetch("SELECT count(*) FROM pg_class WHERE relname = 'ik_read_ids'")[0][0] == 0


@pytest.mark.parametrize("bad, words", [
    ("00000000-0000-4000-8000-000000000001", "list of invoice ids"),
    ([1, 2, 3], "id strings"),
    (42, "list, array or Series"),
    (pa.array([1.5]), "id strings"),
    (["00000000-0000-4000-8000-000000000001", 7], "id strings"),
    (pd.Series([b"\xff"]), "id strings"),
])
def test_bad_ids_are_a_usage_error_saying_what_works(loaded, bad, words):
    with pytest.raises(ik.UsageError, match=words):
        ik.read_central(loaded, ids=bad)


def test_ids_on_a_store_without_schema_say_to_init(tmp_path):
    with pytest.raises(ik.StoreSchemaError, match="invoicekit db init"):
        ik.read_central(f"sqlite:///{tmp_path / 'none.sqlite'}", ids=["a"])


# -- reconcile(local, url): device scope ------------------------------------------------------------
@pytest.fixture
def scenario_store(central):
    sc = make_scenario(n_central=240, new_per_device=9, seed=5)
    ik.write_central(sc.central, central)
    return sc, central


def test_reconcile_against_the_store_equals_the_full_read_for_the_device_ids(scenario_store):
    sc, url = scenario_store
    for name, device in sc.devices.items():
        rec = assert_device_scope_matches_full(device, url)
        # every situation of the scenario is in there (so the equality covers each)
        assert set(rec.status["status"]) == {"same", "local_only", "local_ahead", "central_ahead", "conflict",
                                             "deleted_local", "deleted_central"}, name
        assert len(rec.fields) > 0
        # and without bases (stores written by other software): versions and sync_status decide
        assert_device_scope_matches_full(device.with_base(None), url)


def test_reconcile_from_a_device_file_and_the_url(scenario_store, tmp_path):
    """Starting from the path and the URL, as the analyst does."""
    sc, url = scenario_store
    path = tmp_path / "device_a.sqlite"
    ik.write_local(sc.devices["device_a"], path)
    full = ik.reconcile(ik.read_local(path), ik.read_central(url))
    part = ik.reconcile(path, url)
    pd.testing.assert_frame_equal(part.status, _restricted(full))
    pd.testing.assert_frame_equal(part.fields, full.fields)


def test_scope_all_keeps_the_full_comparison(scenario_store):
    sc, url = scenario_store
    device = sc.devices["device_b"]
    full = ik.reconcile(device, ik.read_central(url))
    every = ik.reconcile(device, url, scope="all")
    assert every.scope == "all" and (every.status["status"] == "central_only").sum() > 0
    pd.testing.assert_frame_equal(every.status, full.status)
    pd.testing.assert_frame_equal(every.fields, full.fields)
    assert len(every.central) == len(sc.central)


def test_an_invoice_set_is_compared_whole_unless_asked_for_device_scope(scenario_store):
    sc, url = scenario_store
    device, central = sc.devices["device_a"], ik.read_central(url)
    assert ik.reconcile(device, central).scope == "all"
    part = ik.reconcile(device, central, scope="device")
    assert part.scope == "device"
    pd.testing.assert_frame_equal(part.status, ik.reconcile(device, url).status)
    pd.testing.assert_frame_equal(part.fields, ik.reconcile(device, url).fields)


def test_every_way_of_naming_the_store_fetches_by_id(scenario_store):
    from sqlalchemy import create_engine

    sc, url = scenario_store
    device = sc.devices["device_a"]
    want = ik.reconcile(device, url)
    engine = create_engine(url if url.startswith("sqlite") else url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        names = [CentralStore(url), engine]
        if url.startswith("sqlite:///"):
            names.append(url.removeprefix("sqlite:///"))  # the central SQLite file's path
        for name in names:
            rec = ik.reconcile(device, name)
            assert rec.scope == "device", name
            pd.testing.assert_frame_equal(rec.status, want.status)
    finally:
        engine.dispose()


def test_device_scope_reports_say_central_only_is_out_of_scope(scenario_store, tmp_path):
    sc, url = scenario_store
    rec = ik.reconcile(sc.devices["device_a"], url)
    summary = rec.summary()
    assert list(summary["status"]) == list(STATUSES)
    note = summary.set_index("status")["note"]
    assert "out of scope" in note["central_only"] and (note.drop("central_only") == "").all()
    assert "central_only" not in rec.counts()
    assert sum(rec.counts().values()) == len(rec.status)
    assert "central-only invoices out of scope" in repr(rec)
    assert "out of scope" in rec._repr_html_()
    report = tmp_path / "r.html"
    rec.to_html(str(report))
    assert "out of scope" in report.read_text(encoding="utf-8")
    every = ik.reconcile(sc.devices["device_a"], url, scope="all")
    assert "note" not in every.summary().columns and "out of scope" not in repr(every)
    assert "out of scope" not in every._repr_html_()
    assert every.counts()["central_only"] > 0


def test_device_scope_resolves_and_plans_as_the_full_read_does(scenario_store):
    sc, url = scenario_store
    device = sc.devices["device_a"]
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)  # merges are stamped with it
    full = ik.resolve(ik.reconcile(device, ik.read_central(url)), strategy="three_way", now=now)
    part = ik.resolve(ik.reconcile(device, url), strategy="three_way", now=now)
    acted = full.actions[full.actions["status"] != "central_only"].reset_index(drop=True)
    pd.testing.assert_frame_equal(part.actions, acted)
    # source_row numbers the rows of each read (a read by id has fewer): the rest is the same
    pd.testing.assert_frame_equal(part.invoices[READ_COLUMNS].reset_index(drop=True),
                                  full.invoices[READ_COLUMNS].reset_index(drop=True))
    assert ik.plan_sync(part).summary().equals(ik.plan_sync(full).summary())


def test_bad_scope_is_a_usage_error(scenario_store):
    sc, url = scenario_store
    with pytest.raises(ik.UsageError, match="scope"):
        ik.reconcile(sc.devices["device_a"], url, scope="devices")


def test_duplicate_local_ids_are_still_refused(scenario_store):
    sc, url = scenario_store
    device = sc.devices["device_a"]
    twice = ik.InvoiceSet.concat([device.with_base(None), device.with_base(None)])
    with pytest.raises(ik.UsageError, match="several rows"):
        ik.reconcile(twice, url)


def test_tombstones_on_both_sides_and_crafted_edits(central):
    """Cases the scenario generator does not make: deleted on both sides (same and different
    versions), a local tombstone over an edited central row, same-field edits on both sides
    at equal versions, an id only in the central store that the device deleted."""
    plain = make_invoices(30, seed=8)
    ids = list(plain.invoices["id"])
    ik.write_central(plain, central)
    # central: some deleted, some edited (version 2)
    central_side = with_cols(plain, ids[0:3], deleted_at=GONE, version=2)
    central_side = with_cols(reprice(central_side, ids[3:6], "2.00"), ids[3:6], version=2)
    central_side = with_cols(requantify(central_side, ids[6:8], "3"), ids[6:8], version=2)
    ik.write_central(central_side, central)
    local = with_cols(plain, ids[0:2], deleted_at=GONE, version=2, sync_status="pending")  # both deleted
    local = with_cols(local, ids[2:3], deleted_at=GONE, version=3, sync_status="pending")  # deleted at v3
    local = with_cols(local, ids[3:4], deleted_at=GONE, version=2, sync_status="pending")  # over an edit
    local = with_cols(requantify(local, ids[6:8], "1"), ids[6:8], version=2, sync_status="pending")
    local = with_cols(reprice(local, ids[8:10], "5.00"), ids[8:10], version=2, sync_status="pending")
    keep = ~plain.invoices["id"].isin(ids[20:]).to_numpy()  # the device does not hold the rest
    local = local.with_invoices(local.invoices[keep].reset_index(drop=True))
    for loc in (local, local.with_base(plain)):
        rec = assert_device_scope_matches_full(loc, central)
        assert len(rec.status) == 20


# -- generated scenarios (hypothesis) ------------------------------------------------------------
@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), per_device=st.integers(30, 60), new=st.integers(0, 6),
       with_base=st.booleans(), devices=st.integers(1, 3))
def test_generated_scenarios_give_the_full_read_statuses_and_fields(dialect, pg_schemas, tmp_path_factory, seed,
                                                                    per_device, new, with_base, devices):
    """make_scenario places every situation on every device (it needs some 30 invoices a device)."""
    names = tuple(f"dev{i}" for i in range(devices))
    sc = make_scenario(seed=seed, n_central=per_device * devices, new_per_device=new, devices=names, single_currency=())
    url = pg_schemas() if dialect == "postgresql" else f"sqlite:///{tmp_path_factory.mktemp('h') / 'c.sqlite'}"
    ik.init_db(url)
    ik.write_central(sc.central, url)
    for name, device in sc.devices.items():
        rec = assert_device_scope_matches_full(device if with_base else device.with_base(None), url)
        # and the statuses are the scenario's truth (an independent check of both paths)
        got = rec.status.set_index("id")["status"]
        want = truth_of(sc, name).map(EXPECTED)
        assert got.sort_index().to_dict() == want.sort_index().to_dict()
    # several devices at once (their union) too
    union = ik.InvoiceSet.concat(list(sc.devices.values()))
    assert_device_scope_matches_full(union if with_base else union.with_base(None), url)


# -- device files written by other software; the ids fetched while the store loads ----------------
@pytest.mark.parametrize("kind", ["kept_row_delete", "removed_row_delete", "mixed"])
def test_foreign_device_files_reconcile_against_the_store_as_the_full_read_does(central, tmp_path, kind):
    from invoicekit.foreign import write_foreign_store

    truth = write_foreign_store(tmp_path / "foreign.sqlite", kind=kind, seed=3)
    seed = ik.read_local(truth.write_central_seed(tmp_path / "seed.sqlite"), currency="EUR")
    ik.write_central(seed, central)
    ik.write_central(make_invoices(25, seed=4), central)  # invoices the device does not hold
    local = ik.read_local(truth.path, currency="EUR")
    full = ik.reconcile(local, ik.read_central(central))
    part = ik.reconcile(ik.read_local(truth.path, currency="EUR"), central)
    pd.testing.assert_frame_equal(part.status, _restricted(full))
    pd.testing.assert_frame_equal(part.fields, full.fields)
    assert (full.status["status"] == "central_only").sum() >= 25


def test_ids_the_store_file_does_not_name_are_fetched_after_it_loads(scenario_store, tmp_path, monkeypatch):
    """The central read starts from the ids the device file names (read in one query while
    the file loads); any id the loaded set holds beyond them is fetched afterwards."""
    import invoicekit.io.local as local_io

    sc, url = scenario_store
    path = tmp_path / "device_b.sqlite"
    ik.write_local(sc.devices["device_b"], path)
    want = ik.reconcile(ik.read_local(path), url)
    named = local_io.held_ids(path)
    assert set(named.to_pylist()) == set(ik.read_local(path).invoices["id"])
    calls = []

    def half(p):
        calls.append(p)
        return named.slice(0, len(named) // 2)

    monkeypatch.setattr(local_io, "held_ids", half)
    got = ik.reconcile(path, url)
    assert calls == [str(path)]
    pd.testing.assert_frame_equal(got.status, want.status)
    pd.testing.assert_frame_equal(got.fields, want.fields)
    # a list of device files: their union, each file's ids named
    both = tmp_path / "device_a.sqlite"
    ik.write_local(sc.devices["device_a"], both)
    monkeypatch.undo()
    union = ik.reconcile([path, both], url)
    pd.testing.assert_frame_equal(union.status, ik.reconcile(ik.read_local([path, both]), url).status)


def test_a_bad_device_path_says_what_is_wrong_with_it(scenario_store, tmp_path):
    sc, url = scenario_store
    with pytest.raises(ik.NotAStoreError, match="no such file"):
        ik.reconcile(tmp_path / "missing.sqlite", url)
