"""ConnectionMonitor against real services (a throwaway redis-server and PostgreSQL the tests
stop and restart, an http.server, SQLite files), and the SyncEngine waiting on it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest

import invoicekit as ik
from invoicekit.monitor import ConnectionChange, MonitorStatus
from invoicekit.sync import SyncEngine
from tests.conftest import _as_postgres, _pg_bindir, free_port, pg_error, throwaway_postgres, throwaway_redis
from tests.test_engine import assert_converged, busy_store, queue_op_ids

INTERVAL, TIMEOUT = 0.2, 0.5
#: how long a change may take to be seen (a round every INTERVAL, each probe within TIMEOUT;
#: PostgreSQL's connect timeout is 2 s at least), generously: no timing is asserted tighter
SEEN_WITHIN = 15.0
PASSWORD = "s3cret-Pw"


def wait_for(predicate: Callable[[], object], what: str, within: float = SEEN_WITHIN) -> float:
    """Poll ``predicate`` until true; the seconds it took (fails after ``within``)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def monitor_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("invoicekit-monitor", "invoicekit-sync"))]


class Recorder:
    """A sync and an async callback recording (service, previous, online) per change."""

    def __init__(self) -> None:
        self.sync: list[tuple] = []
        self.async_: list[tuple] = []
        self.loops: set[int] = set()

    def __call__(self, change: ConnectionChange) -> None:
        self.sync.append((change.service, change.previous, change.online))

    async def coroutine(self, change: ConnectionChange) -> None:
        await asyncio.sleep(0)
        self.loops.add(id(asyncio.get_running_loop()))
        self.async_.append((change.service, change.previous, change.online))


# -- servers the tests stop and start ---------------------------------------------------------
class PgCluster:
    """A throwaway PostgreSQL whose server the test stops and starts again (same data)."""

    def __init__(self, url: str, data_dir: str) -> None:
        self.url, self.data_dir = url, data_dir

    def _pg_ctl(self, *args: str) -> None:
        log = str(Path(self.data_dir).parent / "server.log")  # the server must not hold our pipes open
        subprocess.run(_as_postgres([str(_pg_bindir() / "pg_ctl"), *args, "-w", "-D", self.data_dir, "-l", log]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=True)

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "fast")  # "immediate" would lose commits: the cluster runs with fsync off

    def start(self) -> None:
        self._pg_ctl("start")

    def ensure_running(self) -> None:
        if pg_error(self.url) is not None:
            self.start()


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    with throwaway_postgres(free_port()) as url:
        import psycopg

        with psycopg.connect(url) as conn:
            data_dir = conn.execute("SHOW data_directory").fetchone()[0]
        yield PgCluster(url, data_dir)


def with_password(url: str) -> str:
    """The cluster trusts every connection: a password in the URL is ignored but must never show."""
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


@contextmanager
def http_health() -> Iterator[tuple[str, dict]]:
    """An http.server answering GET with ``state["code"]`` (and ``Location: state["location"]``)."""
    state: dict = {"code": 200, "location": None, "hits": 0}

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            state["hits"] += 1
            code = 200 if self.path == "/ok" else state["code"]
            self.send_response(code)
            if state["location"] and code in (301, 302, 307):
                self.send_header("Location", state["location"])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def sqlite_central(tmp_path: Path) -> tuple[str, Path]:
    url = f"sqlite:///{tmp_path / 'central.sqlite'}"
    ik.init_db(url)
    return url, tmp_path / "central.sqlite"


# -- state and callbacks ----------------------------------------------------------------------
def test_redis_stopped_goes_offline_and_back_online_once_per_change():
    port = free_port()
    rec = Recorder()
    server = ExitStack()
    url = server.enter_context(throwaway_redis(port))
    monitor = ik.ConnectionMonitor(redis=url, interval=INTERVAL, timeout=TIMEOUT)
    monitor.on_change(rec)
    monitor.on_change(rec.coroutine)
    try:
        with monitor:
            wait_for(lambda: monitor.online, "online at first")
            server.close()  # redis-server stopped
            took = wait_for(lambda: monitor.is_online("redis") is False, "offline after redis-server stopped")
            assert took < INTERVAL + TIMEOUT + SEEN_WITHIN / 2
            assert not monitor.online
            offline = monitor.status["redis"]
            assert offline.state == "offline" and offline.error and "Error" in offline.error
            time.sleep(4 * INTERVAL)  # several rounds see it offline: still one change
            server = ExitStack()
            server.enter_context(throwaway_redis(port))
            wait_for(lambda: monitor.online, "online after redis-server restarted")
            back = monitor.status["redis"]
            assert back.error is None and back.since > offline.since
            wait_for(lambda: len(rec.async_) == 3, "three async callbacks")
    finally:
        server.close()
    expected = [("redis", None, True), ("redis", True, False), ("redis", False, True)]
    assert rec.sync == expected
    assert rec.async_ == expected
    assert len(rec.loops) == 1  # the monitor's one private loop
    assert monitor_threads() == []


def test_postgres_stopped_goes_offline_and_back_without_showing_the_password(pg_cluster, caplog):
    caplog.set_level(logging.DEBUG)
    rec = Recorder()
    url = with_password(pg_cluster.url)
    monitor = ik.ConnectionMonitor(central=url, interval=INTERVAL, timeout=TIMEOUT)
    monitor.on_change(rec)
    try:
        with monitor:
            wait_for(lambda: monitor.is_online("central"), "online at first")
            pg_cluster.stop()
            wait_for(lambda: monitor.is_online("central") is False, "offline after pg_ctl stop")
            status = monitor.status
            error = status["central"].error
            assert "StoreUnavailableError" in error and "127.0.0.1" in error
            pg_cluster.start()
            wait_for(lambda: monitor.online, "online after pg_ctl start")
    finally:
        pg_cluster.ensure_running()
    assert rec.sync == [("central", None, True), ("central", True, False), ("central", False, True)]
    shown = " ".join([repr(monitor), repr(status), status._repr_html_(), status.services.to_string(), error,
                      caplog.text])
    assert "offline" in caplog.text and "***" in shown
    assert PASSWORD not in shown


def test_http_health_200_is_up_503_is_down_and_redirects_stay_on_the_host():
    with http_health() as (url, state):
        monitor = ik.ConnectionMonitor(http=url, timeout=TIMEOUT)
        assert monitor.check().online
        state["code"] = 503
        status = monitor.check()
        assert not status.online and "503" in status["http"].error
        state["code"] = 200
        assert monitor.check().online
        state.update(code=302, location=url.rsplit("/", 1)[0] + "/ok")  # same host: followed
        assert monitor.check().online
        other = url.replace("127.0.0.1", "localhost").rsplit("/", 1)[0] + "/ok"  # same server, another host
        state["location"] = other
        status = monitor.check()
        assert not status.online and "another host" in status["http"].error
        state["location"] = "file:///etc/passwd"
        assert not monitor.check().online
        hits = state["hits"]
    assert hits == 7  # one GET a check (a followed redirect two), nothing fetched elsewhere
    with pytest.raises(ik.UsageError, match="http:// or https://"):
        ik.ConnectionMonitor(http="file:///etc/passwd")
    with pytest.raises(ik.UsageError, match="http:// or https://"):
        ik.ConnectionMonitor(http="ftp://example.com/health")


def test_a_flapping_service_is_reported_once_per_change(tmp_path):
    url, path = sqlite_central(tmp_path)
    monitor = ik.ConnectionMonitor(central=url, timeout=TIMEOUT)
    rec = Recorder()
    monitor.on_change(rec)
    away = path.with_suffix(".away")  # an unmounted share: the file is not there
    for _ in range(3):
        monitor.check()
    path.rename(away)
    for _ in range(3):
        monitor.check()
    away.rename(path)
    monitor.check()
    path.rename(away)
    monitor.check()
    monitor.check()
    away.rename(path)
    monitor.check()
    assert rec.sync == [("central", None, True), ("central", True, False), ("central", False, True),
                        ("central", True, False), ("central", False, True)]
    assert not away.exists() and path.exists()  # the probe never creates the file


def test_a_failing_callback_is_logged_and_the_others_still_run(tmp_path, caplog):
    url, path = sqlite_central(tmp_path)
    monitor = ik.ConnectionMonitor(central=url, timeout=TIMEOUT)
    before, after = Recorder(), Recorder()

    def broken(change):
        raise RuntimeError("callback broke")

    async def broken_async(change):
        raise ValueError("async callback broke")

    monitor.on_change(before)
    monitor.on_change(broken)
    monitor.on_change(broken_async)
    monitor.on_change(after.coroutine)
    monitor.on_change(after)
    with caplog.at_level(logging.ERROR, logger="invoicekit.monitor"):
        assert monitor.check().online  # nothing raised here
        path.rename(path.with_suffix(".away"))
        assert not monitor.check().online
        wait_for(lambda: len(after.async_) == 2, "async callbacks after the failing ones")
        monitor.stop()
    assert before.sync == after.sync == after.async_ == [("central", None, True), ("central", True, False)]
    failures = [r for r in caplog.records if "callback" in r.getMessage()]
    assert {type(r.exc_info[1]) for r in failures} == {RuntimeError, ValueError}
    assert len(failures) == 4  # each failing callback, on each of the two changes


def test_start_stop_idempotent_no_threads_left(tmp_path):
    url, _ = sqlite_central(tmp_path)
    assert monitor_threads() == []
    monitor = ik.ConnectionMonitor(central=url, interval=INTERVAL, timeout=TIMEOUT)
    rec = Recorder()
    monitor.on_change(rec.coroutine)
    monitor.stop()  # never started: nothing to do
    assert monitor.start() is monitor and monitor.start() is monitor
    assert monitor.running and monitor_threads().count("invoicekit-monitor") == 1
    wait_for(lambda: rec.async_, "first change")
    monitor.stop()
    monitor.stop()
    assert not monitor.running and monitor_threads() == []
    with monitor as again:  # restartable
        assert again.running
    assert monitor_threads() == []
    assert rec.async_ == [("central", None, True)]


def test_status_is_a_frozen_snapshot_with_a_row_per_service(tmp_path):
    url, _ = sqlite_central(tmp_path)
    monitor = ik.ConnectionMonitor(central=url, http="http://127.0.0.1:9/health", timeout=TIMEOUT)
    before = monitor.status
    assert isinstance(before, MonitorStatus) and not before.online
    assert list(before.services["state"]) == ["unknown", "unknown"] and monitor.is_online("http") is None
    after = monitor.check()
    assert list(after.services["service"]) == ["central", "http"]
    assert list(after.services["state"]) == ["online", "offline"] and not monitor.online
    assert list(before.services["state"]) == ["unknown", "unknown"]  # a snapshot, not a view
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.services = None
    assert after["central"].online is True and after["central"].error is None
    assert repr(after) == "MonitorStatus(central=online, http=offline)"
    assert "<table" in after._repr_html_() and list(after.summary().columns) == ["service", "state", "since", "error"]
    with pytest.raises(KeyError, match="redis"):
        after["redis"]


def test_bad_arguments_are_usage_errors_and_a_missing_redis_names_the_extra(monkeypatch, tmp_path):
    with pytest.raises(ik.UsageError, match="nothing to check"):
        ik.ConnectionMonitor()
    with pytest.raises(ik.UsageError, match="positive"):
        ik.ConnectionMonitor(http="http://127.0.0.1:9/", interval=0)
    with pytest.raises(ik.UsageError, match="not a Redis URL") as bad:
        ik.ConnectionMonitor(redis=f"http://user:{PASSWORD}@127.0.0.1:6379/0")
    assert PASSWORD not in str(bad.value)
    with pytest.raises(ik.UsageError, match="does not check the central store"):
        SyncEngine(tmp_path / "d.sqlite", "sqlite:///x.sqlite", monitor=ik.ConnectionMonitor(redis="redis://x:1/0"))
    monkeypatch.setitem(sys.modules, "redis", None)  # redis-py not installed
    with pytest.raises(ik.MissingDependencyError, match=r"invoicekit\[redis\]"):
        ik.ConnectionMonitor(redis="redis://127.0.0.1:6379/0")


# -- the engine waiting on the monitor --------------------------------------------------------
def queue_rows(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, op_id, status, retry_count, last_error FROM sync_queue ORDER BY id").fetchall()
    finally:
        conn.close()


def row_statuses(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, sync_status FROM transactions ORDER BY id").fetchall()
    finally:
        conn.close()


def test_engine_offline_keeps_the_queue_and_its_retries_then_drains_when_back(pg_cluster, tmp_path):
    central = pg_cluster.url
    ik.init_db(central)
    path = tmp_path / "d.sqlite"
    busy_store(path, n=8, seed=3)
    ops, queue, rows = queue_op_ids(path), queue_rows(path), row_statuses(path)
    waits: list[float] = []
    committed: list[int] = []

    def stop_after_the_first_batch(frame) -> None:
        committed.append(len(frame))
        if len(committed) == 1 and len(drains) == 1:
            pg_cluster.stop()

    drains: list = []
    monitor = ik.ConnectionMonitor(central=central, interval=INTERVAL, timeout=TIMEOUT)
    engine = SyncEngine(path, central, monitor=monitor, batch_size=3, max_retries=3, sleep=waits.append,
                        on_batch_committed=stop_after_the_first_batch)
    try:
        assert monitor.check().online
        pg_cluster.stop()
        # the monitor has not noticed yet: the drain meets the refusal, asks the monitor again,
        # and stops without counting an attempt or backing off
        first = engine.drain()
        assert first.offline and not first.ok and first.results.empty and "offline" in repr(first)
        assert monitor.is_online("central") is False
        # now the monitor knows: a drain returns at once, touching nothing
        start = time.monotonic()
        second = engine.drain()
        assert second.offline and time.monotonic() - start < 5
        assert waits == [] and committed == []
        assert queue_rows(path) == queue and row_statuses(path) == rows
        assert engine.last_drain is None
        with monitor:
            time.sleep(2 * INTERVAL)  # rounds that see it still offline change nothing
            drains.append("back")
            pg_cluster.start()  # back: the engine drains by itself, and central stops after one batch
            wait_for(lambda: engine.last_drain is not None, "the engine drains once central is back")
            partial = engine.last_drain
            assert partial.offline and set(partial.results["outcome"]) == {"synced"}
            done = set(partial.results["queue_id"])
            assert len(done) == committed[0] == 3
            # the rest is queued as it was: no attempt counted, no error, no row left 'syncing'
            assert queue_rows(path) == [q for q in queue if q[0] not in done]
            assert {s for _, s in row_statuses(path)} <= {"pending", "synced"} and waits == []
            drains.append("back again")
            pg_cluster.start()
            wait_for(lambda: engine.last_drain is not partial, "the engine drains the rest once central is back")
        drained = engine.last_drain
    finally:
        monitor.stop()
        pg_cluster.ensure_running()
    assert drained.ok and not drained.offline and set(drained.results["outcome"]) == {"synced"}
    assert set(drained.results["attempts"]) == {1} and waits == []
    assert len(drained.results) + len(partial.results) == len(ops)
    assert_converged(path, central, ops)
    wait_for(lambda: monitor_threads() == [], "no monitor or engine thread left", within=5)


def test_engine_with_an_unchecked_monitor_or_none_drains_as_before(tmp_path):
    url, _ = sqlite_central(tmp_path)
    for name, monitor in (("a.sqlite", ik.ConnectionMonitor(central=url)), ("b.sqlite", None)):
        path = tmp_path / name
        busy_store(path, n=4, seed=len(name))
        ops = queue_op_ids(path)
        result = SyncEngine(path, url, monitor=monitor).drain()  # never checked: state unknown, it drains
        assert result.ok and not result.offline and len(result.results) == len(ops)
        assert queue_op_ids(path) == []
