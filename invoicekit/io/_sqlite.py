"""SQLite plumbing shared by the offline store and the embedded central store.

Reads go through the ADBC SQLite driver straight into Arrow. ADBC infers a column's
type from its first values, which a column starting with NULLs (or mixing SQLite storage
classes) defeats; every select here is therefore preceded by one typed sentinel row that
fixes the types and is dropped afterwards.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import NotAStoreError, StoreSchemaError, translate

_SENTINEL = {"text": "'x'", "real": "0.5", "int": "0"}

BUSY_TIMEOUT_MS = 10_000

#: ADBC's SQLite driver carries its own copy of SQLite beside Python's. Two copies in one
#: process do not see each other's locks (POSIX locks are per process), so a connection of
#: one copy closing as "the last one" may checkpoint and delete the WAL and its shared-memory
#: file while the other copy reads them (SIGBUS). Within one process, an ADBC read and a
#: toolkit write of the same file therefore never overlap (:func:`file_lock`), and every ADBC
#: read keeps a connection of Python's copy open, so that no other one of them is the last.
_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def file_lock(path: str | os.PathLike) -> threading.RLock:
    """The process's lock of the SQLite file at ``path`` (see above); re-entrant."""
    key = os.path.realpath(os.fspath(path))
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


def open_checked(
    path: str | os.PathLike, *, tables: Sequence[str], readonly: bool = True, integrity: bool = False
) -> sqlite3.Connection:
    """Open ``path``; raise a typed error naming the file when it is missing, not SQLite,
    or lacks ``tables``. ``integrity=True`` also runs ``PRAGMA quick_check`` (reads the
    whole file) and raises for a corrupt one; plain reads detect corruption in the pages
    they touch."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise NotAStoreError(f"{path}: no such file", store=path)
    if os.path.isdir(path):
        raise NotAStoreError(f"{path}: is a directory, expected a SQLite file", store=path)
    with open(path, "rb") as fh:
        header = fh.read(16)
    if header and header != b"SQLite format 3\x00":
        raise NotAStoreError(f"{path}: not a SQLite database (bad file header)", store=path)
    uri = f"file:{_quote(path)}?mode={'ro' if readonly else 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if integrity:
            check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                conn.close()
                raise NotAStoreError(f"{path}: SQLite file is corrupt ({check})", store=path)
    except sqlite3.Error as exc:  # locked: transient StoreUnavailableError; corrupt: NotAStoreError
        raise translate(exc, store=path) from exc
    missing = [t for t in tables if t not in have]
    if missing:
        conn.close()
        raise StoreSchemaError(
            f"{path}: missing table(s) {', '.join(missing)}; expected the offline store schema "
            f"(transactions, sync_queue, app_settings)",
            store=path,
            missing=missing,
        )
    return conn


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(os.path.abspath(path))


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """Names of ``table``'s columns."""
    return {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}


def _fetch(path: str, sql: str, params: Sequence, stage: Mapping[str, pa.Table] | None = None) -> pa.Table:
    return _fetch_all(path, [(sql, params)], stage)[0]


def _fetch_all(path: str, queries: Sequence[tuple[str, Sequence]],
               stage: Mapping[str, pa.Table] | None = None) -> list[pa.Table]:
    """Each (sql, params) of ``queries`` on one ADBC connection, in one read transaction (the
    driver does not autocommit): one consistent state for all of them."""
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    tables = []
    try:
        with adbc_sqlite.connect(f"file:{_quote(path)}?mode=ro") as conn:
            cur = conn.cursor()
            try:
                # a reader can meet a lock too (two connections opening a WAL store at once
                # both recover its index): wait like every other connection of the toolkit
                cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                cur.fetchall()
                with suppress(adbc_sqlite.Error):  # an older driver without the option keeps its default
                    cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
                for name, table in (stage or {}).items():  # temporary tables of this connection only
                    cur.adbc_ingest(name, table, mode="create", temporary=True)
                for sql, params in queries:
                    cur.execute(sql, list(params) if params else None)
                    tables.append(cur.fetch_arrow_table())
            finally:
                cur.close()
    except adbc_sqlite.Error as exc:
        raise translate(exc, store=path) from exc
    return [_without_sentinel(table) for table in tables]


def _without_sentinel(table: pa.Table) -> pa.Table:
    # the typed sentinel row comes first (SQLite runs UNION ALL arms in order): drop it
    # without copying; should it ever not be first, filter it out
    if table.num_rows and table.column("_s")[0].as_py() == 0:
        table = table.slice(1)
    else:  # pragma: no cover - defensive
        table = table.filter(pc.equal(table.column("_s"), 1))
    return table.drop_columns(["_s"])


#: rows per Arrow batch of a read: the driver's default (1,024) leaves a 1M-row table in ~1,000
#: chunks per column, which every later step (DuckDB scans, casts, pandas) walks; 32,768
#: measured 8-10% less wall and CPU time for read_local of 1M rows
BATCH_ROWS = 32_768

#: page cache of a write transaction, KiB (SQLite allocates it only as pages are used)
WRITE_CACHE_KIB = 256 * 1024

#: tables at least this large are read by two connections at once, by rowid range
PARALLEL_ROWS = 200_000


def _sql(select: Sequence[tuple[str, str, str]], from_sql: str) -> str:
    sentinel = ", ".join(f"{_SENTINEL[kind]} AS \"{name}\"" for _, name, kind in select)
    body = ", ".join(f"{expr}" for expr, _, _ in select)
    return f"SELECT 0 AS _s, {sentinel} UNION ALL SELECT 1, {body} FROM {from_sql}"


def select_arrow(path: str, select: Sequence[tuple[str, str, str]], from_sql: str, params: Sequence = (), *,
                 stage: Mapping[str, pa.Table] | None = None) -> pa.Table:
    """``SELECT <expr AS name, ...> FROM ...`` as Arrow; ``select`` is (expr, name, kind) with
    kind in text/real/int. The query is read-only and sees one consistent state. ``stage``
    (name -> Arrow table) is ingested first as temporary tables of the reading connection
    (``temp.<name>``), for the query to join (e.g. a list of ids).

    A large plain table is read in two rowid ranges by two connections in parallel (ADBC
    releases the GIL); ``PRAGMA data_version``, read before and after, proves no other
    connection committed meanwhile, else the read is repeated in one snapshot.
    """
    if stage:
        with file_lock(path):
            keeper = sqlite3.connect(f"file:{_quote(path)}?mode=ro", uri=True)
            try:
                return _fetch(path, _sql(select, from_sql), params, stage)
            finally:
                keeper.close()
    return select_arrow_many(path, [(select, from_sql, params)])[0]


def select_arrow_many(path: str, queries: Sequence[tuple[Sequence[tuple[str, str, str]], str, Sequence]]
                      ) -> list[pa.Table]:
    """Several :func:`select_arrow` queries (select, from_sql, params) of one file, all in one
    consistent state: every large plain table in two rowid ranges, and all the parts read
    by two connections in parallel (e.g. a store's rows and its snapshots together)."""
    sqls = [(_sql(select, from_sql), from_sql, params) for select, from_sql, params in queries]
    with file_lock(path):
        keeper = sqlite3.connect(f"file:{_quote(path)}?mode=ro", uri=True)
        try:
            return _select(path, sqls)
        finally:
            keeper.close()


def _select(path: str, queries: list[tuple[str, str, Sequence]]) -> list[pa.Table]:
    guard = sqlite3.connect(f"file:{_quote(path)}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        version = guard.execute("PRAGMA data_version").fetchone()[0]
        jobs = [(k, sql + where, params) for k, (sql, from_sql, params) in enumerate(queries)
                for where in _ranges(guard, from_sql)]
        if len(jobs) > 1:
            with ThreadPoolExecutor(2) as pool:
                parts = list(pool.map(lambda job: _fetch(path, job[1], job[2]), jobs))
            if guard.execute("PRAGMA data_version").fetchone()[0] == version:
                return [pa.concat_tables([part for (k, _, _), part in zip(jobs, parts) if k == i])
                        for i in range(len(queries))]
    except sqlite3.Error as exc:
        raise translate(exc, store=path) from exc
    finally:
        guard.close()
    # one query, or another connection committed meanwhile: all of them on one connection
    return _fetch_all(path, [(sql, params) for sql, _, params in queries])


def _ranges(guard: sqlite3.Connection, from_sql: str) -> list[str]:
    """``WHERE`` clauses splitting a large plain table in two rowid ranges, else ``[""]``."""
    if not from_sql.isidentifier():
        return [""]
    # one aggregate per subquery: SQLite answers each from the rowid b-tree's ends
    # (min and max together, or count(*), would scan the whole table)
    lo, hi = guard.execute(f"SELECT (SELECT min(rowid) FROM {from_sql}), "
                           f"(SELECT max(rowid) FROM {from_sql})").fetchone()
    if lo is None or hi - lo + 1 < PARALLEL_ROWS:
        return [""]
    mid = (lo + hi) // 2 + 1
    return [f" WHERE rowid < {mid}", f" WHERE rowid >= {mid}"]


@contextmanager
def write_transaction(path: str | os.PathLike) -> Iterator[sqlite3.Connection]:
    """A write transaction with the toolkit's durability settings: WAL,
    ``synchronous=FULL``, a busy timeout and ``BEGIN IMMEDIATE``. Commits on success,
    rolls back on any error. Holds :func:`file_lock` of ``path`` throughout."""
    with file_lock(path):
        with _transaction(path) as conn:
            yield conn


@contextmanager
def _transaction(path: str | os.PathLike) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(os.fspath(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # a page cache that holds a bulk write's working set (the default 2 MB makes large
        # transactions re-read and spill pages) and staging tables in memory, not in a file
        conn.execute(f"PRAGMA cache_size=-{WRITE_CACHE_KIB}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()
