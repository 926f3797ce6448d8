"""invoicekit benchmarks: each figure beside its baseline, measured in the same run.

Run ``make bench`` or ``.venv/bin/python -m benchmarks.run`` (also ``python benchmarks/run.py``)::

    --rows N       invoices in the generated data set (default 1,000,000)
    --only NAME    load_central, load_local, checksum, reconcile or push (comma-separated for several)
    --pg-url URL   PostgreSQL server to use (default $INVOICEKIT_BENCH_PG_URL, else
                   postgresql://postgres@127.0.0.1:5432/postgres); the bench creates its own
                   uuid-named database there and drops it at the end
    --json PATH    also write every figure (and the machine description) as JSON

Benchmarks (targets from the performance issue):

``load_central``  PostgreSQL ``invoices`` table -> InvoiceSet via ``read_central(url)``;
                  target >= 1,000,000 invoice rows/s. Baselines: ``pandas.read_sql``
                  through SQLAlchemy/psycopg, and the raw Arrow readers (ADBC, connectorx)
                  of read_central's own SELECT as the ceiling for the fetch.
``load_local``    offline SQLite store -> InvoiceSet via ``read_local(path)``; target
                  >= 3x ``pandas.read_sql("SELECT * FROM transactions", sqlite3 conn)``.
``checksum``      ``checksum(invoices)``; target <= 1 s and >= 5x the devices' per-row
                  ``json.dumps`` + ``hashlib.sha256`` loop over the same rows.
``reconcile``     ``reconcile(local, central)`` of two in-memory sets of N invoices, ~5% of rows
                  differing; target <= 2 s and >= 10x ``datacompy.PandasCompare`` on the same
                  rows with the same counts (see ``benchmarks/sync_bench.py``).
``push``          ``apply_sync`` of 100,000 ``local_ahead`` invoices to PostgreSQL; target
                  <= 3 s for the central side. Baseline: psycopg ``executemany`` UPDATE of the
                  same rows (see ``benchmarks/sync_bench.py``).

Every measurement is best (and median) of ``--repeat`` timed runs with
``time.perf_counter`` after one untimed warm-up run (the slow reference loop of
``checksum`` gets no warm-up). Peak RSS is the process's high-water mark during the
measurement (reset before it through ``/proc/self/clear_refs``), so it includes the data
the process already holds; ``+RSS`` is the growth over the RSS at the start.

Generated data is cached in ``benchmarks/.data/`` (gitignored): the offline store file,
keyed by rows, seed and the source of the code that writes it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import inspect
import json
import os
import platform
import resource
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

BENCHMARKS = ("load_central", "load_local", "checksum", "reconcile", "push")
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".data")
SEED = 20261125

# read_central's own SELECT on PostgreSQL, so the raw readers fetch exactly what it fetches
def _central_select() -> str:
    from invoicekit.io.backends.postgres import PG_SELECT

    return PG_SELECT


# the same columns as stored, for the pandas baseline (numeric/timestamptz as the driver gives them)
CENTRAL_PLAIN_SELECT = (
    "SELECT id, invoice_number, client_data_text, line_items_text, total, currency, created_at, "
    "modified_at, deleted_at, version, sync_status, checksum FROM invoices"
)


# ---------------------------------------------------------------------------------------
# measuring


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the process's RSS high-water mark (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_mib() -> float:
    kib = _status_kib("VmRSS")
    return (kib or 0) / 1024


def peak_rss_mib() -> float:
    kib = _status_kib("VmHWM")
    if kib is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        m = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kib = m / 1024 if sys.platform == "darwin" else m
    return kib / 1024


@dataclass
class Measure:
    name: str
    kind: str  # subject / baseline / ceiling / floor / reference / info
    rows: int
    times: list[float]
    cpu_times: list[float] = field(default_factory=list)
    peak_rss_mib: float | None = None
    rss_growth_mib: float | None = None
    note: str = ""

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best_cpu(self) -> float | None:
        """Process CPU seconds (all threads) of the best run; the server's CPU is not counted."""
        return self.cpu_times[self.times.index(self.best)] if self.cpu_times else None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.best if self.best > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(best_s=self.best, median_s=self.median, rows_per_s=self.rows_per_s, best_cpu_s=self.best_cpu)
        return d


def measure(
    name: str, fn: Callable[[], Any], *, rows: int, kind: str = "baseline", repeat: int = 3,
    warmup: int = 1, note: str = "", check: Callable[[Any], None] | None = None,
    setup: Callable[[], None] | None = None,
) -> Measure:
    """Best/median of ``repeat`` timed calls of ``fn`` after ``warmup`` untimed ones.

    The result of each call is dropped (and garbage collected) outside the timing;
    ``check`` sees the warm-up (or first) result. ``setup``, if given, runs untimed
    before every call (e.g. to restore the state ``fn`` changes).
    """
    print(f"  ... {name}", end="", flush=True)
    gc.collect()
    start_rss = rss_mib()
    tracked = _reset_peak()
    checked = False
    for _ in range(warmup):
        if setup is not None:
            setup()
        out = fn()
        if check is not None and not checked:
            check(out)
            checked = True
        del out
        gc.collect()
    times, cpu = [], []
    for _ in range(repeat):
        if setup is not None:
            setup()
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if check is not None and not checked:
            check(out)
            checked = True
        del out
        gc.collect()
    peak = peak_rss_mib() if tracked else None
    growth = None if peak is None else max(peak - start_rss, 0.0)
    m = Measure(name, kind, rows, times, cpu, peak, growth, note)
    print(f"  best {m.best:.3f} s (cpu {m.best_cpu:.2f} s), median {m.median:.3f} s, "
          f"load avg {os.getloadavg()[0]:.2f}", flush=True)
    return m


@dataclass
class Result:
    name: str
    title: str
    rows: int
    measures: list[Measure] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def get(self, name: str) -> Measure:
        return next(m for m in self.measures if m.name == name)

    def target(self, description: str, value: str, met: bool) -> None:
        self.targets.append({"target": description, "measured": value, "met": bool(met)})

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title, "rows": self.rows,
            "measures": [m.as_dict() for m in self.measures],
            "targets": self.targets, "notes": self.notes, "error": self.error,
        }


def _fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.0f} k"
    return f"{x:.0f}"


def table(result: Result) -> str:
    """The measures as a plain-text table.

    ``time / subject`` is the measure's best time over the subject's (< 1: faster than the subject).
    """
    subject = next((m for m in result.measures if m.kind == "subject"), None)
    head = ["measurement", "kind", "best s", "median s", "cpu s", "rows/s (best)", "time / subject",
            "peak RSS MiB", "+RSS MiB"]
    rows = []
    for m in result.measures:
        ratio = "" if subject is None or m is subject else f"{m.best / subject.best:.2f}x"
        rows.append([
            m.name, m.kind, f"{m.best:.3f}", f"{m.median:.3f}",
            "" if m.best_cpu is None else f"{m.best_cpu:.2f}", _fmt_rate(m.rows_per_s), ratio,
            "" if m.peak_rss_mib is None else f"{m.peak_rss_mib:,.0f}",
            "" if m.rss_growth_mib is None else f"{m.rss_growth_mib:,.0f}",
        ])
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    align = ["<", "<", ">", ">", ">", ">", ">", ">", ">"]

    def line(cells):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True))

    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    return "\n".join(out)


def report(result: Result) -> None:
    print()
    print(f"== {result.name}: {result.title} ({result.rows:,} invoices)")
    if result.error:
        print(f"   FAILED: {result.error}")
    if result.measures:
        print(table(result))
    for n in result.notes:
        print(f"   note: {n}")
    for t in result.targets:
        print(f"   target: {t['target']:<50} measured {t['measured']:<28} {'MET' if t['met'] else 'MISSED'}")
    print(flush=True)


# ---------------------------------------------------------------------------------------
# machine


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": sys.version.split()[0],
    }
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    with contextlib.suppress(OSError):
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    info["ram_gib"] = round(int(line.split()[1]) / 1024**2, 1)
                    break
    from importlib import metadata

    for pkg in ("invoicekit", "pandas", "pyarrow", "duckdb", "numpy", "sqlalchemy", "psycopg",
                "adbc-driver-postgresql", "adbc-driver-sqlite", "connectorx", "datacompy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[pkg] = metadata.version(pkg)
    import sqlite3
    import subprocess

    info["sqlite"] = sqlite3.sqlite_version
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "invoicekit"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if head:
            info["git"] = head + (" (invoicekit/ modified)" if dirty else "")
    return info


# ---------------------------------------------------------------------------------------
# data


class Data:
    """The generated data set and the stores built from it, made on first use."""

    def __init__(self, rows: int, seed: int, pg_url: str, data_dir: str) -> None:
        self.rows = rows
        self.seed = seed
        self.admin_url = pg_url
        self.data_dir = data_dir
        self._set = None
        self._local: str | None = None
        self.db_name: str | None = None
        self.db_url: str | None = None
        self.setup_times: dict[str, float] = {}

    @property
    def invoice_set(self):
        if self._set is None:
            from invoicekit.samples import make_invoices

            print(f"generating {self.rows:,} invoices (make_invoices, seed={self.seed}) ...", flush=True)
            t0 = time.perf_counter()
            self._set = make_invoices(self.rows, seed=self.seed)
            self.setup_times["make_invoices_s"] = time.perf_counter() - t0
            print(f"  {self._set!r} in {self.setup_times['make_invoices_s']:.1f} s", flush=True)
        return self._set

    # -- offline store ------------------------------------------------------------
    def _local_key(self) -> str:
        import invoicekit
        import invoicekit.io._sqlite
        import invoicekit.io.local
        import invoicekit.samples

        h = hashlib.sha1()
        h.update(f"{self.rows}|{self.seed}|{invoicekit.__version__}".encode())
        for mod in (invoicekit.samples, invoicekit.io.local, invoicekit.io._sqlite):
            h.update(inspect.getsource(mod).encode())
        return h.hexdigest()[:12]

    @property
    def local_path(self) -> str:
        if self._local is None:
            import sqlite3

            import invoicekit

            os.makedirs(self.data_dir, exist_ok=True)
            path = os.path.join(self.data_dir, f"local-{self.rows}-{self.seed}-{self._local_key()}.sqlite")
            if os.path.exists(path):
                print(f"offline store: cached {path}", flush=True)
            else:
                tmp = path + f".tmp-{os.getpid()}"
                print(f"writing offline store {path} (write_local) ...", flush=True)
                t0 = time.perf_counter()
                invoicekit.write_local(self.invoice_set, tmp)
                self.setup_times["write_local_s"] = time.perf_counter() - t0
                conn = sqlite3.connect(tmp, isolation_level=None)
                try:  # fold the WAL back in so the file is self-contained
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    conn.execute("PRAGMA journal_mode=DELETE")
                finally:
                    conn.close()
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(tmp + suffix)
                os.replace(tmp, path)
                stale = f"local-{self.rows}-{self.seed}-"
                for old in os.listdir(self.data_dir):  # files from older versions of the code
                    if old.startswith(stale) and old.endswith(".sqlite") and old != os.path.basename(path):
                        os.remove(os.path.join(self.data_dir, old))
                print(f"  done in {self.setup_times['write_local_s']:.1f} s", flush=True)
            self._local = path
        return self._local

    @property
    def device_path(self) -> str:
        """The same store as field devices have it: the devices' tables only (no base table)."""
        import shutil
        import sqlite3

        path = self.local_path.replace(".sqlite", "-device.sqlite")
        if not os.path.exists(path):
            tmp = path + f".tmp-{os.getpid()}"
            shutil.copyfile(self.local_path, tmp)
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("DROP TABLE invoicekit_base")
                conn.execute("VACUUM")
            finally:
                conn.close()
            os.replace(tmp, path)
        return path

    # -- central store ------------------------------------------------------------
    def _pg_admin(self):
        import psycopg

        from invoicekit.io.central import CentralStore

        return psycopg.connect(CentralStore(self.admin_url).libpq, autocommit=True)

    @property
    def central_url(self) -> str:
        if self.db_url is None:
            from sqlalchemy.engine import make_url

            import invoicekit

            name = f"invoicekit_bench_{uuid.uuid4().hex}"
            with self._pg_admin() as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            self.db_name = name
            self.db_url = make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)
            print(f"central store: database {name}", flush=True)
            invoicekit.init_db(self.db_url)
            inv_set = self.invoice_set
            print(f"writing {len(inv_set):,} invoices to PostgreSQL (write_central) ...", flush=True)
            t0 = time.perf_counter()
            invoicekit.write_central(inv_set, self.db_url)
            self.setup_times["write_central_s"] = time.perf_counter() - t0
            import psycopg

            with psycopg.connect(make_url(self.db_url).set(drivername="postgresql").render_as_string(
                    hide_password=False), autocommit=True) as conn:
                # settle the table: hint bits set, visibility map and statistics fresh
                conn.execute("VACUUM (FREEZE, ANALYZE) invoices")
                conn.execute("VACUUM (FREEZE, ANALYZE) invoicekit_kept_lines")  # (lines: a view, v11)
                # flush the load's dirty pages now, not while the next benchmarks are timed
                conn.execute("CHECKPOINT")
                size = conn.execute("SELECT pg_total_relation_size('invoices')").fetchone()[0]
            self.setup_times["invoices_table_mib"] = size / 2**20
            print(f"  done in {self.setup_times['write_central_s']:.1f} s "
                  f"(invoices table {size / 2**20:,.0f} MiB)", flush=True)
        return self.db_url

    def pg_server_version(self) -> str | None:
        with contextlib.suppress(Exception), self._pg_admin() as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
        return None

    def drop(self) -> None:
        if self.db_name is None:
            return
        with self._pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        print(f"dropped database {self.db_name}", flush=True)
        self.db_name = None


# ---------------------------------------------------------------------------------------
# benchmarks


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def adbc_pg_fetch(url: str, sql: str):
    import adbc_driver_postgresql.dbapi as adbc_pg

    with adbc_pg.connect(_libpq(url)) as conn:
        cur = conn.cursor()
        try:
            cur.execute(sql)
            return cur.fetch_arrow_table()
        finally:
            cur.close()


def server_copy_floor(url: str, sql: str, *, rows: int, repeat: int) -> Measure | str:
    """``COPY (sql) TO '/dev/null' (FORMAT binary)``: the server's own work for a read.

    Needs a role allowed to write server files (superuser or ``pg_write_server_files``);
    returns a note saying so otherwise.
    """
    import psycopg

    try:
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            allowed = conn.execute(
                "SELECT rolsuper OR pg_has_role(current_user, 'pg_write_server_files', 'USAGE') "
                "FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    except psycopg.Error as exc:
        return f"server floor not measured: {exc}"
    if not allowed:
        return "server floor not measured: the role may not COPY to a server file (needs pg_write_server_files)"

    def server_only():
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            return conn.execute(f"COPY ({sql}) TO '/dev/null' (FORMAT binary)").rowcount

    def check(n) -> None:
        assert n == rows, f"COPY produced {n:,} rows, expected {rows:,}"

    return measure("server alone: COPY (same SELECT) TO '/dev/null' (FORMAT binary)", server_only,
                   rows=rows, kind="floor", repeat=repeat, check=check,
                   note="PostgreSQL produces and discards the rows: no wire, no client")


def bench_load_central(data: Data, repeat: int) -> Result:
    import pandas as pd
    import sqlalchemy

    import invoicekit

    n = data.rows
    res = Result("load_central", "PostgreSQL invoices table -> InvoiceSet (read_central)", n)
    url = data.central_url

    def check_full(s) -> None:
        assert len(s.invoices) == n, f"read_central returned {len(s.invoices):,} invoices, expected {n:,}"
        assert len(s.problems) == 0, f"read_central reported {len(s.problems)} problems"
        res.notes.append(f"read_central: {len(s.invoices):,} invoices, {len(s.lines):,} lines, "
                         f"{len(s.problems)} problems")

    res.measures.append(measure("read_central(url)", lambda: invoicekit.read_central(url), rows=n,
                                kind="subject", repeat=repeat, check=check_full,
                                note="line items deferred: parsed on first use"))
    res.measures.append(measure("read_central(url) then .lines (every line item parsed)",
                                lambda: invoicekit.read_central(url).lines, rows=n, kind="info", repeat=repeat,
                                note="the whole cost when all lines are needed"))
    res.measures.append(measure("read_central(url, lines=False)",
                                lambda: invoicekit.read_central(url, lines=False),
                                rows=n, kind="info", repeat=repeat,
                                note="invoices frame only (lines not parsed)"))

    engine = sqlalchemy.create_engine(
        sqlalchemy.engine.make_url(url).set(drivername="postgresql+psycopg"))
    try:
        def pandas_read():
            with engine.connect() as conn:
                return pd.read_sql(sqlalchemy.text(CENTRAL_PLAIN_SELECT), conn)

        res.measures.append(measure("pandas.read_sql (SQLAlchemy+psycopg)", pandas_read, rows=n,
                                    repeat=repeat, note="same invoices columns, object dtypes"))
    finally:
        engine.dispose()

    def check_raw(t) -> None:
        assert t.num_rows == n

    res.measures.append(measure("ADBC fetch_arrow_table (same SELECT)",
                                lambda: adbc_pg_fetch(url, _central_select()),
                                rows=n, kind="ceiling", repeat=repeat, check=check_raw))
    try:
        import connectorx as cx
    except ImportError:
        res.notes.append("connectorx not installed: no connectorx ceiling")
    else:
        libpq = _libpq(url)
        res.measures.append(measure(f"connectorx {cx.__version__} read_sql arrow (same SELECT)",
                                    lambda: cx.read_sql(libpq, _central_select(), return_type="arrow"),
                                    rows=n, kind="ceiling", repeat=repeat, check=check_raw))

    # the server's share on its own: the same SELECT produced in binary COPY format and
    # thrown away by the server (no wire, no client): a floor no client can go below
    floor = server_copy_floor(url, _central_select(), rows=n, repeat=repeat)
    if isinstance(floor, str):
        res.notes.append(floor)
    else:
        res.measures.append(floor)
        res.notes.append(
            f"server floor: PostgreSQL alone needs {floor.best:.3f} s to produce these rows "
            f"({floor.rows_per_s:,.0f} rows/s on one backend) before any byte reaches a client; "
            f"the client's decoding needs the same {machine().get('nproc', '?')} cores")
        res.target("(info) server alone, same SELECT to /dev/null", f"{floor.rows_per_s:,.0f} rows/s",
                   floor.rows_per_s >= 1_000_000)

    full = res.get("read_central(url)")
    fetch = res.get("ADBC fetch_arrow_table (same SELECT)")
    eager = res.get("read_central(url) then .lines (every line item parsed)")
    rest = max(full.best - fetch.best, 0.0)
    res.notes.append(f"split of read_central (best times): fetch (ADBC, identical SELECT) {fetch.best:.3f} s "
                     f"= {fetch.best / full.best:.0%}, assembly + overhead {rest:.3f} s = {rest / full.best:.0%}")
    res.target(">= 1,000,000 invoice rows/s (read_central)", f"{full.rows_per_s:,.0f} rows/s",
               full.rows_per_s >= 1_000_000)
    res.target("(info) the same with every line item parsed", f"{eager.rows_per_s:,.0f} rows/s",
               eager.rows_per_s >= 1_000_000)
    return res


def bench_load_local(data: Data, repeat: int) -> Result:
    import sqlite3

    import pandas as pd

    import invoicekit

    n = data.rows
    toolkit_path = data.local_path
    path = data.device_path
    res = Result("load_local", "offline SQLite store -> InvoiceSet (read_local)", n)
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    res.notes.append(f"store file {os.path.getsize(path) / 2**20:,.0f} MiB; rows per table: "
                     + ", ".join(f"{t} {c:,}" for t, c in counts.items()))

    def check(s) -> None:
        assert len(s.invoices) == n and len(s.problems) == 0, repr(s)
        res.notes.append(f"read_local: {len(s.invoices):,} invoices, {len(s.lines):,} lines, "
                         f"{len(s.problems)} problems")

    res.measures.append(measure("read_local(path)", lambda: invoicekit.read_local(path), rows=n,
                                kind="subject", repeat=repeat, check=check,
                                note="device store (devices' schema); line items deferred"))
    res.measures.append(measure("read_local(path) then .lines (every line item parsed)",
                                lambda: invoicekit.read_local(path).lines, rows=n, kind="info", repeat=repeat))
    res.measures.append(measure("read_local(toolkit store): + invoicekit_base snapshots",
                                lambda: invoicekit.read_local(toolkit_path), rows=n, kind="info", repeat=repeat,
                                note="a store written by invoicekit: every row also has its base row"))

    def pandas_read():
        conn = sqlite3.connect(path)
        try:
            return pd.read_sql("SELECT * FROM transactions", conn)
        finally:
            conn.close()

    def check_len(df) -> None:
        assert len(df) == n

    def check_rows(t) -> None:
        assert t.num_rows == n

    res.measures.append(measure('pandas.read_sql("SELECT * FROM transactions", sqlite3)', pandas_read,
                                rows=n, repeat=repeat, check=check_len))

    def adbc_read():
        import adbc_driver_sqlite.dbapi as adbc_sqlite

        with adbc_sqlite.connect(path) as conn:
            cur = conn.cursor()
            try:
                cur.execute("SELECT * FROM transactions")
                return cur.fetch_arrow_table()
            finally:
                cur.close()

    with contextlib.suppress(ImportError):
        res.measures.append(measure("ADBC sqlite fetch_arrow_table (SELECT *)", adbc_read, rows=n,
                                    kind="ceiling", repeat=repeat, check=check_rows))
    subj = res.get("read_local(path)")
    base = res.get('pandas.read_sql("SELECT * FROM transactions", sqlite3)')
    speedup = base.best / subj.best
    res.target(">= 3x pandas.read_sql on the same file",
               f"{speedup:.2f}x ({subj.best:.2f} s vs {base.best:.2f} s)", speedup >= 3)
    return res


def reference_checksums(rows: list[tuple]) -> list[str]:
    """The devices' per-row checksum loop (the reference definition)."""
    out = []
    for number, client_data, line_items, total in rows:
        data = {
            "invoice_number": number,
            "client_data": client_data,
            "line_items": line_items,
            "total_amount": None if total is None else float(total),
        }
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        out.append(hashlib.sha256(text.encode()).hexdigest())
    return out


def bench_checksum(data: Data, repeat: int) -> Result:
    import pyarrow as pa

    import invoicekit

    inv = data.invoice_set.invoices
    n = len(inv)
    res = Result("checksum", "checksum(invoices) vs the per-row json.dumps + sha256 loop", n)
    res.measures.append(measure("invoicekit.checksum(invoices)", lambda: invoicekit.checksum(inv), rows=n,
                                kind="subject", repeat=repeat))

    # Python values for the reference loop (str / Decimal / None), extracted outside its timing
    # (which favours the baseline)
    def py(col: str) -> list:
        return pa.array(inv[col]).to_pylist()

    py_rows = list(zip(py("invoice_number"), py("client_data"), py("line_items"), py("total"), strict=True))
    res.measures.append(measure("per-row loop: dict + json.dumps + sha256",
                                lambda: reference_checksums(py_rows), rows=n, kind="reference",
                                repeat=repeat, warmup=0,
                                note="rows pre-extracted to Python tuples outside the timing"))

    # identical results on every row (outside the timing)
    fast = invoicekit.checksum(inv).tolist()
    ref = reference_checksums(py_rows)
    mismatches = sum(a != b for a, b in zip(fast, ref, strict=False)) + abs(len(fast) - len(ref))
    res.notes.append(f"identical on all rows: {'yes' if mismatches == 0 else 'NO'} "
                     f"({n - mismatches:,} of {n:,} rows equal)")
    subj = res.get("invoicekit.checksum(invoices)")
    refm = res.get("per-row loop: dict + json.dumps + sha256")
    res.target("<= 1 s for all rows", f"{subj.best:.3f} s", subj.best <= 1.0)
    ratio = refm.best / subj.best
    res.target(">= 5x the per-row reference loop", f"{ratio:.2f}x", ratio >= 5)
    res.target("identical to the reference on all rows", f"{mismatches:,} mismatches", mismatches == 0)
    if mismatches:
        res.error = f"checksum differs from the reference on {mismatches:,} rows"
    return res


def bench_reconcile(data: Data, repeat: int) -> Result:
    return _sync_bench().bench_reconcile(data, repeat)


def bench_push(data: Data, repeat: int) -> Result:
    return _sync_bench().bench_push(data, repeat)


def _sync_bench():
    """``benchmarks/sync_bench.py`` (imported on use: it imports this module)."""
    try:
        from benchmarks import sync_bench
    except ImportError:  # run as a script: python benchmarks/run.py
        import sync_bench  # type: ignore[no-redef]
    return sync_bench


RUNNERS = {"load_central": bench_load_central, "load_local": bench_load_local, "checksum": bench_checksum,
           "reconcile": bench_reconcile, "push": bench_push}


# ---------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="invoices in the data set (default 1,000,000)")
    p.add_argument("--only", metavar="NAME",
                   help=f"run only these (comma-separated): {', '.join(BENCHMARKS)}")
    p.add_argument("--pg-url", default=os.environ.get("INVOICEKIT_BENCH_PG_URL", DEFAULT_PG_URL),
                   help="PostgreSQL server URL (default $INVOICEKIT_BENCH_PG_URL or %(default)s)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (default 3)")
    p.add_argument("--seed", type=int, default=SEED, help=f"make_invoices seed (default {SEED})")
    p.add_argument("--data-dir", default=DATA_DIR, help="cache directory for generated files")
    args = p.parse_args(argv)
    names = BENCHMARKS if not args.only else [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in names if x not in BENCHMARKS]
    if unknown:
        p.error(f"--only: unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    args.names = [b for b in BENCHMARKS if b in names]
    if args.rows < 1 or args.repeat < 1:
        p.error("--rows and --repeat must be >= 1")
    return args



def central_main(argv: list[str] | None, *, prog: str, doc: str, run: Callable[[Data, argparse.Namespace], Result],
                 options: tuple[tuple[tuple, dict], ...] = (), repeat: int = 3, rows_help: str = "central invoices",
                 instead: Callable[[argparse.Namespace], Result | None] | None = None) -> int:
    """The ``main()`` of a benchmark over one central store: the common options (``--rows``,
    ``--pg-url``, ``--repeat``, ``--seed``, ``--data-dir``, ``--json``) and the benchmark's own
    (``options``: ``add_argument`` arguments), the machine line, the store (:class:`Data`, dropped
    at the end), the report and the JSON file; exit status 2 when the run met an error.
    ``run(data, args)`` measures; ``instead(args)``, when it returns a result, replaces the
    whole run (a variant that needs no central store)."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help=f"{rows_help} (default 1,000,000)")
    for args, kwargs in options:
        p.add_argument(*args, **kwargs)
    p.add_argument("--pg-url", default=os.environ.get("INVOICEKIT_BENCH_PG_URL", DEFAULT_PG_URL))
    p.add_argument("--repeat", type=int, default=repeat)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--data-dir", default=DATA_DIR)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    res = instead(args) if instead is not None else None
    if res is not None:
        report(res)
        return 2 if res.error else 0
    info = machine()
    data = Data(args.rows, args.seed, args.pg_url, args.data_dir)
    info["postgresql"] = data.pg_server_version()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    t_start = time.perf_counter()
    try:
        res = run(data, args)
        res.notes.append(f"load average at the end (1, 5, 15 min): {os.getloadavg()} on {info['nproc']} cores")
    finally:
        data.drop()
    report(res)
    setup = ", ".join(f"{k}={v:.1f}" for k, v in data.setup_times.items())
    print(f"   total wall time {time.perf_counter() - t_start:.0f} s; setup {setup}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"machine": info, "args": {k: v for k, v in vars(args).items() if k != "json"},
                       "setup": data.setup_times, "results": [res.as_dict()],
                       **({"hot": res.hot} if hasattr(res, "hot") else {})}, fh, indent=2, default=str)
    return 2 if res.error else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    info = machine()
    data = Data(args.rows, args.seed, args.pg_url, args.data_dir)
    if "load_central" in args.names or "push" in args.names:
        info["postgresql"] = data.pg_server_version()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"benchmarks: {', '.join(args.names)}; rows={args.rows:,}; best/median of {args.repeat}",
          flush=True)
    results: list[Result] = []
    try:
        for name in args.names:
            print(f"\n[{name}]", flush=True)
            try:
                res = RUNNERS[name](data, args.repeat)
                res.notes.append(f"1-min load average at the end: {os.getloadavg()[0]:.2f} "
                                 f"(this process alone keeps it near 1-2 on {info['nproc']} cores)")
            except Exception as exc:  # report and go on with the others
                import traceback

                traceback.print_exc()
                res = Result(name, "failed", args.rows, error=f"{type(exc).__name__}: {exc}")
            results.append(res)
            report(res)
    finally:
        data.drop()
    print("== summary")
    missed = 0
    for res in results:
        for t in res.targets:
            if t["target"].startswith("(info)"):
                continue
            missed += not t["met"]
            verdict = "MET" if t["met"] else "MISSED"
            print(f"   {res.name:<13} {t['target']:<50} {t['measured']:<28} {verdict}")
        if res.error:
            print(f"   {res.name:<13} ERROR {res.error}")
    wall = time.perf_counter() - t_start
    setup = ", ".join(f"{k}={v:.1f}" for k, v in data.setup_times.items())
    print(f"   total wall time {wall:.0f} s; setup {setup}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"machine": info, "rows": args.rows, "seed": args.seed, "repeat": args.repeat,
                       "setup": data.setup_times, "wall_s": wall,
                       "results": [r.as_dict() for r in results]}, fh, indent=2)
        print(f"   results written to {args.json}")
    # exit status: 2 on a broken benchmark; targets missed are reported, not failures
    return 2 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
