"""A hypothesis state machine for the analyst's path: plans made, kept, and applied late.

The device (a real :class:`~invoicekit.device.LocalStore` file) and the central store (a real
embedded SQLite central store) are edited in any order; analysts make plans
(``reconcile`` -> ``resolve`` -> ``plan_sync``) and apply them whenever they like, the same
plan twice, or a plan made before later edits on either side (a *stale* plan); the device's
own ``SyncEngine`` drains the same file in between.

This machine keeps no model of what each step should write (the engine's machine in
``test_sync_statemachine.py`` does). It checks what must hold whatever the order:

* **a version names one content**: over the whole run, each (invoice, version) seen in a
  store always carries the same content there (checksum, tombstone, currency); so nothing
  was ever overwritten at the same version: no lost update from a stale plan (the two
  stores may differ at one version while both sides edited: that is a conflict);
* **versions never go down**, on either side, for any invoice;
* **the ledger applies each op id once** (no op id twice in the audit);
* **it converges**: at the end, syncing with ``prefer_local`` and draining leaves every
  invoice the device holds ``same`` (or ``central_only``), the queue empty.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import invoicekit as ik
from invoicekit.device import LocalStore
from invoicekit.sync import SyncEngine

STRATEGIES = ["three_way", "merge_fields", "prefer_local", "prefer_central", "last_write_wins"]


class ApplyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ik_apply_sm_"))
        self.path = self.dir / "device.sqlite"
        self.url = f"sqlite:///{self.dir / 'central.sqlite'}"
        ik.init_db(self.url)
        self.store = LocalStore(self.path)
        self.ids: list[str] = []
        self.plans: list = []
        self.serial = 0
        self.content: dict[tuple[str, str, int], tuple] = {}  # (side, id, version) -> content, over the run
        self.high: dict[tuple[str, str], int] = {}  # (side, id) -> highest version seen

    # -- helpers -------------------------------------------------------------------------
    def _sides(self) -> dict[str, pd.DataFrame]:
        return {"local": ik.read_local(self.path, lines=False).invoices,
                "central": ik.read_central(self.url, lines=False).invoices}

    def _live(self, side: str) -> list[str]:
        inv = self._sides()[side]
        return sorted(inv.loc[inv["deleted_at"].isna(), "id"].astype(str))

    # -- rules -----------------------------------------------------------------------------
    @initialize(n=st.integers(1, 3))
    def invoices_on_both_sides(self, n):
        for _ in range(n):
            self.serial += 1
            self.ids.append(self.store.create(
                invoice_number=f"INV-{self.serial}", client={"name": "Ada"}, currency="EUR",
                line_items=[{"description": "Work", "quantity": 1, "unit_price": "10.00"}]))
        SyncEngine(self.path, self.url).drain()

    @rule(data=st.data(), change=st.sampled_from(["number", "lines", "delete"]), qty=st.integers(1, 5))
    def edit_device(self, data, change, qty):
        live = self._live("local")
        if not live:
            return
        inv = data.draw(st.sampled_from(live), label="device invoice")
        self.serial += 1
        if change == "number":
            self.store.update(inv, invoice_number=f"D-{self.serial}")
        elif change == "lines":
            self.store.update(inv, line_items=[{"description": "Work", "quantity": qty, "unit_price": "10.00"}])
        else:
            self.store.delete(inv)

    @rule(data=st.data())
    def edit_central(self, data):
        live = self._live("central")
        if not live:
            return
        inv = data.draw(st.sampled_from(live), label="central invoice")
        cen = ik.read_central(self.url, where={"id": inv})
        edited = cen.invoices.copy()
        self.serial += 1
        edited["invoice_number"] = f"C-{self.serial}"
        edited["version"] = edited["version"] + 1
        edited["checksum"] = ik.checksum(edited)
        assert ik.write_central(ik.InvoiceSet(edited, cen.lines), self.url).written == 1

    @rule(strategy=st.sampled_from(STRATEGIES))
    def make_plan(self, strategy):
        rec = ik.reconcile(ik.read_local(self.path), ik.read_central(self.url))
        res = ik.resolve(rec, strategy=strategy)
        self.plans.append(ik.plan_sync(res))

    @precondition(lambda self: bool(self.plans))
    @rule(data=st.data())
    def apply_a_plan(self, data):
        """Any plan made so far: the latest, a stale one, or one applied before."""
        plan = data.draw(st.sampled_from(self.plans), label="plan")
        ik.apply_sync(plan, local=self.path, central=self.url, actor="statemachine", batch_rows=2)

    @rule(batch_size=st.integers(1, 3))
    def drain(self, batch_size):
        SyncEngine(self.path, self.url, batch_size=batch_size, max_retries=0).drain()

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def a_version_names_one_content_and_versions_never_go_down(self):
        for side, inv in self._sides().items():
            for row in inv[["id", "version", "checksum", "deleted_at", "currency"]].itertuples(index=False):
                key = (str(row.id), int(row.version))
                content = (row.checksum, pd.notna(row.deleted_at), row.currency)
                seen = self.content.setdefault((side, *key), content)
                assert seen == content, f"{side}: {key} held {seen}, now {content}"
                high = self.high.get((side, key[0]), 0)
                assert key[1] >= high, f"{side}: {key[0]} went from v{high} down to v{key[1]}"
                self.high[(side, key[0])] = key[1]

    @invariant()
    def each_op_applied_once(self):
        conn = sqlite3.connect(self.url.removeprefix("sqlite:///"))
        try:
            repeated = conn.execute("SELECT op_id, count(*) FROM invoicekit_audit WHERE op_id IS NOT NULL "
                                    "GROUP BY op_id HAVING count(*) > 1").fetchall()
        finally:
            conn.close()
        assert not repeated

    def teardown(self):
        try:
            for _ in range(3):  # the device's queue, then the analyst settles what is left
                SyncEngine(self.path, self.url).drain()
                rec = ik.reconcile(ik.read_local(self.path), ik.read_central(self.url))
                ik.apply_sync(ik.plan_sync(ik.resolve(rec, strategy="prefer_local")), local=self.path,
                              central=self.url)
            self.a_version_names_one_content_and_versions_never_go_down()
            status = ik.reconcile(ik.read_local(self.path), ik.read_central(self.url)).counts()
            assert {k for k, v in status.items() if v} <= {"same", "central_only"}, status
            conn = sqlite3.connect(self.path)
            try:
                assert conn.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0
            finally:
                conn.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


ApplyMachine.TestCase.settings = settings(
    max_examples=12, stateful_step_count=10, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_stale_plans_never_lose_an_update_and_converge = ApplyMachine.TestCase


def _synced_then_renamed_centrally(central_pg_url, tmp_path):
    """One invoice made on a device and synced (v1), then renamed "C-1" centrally (v2)."""
    ik.init_db(central_pg_url)
    path = tmp_path / "device.sqlite"
    store = ik.LocalStore(path)
    inv = store.create(invoice_number="N-1", currency="EUR", client={"name": "A"},
                       line_items=[{"description": "Work", "quantity": 1, "unit_price": "5.00"}])
    SyncEngine(path, central_pg_url).drain()
    cen = ik.read_central(central_pg_url)
    edited = cen.invoices.copy()
    edited["invoice_number"] = "C-1"
    edited["version"] = edited["version"] + 1
    edited["checksum"] = ik.checksum(edited)
    ik.write_central(ik.InvoiceSet(edited, cen.lines), central_pg_url)
    return path, store, inv


def test_a_pull_never_lowers_the_device_version(central_pg_url, tmp_path):
    path, store, inv = _synced_then_renamed_centrally(central_pg_url, tmp_path)
    store.update(inv, invoice_number="D-1")
    store.update(inv, invoice_number="D-2")
    SyncEngine(path, central_pg_url, max_retries=0).drain()
    rec = ik.reconcile(ik.read_local(path), ik.read_central(central_pg_url))
    ik.apply_sync(ik.plan_sync(ik.resolve(rec, strategy="prefer_central")), local=path, central=central_pg_url)
    # central's content, one version past both sides, on both sides at once (found by the state
    # machine in session 11: the pull used to write central's v2 over the device's v3)
    device, cen = store.get(inv), ik.read_central(central_pg_url).invoices.iloc[0]
    assert device["invoice_number"] == cen["invoice_number"] == "C-1"
    assert device["version"] == int(cen["version"]) == 4
    again = ik.reconcile(ik.read_local(path), ik.read_central(central_pg_url))
    assert again.status["status"].tolist() == ["same"]


def test_central_content_over_an_equal_version_gets_a_new_version(central_pg_url, tmp_path):
    """A conflict at the same version on both sides, decided for central: the device must not
    hold central's content under the version that named its own."""
    path, store, inv = _synced_then_renamed_centrally(central_pg_url, tmp_path)
    store.update(inv, invoice_number="D-1")
    before = ik.read_local(path).invoices.iloc[0]
    rec = ik.reconcile(ik.read_local(path), ik.read_central(central_pg_url))
    assert rec.status["status"].tolist() == ["conflict"] and int(before["version"]) == 2
    res = ik.resolve(rec, decisions=pd.DataFrame({"id": [inv], "field": ["*"], "choice": ["central"]}))
    out = ik.apply_sync(ik.plan_sync(res), local=path, central=central_pg_url)
    assert set(out.results["central"]) == {"applied"} and set(out.results["local"]) == {"applied"}
    device, cen = store.get(inv), ik.read_central(central_pg_url).invoices.iloc[0]
    assert device["invoice_number"] == cen["invoice_number"] == "C-1"
    assert device["version"] == int(cen["version"]) == 3
