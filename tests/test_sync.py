import shutil
import sqlite3
import threading

import pandas as pd
import pytest

import invoicekit as ik
from invoicekit.io.central import CentralStore
from invoicekit.samples import make_scenario, read_jsonl
from tests._build import dump


@pytest.fixture(scope="module")
def scenario():
    return make_scenario(n_central=150, new_per_device=6)


def setup_device(scenario, central, tmp_path, name="device_a"):
    ik.write_central(scenario.central, central)
    path = tmp_path / f"{name}.sqlite"
    ik.write_local(scenario.devices[name], path)
    return path


def sync(path, central, strategy="merge_fields"):
    plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(path), ik.read_central(central)), strategy=strategy))
    return plan, ik.apply_sync(plan, local=path, central=central)


def audit_rows(central):
    """The sync's audit rows (the set-up's own write_central rows left out)."""
    store = CentralStore(central)
    if store.dialect == "postgresql":
        with store.pg() as conn:
            return conn.execute("SELECT op_id, invoice_id, kind, before_version, after_version, after_checksum "
                                "FROM invoicekit_audit WHERE coalesce(strategy, '') <> 'write_central' "
                                "ORDER BY seq").fetchall()
    conn = sqlite3.connect(store.path)
    try:
        return conn.execute("SELECT op_id, invoice_id, kind, before_version, after_version, after_checksum "
                            "FROM invoicekit_audit WHERE coalesce(strategy, '') <> 'write_central' "
                            "ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_sync_converges_and_is_audited(scenario, central, tmp_path):
    path = setup_device(scenario, central, tmp_path)
    plan, result = sync(path, central)
    assert result.ok
    pushes = plan.ops[plan.ops["kind"] == "push"]
    assert (result.results.set_index("op_id").loc[pushes["op_id"], "central"] == "applied").all()
    after = ik.reconcile(ik.read_local(path), ik.read_central(central))
    assert set(after.status["status"]) <= {"same", "central_only"}
    local, cen = ik.read_local(path), ik.read_central(central)
    assert ik.verify(local.invoices).all() and ik.verify(cen.invoices).all()
    assert (local.invoices["sync_status"] == "synced").all()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0
    conn.close()
    audit = audit_rows(central)
    assert sorted(r[0] for r in audit) == sorted(pushes["op_id"])
    by_id = pushes.set_index("invoice_id")
    for _op_id, invoice_id, kind, before, after_v, after_sum in audit:
        assert after_v == by_id.loc[invoice_id, "new_version"]
        assert after_sum == by_id.loc[invoice_id, "payload_checksum"]
        assert (before is None) == (kind == "insert")
    # every central version moved forward by exactly the planned step
    c0 = scenario.central.invoices.set_index("id")["version"]
    c1 = cen.invoices.set_index("id")["version"]
    updated = pushes[pushes["expected_central_version"].notna()]
    assert (c1.loc[updated["invoice_id"]].to_numpy() == updated["new_version"].to_numpy()).all()
    assert (c1.loc[updated["invoice_id"]].to_numpy() > c0.loc[updated["invoice_id"]].to_numpy()).all()


def test_replaying_a_plan_changes_nothing(scenario, central, tmp_path):
    path = setup_device(scenario, central, tmp_path)
    plan, _ = sync(path, central)
    local_before, central_before, audit_before = dump(path), ik.read_central(central), audit_rows(central)
    again = ik.apply_sync(plan, local=path, central=central)
    assert set(again.results["central"]) <= {"already_applied", "not_needed"}
    assert set(again.results["local"]) == {"already_applied"}
    assert dump(path) == local_before
    assert audit_rows(central) == audit_before
    pd.testing.assert_frame_equal(ik.read_central(central).invoices, central_before.invoices)


def test_version_moved_meanwhile_is_a_new_conflict_not_a_lost_update(scenario, central, tmp_path):
    path = setup_device(scenario, central, tmp_path)
    rec = ik.reconcile(ik.read_local(path), ik.read_central(central))
    plan = ik.plan_sync(ik.resolve(rec, strategy="merge_fields"))
    victim = plan.ops[(plan.ops["kind"] == "push") & plan.ops["expected_central_version"].notna()]["invoice_id"].iloc[0]
    # someone else edits the invoice centrally after the plan was made
    cen = ik.read_central(central)
    row = cen.invoices[cen.invoices["id"] == victim].copy()
    row["version"] = row["version"] + 1
    row["invoice_number"] = row["invoice_number"] + "-X"
    lines = cen.lines[cen.lines["invoice_id"] == victim]
    other = ik.InvoiceSet(row, lines)
    other.invoices["checksum"] = ik.checksum(other.invoices)
    ik.write_central(other, central)
    local_row_before = ik.read_local(path).invoices.set_index("id").loc[victim]
    result = ik.apply_sync(plan, local=path, central=central)
    assert list(result.conflicts["invoice_id"]) == [victim]
    assert not result.ok
    now_central = ik.read_central(central).invoices.set_index("id").loc[victim]
    assert now_central["invoice_number"].endswith("-X")  # the other edit survived
    now_local = ik.read_local(path).invoices.set_index("id").loc[victim]
    assert now_local["checksum"] == local_row_before["checksum"] and now_local["sync_status"] == "pending"
    after = ik.reconcile(ik.read_local(path), ik.read_central(central)).status.set_index("id")
    assert after.loc[victim, "status"] == "conflict"
    others = after.drop(index=victim)["status"]
    assert set(others) <= {"same", "central_only"}


def test_local_edit_during_sync_is_kept_pending(scenario, central, tmp_path):
    path = setup_device(scenario, central, tmp_path)
    rec = ik.reconcile(ik.read_local(path), ik.read_central(central))
    plan = ik.plan_sync(ik.resolve(rec, strategy="merge_fields"))
    victim = plan.ops[(plan.ops["kind"] == "push") & (plan.ops["status"] == "local_ahead")]["invoice_id"].iloc[0]
    local = ik.read_local(path)
    row = local.invoices[local.invoices["id"] == victim].copy()
    row["invoice_number"] = row["invoice_number"] + "-late"
    row["version"] = row["version"] + 1
    late = ik.InvoiceSet(row, local.lines[local.lines["invoice_id"] == victim])
    late.invoices["checksum"] = ik.checksum(late.invoices)
    ik.write_local(late, path)
    result = ik.apply_sync(plan, local=path, central=central)
    assert result.results.set_index("invoice_id").loc[victim, "local"] == "local_changed"
    kept = ik.read_local(path).invoices.set_index("id").loc[victim]
    assert kept["invoice_number"].endswith("-late") and kept["sync_status"] == "pending"
    after = ik.reconcile(ik.read_local(path), ik.read_central(central)).status.set_index("id")
    assert after.loc[victim, "status"] == "local_ahead"  # the late edit goes out next time, no false conflict
    _, second = sync(path, central)
    assert second.ok
    assert ik.read_central(central).invoices.set_index("id").loc[victim, "invoice_number"].endswith("-late")


def test_legacy_store_quarantine_and_outright_deletes(central, tmp_path, samples_dir):
    ik.write_central(read_jsonl(samples_dir / "central.jsonl"), central)
    path = tmp_path / "device_b.sqlite"
    shutil.copy(samples_dir / "device_b.sqlite", path)
    truth = pd.read_csv(samples_dir / "situations.csv")
    truth = truth[truth["device"] == "device_b"]
    damaged = set(truth[truth["situation"] == "damaged"]["id"])
    deleted = set(truth[truth["situation"] == "deleted_local"]["id"])
    plan, result = sync(path, central, strategy="last_write_wins")
    assert set(plan.ops[plan.ops["kind"] == "quarantine"]["invoice_id"]) == damaged
    conn = sqlite3.connect(path)
    status = dict(conn.execute("SELECT id, sync_status FROM transactions").fetchall())
    quarantined = {r[0] for r in conn.execute("SELECT invoice_id FROM invoicekit_quarantine")}
    in_store = {r[0] for r in conn.execute("SELECT id FROM transactions")}
    queue = {r[0] for r in conn.execute("SELECT DISTINCT transaction_id FROM sync_queue")}
    conn.close()
    assert quarantined == damaged and {status[i] for i in damaged} == {"error"}
    assert not deleted & in_store  # the device's deletions are not resurrected locally
    assert not deleted & queue  # and their queued deletes are done
    cen = ik.read_central(central).invoices.set_index("id")
    assert cen.loc[list(deleted), "deleted_at"].notna().all()
    others = {i: s for i, s in status.items() if i not in damaged}
    assert set(others.values()) == {"synced"}


def test_invalid_payload_writes_nothing(scenario, central, tmp_path):
    path = setup_device(scenario, central, tmp_path)
    plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(path), ik.read_central(central)),
                                   strategy="merge_fields"))
    victim = plan.ops[plan.ops["kind"] == "push"]["invoice_id"].iloc[0]
    bad_target = plan.target.invoices.copy()
    bad_target.loc[bad_target["id"] == victim, "currency"] = "XXQ"
    bad = ik.SyncPlan(plan.ops, ik.InvoiceSet(bad_target, plan.target.lines), plan.strategy)
    local_before, central_before = dump(path), ik.read_central(central).invoices
    with pytest.raises(ik.ValidationError) as info:
        ik.apply_sync(bad, local=path, central=central)
    assert info.value.problems["id"].tolist() == [victim]
    assert dump(path) == local_before
    pd.testing.assert_frame_equal(ik.read_central(central).invoices, central_before)
    assert audit_rows(central) == []


def test_concurrent_runs_of_one_plan_apply_each_op_once(scenario, central_pg_url, tmp_path):
    ik.init_db(central_pg_url)
    path = setup_device(scenario, central_pg_url, tmp_path)
    plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(path), ik.read_central(central_pg_url)),
                                   strategy="merge_fields"))
    copy = tmp_path / "copy.sqlite"
    shutil.copy(path, copy)
    results = {}

    def run(name, store):
        results[name] = ik.apply_sync(plan, local=store, central=central_pg_url, batch_rows=7)

    threads = [threading.Thread(target=run, args=("a", path)), threading.Thread(target=run, args=("b", copy))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pushes = set(plan.ops[plan.ops["kind"] == "push"]["op_id"])
    audit = audit_rows(central_pg_url)
    assert sorted(r[0] for r in audit) == sorted(pushes)  # each op once, none lost
    for name in "ab":
        outcomes = results[name].results.set_index("op_id").loc[list(pushes), "central"]
        assert set(outcomes) <= {"applied", "already_applied"}
    both = pd.concat([results[n].results.set_index("op_id").loc[list(pushes), "central"] for n in "ab"], axis=1)
    assert ((both == "applied").sum(axis=1) == 1).all()


def test_central_without_ledger_says_to_upgrade(tmp_path, scenario):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    from invoicekit.io import _central_sql as ddl
    conn = sqlite3.connect(tmp_path / "old.sqlite")
    for stmt in ddl.SQLITE[0]:
        conn.execute(stmt)
    conn.commit()
    conn.close()
    path = tmp_path / "d.sqlite"
    ik.write_local(scenario.devices["device_a"], path)
    with pytest.raises(ik.StoreSchemaError, match="invoicekit db init"):  # reads check the schema too
        ik.read_central(url)
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite'}"  # plan against a current store, apply to the old one
    ik.init_db(fresh)
    plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(path), ik.read_central(fresh))))
    with pytest.raises(ik.StoreSchemaError, match="invoicekit db init"):
        ik.apply_sync(plan, local=path, central=url)


def central_lines(central) -> pd.DataFrame:
    """The central invoice_lines table as text, sorted."""
    store = CentralStore(central)
    sql = ("SELECT invoice_id, line_no, description, quantity::text, unit_price::text, line_total::text "
           "FROM invoice_lines ORDER BY invoice_id, line_no")
    if store.dialect == "postgresql":
        with store.pg() as conn:
            rows = conn.execute(sql).fetchall()
    else:
        conn = sqlite3.connect(store.path)
        try:
            rows = conn.execute(sql.replace("::text", "")).fetchall()
        finally:
            conn.close()
    return pd.DataFrame(rows, columns=["invoice_id", "line_no", "description", "quantity", "unit_price",
                                       "line_total"])


def test_central_lines_follow_each_push(central, tmp_path):
    """Changed, added and removed line items reach the central lines exactly (on PostgreSQL a
    view of the pushed text, with no line stored: schema version 11)."""
    from invoicekit.device import LocalStore
    from invoicekit.sync import SyncEngine

    def items(*quantities):
        return [{"description": f"Item {n}", "quantity": q, "unit_price": "2.50"} for n, q in enumerate(quantities)]

    store = LocalStore(tmp_path / "d.sqlite")
    ids = [store.create(invoice_number=f"INV-{i}", client={"name": f"C{i}"}, currency="EUR",
                        line_items=items(*range(1, 4))) for i in range(5)]
    assert SyncEngine(store.path, central).drain().ok
    pg = CentralStore(central).dialect == "postgresql"
    kept_sql = "SELECT (SELECT count(*) FROM invoicekit_kept) + (SELECT count(*) FROM invoicekit_kept_lines)"
    store.update(ids[0], line_items=items(1, 7, 3))       # one line changed
    store.update(ids[1], line_items=items(1, 2, 3, 4, 5))  # two lines added
    store.update(ids[2], line_items=items(9))             # two lines removed, one changed
    store.update(ids[3], client={"name": "Renamed"})      # lines not touched
    store.delete(ids[4])                                  # tombstone keeps its lines
    result = SyncEngine(store.path, central).drain()
    assert result.ok
    back = ik.read_central(central)
    # the one edit that changed the client text regenerated the client columns (PostgreSQL
    # reads them from its generated columns); the edits that kept it left them as they were
    names = back.invoices.set_index("id")["client_name"]
    assert [names[i] for i in ids] == ["C0", "C1", "C2", "Renamed", "C4"]
    assert back.invoices.set_index("id").loc[ids, "version"].tolist() == [2, 2, 2, 2, 2]
    if pg:
        with CentralStore(central).pg() as conn:
            assert conn.execute("SELECT client_data->>'name' FROM invoices WHERE id = %s",
                                (ids[3],)).fetchone()[0] == "Renamed"
    expected = back.lines
    got = central_lines(central)
    assert len(got) == 3 + 5 + 1 + 3 + 3 == len(expected)
    exp = expected.sort_values(["invoice_id", "line_no"]).reset_index(drop=True)
    assert got["invoice_id"].tolist() == exp["invoice_id"].tolist()
    assert got["line_no"].tolist() == exp["line_no"].astype(int).tolist()
    for col in ("quantity", "unit_price", "line_total"):
        assert [float(v) for v in got[col]] == [float(v) for v in exp[col].astype(str)], col
    mine = got.set_index(["invoice_id", "line_no"])
    assert float(mine.loc[(ids[0], 2), "quantity"]) == 7
    assert float(mine.loc[(ids[2], 1), "quantity"]) == 9
    if pg:  # plain line items: nothing stored beside the text
        with CentralStore(central).pg() as conn:
            assert conn.execute(kept_sql).fetchone()[0] == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_batch_stops_the_batches_not_yet_started(scenario, central_pg_url, tmp_path, monkeypatch, workers):
    from invoicekit.io.backends import PostgresStore

    ik.init_db(central_pg_url)
    path = setup_device(scenario, central_pg_url, tmp_path)
    plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(path), ik.read_central(central_pg_url))))
    pushes = int((plan.ops["kind"] == "push").sum())
    assert pushes >= 6
    real, calls = PostgresStore.apply_batch, []

    def second_batch_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("batch 2 failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(PostgresStore, "apply_batch", second_batch_fails)
    with pytest.raises(RuntimeError, match="batch 2 failed"):
        ik.apply_sync(plan, local=path, central=central_pg_url, batch_rows=1, workers=workers)
    with CentralStore(central_pg_url).pg() as conn:
        applied = conn.execute("SELECT count(*) FROM invoicekit_ledger").fetchone()[0]
    # batch 1, and with two workers at most the batch that ran beside batch 2; never the rest
    assert 1 <= applied <= workers
    assert len(calls) <= workers + 1 < pushes
    monkeypatch.setattr(PostgresStore, "apply_batch", real)
    again = ik.apply_sync(plan, local=path, central=central_pg_url, batch_rows=1, workers=workers)
    assert set(again.results.loc[again.results["kind"] == "push", "central"]) == {"applied", "already_applied"}
    assert int((again.results["central"] == "already_applied").sum()) == applied


def test_central_lines_with_gapped_line_numbers_keep_exactly_the_payload(central_pg_url):
    """A hand-built payload numbering its lines 1 and 3: central keeps exactly those."""
    import pyarrow as pa

    from invoicekit.samples import make_invoices

    ik.init_db(central_pg_url)
    store = CentralStore(central_pg_url)
    s = make_invoices(1, seed=11)
    inv, lines = store.central_rows(s)
    n = lines.num_rows
    assert n >= 3, "the sample invoice needs three lines"
    create = inv.append_column("op_id", pa.array(["op-create"])).append_column(
        "expected", pa.array([None], pa.int32())).append_column("content_sha", pa.array(["sha-create"]))
    assert store.apply_batch(create, lines, actor="t", strategy="s")[0] == {"op-create"}
    keep = pa.array([no != 2 for no in lines.column("line_no").to_pylist()])
    edit = inv.set_column(inv.schema.get_field_index("version"), "version",
                          pa.array([2], inv.schema.field("version").type))
    edit = edit.set_column(edit.schema.get_field_index("line_items_text"), "line_items_text",
                           pa.array(['[{"edited": true}]']))
    edit = edit.append_column("op_id", pa.array(["op-edit"])).append_column(
        "expected", pa.array([1], pa.int32())).append_column("content_sha", pa.array(["sha-edit"]))
    assert store.apply_batch(edit, lines.filter(keep), actor="t", strategy="s")[0] == {"op-edit"}
    with store.pg() as conn:
        got = [r[0] for r in conn.execute("SELECT line_no FROM invoice_lines ORDER BY line_no")]
    assert got == [no for no in lines.column("line_no").to_pylist() if no != 2]
