"""A hypothesis state machine: edit offline / edit centrally / push / crash / redeliver
always converges to the model.

Everything is real: each example gets a fresh PostgreSQL schema (created from the
session database, dropped in ``teardown``) as the central store and a fresh SQLite file
as the device (:class:`invoicekit.device.LocalStore`); the device is drained by the real
:class:`invoicekit.sync.SyncEngine`. Nothing is mocked.

The model
    * ``local``: per invoice the device's version, content checksum, invoice number and
      tombstone flag;
    * ``queue``: the device's queued operations in queue order (op id, invoice, version,
      kind, content, payload) with their status (``pending`` or ``conflict``);
    * ``central``: per invoice the central version, checksum, number, tombstone flag, and
      the versions that came from central edits (those bypass the ledger and audit);
    * ``ledger``: op id -> (invoice, version) of every operation applied centrally;
    * ``conflicted``: invoices whose device changes the central store refused.

Rules
    * ``synced_invoices`` (initialisation): one or two invoices created and pushed, so both
      sides can edit them from the first step;
    * ``create`` / ``edit_local`` (new number, new lines, a save without changes, or a
      delete): a device change through ``LocalStore`` (row and queue op in one transaction);
    * ``edit_central``: ``read_central`` + ``write_central`` of the invoice with a new
      invoice number and ``version + 1`` (the central application's own writer);
    * ``push``: ``SyncEngine.drain()`` with a random batch size; the model predicts the
      batches (oldest first, one operation per invoice per batch) and each operation's
      outcome: ``already_synced`` when its op id is in the ledger, ``conflict`` when its
      invoice is already in conflict or the central version is not the one the operation
      expects, else ``synced``;
    * ``crash``: a drain that dies after the k-th batch's central commit and before the
      device's acknowledgement. Done in-process: the engine's ``on_batch_committed``
      hook (called after the central transaction committed, before ``_acknowledge``)
      raises, which aborts ``drain`` exactly where a SIGKILL in ``tests/_engine_worker.py``
      would (the central commit is durable, the local acknowledgement never starts);
    * ``redeliver``: re-insert an acknowledged operation (same op id, same payload) into
      ``sync_queue``, as a device that lost its acknowledgement would; the next drain must
      report it ``already_synced`` and change nothing centrally.

Checked after every step: ledger and audit equal the model (no operation applied twice,
each audit row once per op id, kind and before/after versions right), per invoice the
central versions 1..v are contiguous (audit versions plus central-edit versions, each
once), the queue equals the model (no acknowledged op lost, nothing dropped), and both
stores' rows equal the model. At the end (``teardown``): drain until only conflicts are
queued; invoices not in conflict have every device change applied, are ``synced``, have
their base snapshot at their version, and have equal local/central/model checksums and
versions (``reconcile``: ``same``), unless they were edited centrally only (the engine
does not pull: then central holds the model's central edit, ``central_ahead``); invoices in conflict are
exactly those edited on both sides (a central edit, and a device change that had not
reached the central store before it), keep their central edit (never overwritten) and
keep every unapplied device change queued as ``conflict``.

The machine's findings are pinned as plain examples at the end of the file.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psycopg
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg import sql
from sqlalchemy.engine import make_url

import invoicekit as ik
from invoicekit.device import LocalStore
from invoicekit.sync import SyncEngine

MAX_INVOICES = 3
PRICES = ["10.00", "12.50", "0.99"]

SETTINGS = settings(
    max_examples=20,
    stateful_step_count=15,
    deadline=None,
    database=None,  # keep the repository free of .hypothesis/
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _with_search_path(url: str, schema: str) -> str:
    parsed = make_url(url)
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


class Crash(Exception):
    """Raised from ``on_batch_committed``: the drain dies after the central commit, before the ack."""


class SyncMachine(RuleBasedStateMachine):
    pg_base: str = ""  # set by the test: the session database's libpq URL

    def __init__(self) -> None:
        super().__init__()
        self.clean = True
        self.schema = f"sm_{uuid.uuid4().hex}"
        self.admin = psycopg.connect(self.pg_base, autocommit=True)
        self.admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
        self.url = _with_search_path(self.pg_base, self.schema)
        ik.init_db(self.url)
        self.pg = psycopg.connect(self.url, autocommit=True)
        self.dir = Path(tempfile.mkdtemp(prefix="ik_sm_"))
        self.path = self.dir / "device.sqlite"
        self.store = LocalStore(self.path)
        self.serial = 0
        # -- the model
        self.local: dict[str, dict] = {}
        self.queue: list[dict] = []
        self.ops: dict[str, dict] = {}  # every op the device ever created, by op id
        self.acked: set[str] = set()
        self.central: dict[str, dict] = {}
        self.central_edits: dict[str, set[int]] = {}
        self.ledger_at_first_central_edit: dict[str, set[str]] = {}
        self.ledger: dict[str, tuple[str, int]] = {}
        self.conflicted: set[str] = set()
        self.snapshots: list = []  # central sets read earlier (an analyst's stale copies)

    # -- plumbing ------------------------------------------------------------------------
    @contextmanager
    def step(self):
        """Run a rule/invariant body; remember a failure so teardown skips its final check."""
        try:
            yield
        except BaseException:
            self.clean = False
            raise

    def _sqlite(self, query: str, params=()) -> list[tuple]:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()

    def _record_device_write(self, invoice_id: str, kind: str) -> None:
        """After a LocalStore write: check the row, record it and its new queue op in the model."""
        row = self.store.get(invoice_id)
        qrow = self._sqlite("SELECT op_id, transaction_id, operation, payload, created_at, status FROM sync_queue "
                            "ORDER BY id DESC LIMIT 1")[0]
        op_id, tid, operation, payload, created_at, status = qrow
        assert (tid, operation, status) == (invoice_id, kind, "pending")
        assert op_id not in self.ops
        content = {"version": row["version"], "checksum": row["checksum"], "number": row["invoice_number"],
                   "deleted": row["deleted_at"] is not None}
        assert json.loads(payload)["version"] == content["version"]
        assert json.loads(payload)["checksum"] == content["checksum"]
        self.local[invoice_id] = content
        op = {"op_id": op_id, "invoice": invoice_id, "kind": kind, "status": "pending", **content,
              "requeue": (tid, operation, payload, created_at, op_id)}
        self.ops[op_id] = op
        self.queue.append(op)

    def _batches(self, batch_size: int) -> list[list[dict]]:
        """The engine's batching: unflagged queue ops oldest first, <= batch_size, one per invoice."""
        todo = [op for op in self.queue if op["status"] != "conflict"]
        batches = []
        while todo:
            batch, seen = [], set()
            for op in todo[:batch_size]:
                if op["invoice"] in seen:
                    break
                seen.add(op["invoice"])
                batch.append(op)
            batches.append(batch)
            todo = todo[len(batch):]
        return batches

    def _predict(self, op: dict) -> str:
        """Outcome of sending ``op`` now; applies it to the central model when synced."""
        if op["op_id"] in self.ledger:
            return "already_synced"
        inv = op["invoice"]
        if inv in self.conflicted:
            return "conflict"  # the central store moved under the device: nothing more of it goes in
        have = self.central[inv]["version"] if inv in self.central else 0
        if have != op["version"] - 1:
            self.conflicted.add(inv)
            return "conflict"
        self.central[inv] = {k: op[k] for k in ("version", "checksum", "number", "deleted")}
        self.ledger[op["op_id"]] = (inv, op["version"])
        return "synced"

    def _acknowledge(self, batch: list[dict], outcomes: dict[str, str]) -> None:
        for op in batch:
            if outcomes[op["op_id"]] in ("synced", "already_synced"):
                self.queue = [q for q in self.queue if q is not op]  # this row: a resent copy may remain
                self.acked.add(op["op_id"])
            else:
                op["status"] = "conflict"

    def _drain(self, batch_size: int, crash_after: int | None) -> None:
        """Drain (crashing after the ``crash_after``-th central commit) and check it against the model."""
        batches = self._batches(batch_size)
        frames = []

        def committed(frame):
            frames.append(frame)
            if len(frames) == crash_after:
                raise Crash

        engine = SyncEngine(self.path, self.url, batch_size=batch_size, max_retries=0, on_batch_committed=committed)
        # tests/test_engine.py's saboteur terminates every busy 'invoicekit-sync' backend on the server (any
        # database); a name of our own keeps a concurrently running session from dropping our connections
        engine.central.application_name = "invoicekit-statemachine"
        crashed = False
        try:
            result = engine.drain()
        except Crash:
            crashed = True
        assert crashed == (crash_after is not None), f"{len(frames)} batches committed, the model expects {batches}"
        assert len(frames) == (crash_after if crashed else len(batches)), \
            "engine batches differ from the model:\n" + ("(crashed)" if crashed else result.results.to_string())
        for n, (batch, frame) in enumerate(zip(batches, frames), start=1):
            assert list(frame["op_id"]) == [op["op_id"] for op in batch], f"batch {n} differs from the model"
            predicted = {op["op_id"]: self._predict(op) for op in batch}
            got = dict(zip(frame["op_id"], frame["outcome"]))
            assert got == predicted, f"batch {n}: engine {got} != model {predicted}"
            for outcome in got.values():
                event(f"outcome {outcome}")
            if not (crashed and n == len(frames)):
                self._acknowledge(batch, predicted)
        if not crashed:
            want = [op["op_id"] for b in batches for op in b]
            assert list(result.results["op_id"]) == want
            assert list(result.results["outcome"]) == [o for f in frames for o in f["outcome"]]

    # -- rules: the device -----------------------------------------------------------------
    def _create(self, qty: int, price: str) -> None:
        self.serial += 1
        inv = self.store.create(invoice_number=f"INV-{self.serial}", client={"name": "Ada"}, currency="EUR",
                                line_items=[{"description": "Work", "quantity": qty, "unit_price": price}])
        assert inv not in self.local
        self._record_device_write(inv, "insert")

    @initialize(n=st.integers(1, 2))
    def synced_invoices(self, n):
        """Start with invoices already on both sides, so that both can edit them from the first step."""
        with self.step():
            for _ in range(n):
                self._create(1, PRICES[0])
            self._drain(MAX_INVOICES, crash_after=None)

    @precondition(lambda self: len(self.local) < MAX_INVOICES)
    @rule(qty=st.integers(1, 9), price=st.sampled_from(PRICES))
    def create(self, qty, price):
        with self.step():
            self._create(qty, price)

    def _live_local(self) -> list[str]:
        return [i for i, c in self.local.items() if not c["deleted"]]  # creation order: ids are random

    @precondition(lambda self: any(not c["deleted"] for c in self.local.values()))
    @rule(data=st.data(), change=st.sampled_from(["number", "lines", "nothing", "delete"]), qty=st.integers(1, 9),
          price=st.sampled_from(PRICES))
    def edit_local(self, data, change, qty, price):
        with self.step():
            inv = data.draw(st.sampled_from(self._live_local()), label="invoice")
            before = self.local[inv]["version"]
            self.serial += 1
            if change == "number":
                version = self.store.update(inv, invoice_number=f"{self.local[inv]['number']}-d{self.serial}")
            elif change == "lines":
                version = self.store.update(
                    inv, line_items=[{"description": "Work", "quantity": qty, "unit_price": price}])
            elif change == "nothing":  # a save without changes still bumps the version and queues an update
                version = self.store.update(inv)
            else:
                version = self.store.delete(inv)
            assert version == before + 1
            self._record_device_write(inv, "delete" if change == "delete" else "update")

    # -- rules: the central application ----------------------------------------------------
    @precondition(lambda self: any(not c["deleted"] for c in self.central.values()))
    @rule(data=st.data())
    def edit_central(self, data):
        with self.step():
            inv = data.draw(st.sampled_from([i for i, c in self.central.items() if not c["deleted"]]),
                            label="invoice")
            cen = ik.read_central(self.url, where={"id": inv})
            assert len(cen.invoices) == 1
            self.snapshots.append(ik.read_central(self.url))
            edited = cen.invoices.copy()
            self.serial += 1
            edited["invoice_number"] = edited["invoice_number"] + f"-c{self.serial}"
            edited["version"] = edited["version"] + 1
            edited["checksum"] = ik.checksum(edited)
            ik.write_central(ik.InvoiceSet(edited, cen.lines), self.url)
            version = int(edited["version"].iloc[0])
            assert version == self.central[inv]["version"] + 1
            if inv not in self.central_edits:
                self.ledger_at_first_central_edit[inv] = {o for o, (i, _) in self.ledger.items() if i == inv}
            self.central_edits.setdefault(inv, set()).add(version)
            self.central[inv] = {"version": version, "checksum": edited["checksum"].iloc[0],
                                 "number": edited["invoice_number"].iloc[0], "deleted": False}

    @precondition(lambda self: bool(self.snapshots))
    @rule(data=st.data())
    def write_old_snapshot(self, data):
        """An analyst writes a central set read earlier: compare-and-set writes none of it."""
        with self.step():
            snapshot = data.draw(st.sampled_from(self.snapshots), label="snapshot")
            result = ik.write_central(snapshot, self.url)
            assert result.written == 0, result.results
            assert result.unchanged + len(result.refused) == len(snapshot)

    # -- rules: sync -----------------------------------------------------------------------
    @precondition(lambda self: any(op["status"] != "conflict" for op in self.queue))
    @rule(batch_size=st.integers(1, 4))
    def push(self, batch_size):
        with self.step():
            self._drain(batch_size, crash_after=None)

    @precondition(lambda self: any(op["status"] != "conflict" for op in self.queue))
    @rule(batch_size=st.integers(1, 3), data=st.data())
    def crash(self, batch_size, data):
        with self.step():
            crash_after = data.draw(st.integers(1, len(self._batches(batch_size))), label="crash after batch")
            self._drain(batch_size, crash_after=crash_after)

    @precondition(lambda self: any(o not in {q["op_id"] for q in self.queue} for o in self.acked))
    @rule(data=st.data())
    def redeliver(self, data):
        with self.step():
            queued = {q["op_id"] for q in self.queue}
            op_id = data.draw(st.sampled_from([o for o in self.ops if o in self.acked and o not in queued]), label="op")
            tid, operation, payload, created_at, _ = self.ops[op_id]["requeue"]
            conn = sqlite3.connect(self.path)
            try:
                with conn:
                    conn.execute("INSERT INTO sync_queue (transaction_id, operation, payload, retry_count, created_at, "
                                 "op_id) VALUES (?, ?, ?, 0, ?, ?)", (tid, operation, payload, created_at, op_id))
            finally:
                conn.close()
            op = self.ops[op_id]
            op["status"] = "pending"
            self.queue.append(op)

    @precondition(lambda self: any(op["status"] == "pending" for op in self.queue))
    @rule(data=st.data())
    def resend_queued(self, data):
        """The device queues a pending operation a second time (a resend after a lost
        acknowledgement): one op id on two queue rows, applied once, the repeat already_synced."""
        with self.step():
            op = data.draw(st.sampled_from([q for q in self.queue if q["status"] == "pending"]), label="op")
            tid, operation, payload, created_at, op_id = op["requeue"]
            conn = sqlite3.connect(self.path)
            try:
                with conn:
                    conn.execute("INSERT INTO sync_queue (transaction_id, operation, payload, retry_count, created_at, "
                                 "op_id) VALUES (?, ?, ?, 0, ?, ?)", (tid, operation, payload, created_at, op_id))
            finally:
                conn.close()
            self.queue.append(dict(op))  # a row of its own in the model, same op

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def ledger_and_audit_match_the_model(self):
        with self.step():
            ledger = {r[0]: (r[1], r[2]) for r in
                      self.pg.execute("SELECT op_id, invoice_id, new_version FROM invoicekit_ledger")}
            assert ledger == self.ledger, "ledger differs from the model"
            audit = self.pg.execute("SELECT op_id, invoice_id, kind, before_version, after_version "
                                    "FROM invoicekit_audit WHERE strategy IS DISTINCT FROM 'write_central' "
                                    "ORDER BY seq").fetchall()
            writes = self.pg.execute("SELECT invoice_id, after_version FROM invoicekit_audit "
                                     "WHERE strategy = 'write_central'").fetchall()
            assert sorted(writes) == sorted((i, v) for i, vs in self.central_edits.items() for v in vs), \
                "a central write without its audit row (or an audit row without a write)"
            ops = [r[0] for r in audit]
            assert len(ops) == len(set(ops)), "an operation was applied twice"
            assert set(ops) == set(self.ledger)
            for op_id, inv, kind, before, after in audit:
                assert (inv, after) == self.ledger[op_id]
                assert kind == self.ops[op_id]["kind"]
                assert before == (None if kind == "insert" else after - 1)
            for inv, c in self.central.items():
                pushed = [r[4] for r in audit if r[1] == inv]
                assert pushed == sorted(pushed), f"{inv}: audit versions out of order {pushed}"
                edits = self.central_edits.get(inv, set())
                assert not set(pushed) & edits
                assert sorted([*pushed, *edits]) == list(range(1, c["version"] + 1)), \
                    f"{inv}: versions {sorted([*pushed, *edits])} not contiguous up to {c['version']}"

    @invariant()
    def queue_matches_the_model(self):
        with self.step():
            rows = self._sqlite("SELECT op_id, status FROM sync_queue ORDER BY id")
            assert all(s in ("pending", "conflict") for _, s in rows), rows
            assert rows == [(op["op_id"], op["status"]) for op in self.queue]
            queued = {r[0] for r in rows}
            assert self.acked <= set(self.ledger)  # an acknowledged op is in the central ledger
            lost = set(self.ops) - queued - set(self.ledger)
            assert not lost, f"operations lost: {lost}"

    @invariant()
    def stores_match_the_model(self):
        with self.step():
            rows = self._sqlite("SELECT id, version, checksum, invoice_number, deleted_at FROM transactions")
            local = {r[0]: {"version": r[1], "checksum": r[2], "number": r[3], "deleted": r[4] is not None}
                     for r in rows}
            assert local == self.local
            central = {r[0]: {"version": r[1], "checksum": r[2], "number": r[3], "deleted": r[4]}
                       for r in self.pg.execute("SELECT id, version, checksum, invoice_number, deleted_at IS NOT NULL "
                                                "FROM invoices")}
            assert central == self.central

    # -- the end ---------------------------------------------------------------------------
    def converge(self):
        """Drain until only conflicts are queued; then check convergence."""
        for _ in range(3):
            if all(op["status"] == "conflict" for op in self.queue):
                break
            self._drain(4, crash_after=None)
        assert all(op["status"] == "conflict" for op in self.queue)
        self.ledger_and_audit_match_the_model()
        self.queue_matches_the_model()
        self.stores_match_the_model()
        # an independent statement of "edited on both sides": a central edit, and a device
        # change that had not reached the central store when the central edit happened
        both = {inv for inv, seen in self.ledger_at_first_central_edit.items()
                if any(op["invoice"] == inv and op_id not in seen for op_id, op in self.ops.items())}
        assert self.conflicted == both
        queued = self._sqlite("SELECT transaction_id, op_id, status FROM sync_queue")
        assert {r[0] for r in queued} == both and {r[2] for r in queued} <= {"conflict"}
        local, central = ik.read_local(self.path), ik.read_central(self.url)
        assert ik.verify(local.invoices).all() and ik.verify(central.invoices).all()
        lrow = local.invoices.set_index("id")
        crow = central.invoices.set_index("id")
        base = {r[0]: (r[1], r[2]) for r in self._sqlite("SELECT id, version, checksum FROM invoicekit_base")}
        status = dict(ik.reconcile(local, central).status[["id", "status"]].itertuples(index=False))
        for inv, m in self.local.items():
            synced_versions = [v for i, v in self.ledger.values() if i == inv]
            if inv in both:
                # never overwritten: central holds its own last edit, the device changes wait
                c = self.central[inv]
                assert int(crow.loc[inv, "version"]) == max(self.central_edits[inv]) == c["version"]
                assert crow.loc[inv, "checksum"] == c["checksum"]
                waiting = {o for o, op in self.ops.items() if op["invoice"] == inv and o not in self.ledger}
                assert waiting == {r[1] for r in queued if r[0] == inv}
                assert lrow.loc[inv, "sync_status"] == "conflict"
                assert status[inv] == "conflict"
                last = max(synced_versions, default=None)
                assert (base.get(inv) or (None,))[0] == last, f"{inv}: base {base.get(inv)} != last synced v{last}"
                continue
            # everything the device did went out; the base snapshot is its last synced version
            assert max(synced_versions) == m["version"] == int(lrow.loc[inv, "version"])
            assert lrow.loc[inv, "checksum"] == m["checksum"]
            assert pd.notna(lrow.loc[inv, "deleted_at"]) == m["deleted"]
            assert lrow.loc[inv, "sync_status"] == "synced"
            assert base[inv] == (m["version"], m["checksum"]), f"{inv}: base {base[inv]} != v{m['version']}"
            c = self.central[inv]
            assert int(crow.loc[inv, "version"]) == c["version"] and crow.loc[inv, "checksum"] == c["checksum"]
            assert pd.notna(crow.loc[inv, "deleted_at"]) == c["deleted"]
            if inv in self.central_edits:  # edited centrally only: the device has not pulled it (no pull here)
                assert c["version"] == max(self.central_edits[inv]) > m["version"]
                assert status[inv] == "central_ahead"
            else:
                assert c == m
                assert status[inv] == "same"
        assert set(crow.index) == set(self.local)

    def teardown(self):
        try:
            if self.clean:
                self.converge()
        finally:
            self.pg.close()
            self.admin.execute("SET lock_timeout = '10s'")
            self.admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(self.schema)))
            self.admin.close()
            shutil.rmtree(self.dir, ignore_errors=True)


def test_sync_state_machine_converges_to_the_model(pg_url):
    SyncMachine.pg_base = pg_url
    run_state_machine_as_test(SyncMachine, settings=SETTINGS)


# -- the machine's findings, pinned as plain examples ------------------------------------------
def _device(tmp_path: Path, url: str) -> tuple[LocalStore, str]:
    ik.init_db(url)
    store = LocalStore(tmp_path / "device.sqlite")
    inv = store.create(invoice_number="INV-1", client={"name": "Ada"}, currency="EUR",
                       line_items=[{"description": "Work", "quantity": 1, "unit_price": "10.00"}])
    return store, inv


def _drain(store: LocalStore, url: str) -> list[tuple[str, str]]:
    engine = SyncEngine(store.path, url)
    engine.central.application_name = "invoicekit-statemachine"
    return [tuple(r) for r in engine.drain().results[["operation", "outcome"]].itertuples(index=False)]


def _edit_central(url: str, number: str) -> None:
    cen = ik.read_central(url)
    edited = cen.invoices.copy()
    edited["version"] = edited["version"] + 1
    edited["invoice_number"] = number
    edited["checksum"] = ik.checksum(edited)
    ik.write_central(ik.InvoiceSet(edited, cen.lines), url)


def _first_op(store: LocalStore) -> list[tuple]:
    """The device's oldest queued operation, as ``_requeue`` re-inserts it."""
    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        return conn.execute("SELECT transaction_id, operation, payload, retry_count, created_at, op_id "
                            "FROM sync_queue ORDER BY id LIMIT 1").fetchall()


def _requeue(store: LocalStore, rows) -> None:
    conn = sqlite3.connect(store.path)
    try:
        with conn:
            conn.executemany("INSERT INTO sync_queue (transaction_id, operation, payload, retry_count, created_at, "
                             "op_id) VALUES (?, ?, ?, ?, ?, ?)", rows)
    finally:
        conn.close()


def test_a_change_after_a_refused_one_does_not_overwrite_the_central_edit(central_pg_url, tmp_path):
    store, inv = _device(tmp_path, central_pg_url)
    assert _drain(store, central_pg_url) == [("insert", "synced")]
    _edit_central(central_pg_url, "INV-1-central")  # central v2
    store.update(inv, invoice_number="INV-1-device-a")  # device v2, based on v1: refused
    store.update(inv, invoice_number="INV-1-device-b")  # device v3, based on the device's v2, not central's
    assert _drain(store, central_pg_url) == [("update", "conflict"), ("update", "conflict")]
    central = ik.read_central(central_pg_url).invoices
    assert list(central["invoice_number"]) == ["INV-1-central"] and list(central["version"]) == [2]
    assert list(store.queue()["status"]) == ["conflict", "conflict"]


def test_a_redelivered_operation_does_not_roll_back_the_base_snapshot(central_pg_url, tmp_path):
    store, inv = _device(tmp_path, central_pg_url)
    first = _first_op(store)
    store.update(inv, invoice_number="INV-1b")
    assert _drain(store, central_pg_url) == [("insert", "synced"), ("update", "synced")]
    _requeue(store, first)  # the device lost the acknowledgement of its insert and sends it again
    assert _drain(store, central_pg_url) == [("insert", "already_synced")]
    base = ik.read_local(store.path).base.invoices
    assert list(base["version"]) == [2] and list(base["invoice_number"]) == ["INV-1b"]
    _edit_central(central_pg_url, "INV-1-central")  # only the central side changed since the last sync
    status = ik.reconcile(ik.read_local(store.path), ik.read_central(central_pg_url)).status
    assert list(status["status"]) == ["central_ahead"]


def test_a_redelivered_operation_behind_a_newer_change_leaves_the_row_synced(central_pg_url, tmp_path):
    store, inv = _device(tmp_path, central_pg_url)
    first = _first_op(store)
    assert _drain(store, central_pg_url) == [("insert", "synced")]
    store.update(inv, invoice_number="INV-1b")
    _requeue(store, first)  # the lost acknowledgement's redelivery sits behind the newer change
    assert _drain(store, central_pg_url) == [("update", "synced"), ("insert", "already_synced")]
    assert len(store.queue()) == 0
    assert (store.get(inv)["version"], store.get(inv)["sync_status"]) == (2, "synced")
