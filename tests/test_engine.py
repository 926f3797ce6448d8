import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import invoicekit as ik
from invoicekit.device import LocalStore
from invoicekit.io.central import CentralStore
from invoicekit.sync import SyncEngine

ROOT = Path(__file__).resolve().parents[1]


def item(q, p="10.00", d="Work"):
    return [{"description": d, "quantity": q, "unit_price": p}]


def busy_store(path, n=12, seed=0):
    """A device that created n invoices, edited most of them several times and deleted a few."""
    rng = random.Random(seed)
    store = LocalStore(path)
    ids = [store.create(invoice_number=f"INV-{i:03d}", client={"name": f"Client {i}", "email": f"c{i}@x.example"},
                        currency="EUR", line_items=item(1 + i % 3)) for i in range(n)]
    for _ in range(2 * n):
        i = rng.choice(ids)
        if store.get(i)["deleted_at"] is None:
            store.update(i, line_items=item(rng.randint(1, 9), f"{rng.randint(1, 99)}.50"))
    for i in rng.sample(ids, 2):
        store.delete(i)
    return store, ids


def queue_op_ids(path):
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT op_id FROM sync_queue ORDER BY id")]
    finally:
        conn.close()


def pg_rows(url, sql):
    with CentralStore(url).pg() as conn:
        return conn.execute(sql).fetchall()


def assert_converged(path, url, op_ids):
    """Every op applied exactly once, none lost, versions contiguous, both sides equal, queue empty."""
    assert queue_op_ids(path) == []
    ledger = [r[0] for r in pg_rows(url, "SELECT op_id FROM invoicekit_ledger")]
    assert sorted(ledger) == sorted(op_ids)
    audit = pg_rows(url, "SELECT op_id, invoice_id, after_version FROM invoicekit_audit ORDER BY seq")
    assert sorted(r[0] for r in audit) == sorted(op_ids)  # once each
    versions = pd.DataFrame(audit, columns=["op", "id", "v"]).groupby("id")["v"].apply(list)
    for invoice, seq in versions.items():
        assert seq == list(range(1, len(seq) + 1)), (invoice, seq)  # contiguous, in order
    local, central = ik.read_local(path), ik.read_central(url)
    merged = local.invoices.merge(central.invoices, on="id", suffixes=("_l", "_c"))
    assert len(merged) == len(local) == len(central)
    assert (merged["checksum_l"] == merged["checksum_c"]).all()
    assert (merged["version_l"] == merged["version_c"]).all()
    assert ik.verify(local.invoices).all() and ik.verify(central.invoices).all()
    assert set(local.invoices["sync_status"]) == {"synced"}
    assert set(ik.reconcile(local, central).status["status"]) == {"same"}


def test_drain_pushes_every_change_once_in_order(central_pg_url, tmp_path):
    ik.init_db(central_pg_url)
    path = tmp_path / "d.sqlite"
    busy_store(path)
    ops = queue_op_ids(path)
    result = SyncEngine(path, central_pg_url, batch_size=5).drain()
    assert result.ok and len(result.results) == len(ops)
    assert_converged(path, central_pg_url, ops)
    deleted = ik.read_central(central_pg_url).invoices["deleted_at"].notna().sum()
    assert deleted == 2


def test_redelivered_queue_changes_nothing(central_pg_url, tmp_path):
    ik.init_db(central_pg_url)
    path = tmp_path / "d.sqlite"
    busy_store(path, n=6)
    conn = sqlite3.connect(path)
    queue = conn.execute("SELECT transaction_id, operation, payload, retry_count, created_at, op_id FROM sync_queue "
                         "ORDER BY id").fetchall()
    conn.close()
    ops = [q[5] for q in queue]
    SyncEngine(path, central_pg_url).drain()
    audit_before = pg_rows(central_pg_url, "SELECT * FROM invoicekit_audit ORDER BY seq")
    central_before = ik.read_central(central_pg_url).invoices
    conn = sqlite3.connect(path)  # the device sends the same queue again
    conn.executemany("INSERT INTO sync_queue (transaction_id, operation, payload, retry_count, created_at, op_id) "
                     "VALUES (?, ?, ?, ?, ?, ?)", queue)
    conn.commit()
    conn.close()
    again = SyncEngine(path, central_pg_url).drain()
    assert set(again.results["outcome"]) == {"already_synced"}
    assert pg_rows(central_pg_url, "SELECT * FROM invoicekit_audit ORDER BY seq") == audit_before
    pd.testing.assert_frame_equal(ik.read_central(central_pg_url).invoices, central_before)
    assert_converged(path, central_pg_url, ops)


KILLS = [(seed, "after_commit" if seed % 2 else "random") for seed in range(24)]


@pytest.mark.parametrize("seed,where", KILLS)
def test_sigkill_anywhere_then_restart_loses_and_doubles_nothing(central_pg_url, tmp_path, seed, where):
    ik.init_db(central_pg_url)
    path = tmp_path / "d.sqlite"
    busy_store(path, n=10, seed=seed)
    ops = queue_op_ids(path)
    rng = random.Random(seed)
    pause = 30.0 if where == "after_commit" else 0.0
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "_engine_worker.py"), str(path), central_pg_url,
                             "4", str(pause)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "start"
    if where == "after_commit":
        # wait for the k-th central commit, then kill before the device acknowledges it
        k = rng.randint(1, 3)
        for _ in range(k):
            line = proc.stdout.readline().strip()
            assert line.startswith("committed"), line
    else:
        time.sleep(rng.uniform(0.0, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if where == "after_commit":
        # the killed batch reached the central ledger but is still queued on the device
        assert set(queue_op_ids(path)) & {r[0] for r in pg_rows(central_pg_url, "SELECT op_id FROM invoicekit_ledger")}
    result = SyncEngine(path, central_pg_url, batch_size=4).drain()
    assert result.ok
    assert_converged(path, central_pg_url, ops)


def test_dropped_connections_mid_batch_are_retried_until_converged(central_pg_url, tmp_path):
    ik.init_db(central_pg_url)
    path = tmp_path / "d.sqlite"
    busy_store(path, n=40, seed=7)
    ops = queue_op_ids(path)
    stop = threading.Event()
    killed = []

    def saboteur():
        admin = CentralStore(central_pg_url).pg(autocommit=True)
        with admin:
            while not stop.is_set():
                rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE application_name = 'invoicekit-sync' AND state <> 'idle' "
                                     "AND datname = current_database()").fetchall()
                killed.extend(r for r in rows if r[0])
                time.sleep(0.003)

    waits = []
    engine = SyncEngine(path, central_pg_url, batch_size=40, max_retries=50, backoff=0.01, max_backoff=0.05,
                        sleep=lambda s: (waits.append(s), time.sleep(s)))
    thread = threading.Thread(target=saboteur)
    thread.start()
    try:
        first = engine.drain()
    finally:
        stop.set()
        thread.join()
    assert killed and waits  # connections really were dropped, and the engine backed off
    # each run of retries backs off exponentially from 0.01, capped at 0.05 (a batch that got
    # through ends its run; the next batch starts again at 0.01)
    assert waits[0] == 0.01
    assert all(w == 0.01 or w == min(0.05, 2 * prev) for prev, w in zip(waits, waits[1:])), waits
    rest = engine.drain()  # anything left after a batch gave up goes now
    assert first.ok or not rest.results.empty
    assert_converged(path, central_pg_url, ops)


def test_unreachable_central_marks_error_after_backoff_and_keeps_the_queue(tmp_path):
    path = tmp_path / "d.sqlite"
    busy_store(path, n=3)
    ops = queue_op_ids(path)
    waits = []
    result = SyncEngine(path, "postgresql://nobody@127.0.0.1:1/none", max_retries=3, backoff=0.5,
                        sleep=waits.append).drain()
    assert waits == [0.5, 1.0, 2.0]
    assert set(result.results["outcome"]) == {"error"} and not result.ok
    assert queue_op_ids(path) == ops  # nothing lost
    conn = sqlite3.connect(path)
    assert {r[0] for r in conn.execute("SELECT status FROM sync_queue WHERE id IN (SELECT min(id) FROM sync_queue)")} \
        == {"error"}
    conn.close()


def test_malformed_payloads_are_quarantined_by_id_and_the_rest_syncs(central_pg_url, tmp_path):
    ik.init_db(central_pg_url)
    path = tmp_path / "d.sqlite"
    store, ids = busy_store(path, n=5, seed=3)
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT id, op_id, payload FROM sync_queue ORDER BY id").fetchall()
    last_of = {json.loads(p)["id"]: (q, o) for q, o, p in rows}
    # two invoices whose only or last change is damaged: one payload is not JSON, one fails its checksum
    a, b = ids[0], ids[1]
    conn.execute("UPDATE sync_queue SET payload = '{not json' WHERE id = ?", (last_of[a][0],))
    payload = json.loads(conn.execute("SELECT payload FROM sync_queue WHERE id = ?", (last_of[b][0],)).fetchone()[0])
    payload["invoice_number"] = "TAMPERED"
    conn.execute("UPDATE sync_queue SET payload = ? WHERE id = ?", (json.dumps(payload), last_of[b][0]))
    conn.commit()
    conn.close()
    result = SyncEngine(path, central_pg_url).drain()
    q = result.results[result.results["outcome"] == "quarantined"].set_index("op_id")
    assert set(q.index) == {last_of[a][1], last_of[b][1]}
    assert q.loc[last_of[a][1], "error"] == "payload is not JSON"
    assert q.loc[last_of[b][1], "error"] == "payload fails its checksum"
    assert queue_op_ids(path) == []
    conn = sqlite3.connect(path)
    held = dict(conn.execute("SELECT op_id, reason FROM invoicekit_quarantine").fetchall())
    kept = {r[0] for r in conn.execute("SELECT op_id FROM invoicekit_quarantined_ops")}
    status = dict(conn.execute("SELECT id, sync_status FROM transactions").fetchall())
    conn.close()
    assert set(held) == kept == {last_of[a][1], last_of[b][1]}
    assert status[a] == status[b] == "error"
    assert {status[i] for i in ids[2:]} == {"synced"}


def test_a_central_edit_meanwhile_is_a_flagged_conflict(central_pg_url, tmp_path):
    ik.init_db(central_pg_url)
    path = tmp_path / "d.sqlite"
    store = LocalStore(path)
    inv = store.create(invoice_number="INV-1", client={"name": "A"}, currency="EUR", line_items=item(1))
    SyncEngine(path, central_pg_url).drain()
    cen = ik.read_central(central_pg_url)
    edited = cen.invoices.copy()
    edited["version"] = edited["version"] + 1
    edited["invoice_number"] = "INV-1-central"
    edited["checksum"] = ik.checksum(edited)
    ik.write_central(ik.InvoiceSet(edited, cen.lines), central_pg_url)
    store.update(inv, invoice_number="INV-1-device")
    result = SyncEngine(path, central_pg_url).drain()
    assert list(result.results["outcome"]) == ["conflict"]
    assert ik.read_central(central_pg_url).invoices.loc[0, "invoice_number"] == "INV-1-central"
    assert store.get(inv)["sync_status"] == "conflict" and len(store.queue()) == 1
    rec = ik.reconcile(ik.read_local(path), ik.read_central(central_pg_url))
    assert rec.status.loc[0, "status"] == "conflict"
