"""Whole-store comparison pushed down into PostgreSQL (``reconcile(local, url, pushdown=True)``).

Every expectation comes from the full-read path (``pushdown=False``: ``read_central(url)``
then the in-memory comparison) on the same store: statuses (every column, sorted by id),
field differences and summaries must be equal, and only the rows whose keys differ may have
been fetched. Real PostgreSQL (a database or a schema per test) and SQLite; no mocks.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import invoicekit as ik
from invoicekit.errors import UsageError
from invoicekit.io.central import CentralStore
from invoicekit.io.files import read_file
from invoicekit.io.pushdown import PushdownStats, supports_pushdown
from invoicekit.samples import make_invoices, make_scenario
from tests.test_reconcile import EXPECTED, requantify, truth_of

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
_KEYS = ["version", "checksum", "currency", "modified_at", "deleted_at"]


# -- helpers ---------------------------------------------------------------------------------------
def _by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def _key_differs(local: ik.InvoiceSet, central: ik.InvoiceSet) -> set[str]:
    """Ids on both sides whose keys differ: what the push-down must fetch, computed here
    from the full read with pandas (null-safe comparisons)."""
    both = local.invoices[["id", *_KEYS]].merge(central.invoices[["id", *_KEYS]], on="id", suffixes=("_l", "_c"))
    differs = np.zeros(len(both), dtype=bool)
    for c in _KEYS:
        a, b = both[f"{c}_l"], both[f"{c}_c"]
        same = ((a == b).fillna(False).astype(bool) | (a.isna() & b.isna())).to_numpy()
        differs |= ~same
    return set(both.loc[differs, "id"])


def _subset(s: ik.InvoiceSet, ids) -> ik.InvoiceSet:
    keep = s.invoices["id"].isin(ids).to_numpy()
    lines = s.lines[s.lines["invoice_id"].isin(ids).to_numpy()].reset_index(drop=True)
    return ik.InvoiceSet(s.invoices[keep].reset_index(drop=True), lines)


def _edited(s: ik.InvoiceSet, ids, *, delta: str = "1", days: float = 1.0, bump: int = 1,
            sync_status: str | None = None, deleted: bool = False) -> ik.InvoiceSet:
    """Invoices ``ids`` of ``s`` only: line 1's quantity + ``delta`` (nothing for "0"; checksum
    rebuilt), version + ``bump``, modified_at + ``days``; a tombstone too with ``deleted``."""
    e = requantify(_subset(s, ids), ids, delta=delta)
    inv = e.invoices.copy()
    inv["version"] += bump
    inv["modified_at"] += pd.Timedelta(days=days)
    if deleted:
        inv["deleted_at"] = inv["modified_at"]
    if sync_status is not None:
        inv["sync_status"] = sync_status
    return ik.InvoiceSet(inv, e.lines)


def _replaced(s: ik.InvoiceSet, new: ik.InvoiceSet) -> ik.InvoiceSet:
    """``s`` with the invoices of ``new`` in place of its own rows of the same ids."""
    ids = set(new.invoices["id"])
    inv = s.invoices[~s.invoices["id"].isin(ids).to_numpy()]
    lines = s.lines[~s.lines["invoice_id"].isin(ids).to_numpy()]
    return ik.InvoiceSet(pd.concat([inv, new.invoices[inv.columns]], ignore_index=True),
                         pd.concat([lines, new.lines[lines.columns]], ignore_index=True))


def _sealed(local: ik.InvoiceSet, central: ik.InvoiceSet) -> set[str]:
    """Ids on both sides fetched for their encrypted client text: local rows holding it, and
    central rows holding it where no keys are configured (the full read compares it as it is)."""
    from invoicekit.security import keys_configured
    from invoicekit.security._columns import encrypted_mask

    def ids(s: ik.InvoiceSet) -> set[str]:
        t = s.invoices_table()
        return set(t.column("id").filter(encrypted_mask(t.column("client_data"))).to_pylist())

    both = set(local.invoices["id"]) & set(central.invoices["id"])
    return both & (ids(local) | (set() if keys_configured() else ids(central)))


def assert_pushdown_matches_full(local, url: str) -> tuple[ik.Reconciliation, ik.Reconciliation]:
    """The pushed-down reconciliation equals the full read's, and fetched only the rows whose
    keys differ. Returns (pushed down, full)."""
    full = ik.reconcile(local, url, scope="all", pushdown=False)
    push = ik.reconcile(local, url, scope="all", pushdown=True)
    assert full.pushdown is None and isinstance(push.pushdown, PushdownStats)
    assert push.scope == full.scope == "all"
    pd.testing.assert_frame_equal(_by_id(push.status), _by_id(full.status))
    pd.testing.assert_frame_equal(push.fields, full.fields)
    pd.testing.assert_frame_equal(push.summary(), full.summary())
    # local rows first, in the local order (then the central-only ones, in id order)
    n = len(push.local)
    assert push.status["id"].iloc[:n].tolist() == full.status["id"].iloc[:n].tolist()
    only = push.status["id"].iloc[n:]
    assert only.tolist() == sorted(only) and (push.status["status"].iloc[n:] == "central_only").all()
    # only the rows whose keys differ travelled in full
    fetched = set(push.central.invoices["id"])
    assert fetched == _key_differs(push.local, full.central) | _sealed(push.local, full.central)
    assert push.pushdown.fetched == len(push.central) == len(fetched)
    assert push.pushdown.central_only == int((full.status["status"] == "central_only").sum())
    assert push.pushdown.staged == int(push.local.invoices["id"].notna().sum())
    return push, full


@pytest.fixture(scope="module")
def central_schemas(pg_schemas):
    """Fresh central stores (schemas of the run's database, initialised), dropped at the end."""

    def new() -> str:
        url = pg_schemas()
        ik.init_db(url)
        return url

    return new


@pytest.fixture(scope="module")
def scenario_store(central_schemas):
    """A scenario (every situation on each of two devices, a fifth of central held by none)
    written to a PostgreSQL central store."""
    sc = make_scenario(seed=21, n_central=240, held=0.8)
    url = central_schemas()
    ik.write_central(sc.central, url)
    return sc, url


# -- generated scenarios -------------------------------------------------------------------------
@pytest.mark.parametrize("with_base", [True, False], ids=["base", "no_base"])
def test_union_of_devices_equals_the_full_read(scenario_store, with_base):
    sc, url = scenario_store
    union = ik.InvoiceSet.concat(list(sc.devices.values()))
    push, full = assert_pushdown_matches_full(union if with_base else union.with_base(None), url)
    counts = push.counts()
    assert all(counts[s] > 0 for s in ("same", "local_only", "central_only", "local_ahead", "central_ahead",
                                       "conflict", "deleted_local", "deleted_central"))
    # the scenario's (independent) truth, device by device
    got = push.status.set_index("id")["status"]
    for name in sc.devices:
        want = truth_of(sc, name).map(EXPECTED)
        assert got.loc[want.index].to_dict() == want.to_dict()
    # what travelled back: every id but the same ones (keys equal), and no same row in full
    assert push.pushdown.returned == int((full.status["status"] != "same").sum())
    assert not set(push.central.invoices["id"]) & set(push.status["id"][push.status["status"] == "same"])
    assert push.pushdown.fetched < len(full.central) / 2


def test_each_device_alone_equals_the_full_read(scenario_store):
    sc, url = scenario_store
    for device in sc.devices.values():
        push, _ = assert_pushdown_matches_full(device, url)
        assert push.counts()["central_only"] > 0  # the other device's invoices, and those nobody holds


def test_central_against_an_export_read_from_a_file(central_schemas, tmp_path):
    """An export (Parquet, read back with read_file) against the store after it moved on:
    central edits, tombstones, new invoices; and the export's own edits, tombstone, a
    same-version edit and invoices of its own."""
    url = central_schemas()
    ik.write_central(make_invoices(150, seed=5), url)
    path = tmp_path / "export.parquet"
    ik.read_central(url).invoices.to_parquet(path)
    export = read_file(path)
    assert len(export) == 150
    ids = export.invoices["id"].tolist()
    now = ik.read_central(url)
    ik.write_central(ik.InvoiceSet.concat([
        _edited(now, ids[:6], delta="3", days=2), _edited(now, ids[6:8], delta="0", days=2, deleted=True),
        make_invoices(9, seed=77)]), url)
    mine = ik.InvoiceSet.concat([
        _edited(export, [ids[3], ids[10]], sync_status="pending"),  # ids[3]: central edited it too
        _edited(export, [ids[12]], delta="0", sync_status="pending", deleted=True),
        _edited(export, [ids[14]], days=0, bump=0),  # same version, other content
        make_invoices(4, seed=99)])
    push, full = assert_pushdown_matches_full(_replaced(export, mine), url)
    counts = push.counts()
    assert counts["central_only"] == 9 and counts["local_only"] == 4 and counts["deleted_central"] == 2
    assert counts["deleted_local"] == 1 and counts["local_ahead"] == 1 and counts["conflict"] == 2
    assert counts["same"] == 150 - 11 and push.pushdown.fetched == 11


def test_same_content_with_other_times_or_versions_is_fetched_and_decided_as_the_full_read_does(central_schemas):
    """Keys that differ although the content does not (another modified_at, a higher version
    with the same content, a checksum missing on the device): fetched, and compared in full."""
    url = central_schemas()
    s = make_invoices(40, seed=8)
    ik.write_central(s, url)
    inv = s.invoices.copy()
    inv.loc[0, "modified_at"] += pd.Timedelta(seconds=1)  # same content, other time: same
    inv.loc[1, "version"] += 1  # same content, higher version on the device: local_ahead
    inv.loc[2, "checksum"] = None  # no checksum: cannot vouch for its content
    local = ik.InvoiceSet(inv, s.lines)
    push, full = assert_pushdown_matches_full(local, url)
    assert set(push.central.invoices["id"]) == set(inv["id"].iloc[:3])
    st_ = push.status.set_index("id")["status"]
    assert st_[inv["id"][0]] == "same" and st_[inv["id"][1]] == "local_ahead"
    assert push.counts()["same"] == 39


def test_the_push_down_trusts_checksums_the_full_read_compares_content(central_schemas):
    """Documented trade-off: a device row whose content was changed in place (same version,
    time and stored checksum: the checksum no longer matches) is ``same`` pushed down, while
    the full read, which compares content, sees the difference; ``pushdown=False`` is that path."""
    url = central_schemas()
    s = make_invoices(10, seed=9)
    ik.write_central(s, url)
    inv = s.invoices.copy()
    inv.loc[4, "invoice_number"] = "TAMPERED-1"
    local = ik.InvoiceSet(inv, s.lines)
    assert list(ik.tampered(inv)["id"]) == [inv.loc[4, "id"]]
    push = ik.reconcile(local, url, scope="all", pushdown=True)
    full = ik.reconcile(local, url, scope="all", pushdown=False)
    assert push.counts()["same"] == 10 and full.counts()["same"] == 9
    assert full.status.set_index("id").loc[inv.loc[4, "id"], "status"] == "conflict"


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), per_device=st.integers(40, 60), new=st.integers(0, 5),
       with_base=st.booleans(), devices=st.integers(1, 3), held=st.floats(0.6, 1.0), synced=st.floats(0.3, 0.9),
       shares=st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5).filter(lambda v: sum(v) > 0.1))
def test_generated_scenarios_equal_the_full_read(central_schemas, seed, per_device, new, with_base, devices, held,
                                                 synced, shares):
    """Random scenarios (make_scenario: every situation on every device, random mixes,
    central-only shares, with or without base snapshots), several devices at once."""
    names = tuple(f"dev{i}" for i in range(devices))
    situations = ("edited_offline", "edited_centrally", "edited_both", "deleted_local", "deleted_central")
    mix = {"synced": synced, **{k: (1 - synced) * v / sum(shares) for k, v in zip(situations, shares)}}
    sc = make_scenario(seed=seed, n_central=per_device * devices, new_per_device=new, devices=names,
                       single_currency=(), held=held, shares=mix)
    url = central_schemas()
    ik.write_central(sc.central, url)
    union = ik.InvoiceSet.concat(list(sc.devices.values()))
    assert_pushdown_matches_full(union if with_base else union.with_base(None), url)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), blank=st.floats(0.0, 0.3), sealed=st.booleans())
def test_keys_compared_here_equal_the_servers_join(scenario_store, seed, blank, sealed):
    """Both ways of comparing keys (the store's keys sent and compared here, the default; the
    local keys staged and joined in the store) return the same rows: local keys with nulls,
    other currencies and times, ids the store lacks, central-only ids, opaque client text."""
    from invoicekit.io.pushdown import compare_keys, local_keys

    sc, url = scenario_store
    rng = np.random.default_rng(seed)
    keys, _ = local_keys(ik.InvoiceSet.concat(list(sc.devices.values())).invoices_table())
    n = keys.num_rows
    cols = {name: keys.column(name).combine_chunks() for name in keys.column_names}
    for name in ("ik_version", "ik_checksum", "ik_currency", "ik_modified_at", "ik_deleted_at"):
        cols[name] = pc.if_else(pa.array(rng.random(n) < blank), pa.scalar(None, cols[name].type), cols[name])
    cols["ik_currency"] = pc.if_else(pa.array(rng.random(n) < blank), "XXX", cols["ik_currency"])
    keys = pa.table(cols)
    store = CentralStore(url)
    # "opaque" client text: the first central row's first characters (sealed text stands so)
    opaque = (store.fetch("SELECT left(client_data_text, 12) FROM invoices ORDER BY id LIMIT 1")[0][0],) \
        if sealed else ()
    here = diff_of(store, keys, opaque, where="client")
    there = diff_of(store, keys, opaque, where="server")
    assert here.equals(there)
    assert 0 < here.num_rows <= n + len(sc.central)
    if sealed:
        plain = diff_of(store, keys, (), where="client")
        assert set(plain.column("id").to_pylist()) < set(here.column("id").to_pylist())
    elif blank == 0:
        assert here.num_rows == len(compare_keys(url, keys))


def diff_of(store, keys, opaque, *, where):
    """The rows a comparison returns, sorted by id (the order of neither is defined)."""
    from invoicekit.io.pushdown import DIFF_SCHEMA, KEY_SCHEMA, diff_keys

    if where == "client":
        out = diff_keys(keys.cast(KEY_SCHEMA), store.central_keys(opaque=opaque))
    else:
        out = store.compare_keys(keys.cast(KEY_SCHEMA), opaque=opaque).select(DIFF_SCHEMA.names).cast(DIFF_SCHEMA)
    return out.sort_by("id").combine_chunks()


# -- downstream: resolve, plan and apply work on a pushed-down reconciliation ----------------------
@pytest.mark.parametrize("strategy", ["three_way", "prefer_local", "prefer_central", "last_write_wins"])
def test_resolve_and_plan_sync_equal_the_full_read(scenario_store, strategy):
    sc, url = scenario_store
    device = sc.devices["device_a"]
    push = ik.reconcile(device, url, scope="all", pushdown=True)
    full = ik.reconcile(device, url, scope="all", pushdown=False)
    r_push, r_full = ik.resolve(push, strategy=strategy, now=NOW), ik.resolve(full, strategy=strategy, now=NOW)
    pd.testing.assert_frame_equal(r_push.actions, r_full.actions)
    # (``source_row`` of a pulled row is its position in the read it came from: another read)
    pd.testing.assert_frame_equal(r_push.invoices.drop(columns="source_row"),
                                  r_full.invoices.drop(columns="source_row"))
    pd.testing.assert_frame_equal(r_push.lines, r_full.lines)
    pd.testing.assert_frame_equal(r_push.unresolved, r_full.unresolved)
    p_push, p_full = ik.plan_sync(r_push), ik.plan_sync(r_full)
    pd.testing.assert_frame_equal(p_push.ops, p_full.ops)
    assert (r_push.actions["action"] != "none").any()


def test_apply_sync_of_a_pushed_down_plan_brings_both_sides_in_sync(central_schemas, tmp_path):
    sc = make_scenario(seed=5, n_central=90, devices=("device_a",), single_currency=(), held=0.9)
    url = central_schemas()
    ik.write_central(sc.central, url)
    path = tmp_path / "device.sqlite"
    ik.write_local(sc.devices["device_a"], path)
    rec = ik.reconcile(path, url, scope="all", pushdown=True)
    assert rec.pushdown is not None
    plan = ik.plan_sync(ik.resolve(rec, strategy="prefer_local", now=NOW))
    ik.apply_sync(plan, local=path, central=url, actor="test")
    after, full = assert_pushdown_matches_full(path, url)
    assert set(after.status["status"]) <= {"same", "central_only"}
    assert after.pushdown.fetched == 0 and len(after.fields) == 0


# -- encryption at rest ------------------------------------------------------------------------------
def test_encrypted_central_rows_compare_by_their_plaintext_checksums(central_schemas, monkeypatch):
    from invoicekit.security import generate_key

    monkeypatch.delenv("INVOICEKIT_KEY_FILE", raising=False)
    monkeypatch.setenv("INVOICEKIT_KEYS", generate_key())
    url = central_schemas()
    s = make_invoices(30, seed=12)
    ik.write_central(s, url)  # written encrypted at rest
    with psycopg.connect(url) as conn:
        sealed = conn.execute("SELECT count(*) FROM invoices WHERE client_data_text NOT LIKE '{\"name\"%'").fetchone()
    assert sealed[0] == 30
    local = ik.read_central(url)  # decrypted
    local = _replaced(local, _edited(local, local.invoices["id"].iloc[:2].tolist(), sync_status="pending"))
    push, _ = assert_pushdown_matches_full(local, url)
    assert push.counts()["same"] == 28 and push.pushdown.fetched == 2
    # without keys the full read compares the encrypted text as it is: the push-down fetches them
    monkeypatch.delenv("INVOICEKIT_KEYS")
    plain = ik.InvoiceSet(s.invoices, s.lines)
    push, full = assert_pushdown_matches_full(plain, url)
    assert push.pushdown.fetched == 30 and full.counts()["same"] == 0


# -- dispatch -----------------------------------------------------------------------------------------
def test_sqlite_central_falls_back_to_the_full_read(tmp_path):
    url = f"sqlite:///{tmp_path / 'central.sqlite'}"
    sc = make_scenario(seed=3, n_central=80, devices=("device_a",), single_currency=())
    ik.init_db(url)
    ik.write_central(sc.central, url)
    assert not supports_pushdown(url)
    device = sc.devices["device_a"]
    full = ik.reconcile(device, ik.read_central(url))
    for pushdown in (False, True):
        rec = ik.reconcile(device, url, scope="all", pushdown=pushdown)
        assert rec.pushdown is None and rec.scope == "all"
        pd.testing.assert_frame_equal(_by_id(rec.status), _by_id(full.status))
        pd.testing.assert_frame_equal(rec.fields, full.fields)


def test_dispatch_rules(scenario_store):
    sc, url = scenario_store
    device = sc.devices["device_b"]
    assert supports_pushdown(url)
    assert ik.reconcile(device, url).pushdown is None  # device scope: read by the local ids
    assert ik.reconcile(device, url, scope="all").pushdown is None  # opt-in: the full read by default
    assert ik.reconcile(device, url, scope="all", pushdown=False).pushdown is None
    forced = ik.reconcile(device, url, pushdown=True)  # implies the whole store
    assert forced.pushdown is not None and forced.scope == "all" and forced.counts()["central_only"] > 0
    with pytest.raises(UsageError, match="pushdown=True"):
        ik.reconcile(device, url, scope="device", pushdown=True)
    with pytest.raises(UsageError, match="pushdown=True"):
        ik.reconcile(device, sc.central, pushdown=True)
    assert "staged" in forced.pushdown._repr_html_()


def test_repeated_local_ids_are_refused_as_the_full_read_refuses_them(scenario_store):
    sc, url = scenario_store
    device = sc.devices["device_a"]
    twice = ik.InvoiceSet(pd.concat([device.invoices, device.invoices.iloc[:1]], ignore_index=True), device.lines)
    for pushdown in (True, False):
        with pytest.raises(UsageError, match="several rows"):
            ik.reconcile(twice, url, scope="all", pushdown=pushdown)


@settings(max_examples=60, deadline=None)
@given(table=st.lists(st.sampled_from("abcdefghij"), max_size=60),
       ids=st.lists(st.sampled_from("abcdefghijkl"), max_size=12))
def test_positions_of_few_ids_equal_the_hash_of_the_table(table, ids):
    """The central-only rows' base keys: hashing the few ids instead of the table's gives the
    same first positions (repeated and missing ids included)."""
    from invoicekit.reconcile import _positions

    table, ids = pa.array(table, pa.string()), pa.array(ids, pa.string())
    got = _positions(pa.chunked_array([table]), ids)
    assert got.to_pylist() == pc.index_in(ids, value_set=table).to_pylist()
