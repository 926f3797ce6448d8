"""Issue 8: nothing lost or doubled on the write paths, on stores written by other software.

Every test talks to real SQLite files and a real PostgreSQL (or the embedded SQLite
central store); the device stores are written row by row as other software does.
"""

import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import invoicekit as ik
from invoicekit.errors import UsageError
from invoicekit.io.central import CentralStore
from invoicekit.samples import read_jsonl
from invoicekit.sync import SyncEngine
from tests._build import device_row, write_device_store


def rows(url, sql):
    store = CentralStore(url)
    if store.dialect == "postgresql":
        with store.pg() as conn:
            return conn.execute(sql).fetchall()
    conn = sqlite3.connect(store.path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def central_state(url):
    inv = ik.read_central(url, lines=False).invoices
    return inv.set_index("id")[["version", "checksum", "deleted_at", "currency"]].astype(object).sort_index()


def sync(path, url, strategy="three_way"):
    plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(path), ik.read_central(url)), strategy=strategy))
    return plan, ik.apply_sync(plan, local=path, central=url)


def queue(path, *ops):
    """Append (transaction_id, operation, payload, created_at) rows to a store's sync_queue."""
    conn = sqlite3.connect(path)
    conn.executemany("INSERT INTO sync_queue (transaction_id, operation, payload, retry_count, created_at) "
                     "VALUES (?, ?, ?, 0, ?)", ops)
    conn.commit()
    conn.close()


def payload(row, **over):
    return json.dumps({**{k: v for k, v in row.items() if k != "sync_status"}, **over})


# -- write_central is compare-and-set ------------------------------------------------------

def test_writing_an_old_snapshot_after_a_sync_lowers_nothing(central, tmp_path, samples_dir):
    sample = read_jsonl(samples_dir / "central.jsonl")
    first = ik.write_central(sample, central)
    assert first.inserted == len(sample) and first.ok
    path = tmp_path / "device_a.sqlite"
    shutil.copy(samples_dir / "device_a.sqlite", path)
    _, result = sync(path, central)
    assert (result.results["central"] == "applied").any()
    after_sync = central_state(central)
    audit_before = rows(central, "SELECT count(*) FROM invoicekit_audit")[0][0]

    again = ik.write_central(sample, central)  # the old snapshot, written again

    assert central_state(central).equals(after_sync)  # no version lowered, no tombstone cleared
    moved = set(result.results.loc[result.results["central"] == "applied", "invoice_id"]) & set(sample.invoices["id"])
    refused = again.refused
    assert set(refused["id"]) == moved and again.written == 0
    assert set(refused["reason"]) <= {"lower_version", "tombstone"}
    assert again.unchanged == len(sample) - len(moved)
    assert rows(central, "SELECT count(*) FROM invoicekit_audit")[0][0] == audit_before  # nothing written
    # the sync's effects still hold: a second sync of the device finds nothing to push
    _, second = sync(path, central)
    assert not (second.results["central"] == "applied").any()


def test_write_central_outcomes_and_force_is_audited(central):
    s = ik.samples.make_invoices(6, seed=41)
    assert ik.write_central(s, central).inserted == 6
    inv = s.invoices.copy()
    inv.loc[0:1, "invoice_number"] = inv.loc[0:1, "invoice_number"] + "-X"
    inv["checksum"] = ik.checksum(inv)
    inv.loc[2:3, "version"] = inv.loc[2:3, "version"] + 1  # newer: goes through
    res = ik.write_central(ik.InvoiceSet(inv, s.lines), central)
    assert res.summary().set_index("outcome")["invoices"].to_dict() == {
        "inserted": 0, "updated": 2, "unchanged": 2, "refused": 2}
    assert set(res.refused["reason"]) == {"same_version_other_content"}
    assert "WriteResult" in res._repr_html_() and "refused" in repr(res)
    before = central_state(central)
    assert before.loc[inv["id"][0], "checksum"] == s.invoices["checksum"][0]  # not overwritten
    forced = ik.write_central(ik.InvoiceSet(inv, s.lines), central, force=True, actor="admin@test")
    assert forced.updated == 2 and forced.forced
    kinds = rows(central, "SELECT invoice_id, kind, actor FROM invoicekit_audit WHERE kind = 'force_write'")
    assert {r[0] for r in kinds} == set(inv["id"][0:2]) and {r[2] for r in kinds} == {"admin@test"}


def test_a_write_never_revives_a_tombstone(central):
    s = ik.samples.make_invoices(3, seed=42)
    ik.write_central(s, central)
    dead = s.invoices.copy()
    dead["version"] = dead["version"] + 1
    dead["deleted_at"] = pd.Timestamp("2026-05-01", tz="UTC")
    assert ik.write_central(ik.InvoiceSet(dead, s.lines), central).updated == 3
    alive = s.invoices.copy()
    alive["version"] = alive["version"] + 5
    res = ik.write_central(ik.InvoiceSet(alive, s.lines), central)
    assert set(res.refused["reason"]) == {"tombstone"} and len(res.refused) == 3
    assert central_state(central)["deleted_at"].notna().all()


# -- the engine on queues written by other software ------------------------------------------

@pytest.fixture
def device(tmp_path, central):
    """A store as other software writes it: two synced invoices, central holding them."""
    a, b = device_row(1), device_row(2)
    path = tmp_path / "foreign.sqlite"
    write_device_store(path, [a, b], settings={"default_currency": '"EUR"'})
    ik.write_central(ik.read_local(path), central)
    return path, a, b


def edit(row, **over):
    out = device_row(int(row["id"][-12:]), **{**{k: v for k, v in row.items() if k != "checksum"}, **over})
    return out


def test_a_resent_operation_is_a_redelivery_not_a_crash(device, central):
    path, a, _ = device
    new = edit(a, invoice_number="INV-A-2", version=2, sync_status="pending")
    op = (a["id"], "update", payload(new), "2026-03-02T09:00:00")
    queue(path, op, op)  # the same operation twice (a resend after a lost acknowledgement)
    queue(path, (a["id"], "update", payload(new), "2026-03-02T09:05:00"))  # re-queued later
    result = SyncEngine(path, central).drain()
    assert list(result.results["outcome"]) == ["synced", "already_synced", "already_synced"]
    assert result.ok
    state = central_state(central)
    assert state.loc[a["id"], "version"] == 2
    assert rows(central, f"SELECT count(*) FROM invoicekit_ledger WHERE invoice_id = '{a['id']}'")[0][0] == 1
    assert ik.LocalStore(path).queue().empty


def test_unknown_operations_and_foreign_ids_are_quarantined(device, central):
    path, a, b = device
    gone = edit(a, version=2, sync_status="pending")
    hijack = edit(a, invoice_number="HIJACK", version=2)  # a's row, b's id in the payload
    queue(path,
          (a["id"], "remove", payload(gone, deleted_at="2026-03-02T09:00:00"), "2026-03-02T09:00:00"),
          (a["id"], "DELETE", payload(gone, deleted_at="2026-03-02T09:00:00"), "2026-03-02T09:01:00"),
          (a["id"], "update", payload(hijack, id=b["id"]), "2026-03-02T09:02:00"))
    before = central_state(central)
    result = SyncEngine(path, central).drain()
    out = result.results.set_index("queue_id")
    assert list(out["outcome"]) == ["quarantined"] * 3
    assert "unknown operation 'remove'" in out["error"].iloc[0]
    assert "unknown operation 'DELETE'" in out["error"].iloc[1]
    assert b["id"] in out["error"].iloc[2]
    assert central_state(central).equals(before)  # nothing applied, b untouched


def test_two_devices_with_other_currencies_never_share_an_op_id(central_pg_url, tmp_path):
    central = central_pg_url
    ik.init_db(central)
    base = device_row(7)
    paths = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.sqlite"
        write_device_store(path, [base], settings={"default_currency": '"EUR"'})
        paths.append(path)
    ik.write_central(ik.read_local(paths[0]), central)
    for path in paths:  # both synced to the same state
        sync(path, central)
    for path, currency in zip(paths, ("USD", "GBP")):
        conn = sqlite3.connect(path)  # each device changes only the currency (not checksummed)
        conn.execute("UPDATE transactions SET currency = ?, version = 2, sync_status = 'pending'", (currency,))
        conn.commit()
        conn.close()
    # both plan against the same central state, then apply one after the other
    plan_a, plan_b = (ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(p), ik.read_central(central)),
                                              strategy="three_way")) for p in paths)
    res_a = ik.apply_sync(plan_a, local=paths[0], central=central)
    res_b = ik.apply_sync(plan_b, local=paths[1], central=central)
    assert set(plan_a.ops["op_id"]).isdisjoint(plan_b.ops["op_id"])
    assert list(res_a.results["central"]) == ["applied"]
    assert list(res_b.results["central"]) == ["conflict"] and not res_b.ok  # B's change: never skipped
    assert central_state(central).loc[base["id"], "currency"] == "USD"
    # B's change is never reported synced while central holds A's value
    local_b = ik.read_local(paths[1]).invoices.set_index("id").loc[base["id"]]
    assert not (local_b["currency"] == "GBP" and local_b["sync_status"] == "synced")


# -- deletions a device kept the row of ------------------------------------------------------

def kept_delete_device(tmp_path, central):
    a, b = device_row(11), device_row(12)
    path = tmp_path / "fk.sqlite"
    write_device_store(path, [a, b], settings={"default_currency": '"EUR"'})
    ik.write_central(ik.read_local(path), central)
    conn = sqlite3.connect(path)  # honours sync_queue's foreign key: keeps the row, queues {id, version}
    conn.execute("UPDATE transactions SET sync_status = 'pending', modified_at = '2026-04-01T08:00:00' WHERE id = ?",
                 (a["id"],))
    conn.execute("INSERT INTO sync_queue (transaction_id, operation, payload, created_at) VALUES (?, 'delete', ?, ?)",
                 (a["id"], json.dumps({"id": a["id"], "version": 1}), "2026-04-01T08:00:00"))
    conn.commit()
    conn.close()
    return path, a, b


def test_a_kept_row_deletion_reconciles_as_deleted_and_apply_sync_pushes_it(central, tmp_path):
    path, a, b = kept_delete_device(tmp_path, central)
    local = ik.read_local(path)
    row = local.invoices.set_index("id").loc[a["id"]]
    assert row["deleted_at"] is not pd.NaT and pd.notna(row["deleted_at"]) and row["version"] == 2
    rec = ik.reconcile(local, ik.read_central(central))
    assert rec.status.set_index("id").loc[a["id"], "status"] == "deleted_local"
    _, result = sync(path, central)
    assert result.ok and list(result.results["central"]) == ["applied"]
    state = central_state(central)
    assert pd.notna(state.loc[a["id"], "deleted_at"]) and state.loc[a["id"], "version"] == 2
    assert pd.isna(state.loc[b["id"], "deleted_at"])
    assert ik.LocalStore(path).queue().empty
    assert set(ik.reconcile(ik.read_local(path), ik.read_central(central)).status["status"]) == {"same"}


def test_a_kept_row_deletion_is_drained_as_a_tombstone(central, tmp_path):
    path, a, _ = kept_delete_device(tmp_path, central)
    result = SyncEngine(path, central).drain()
    assert list(result.results["outcome"]) == ["synced"], result.results
    state = central_state(central)
    assert pd.notna(state.loc[a["id"], "deleted_at"]) and state.loc[a["id"], "version"] == 2
    assert set(ik.reconcile(ik.read_local(path), ik.read_central(central)).status["status"]) == {"same"}


# -- nested payloads and stores without a currency -----------------------------------------

def test_nested_payloads_drain_when_either_reading_of_the_checksum_matches(central, tmp_path):
    a = device_row(21)
    path = tmp_path / "nested.sqlite"
    write_device_store(path, [a], settings={"default_currency": '"EUR"'})
    ik.write_central(ik.read_local(path), central)
    client = {"tax_id": "DE123", "name": "Client 21", "address": "1 Main St", "email": "c21@example.com"}
    items = [{"description": "Work", "quantity": 3, "unit_price": 10.25}]
    nested = {"invoice_number": "INV-21-B", "client_data": client, "line_items": items, "total_amount": 30.75}
    device_sum = __import__("hashlib").sha256(
        json.dumps(nested, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    conn = sqlite3.connect(path)  # the row keeps text (other key order, default spacing)
    conn.execute("UPDATE transactions SET invoice_number = 'INV-21-B', client_data = ?, line_items = ?, "
                 "total_amount = 30.75, version = 2, sync_status = 'pending', checksum = ?",
                 (json.dumps(client), json.dumps(items), device_sum))
    conn.commit()
    conn.close()
    queue(path, (a["id"], "update", json.dumps({**nested, "id": a["id"], "version": 2, "checksum": device_sum}),
                 "2026-03-03T10:00:00"))
    tampered = (a["id"], "update", json.dumps({**nested, "id": a["id"], "version": 3, "invoice_number": "EVIL",
                                                "checksum": device_sum}), "2026-03-03T11:00:00")
    queue(path, tampered)
    result = SyncEngine(path, central).drain()
    assert list(result.results["outcome"]) == ["synced", "quarantined"], result.results
    assert "checksum" in result.results["error"].iloc[1]
    back = ik.read_central(central).invoices.set_index("id").loc[a["id"]]
    assert json.loads(back["client_data"]) == client and back["version"] == 2
    assert not ik.tampered(ik.read_central(central).invoices).shape[0]


def test_a_store_without_currency_says_how_to_supply_one(central, tmp_path):
    a = device_row(31)
    path = tmp_path / "nocur.sqlite"
    write_device_store(path, [a])
    local = ik.read_local(path)
    assert local.invoices["currency"].isna().all()
    with pytest.raises(ik.ValidationError):
        ik.write_central(local, central)
    assert ik.read_local(path, currency="CHF").invoices["currency"].eq("CHF").all()
    ik.write_central(ik.read_local(path, currency="CHF"), central)
    queue(path, (a["id"], "update", payload(edit(a, version=2)), "2026-03-04T10:00:00"))
    with pytest.raises(UsageError, match="currency"):
        SyncEngine(path, central).drain()
    assert len(ik.LocalStore(path).queue()) == 1  # nothing consumed
    assert SyncEngine(path, central, currency="CHF").drain().ok
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO app_settings (key, value) VALUES ('currency', 'SEK')")
    conn.commit()
    conn.close()
    assert ik.read_local(path).invoices["currency"].notna().all()


# -- plans belong to their store; settling clears refused operations ------------------------

def test_a_plan_is_refused_by_another_devices_store(central, tmp_path, samples_dir):
    ik.write_central(read_jsonl(samples_dir / "central.jsonl"), central)
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    shutil.copy(samples_dir / "device_a.sqlite", a)
    shutil.copy(samples_dir / "device_b.sqlite", b)
    plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(a), ik.read_central(central)), strategy="three_way"))
    before = sqlite3.connect(b).execute("SELECT count(*), sum(version) FROM transactions").fetchone()
    with pytest.raises(UsageError, match="another offline store"):
        ik.apply_sync(plan, local=b, central=central)
    assert sqlite3.connect(b).execute("SELECT count(*), sum(version) FROM transactions").fetchone() == before
    assert ik.apply_sync(plan, local=a, central=central).ok


def test_a_conflict_settled_by_pulling_leaves_the_queue(central_pg_url, tmp_path):
    central = central_pg_url
    ik.init_db(central)
    store = ik.LocalStore(tmp_path / "dev.sqlite")
    inv = store.create(invoice_number="INV-1", client={"name": "Ada"}, currency="EUR",
                       line_items=[{"description": "Work", "quantity": 1, "unit_price": "5.00"}])
    assert SyncEngine(store.path, central).drain().ok
    cen = ik.read_central(central)
    edited = cen.invoices.copy()
    edited["version"] = edited["version"] + 1
    edited["invoice_number"] = "INV-1-central"
    edited["checksum"] = ik.checksum(edited)
    ik.write_central(ik.InvoiceSet(edited, cen.lines), central)
    store.update(inv, invoice_number="INV-1-device")
    assert list(SyncEngine(store.path, central).drain().results["outcome"]) == ["conflict"]
    _, result = sync(store.path, central, strategy="prefer_central")
    assert result.ok
    assert store.queue().empty
    assert set(ik.reconcile(ik.read_local(store.path), ik.read_central(central)).status["status"]) == {"same"}
    store.update(inv, invoice_number="INV-1-later")  # a later edit syncs, not refused
    later = SyncEngine(store.path, central).drain()
    assert later.ok, later.results


# -- an analyst's sync while the device drains the same file ---------------------------------

@pytest.mark.parametrize("trial", range(4))
def test_apply_sync_and_drain_at_once_leave_no_false_conflicts(central_pg_url, tmp_path, trial):
    import threading

    central = central_pg_url
    ik.init_db(central)
    store = ik.LocalStore(tmp_path / "dev.sqlite")
    ids = [store.create(invoice_number=f"INV-{i}", client={"name": f"C{i}"}, currency="EUR",
                        line_items=[{"description": "Work", "quantity": 1 + i, "unit_price": "5.00"}])
           for i in range(8)]
    assert SyncEngine(store.path, central).drain().ok
    for i in ids[:6]:
        store.update(i, invoice_number=f"INV-{i}-v2")
    store.delete(ids[6])
    plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(store.path), ik.read_central(central)),
                                   strategy="three_way"))
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def run(name, fn):
        try:
            barrier.wait()
            results[name] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=("apply", lambda: ik.apply_sync(plan, local=store.path,
                                                                                  central=central))),
               threading.Thread(target=run, args=("drain", lambda: SyncEngine(store.path, central).drain()))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert "conflict" not in set(results["apply"].results["central"]), results["apply"].results
    assert "conflict" not in set(results["drain"].results["outcome"]), results["drain"].results
    SyncEngine(store.path, central).drain()  # whatever the race left queued
    local = ik.read_local(store.path).invoices
    assert set(local["sync_status"]) == {"synced"}
    assert store.queue().empty
    assert set(ik.reconcile(ik.read_local(store.path), ik.read_central(central)).status["status"]) == {"same"}
    audit = pd.DataFrame(rows(central, "SELECT invoice_id, after_version FROM invoicekit_audit ORDER BY seq"),
                         columns=["id", "v"])
    for invoice, versions in audit.groupby("id")["v"]:
        assert list(versions) == list(range(1, len(versions) + 1)), (invoice, list(versions))  # once each


# -- dropped connections during apply_sync ---------------------------------------------------

def test_apply_sync_survives_connections_killed_mid_batch(central_pg_url, tmp_path, samples_dir):
    import threading

    import psycopg

    central = central_pg_url
    ik.init_db(central)
    ik.write_central(read_jsonl(samples_dir / "central.jsonl"), central)
    path = tmp_path / "device_a.sqlite"
    shutil.copy(samples_dir / "device_a.sqlite", path)
    plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(path), ik.read_central(central)),
                                   strategy="three_way"))
    pushes = set(plan.ops.loc[plan.ops["kind"] == "push", "op_id"])
    done, killed = threading.Event(), []

    def killer():
        with psycopg.connect(CentralStore(central).libpq, autocommit=True) as admin:
            for _ in range(400):  # bounded: at most ~20 s
                if done.is_set():
                    return
                killed.extend(admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'invoicekit' "
                    "AND datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'").fetchall())
                done.wait(0.02)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        try:
            first = ik.apply_sync(plan, local=path, central=central, batch_rows=3, workers=2)
        except ik.StoreUnavailableError as exc:  # typed, transient: never a raw driver error
            assert exc.transient and "postgres" in str(exc)
            first = None
    finally:
        done.set()
        thread.join()
    assert killed, "the test never caught a batch in flight"
    again = ik.apply_sync(plan, local=path, central=central, batch_rows=3)  # a rerun converges
    outcome = again.results.set_index("op_id").loc[list(pushes), "central"]
    assert set(outcome) <= {"applied", "already_applied"}
    audit = [r[0] for r in rows(central, "SELECT op_id FROM invoicekit_audit WHERE strategy <> 'write_central'")]
    assert sorted(audit) == sorted(pushes)  # each push applied exactly once, none lost
    if first is not None:
        assert set(first.results.set_index("op_id").loc[list(pushes), "central"]) <= {"applied", "already_applied"}


# -- write_local is compare-and-set too ------------------------------------------------------

def test_write_local_never_lowers_a_version(tmp_path):
    path = tmp_path / "dev.sqlite"
    s = ik.samples.make_invoices(5, seed=43)
    assert ik.write_local(s, path).inserted == 5
    newer = s.invoices.copy()
    newer["version"] = newer["version"] + 1
    newer["invoice_number"] = newer["invoice_number"] + "-v2"
    newer["checksum"] = ik.checksum(newer)
    assert ik.write_local(ik.InvoiceSet(newer, s.lines), path).updated == 5
    old = ik.write_local(s, path)  # the old snapshot again
    assert old.written == 0 and set(old.refused["reason"]) == {"lower_version"}
    back = ik.read_local(path).invoices.set_index("id")
    assert back["invoice_number"].str.endswith("-v2").all()
    assert ik.write_local(s, path, force=True).updated == 5


def test_cli_currency_option_for_a_store_without_one(tmp_path, capsys):
    from invoicekit.cli import main

    path = tmp_path / "nocur.sqlite"
    write_device_store(path, [device_row(51)])
    assert main(["validate", str(path)]) == 1  # currency missing: reported
    assert "currency" in capsys.readouterr().out
    assert main(["validate", str(path), "--currency", "EUR"]) == 0


def test_apply_sync_when_the_server_restarts_mid_run(tmp_path, samples_dir):
    """A throwaway server restarted while apply_sync pushes: a typed transient error (or
    success after retries), both stores consistent, and a rerun converges."""
    import subprocess
    import threading
    import time

    from tests.conftest import _as_postgres, _pg_bindir, free_port, throwaway_postgres

    with throwaway_postgres(free_port()) as url:
        ik.init_db(url)
        ik.write_central(read_jsonl(samples_dir / "central.jsonl"), url)
        data_dir = rows(url, "SHOW data_directory")[0][0]
        path = tmp_path / "device_a.sqlite"
        shutil.copy(samples_dir / "device_a.sqlite", path)
        plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(path), ik.read_central(url)),
                                       strategy="three_way"))
        pushes = set(plan.ops.loc[plan.ops["kind"] == "push", "op_id"])
        window = {}

        def restart():
            time.sleep(0.3)
            window["from"] = time.monotonic()
            log = str(Path(data_dir).parent / "server.log")  # the server must not hold our pipes open
            subprocess.run(_as_postgres([str(_pg_bindir() / "pg_ctl"), "restart", "-w", "-m", "immediate",
                                         "-D", data_dir, "-l", log]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            window["to"] = time.monotonic()

        thread = threading.Thread(target=restart)
        thread.start()
        try:
            try:
                first = ik.apply_sync(plan, local=path, central=url, batch_rows=1, workers=1)
            except ik.StoreUnavailableError as exc:  # typed and transient, never a driver's exception
                assert exc.transient
                first = None
            ended = time.monotonic()
        finally:
            thread.join()
        assert window["from"] < ended, "the restart came after apply_sync had finished"
        assert "to" in window, "the server did not restart"
        again = ik.apply_sync(plan, local=path, central=url, batch_rows=2)
        assert set(again.results.set_index("op_id").loc[list(pushes), "central"]) <= {"applied", "already_applied"}
        audit = [r[0] for r in rows(url, "SELECT op_id FROM invoicekit_audit WHERE strategy <> 'write_central'")]
        assert sorted(audit) == sorted(pushes)
        assert set(ik.reconcile(ik.read_local(path), ik.read_central(url)).status["status"]) <= {
            "same", "central_only", "conflict"}
        if first is not None:
            assert first.ok or not first.conflicts.empty


def test_a_stale_pull_is_a_conflict_not_a_write(central, tmp_path):
    a = device_row(61)
    path = tmp_path / "stale.sqlite"
    write_device_store(path, [a], settings={"default_currency": '"EUR"'})
    ik.write_central(ik.read_local(path), central)
    ik.write_central(ik.InvoiceSet(edit_central(central, "-c1"), ik.read_central(central).lines), central)
    plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(path), ik.read_central(central)),
                                   strategy="three_way"))
    assert list(plan.ops["kind"]) == ["pull"]
    ik.write_central(ik.InvoiceSet(edit_central(central, "-c2"), ik.read_central(central).lines), central)
    before = sqlite3.connect(path).execute("SELECT version, invoice_number FROM transactions").fetchall()
    result = ik.apply_sync(plan, local=path, central=central)  # planned before the second central edit
    assert list(result.results["central"]) == ["conflict"] and not result.ok
    assert sqlite3.connect(path).execute("SELECT version, invoice_number FROM transactions").fetchall() == before
    _, fresh = sync(path, central)  # planned again: the pull goes through
    assert fresh.ok and ik.read_local(path).invoices["invoice_number"].iloc[0].endswith("-c2")


def edit_central(url, suffix):
    cen = ik.read_central(url).invoices.copy()
    cen["version"] = cen["version"] + 1
    cen["invoice_number"] = cen["invoice_number"] + suffix
    cen["checksum"] = ik.checksum(cen)
    return cen


def test_sync_status_in_any_case_reads_as_the_devices_words(tmp_path):
    path = tmp_path / "caps.sqlite"
    write_device_store(path, [device_row(71, sync_status="SYNCED"), device_row(72, sync_status=" Pending")],
                       settings={"default_currency": '"EUR"'})
    s = ik.read_local(path)
    assert list(s.invoices["sync_status"]) == ["synced", "pending"]
    assert ik.validate(s).ok


# -- two devices, two processes, one central store ---------------------------------------------

def _apply_in_process(plan_file, local, central, start, out_file):
    """Worker: wait for the start signal, apply a pickled plan, pickle the result's frame."""
    import pickle

    with open(plan_file, "rb") as f:
        plan = pickle.load(f)
    start.wait(30)
    result = ik.apply_sync(plan, local=local, central=central, batch_rows=4)
    result.results.to_pickle(out_file)


def _two_devices(tmp_path, central, n=24, new=4):
    base = [device_row(100 + i) for i in range(n)]
    paths = {name: tmp_path / f"{name}.sqlite" for name in "ab"}
    for path in paths.values():
        write_device_store(path, base, settings={"currency": '"EUR"'})
    ik.write_central(ik.read_local(paths["a"]), central)
    edits = {"a": range(0, 16), "b": range(8, n)}  # 8..15 edited on both devices
    for name, path in paths.items():
        conn = sqlite3.connect(path)
        for i in edits[name]:
            row = device_row(100 + i, invoice_number=f"{name.upper()}-{i}", version=2, sync_status="pending")
            conn.execute("UPDATE transactions SET invoice_number = ?, checksum = ?, version = 2, "
                         "sync_status = 'pending' WHERE id = ?", (row["invoice_number"], row["checksum"], row["id"]))
        for j in range(new):
            row = device_row((1000 if name == "a" else 2000) + j, sync_status="pending")
            conn.execute(f"INSERT INTO transactions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                         list(row.values()))
        conn.commit()
        conn.close()
    return paths, edits


def test_two_devices_applying_at_once_lose_nothing_and_apply_nothing_twice(central_pg_url, tmp_path):
    """Device A and device B plan against the same central state and apply in two processes
    at the same moment, in small batches: every invoice only one of them changed is applied;
    an invoice both changed is applied for exactly one and a conflict for the other (never
    both, never neither); no op is audited twice; a second round settles the rest."""
    import multiprocessing
    import pickle

    central = central_pg_url
    ik.init_db(central)
    paths, edits = _two_devices(tmp_path, central)
    plans = {n: ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(p), ik.read_central(central)),
                                        strategy="three_way")) for n, p in paths.items()}
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = []
    for name, path in paths.items():
        plan_file = tmp_path / f"{name}.plan"
        plan_file.write_bytes(pickle.dumps(plans[name]))
        procs.append(ctx.Process(target=_apply_in_process,
                                 args=(str(plan_file), str(path), central, start, str(tmp_path / f"{name}.out"))))
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    got = {n: pd.read_pickle(tmp_path / f"{n}.out").set_index("invoice_id") for n in "ab"}
    both = [device_row(100 + i)["id"] for i in set(edits["a"]) & set(edits["b"])]
    only = {n: [device_row(100 + i)["id"] for i in set(edits[n]) - set(edits["ab".replace(n, "")])] for n in "ab"}
    for n in "ab":
        pushes = got[n][got[n]["kind"] == "push"]
        assert (pushes.loc[only[n], "central"] == "applied").all()
    outcome = pd.concat([got[n].loc[both, "central"] for n in "ab"], axis=1)
    assert ((outcome == "applied").sum(axis=1) == 1).all(), outcome
    assert ((outcome == "conflict").sum(axis=1) == 1).all(), outcome
    audited = rows(central, "SELECT op_id FROM invoicekit_audit WHERE strategy <> 'write_central'")
    assert len(audited) == len({r[0] for r in audited})
    state = ik.read_central(central, lines=False).invoices.set_index("id")
    assert len(state) == 24 + 8
    edited = [device_row(100 + i)["id"] for i in set(edits["a"]) | set(edits["b"])]
    assert (state.loc[edited, "version"] == 2).all()  # one version per applied change: contiguous
    applied = pd.concat([got[n][got[n]["central"] == "applied"] for n in "ab"])
    assert {r[0] for r in audited} == set(applied["op_id"])  # audit complete, nothing else in it
    winner = {i: "a" if outcome.loc[i].iloc[0] == "applied" else "b" for i in both}
    for i in both:
        assert state.loc[i, "invoice_number"].startswith(winner[i].upper()), (i, state.loc[i, "invoice_number"])
    # the loser's conflicts are settled by a decision and pushed; afterwards both converge
    loser_ids = {n: [i for i in both if winner[i] != n] for n in "ab"}
    for n, path in paths.items():
        rec = ik.reconcile(ik.read_local(path), central)
        assert set(rec.status.loc[rec.status["status"] == "conflict", "id"]) == set(loser_ids[n])
        res = ik.resolve(rec, strategy="prefer_local")
        assert ik.apply_sync(ik.plan_sync(res), local=path, central=central).ok
    for path in paths.values():
        assert ik.reconcile(ik.read_local(path), central).counts()["conflict"] == 0
    assert (ik.read_central(central, lines=False).invoices.set_index("id").loc[both, "version"] == 3).all()


def test_a_merge_whose_total_the_central_store_cannot_hold_is_quarantined_not_a_crash(tmp_path):
    """Each side's total fits NUMERIC(12,2); the merged lines' sum does not: the invoice is held
    back with the rule named (no DuckDB error escapes), both stores keep what they had."""
    line = {"description": "A", "quantity": 1, "unit_price": 4_000_000_000.00}
    path = tmp_path / "a.sqlite"
    write_device_store(path, [device_row(1, line_items=json.dumps([line]), total_amount=4e9)],
                       settings={"currency": '"EUR"'})
    central = f"sqlite:///{tmp_path / 'c.sqlite'}"
    ik.init_db(central)
    ik.write_central(ik.read_local(path), central)
    for side, name in ((path, "B"), (tmp_path / "other.sqlite", "C")):  # both sides add a line
        row = device_row(1, line_items=json.dumps([line, {**line, "description": name}]), total_amount=8e9, version=2)
        if side == path:
            conn = sqlite3.connect(path)
            conn.execute("UPDATE transactions SET line_items = ?, total_amount = ?, checksum = ?, version = 2, "
                         "sync_status = 'pending'", (row["line_items"], row["total_amount"], row["checksum"]))
            conn.commit()
            conn.close()
        else:
            write_device_store(side, [row], settings={"currency": '"EUR"'})
            ik.write_central(ik.read_local(side), central)
    before = central_state(central)
    res = ik.resolve(ik.reconcile(ik.read_local(path), central), strategy="merge_fields")
    assert res.actions["action"].tolist() == ["quarantine"]
    assert "fails validation" in res.actions["quarantine_reason"].iloc[0]
    ik.apply_sync(ik.plan_sync(res), local=path, central=central)
    assert central_state(central).equals(before)
