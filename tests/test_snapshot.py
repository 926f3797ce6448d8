"""read_central(url, snapshot=PATH): incremental snapshots (invoicekit/io/snapshot.py).

Everything runs against real PostgreSQL (a fresh schema per test) or a real SQLite file;
nothing is mocked. The central invariant, checked by a hypothesis state machine: after any
sequence of central writes (write_central of new, edited, tombstoned and undeleted invoices,
device pushes through the SyncEngine, hard deletes by an administrator) with snapshot reads
interleaved, and with an older snapshot file put back over a newer one (two analysts racing
on one file), ``read_central(url, snapshot=p)`` equals ``read_central(url)``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import invoicekit as ik
from invoicekit.io.central import SCHEMA_VERSION
from invoicekit.device import LocalStore
from invoicekit.errors import StoreSchemaError, UsageError
from invoicekit.io.backends import CentralStore
from invoicekit.io.snapshot import FORMAT_VERSION, snapshot_info
from invoicekit.samples import make_invoices
from invoicekit.sync import SyncEngine
from tests.conftest import with_search_path

LOGGER = "invoicekit.io.snapshot"


def assert_same(a: ik.InvoiceSet, b: ik.InvoiceSet) -> None:
    """Same invoices (every column but the row's source position), lines and problems."""
    cols = [c for c in a.invoices.columns if c != "source_row"]
    pd.testing.assert_frame_equal(a.invoices[cols].sort_values("id").reset_index(drop=True),
                                  b.invoices[cols].sort_values("id").reset_index(drop=True))
    pd.testing.assert_frame_equal(a.lines.sort_values(["invoice_id", "line_no"]).reset_index(drop=True),
                                  b.lines.sort_values(["invoice_id", "line_no"]).reset_index(drop=True))
    pcols = [c for c in a.problems.columns if c != "source_row"]
    pd.testing.assert_frame_equal(a.problems[pcols].sort_values(["id", "field"]).reset_index(drop=True),
                                  b.problems[pcols].sort_values(["id", "field"]).reset_index(drop=True))


def edited(url: str, ids: list[str], *, tag: str, delete: bool = False, undelete: bool = False) -> ik.InvoiceSet:
    """The central invoices ``ids`` one version up: a new number, or tombstoned, or revived."""
    cen = ik.read_central(url, ids=ids)
    inv = cen.invoices.copy()
    inv["version"] = inv["version"] + 1
    inv["invoice_number"] = inv["invoice_number"] + f"-{tag}"
    if delete:
        inv["deleted_at"] = pd.Series([datetime.now(timezone.utc)] * len(inv), dtype=inv["deleted_at"].dtype)
    if undelete:
        inv["deleted_at"] = pd.Series([None] * len(inv), dtype=inv["deleted_at"].dtype)
    inv["checksum"] = ik.checksum(inv)
    return ik.InvoiceSet(inv, cen.lines)


def hard_delete(url: str, ids: list[str]) -> None:
    """What an administrator bypassing the no-delete rule does (the owner disables the trigger)."""
    with CentralStore(url).pg() as conn:
        conn.execute("ALTER TABLE invoices DISABLE TRIGGER invoicekit_invoices_no_delete")
        conn.execute("DELETE FROM invoicekit_kept WHERE invoice_id = ANY(%s)", (ids,))  # lines kept as stored
        conn.execute("DELETE FROM invoices WHERE id = ANY(%s)", (ids,))
        conn.execute("ALTER TABLE invoices ENABLE TRIGGER invoicekit_invoices_no_delete")


def infos(caplog) -> list:
    return [r.snapshot for r in caplog.records if r.name == LOGGER and hasattr(r, "snapshot")]


# -- the invariant: a snapshot read equals a full read ----------------------------------------
class SnapshotMachine(RuleBasedStateMachine):
    """Central writes of every kind, snapshot reads in between, older files put back. Each
    example gets a fresh PostgreSQL schema of the session database (dropped in teardown)."""

    pg_url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.schema = f"sm_{uuid.uuid4().hex}"
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')
        self.url = with_search_path(self.pg_url, self.schema)
        ik.init_db(self.url)
        self.dir = Path(tempfile.mkdtemp(prefix="ik_snap_sm_"))
        self.path = self.dir / "central.arrow"
        self.saved: list[Path] = []
        self.device = LocalStore(self.dir / "device.sqlite")
        self.device_ids: list[str] = []
        self.serial = 0

    def teardown(self) -> None:
        try:
            assert_same(ik.read_central(self.url, snapshot=self.path), ik.read_central(self.url))
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            with psycopg.connect(self.pg_url, autocommit=True) as conn:
                conn.execute("SET lock_timeout = '10s'")
                conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')

    def _ids(self, *, deleted: bool) -> list[str]:
        inv = ik.read_central(self.url, lines=False).invoices
        return sorted(inv.loc[inv["deleted_at"].notna() == deleted, "id"].tolist())

    @initialize(n=st.integers(0, 4), seed=st.integers(0, 10**6))
    def start(self, n, seed):
        if n:
            ik.write_central(make_invoices(n, seed=seed), self.url)
        ik.read_central(self.url, snapshot=self.path)

    @rule(n=st.integers(1, 4), seed=st.integers(0, 10**6))
    def write_new(self, n, seed):
        ik.write_central(make_invoices(n, seed=seed), self.url)

    @rule(data=st.data(), change=st.sampled_from(["edit", "delete"]))
    def write_existing(self, data, change):
        live = self._ids(deleted=False)
        if not live:
            return
        ids = data.draw(st.lists(st.sampled_from(live), min_size=1, max_size=3, unique=True), label="ids")
        self.serial += 1
        ik.write_central(edited(self.url, ids, tag=f"e{self.serial}", delete=change == "delete"), self.url)

    @rule(data=st.data())
    def undelete(self, data):
        dead = self._ids(deleted=True)
        if not dead:
            return
        inv = data.draw(st.sampled_from(dead), label="id")
        self.serial += 1
        ik.write_central(edited(self.url, [inv], tag=f"u{self.serial}", undelete=True), self.url,
                         undelete=frozenset({inv}))

    @rule(qty=st.integers(1, 5), edit=st.booleans())
    def device_push(self, qty, edit):
        """A device creates (or edits, or deletes) an invoice and pushes it (SyncEngine -> apply_batch)."""
        self.serial += 1
        if edit and self.device_ids:
            inv = self.device_ids[self.serial % len(self.device_ids)]
            try:
                self.device.update(inv, invoice_number=f"DEV-{self.serial}")
            except ik.errors.InvoicekitError:  # deleted on the device meanwhile
                return
        else:
            inv = self.device.create(invoice_number=f"DEV-{self.serial}", client={"name": "Ada"}, currency="EUR",
                                     line_items=[{"description": "Work", "quantity": qty, "unit_price": "12.50"}])
            self.device_ids.append(inv)
        SyncEngine(self.device.path, self.url).drain()

    @rule(data=st.data())
    def admin_hard_delete(self, data):
        ids = self._ids(deleted=True) + self._ids(deleted=False)
        if ids:
            hard_delete(self.url, [data.draw(st.sampled_from(ids), label="id")])

    @rule()
    def snapshot_read(self):
        assert_same(ik.read_central(self.url, snapshot=self.path), ik.read_central(self.url))

    @rule()
    def save_files(self):
        """Another analyst's process holds these files (it will rename them over the path later)."""
        for suffix in ("", ".delta"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                copy = self.dir / f"saved-{len(self.saved)}{suffix or '.base'}"
                shutil.copyfile(src, copy)
                self.saved.append(copy)

    @precondition(lambda self: bool(self.saved))
    @rule(data=st.data())
    def older_file_wins(self, data):
        """The slower of two refreshes renames its (older, complete) base or delta over the newer one."""
        old = data.draw(st.sampled_from(self.saved), label="older")
        os.replace(old, f"{self.path}{'.delta' if old.suffix == '.delta' else ''}")
        self.saved = [p for p in self.saved if p.exists()]

    @invariant()
    def file_is_complete(self):
        if self.path.exists():
            info = snapshot_info(self.path)
            assert info.rows >= 0 and info.schema_version == ik.io.central.SCHEMA_VERSION


def test_snapshot_read_equals_full_read_after_any_writes(pg_url):
    SnapshotMachine.pg_url = pg_url
    run_state_machine_as_test(SnapshotMachine, settings=settings(
        max_examples=8, stateful_step_count=10, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


# -- the delta moves only the changed rows -------------------------------------------------------
@pytest.fixture(params=["postgresql", "sqlite"])
def central(request, tmp_path):
    url = (request.getfixturevalue("central_pg_url") if request.param == "postgresql"
           else f"sqlite:///{tmp_path / 'central.sqlite'}")
    ik.init_db(url)
    ik.write_central(make_invoices(200, seed=11), url)
    return url


def test_refresh_fetches_only_the_changed_rows(central, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    path = tmp_path / "snap" / "central.arrow"  # the directory is made
    first = ik.read_central(central, snapshot=path)
    assert_same(first, ik.read_central(central))
    ids = sorted(first.invoices.loc[first.invoices["deleted_at"].isna(), "id"])[:5]
    ik.write_central(edited(central, ids[:3], tag="x"), central)
    ik.write_central(edited(central, ids[3:], tag="y", delete=True), central)
    ik.write_central(make_invoices(2, seed=99), central)
    again = ik.read_central(central, snapshot=path)
    assert_same(again, ik.read_central(central))
    built, refreshed = infos(caplog)
    assert (built.mode, built.fetched, built.rows) == ("built", 200, 200)
    assert (refreshed.mode, refreshed.fetched, refreshed.removed, refreshed.rows) == ("refreshed", 7, 5, 202)
    assert snapshot_info(path).fetched == 7
    caplog.clear()
    third = ik.read_central(central, snapshot=path)
    assert_same(third, again)
    assert [(i.mode, i.fetched) for i in infos(caplog)] == [("unchanged", 0)]
    assert list(third.invoices["source_row"]) == list(range(1, 203))
    assert set(third.invoices["source"]) == {CentralStore(central).display}


def test_lines_false_and_deferred_lines(central, tmp_path):
    path = tmp_path / "central.arrow"
    ik.read_central(central, snapshot=path)
    snap = ik.read_central(central, snapshot=path, lines=False)
    full = ik.read_central(central, lines=False)
    assert snap.lines.empty and full.lines.empty
    assert_same(snap, full)
    deferred = ik.read_central(central, snapshot=path)
    assert deferred.lines_deferred
    assert len(deferred.lines) == len(ik.read_central(central).lines)


def test_hard_deleted_invoices_leave_the_copy(central_pg_url, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    ik.init_db(central_pg_url)
    ik.write_central(make_invoices(30, seed=3), central_pg_url)
    path = tmp_path / "c.arrow"
    before = ik.read_central(central_pg_url, snapshot=path)
    gone = sorted(before.invoices["id"])[:2]
    hard_delete(central_pg_url, gone)
    after = ik.read_central(central_pg_url, snapshot=path)
    assert not set(gone) & set(after.invoices["id"]) and len(after) == 28
    assert_same(after, ik.read_central(central_pg_url))
    info = infos(caplog)[-1]
    assert (info.mode, info.fetched, info.removed, info.gone) == ("refreshed", 0, 2, 2)


@pytest.mark.parametrize("when", ["build", "refresh"])
def test_a_write_between_marker_and_read_is_caught_next_time(central, tmp_path, monkeypatch, when):
    """A write committed after the marker was taken and before the rows were read (another
    connection, really committed) is in the copy or fetched by the next call, never lost."""
    path = tmp_path / "c.arrow"
    if when == "refresh":
        ik.read_central(central, snapshot=path)
        ik.write_central(edited(central, sorted(ik.read_central(central).invoices["id"])[:2], tag="r"), central)
    store_cls = type(CentralStore(central))
    original = store_cls.read_session
    done = []

    def session_that_writes_before_reading(self):
        session = original(self)
        read = session.read

        def read_after_a_write(clause, params, **kw):
            if not done:
                done.append(1)
                ids = sorted(ik.read_central(central, lines=False).invoices["id"])[-3:]
                ik.write_central(edited(central, ids, tag="w"), central)
                ik.write_central(make_invoices(2, seed=777), central)
            return read(clause, params, **kw)

        session.read = read_after_a_write
        return session

    monkeypatch.setattr(store_cls, "read_session", session_that_writes_before_reading)
    ik.read_central(central, snapshot=path)
    monkeypatch.setattr(store_cls, "read_session", original)
    assert done
    assert_same(ik.read_central(central, snapshot=path), ik.read_central(central))


# -- files that must not be used -----------------------------------------------------------------
def _rewrite_meta(path: Path, **changes) -> None:
    """The same file with some of its snapshot metadata changed (an older format or schema)."""
    with pa.OSFile(str(path), "rb") as src:
        table = pa.ipc.open_file(src).read_all()
    meta = json.loads(table.schema.metadata[b"invoicekit.snapshot"])
    meta.update(changes)
    table = table.replace_schema_metadata({b"invoicekit.snapshot": json.dumps(meta).encode()})
    tmp = path.with_suffix(".new")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    os.replace(tmp, path)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    tmp = path.with_suffix(".new")
    tmp.write_bytes(data[: len(data) * 2 // 3])
    os.replace(tmp, path)  # never in place: a process may hold the old file


@pytest.mark.parametrize("damage, reason", [
    ("truncate", "cannot be read"),
    ("garbage", "cannot be read"),
    ("format", "format version"),
    ("schema", "schema version"),
    ("rows", "rows, its metadata says"),
    ("foreign", "another central store"),
    ("marker_ahead", "marker ahead"),
])
def test_bad_files_are_rebuilt_never_used(central_pg_url, pg_url, tmp_path, caplog, damage, reason):
    ik.init_db(central_pg_url)
    ik.write_central(make_invoices(40, seed=5), central_pg_url)
    path = tmp_path / "central.arrow"
    ik.read_central(central_pg_url, snapshot=path)
    ik.write_central(edited(central_pg_url, sorted(ik.read_central(central_pg_url).invoices["id"])[:4], tag="z"),
                     central_pg_url)
    if damage == "truncate":
        _truncate(path)
    elif damage == "garbage":
        path.with_suffix(".new").write_bytes(b"not an arrow file at all" * 100)
        os.replace(path.with_suffix(".new"), path)
    elif damage == "format":
        _rewrite_meta(path, format=FORMAT_VERSION - 1)
    elif damage == "schema":
        _rewrite_meta(path, schema_version=9)
    elif damage == "rows":
        _rewrite_meta(path, rows=39)
    elif damage == "marker_ahead":
        _rewrite_meta(path, marker="999999999:999999999:")
    else:  # a snapshot of another central store (same shape, other rows) at this path
        other = f"{central_pg_url.split('?')[0]}?options=-csearch_path%3Dother_{uuid.uuid4().hex}"
        schema = other.rsplit("%3D", 1)[1]
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            ik.init_db(other)
            ik.write_central(make_invoices(40, seed=6), other)
            path.unlink()
            ik.read_central(other, snapshot=path)
        finally:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    caplog.set_level(logging.INFO, logger=LOGGER)
    got = ik.read_central(central_pg_url, snapshot=path)
    assert_same(got, ik.read_central(central_pg_url))
    warned = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warned) == 1 and reason in warned[0].getMessage()
    info = infos(caplog)[-1]
    assert (info.mode, info.fetched, info.rows) == ("built", 40, 40) and reason in info.reason
    assert snapshot_info(path).mode == "built"  # the file was replaced by a good one
    assert_same(ik.read_central(central_pg_url, snapshot=path), got)


def test_a_bad_delta_is_ignored_never_used(central_pg_url, tmp_path, caplog):
    ik.init_db(central_pg_url)
    ik.write_central(make_invoices(100, seed=5), central_pg_url)
    path = tmp_path / "central.arrow"
    ik.read_central(central_pg_url, snapshot=path)
    ids = sorted(ik.read_central(central_pg_url).invoices["id"])
    ik.write_central(edited(central_pg_url, ids[:3], tag="a"), central_pg_url)
    ik.read_central(central_pg_url, snapshot=path)  # a delta of 3 rows
    ik.write_central(edited(central_pg_url, ids[3:5], tag="b"), central_pg_url)
    _truncate(Path(f"{path}.delta"))
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert_same(ik.read_central(central_pg_url, snapshot=path), ik.read_central(central_pg_url))
    warned = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warned) == 1 and "ignored" in warned[0]
    info = infos(caplog)[-1]
    assert (info.mode, info.fetched, info.delta_rows) == ("refreshed", 5, 5)  # from the base's marker


def test_a_large_delta_is_merged_into_a_new_base(central_pg_url, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    ik.init_db(central_pg_url)
    ik.write_central(make_invoices(100, seed=5), central_pg_url)
    path = tmp_path / "central.arrow"
    ik.read_central(central_pg_url, snapshot=path)
    ids = sorted(ik.read_central(central_pg_url).invoices["id"])
    ik.write_central(edited(central_pg_url, ids[:2], tag="a"), central_pg_url)
    ik.read_central(central_pg_url, snapshot=path)
    assert Path(f"{path}.delta").exists() and infos(caplog)[-1].delta_rows == 2
    ik.write_central(edited(central_pg_url, ids[2:9], tag="b"), central_pg_url)
    got = ik.read_central(central_pg_url, snapshot=path)
    assert (infos(caplog)[-1].fetched, infos(caplog)[-1].delta_rows) == (7, 0)
    assert not Path(f"{path}.delta").exists()
    assert_same(got, ik.read_central(central_pg_url))
    assert_same(ik.read_central(central_pg_url, snapshot=path), got)
    assert infos(caplog)[-1].mode == "unchanged"


def test_upgrade_marks_existing_invoices(central_pg_url, tmp_path):
    """A store written before schema version 10 gets the marker for every invoice it holds."""
    ik.init_db(central_pg_url)
    ik.write_central(make_invoices(25, seed=8), central_pg_url)
    with CentralStore(central_pg_url).pg() as conn:  # back to version 9, rows kept
        for t in ("insert", "update", "delete"):
            conn.execute(f"DROP TRIGGER invoicekit_mark_{t} ON invoices")
        conn.execute("DROP TABLE invoicekit_changes, invoicekit_store")
        conn.execute("DELETE FROM invoicekit_schema WHERE version = 10")
    with pytest.raises(StoreSchemaError, match="init"):
        ik.read_central(central_pg_url, snapshot=tmp_path / "c.arrow")
    assert ik.init_db(central_pg_url) == SCHEMA_VERSION
    with CentralStore(central_pg_url).pg() as conn:
        assert conn.execute("SELECT count(*) FROM invoicekit_changes").fetchone()[0] == 25
    path = tmp_path / "c.arrow"
    ik.read_central(central_pg_url, snapshot=path)
    ik.write_central(edited(central_pg_url, sorted(ik.read_central(central_pg_url).invoices["id"])[:3], tag="u"),
                     central_pg_url)
    assert_same(ik.read_central(central_pg_url, snapshot=path), ik.read_central(central_pg_url))
    assert snapshot_info(path).fetched == 3


# -- several processes, one file -----------------------------------------------------------------
def _reader(url: str, path: str, rounds: int, queue) -> None:
    try:
        for _ in range(rounds):
            s = ik.read_central(url, snapshot=path)
            inv = s.invoices
            assert inv["id"].is_unique and len(inv) >= 60, "torn or partial snapshot"
            assert ik.verify(inv).all(), "a row does not match its checksum"
        queue.put(("ok", rounds))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def test_two_processes_share_one_snapshot_file(central_pg_url, tmp_path):
    ik.init_db(central_pg_url)
    ik.write_central(make_invoices(60, seed=21), central_pg_url)
    path = str(tmp_path / "shared.arrow")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_reader, args=(central_pg_url, path, 12, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        for k in range(8):  # writes while the two refresh the same file
            ids = sorted(ik.read_central(central_pg_url, lines=False).invoices["id"])[k * 3:(k + 1) * 3]
            ik.write_central(edited(central_pg_url, ids, tag=f"p{k}"), central_pg_url)
            ik.write_central(make_invoices(1, seed=100 + k), central_pg_url)
        results = [queue.get(timeout=240) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert results == [("ok", 12), ("ok", 12)], results
    assert_same(ik.read_central(central_pg_url, snapshot=path), ik.read_central(central_pg_url))
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]  # no temporary file left behind


# -- encryption at rest ---------------------------------------------------------------------------
def test_snapshot_keeps_encrypted_fields_sealed(central_pg_url, tmp_path, monkeypatch):
    from invoicekit.security import generate_key

    monkeypatch.setenv("INVOICEKIT_KEYS", generate_key())
    ik.init_db(central_pg_url)
    s = make_invoices(20, seed=4)
    ik.write_central(s, central_pg_url)
    path = tmp_path / "c.arrow"
    snap = ik.read_central(central_pg_url, snapshot=path)
    assert_same(snap, ik.read_central(central_pg_url))
    raw = path.read_bytes()
    emails = [e for e in s.invoices["client_email"].dropna() if e]
    assert emails and not any(e.encode() in raw for e in emails)
    assert snap.invoices["client_email"].tolist() == ik.read_central(central_pg_url).invoices.set_index("id").loc[
        snap.invoices["id"], "client_email"].tolist()


# -- usage ------------------------------------------------------------------------------------------
def test_snapshot_usage_errors(central, tmp_path):
    with pytest.raises(UsageError, match="where="):
        ik.read_central(central, snapshot=tmp_path / "a.arrow", where={"currency": "EUR"})
    with pytest.raises(UsageError, match="ids="):
        ik.read_central(central, snapshot=tmp_path / "a.arrow", ids=["x"])
    with pytest.raises(UsageError, match="file path"):
        ik.read_central(central, snapshot=42)
    with pytest.raises(UsageError, match="is a directory"):
        ik.read_central(central, snapshot=tmp_path)
    with pytest.raises(UsageError, match="not a readable"):
        snapshot_info(tmp_path / "missing.arrow")
    info = (ik.read_central(central, snapshot=tmp_path / "a.arrow"), snapshot_info(tmp_path / "a.arrow"))[1]
    assert "<b>Snapshot</b>" in info._repr_html_() and info.rows == 200


def test_unwritable_snapshot_place_still_returns_the_data(central, tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the snapshot's directory would be")
    got = ik.read_central(central, snapshot=blocker / "c.arrow")
    assert_same(got, ik.read_central(central))
    assert any("could not be saved" in r.getMessage() for r in caplog.records if r.name == LOGGER)


def test_a_copy_without_load_problems_costs_no_room_per_record_batch(tmp_path):
    """The file of a store whose rows have no load problems is about the size of the rows:
    the empty problem lists hold no child data, which a file written in record batches would
    otherwise repeat in every batch (half of a million-invoice file, before)."""
    from invoicekit.io import snapshot as snap

    rows = ik.read_central(_filled_sqlite(tmp_path, 400), lines=False)
    table = snap._copy_table(rows)
    assert table.column("ik_problems").null_count == table.num_rows
    batches = pa.Table.from_batches([b for b in table.to_batches(max_chunksize=20)])  # 20 record batches
    path = str(tmp_path / "c.arrow")
    assert snap._save(path, batches, {"format": snap.FORMAT_VERSION, "rows": batches.num_rows})
    data = sum(buf.size for col in table.columns for chunk in col.chunks for buf in chunk.buffers() if buf)
    assert os.path.getsize(path) < 1.3 * data + 64 * 1024


def _filled_sqlite(tmp_path: Path, n: int) -> str:
    url = f"sqlite:///{tmp_path / 'filled.sqlite'}"
    ik.init_db(url)
    ik.write_central(make_invoices(n, seed=5), url)
    return url
