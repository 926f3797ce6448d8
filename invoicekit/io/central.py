"""The central store: PostgreSQL (first class, Arrow/COPY fast paths) or SQLite (embedded default).

Tables (see ``_central_sql``): ``invoices`` keeps the client and line-item JSON text
exactly as received (``client_data_text``, ``line_items_text``: the checksummed
payload) next to a queryable ``client_data JSONB`` generated from it; ``invoice_lines``
holds the parsed lines with ``NUMERIC`` amounts for SQL analytics; ``deleted_at`` marks
tombstones. ``invoicekit_schema`` records applied migrations.
"""

from __future__ import annotations

import io
import os
from datetime import datetime, timezone
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .. import _duck, _progress
from .._normalize import ITEM_COLUMNS, normalize
from ..errors import (
    MissingDependencyError,
    StoreSchemaError,
    UsageError,
    driver_errors,
    mask_secrets,
    translate,
)
from ..schema import INVOICE_SCHEMA, PROBLEM_SCHEMA, InvoiceSet, to_frame
from . import _central_sql as ddl
from . import _sqlite
from ._write import WriteResult, decide_sql, may_update, result_frame

__all__ = ["init_db", "read_central", "write_central", "CentralStore", "SCHEMA_VERSION", "WriteResult"]

#: the schema version :func:`init_db` creates or upgrades to
SCHEMA_VERSION = len(ddl.POSTGRES)
assert SCHEMA_VERSION == len(ddl.SQLITE), "both dialects number their migrations alike"


class CentralStore:
    """A parsed central-store URL (or SQLAlchemy Engine): dialect, libpq URL or file path."""

    #: ``application_name`` of the PostgreSQL sessions this store opens
    application_name = "invoicekit"

    def __init__(self, url_or_engine: Any) -> None:
        from sqlalchemy.engine import Engine

        if isinstance(url_or_engine, CentralStore):
            url_or_engine = url_or_engine.url
        url = url_or_engine.url if isinstance(url_or_engine, Engine) else _parse_url(url_or_engine)
        self.url = url
        self.dialect = url.get_backend_name()
        self.display = url.render_as_string(hide_password=True)
        if self.dialect == "postgresql":
            self.libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        elif self.dialect == "sqlite":
            if not url.database or url.database == ":memory:":
                raise UsageError(f"{self.display}: a central SQLite store must be a file")
            self.path = url.database
        else:
            raise UsageError(
                f"central store {self.display}: dialect {self.dialect!r} is not supported; "
                "use a postgresql:// or sqlite:/// URL"
            )

    def __repr__(self) -> str:
        return f"CentralStore({self.display})"

    # -- PostgreSQL connections -------------------------------------------------
    def pg(self, **kwargs: Any):
        """A psycopg connection (transaction mode)."""
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise MissingDependencyError("psycopg", "postgres") from exc
        try:
            return psycopg.connect(self.libpq, **{"application_name": self.application_name, **kwargs})
        except psycopg.Error as exc:  # unreachable: transient StoreUnavailableError; bad login: StoreError
            raise translate(exc, store=self.display) from exc


def _parse_url(value: Any):
    """``value`` (a URL string, path-like or SQLAlchemy URL) as a SQLAlchemy URL; a bare path
    or a string SQLAlchemy cannot parse is a UsageError saying what would work."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    if isinstance(value, URL):
        return value
    if not isinstance(value, (str, os.PathLike)):
        raise UsageError(f"the central store must be given as a URL (postgresql://user@host/db or "
                         f"sqlite:///central.sqlite) or a SQLAlchemy Engine; got {type(value).__name__}",
                         reason="bad_url")
    text = os.fsdecode(os.fspath(value))
    shown = mask_secrets(text)
    if "://" not in text:
        raise UsageError(f"central store {shown!r} is not a URL; use sqlite:///{shown} or "
                         "postgresql://user@host/db", reason="bad_url")
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise UsageError(f"central store {shown!r} is not a URL SQLAlchemy can parse ({exc}); use "
                         "sqlite:///PATH or postgresql://user@host/db", reason="bad_url") from None
    return url.set(drivername="postgresql") if url.drivername == "postgres" else url


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def init_db(url_or_engine: Any) -> int:
    """Create or upgrade the central store idempotently; returns the schema version."""
    store = CentralStore(url_or_engine)
    try:
        return _migrate(store)
    except driver_errors() as exc:
        raise translate(exc, store=store.display, context="init_db") from exc


def _migrate(store: CentralStore) -> int:
    migrations = ddl.POSTGRES if store.dialect == "postgresql" else ddl.SQLITE
    if store.dialect == "postgresql":
        with store.pg() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(7260417)")  # one initialiser at a time
            conn.execute(ddl.META)
            done = {r[0] for r in conn.execute("SELECT version FROM invoicekit_schema")}
            for version, stmts in enumerate(migrations, start=1):
                if version in done:
                    continue
                for stmt in stmts:
                    conn.execute(stmt)
                conn.execute("INSERT INTO invoicekit_schema VALUES (%s, %s)", (version, _now()))
    else:
        with _sqlite.write_transaction(store.path) as conn:
            conn.execute(ddl.META)
            done = {r[0] for r in conn.execute("SELECT version FROM invoicekit_schema")}
            for version, stmts in enumerate(migrations, start=1):
                if version in done:
                    continue
                for stmt in stmts:
                    conn.execute(stmt)
                conn.execute("INSERT INTO invoicekit_schema VALUES (?, ?)", (version, _now()))
    return len(migrations)


# one query on the happy path: does the store have its tables, and which schema version is it at?
_SCHEMA_SQL = {
    "postgresql": "SELECT to_regclass('invoices') IS NOT NULL, max(version) FROM invoicekit_schema",
    "sqlite": "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'invoices') = 1, "
              "max(version) FROM invoicekit_schema",
}
_HAS_INVOICES_SQL = {
    "postgresql": "SELECT to_regclass('invoices') IS NOT NULL",
    "sqlite": "SELECT count(*) = 1 FROM sqlite_master WHERE type = 'table' AND name = 'invoices'",
}


def _schema_state(store: CentralStore) -> tuple[bool, int | None]:
    """(has table ``invoices``, highest applied schema version or None without ``invoicekit_schema``)."""
    if store.dialect == "postgresql":
        import psycopg

        with store.pg() as conn:
            try:
                has, version = conn.execute(_SCHEMA_SQL["postgresql"]).fetchone()
            except psycopg.errors.UndefinedTable:  # no invoicekit_schema: not made by init_db
                conn.rollback()
                has, version = conn.execute(_HAS_INVOICES_SQL["postgresql"]).fetchone()[0], None
        return bool(has), version
    import sqlite3

    conn = _sqlite.open_checked(store.path, tables=())
    try:
        try:
            has, version = conn.execute(_SCHEMA_SQL["sqlite"]).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            has, version = conn.execute(_HAS_INVOICES_SQL["sqlite"]).fetchone()[0], None
    finally:
        conn.close()
    return bool(has), version


def _require_schema(store: CentralStore) -> None:
    """Raise StoreSchemaError unless the store has the current schema (``SCHEMA_VERSION``)."""
    hint = f"central store {store.display} has no table 'invoices'; run `invoicekit db init URL` first"
    if store.dialect == "sqlite" and not os.path.exists(store.path):
        raise StoreSchemaError(hint, store=store.display, missing=["invoices"])
    try:
        has, version = _schema_state(store)
    except driver_errors() as exc:
        raise translate(exc, store=store.display) from exc
    if not has:
        raise StoreSchemaError(hint, store=store.display, missing=["invoices"])
    if version is None:
        raise StoreSchemaError(
            f"central store {store.display} has no schema version table (invoicekit_schema), so its schema "
            "is unknown; run `invoicekit db init URL` to upgrade it",
            store=store.display, missing=["invoicekit_schema"], reason="schema_outdated")
    if version < SCHEMA_VERSION:
        raise StoreSchemaError(
            f"central store {store.display} has schema version {version}, older than the version "
            f"{SCHEMA_VERSION} this invoicekit needs; run `invoicekit db init URL` to upgrade it",
            store=store.display, missing=[f"migration {v}" for v in range(version + 1, SCHEMA_VERSION + 1)],
            reason="schema_outdated")


def _where(store: CentralStore, where: Mapping[str, Any] | None) -> tuple[str, list]:
    """Equality / IN filters from a mapping, as SQL with bound parameters."""
    if not where:
        return "", []
    clauses, params = [], []
    pg = store.dialect == "postgresql"
    for key, value in where.items():
        if key not in ddl.FILTERABLE:
            raise UsageError(f"where: cannot filter on {key!r}; allowed: {', '.join(ddl.FILTERABLE)}")
        col = ddl.CLIENT_NAME[store.dialect] if key == "client_name" else key
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if not values:
            clauses.append("FALSE" if pg else "0")
            continue
        marks = []
        for v in values:
            params.append(v)
            marks.append(f"${len(params)}" if pg else "?")
        clauses.append(f"{col} IN ({', '.join(marks)})")
    return " WHERE " + " AND ".join(clauses), params


def read_central(url_or_engine: Any, *, where: Mapping[str, Any] | None = None, lines: bool = True) -> InvoiceSet:
    """Load the central store into an :class:`InvoiceSet`.

    ``where`` filters with equality (or a list for IN) on ``id``, ``invoice_number``,
    ``currency``, ``sync_status``, ``version`` or ``client_name``; values are bound as
    parameters, never spliced into SQL. ``lines=False`` skips parsing line items (the
    ``lines`` frame is then empty; ``line_items`` text is still loaded).
    PostgreSQL is read through ADBC (Arrow, binary COPY); amounts stay exact.
    """
    store = CentralStore(url_or_engine)
    _require_schema(store)
    clause, params = _where(store, where)
    try:
        if store.dialect == "postgresql":
            return _read_pg(store, clause, params, lines=lines)
        return _read_sqlite(store, clause, params, lines=lines)
    except driver_errors() as exc:
        raise translate(exc, store=store.display, context="read_central") from exc


def _read_sqlite(store: CentralStore, clause: str, params: list, *, lines: bool) -> InvoiceSet:
    select = [
        ("id", "id", "text"), ("invoice_number", "invoice_number", "text"),
        ("client_data_text", "client_data", "text"), ("line_items_text", "line_items", "text"),
        ("NULL", "total_amount", "real"), ("total", "total_text", "text"),
        ("currency", "currency", "text"), ("created_at", "created_at", "text"),
        ("modified_at", "modified_at", "text"), ("deleted_at", "deleted_at", "text"),
        ("CAST(version AS TEXT)", "version", "text"), ("sync_status", "sync_status", "text"),
        ("checksum", "checksum", "text"),
    ]
    raw = _sqlite.select_arrow(store.path, select, f"(SELECT * FROM invoices{clause} ORDER BY rowid)", params)
    n = raw.num_rows
    raw = raw.append_column("source_row", pa.array(np.arange(1, n + 1, dtype=np.int64)))
    raw = raw.append_column("source", pa.array(np.full(n, store.display, dtype=object), pa.string()))
    return normalize(raw, lines=lines)


# PostgreSQL hands every column in its canonical type: the client fields are generated
# columns, amounts travel as exact integer cents (binary int8) and become decimal128 without
# any text parsing, timestamps arrive as timestamptz. Nothing is left to parse but the
# line items, which the InvoiceSet defers. (Client values that are not JSON strings, e.g. a
# number or a nested object, come out as PostgreSQL renders them: '123.50', '{"a": 1}'.)
_PG_SELECT = (
    "SELECT id, invoice_number, client_name, client_email, client_address, client_tax_id, "
    "client_data_text AS client_data, line_items_text AS line_items, currency, "
    "(total * 100)::int8 AS total_cents, created_at, modified_at, version::int8 AS version, "
    "sync_status, checksum, deleted_at, jsonb_typeof(client_data) = 'object' AS client_ok FROM invoices"
)


def _cents_to_decimal(cents: pa.ChunkedArray, scale: int = 2, precision: int = 12) -> pa.Array:
    """Exact int64 minor units -> decimal128(precision, scale), by laying the int64s out as
    the little-endian int128 unscaled values Arrow stores (no float, no text)."""
    arr = cents.combine_chunks() if isinstance(cents, pa.ChunkedArray) else cents
    values = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    wide = np.empty((len(values), 2), dtype=np.int64)
    wide[:, 0] = values
    wide[:, 1] = values >> 63  # sign extension
    validity = arr.buffers()[0] if arr.null_count else None
    if validity is not None and arr.offset:
        validity = pa.array(arr.is_valid().to_numpy(zero_copy_only=False)).buffers()[1]
    return pa.Array.from_buffers(pa.decimal128(precision, scale), len(values),
                                 [validity, pa.py_buffer(wide.tobytes())], null_count=arr.null_count)


def _read_pg(store: CentralStore, clause: str, params: list, *, lines: bool) -> InvoiceSet:
    try:
        import adbc_driver_postgresql.dbapi as adbc_pg
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("adbc-driver-postgresql", "postgres") from exc
    with adbc_pg.connect(store.libpq) as conn:
        cur = conn.cursor()
        try:
            cur.execute(_PG_SELECT + clause, params or None)
            raw = cur.fetch_arrow_table()
        finally:
            cur.close()
    n = raw.num_rows
    cols = {name: raw.column(name) for name in raw.column_names}
    cols["total"] = _cents_to_decimal(cols.pop("total_cents"))
    cols["source"] = pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([store.display]))
    cols["source_row"] = pa.array(np.arange(1, n + 1, dtype=np.int64))
    invoices = pa.table({name: cols[name] for name in INVOICE_SCHEMA.names}).cast(INVOICE_SCHEMA)
    frame = to_frame(invoices, INVOICE_SCHEMA)
    bad = invoices.filter(pc.invert(raw.column("client_ok").fill_null(False)))
    problems = to_frame(pa.table({
        "source": bad.column("source").cast(pa.string()), "source_row": bad.column("source_row"),
        "id": bad.column("id"), "rule": pa.array(["unparseable_json"] * bad.num_rows, pa.string()),
        "field": pa.array(["client_data"] * bad.num_rows, pa.string()),
        "value": pc.utf8_slice_codeunits(bad.column("client_data"), 0, 80),
        "message": pa.array(["client_data is not a JSON object"] * bad.num_rows, pa.string()),
    }), PROBLEM_SCHEMA)
    if not lines:
        return InvoiceSet(frame, None, problems)
    return InvoiceSet(frame, None, problems, pending_lines=invoices.select(ITEM_COLUMNS))


def _csv(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return buf.getvalue()


_INV_COLS = [
    "id", "invoice_number", "client_data_text", "line_items_text", "currency", "total", "created_at",
    "modified_at", "version", "sync_status", "checksum", "deleted_at", "origin",
]
_LINE_COLS = ["invoice_id", "line_no", "description", "quantity", "unit_price", "line_total"]

_CENTRAL_ROWS_SQL = """
SELECT id, invoice_number, client_data AS client_data_text, line_items AS line_items_text, currency,
       {total} AS total, {ts}(created_at) AS created_at, {ts}(modified_at) AS modified_at,
       version, sync_status, checksum, {ts}(deleted_at) AS deleted_at, source AS origin
FROM inv
"""


def _central_rows(invoice_set: InvoiceSet, *, text: bool) -> tuple[pa.Table, pa.Table]:
    """Invoices and lines shaped as the central tables (money/timestamps as text for SQLite)."""
    con = _duck.connect(inv=invoice_set.invoices_table(), ln=invoice_set.lines_table())
    try:
        if text:
            ts = "strftime_iso"
            con.execute(
                "CREATE OR REPLACE TEMP MACRO strftime_iso(t) AS strftime(t, '%Y-%m-%dT%H:%M:%S.%f+00:00')"
            )
            inv = _duck.arrow(con, _CENTRAL_ROWS_SQL.format(total="CAST(total AS VARCHAR)", ts=ts))
            lines = _duck.arrow(
                con,
                "SELECT invoice_id, line_no, description, CAST(quantity AS VARCHAR) AS quantity, "
                "CAST(unit_price AS VARCHAR) AS unit_price, CAST(line_total AS VARCHAR) AS line_total FROM ln",
            )
        else:
            inv = _duck.arrow(con, _CENTRAL_ROWS_SQL.format(total="total", ts=""))
            lines = _duck.arrow(con, f"SELECT {', '.join(_LINE_COLS)} FROM ln")
    finally:
        con.close()
    return inv, lines


_SET = ", ".join(f"{c} = s.{c}" for c in _INV_COLS if c != "id")

# compare-and-set writes (see _write): updates guarded in their own WHERE clause, inserts of
# ids the store lacks, one audit row per row written, lines replaced for those rows only
_CAS_UPDATE = f"""
WITH upd AS (
  UPDATE invoices AS i SET {_SET}
  FROM ik_stage s JOIN ik_before o ON o.id = s.id
  WHERE i.id = s.id AND {{cond}}
  RETURNING i.id, o.version AS before_version, o.checksum AS before_checksum, s.deleted_at IS NOT NULL AS del
)
INSERT INTO ik_written (id, outcome, before_version, before_checksum, kind)
SELECT id, 'updated', before_version, before_checksum,
       CASE WHEN {{force}} THEN 'force_write' WHEN del THEN 'delete' ELSE 'update' END FROM upd
"""
_CAS_INSERT = f"""
WITH ins AS (
  INSERT INTO invoices ({', '.join(_INV_COLS)})
  SELECT {', '.join(_INV_COLS)} FROM ik_stage s WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.id = s.id)
  ON CONFLICT (id) DO NOTHING
  RETURNING id
)
INSERT INTO ik_written (id, outcome, before_version, before_checksum, kind)
SELECT id, 'inserted', NULL, NULL, 'insert' FROM ins
"""
_CAS_AUDIT = """
INSERT INTO invoicekit_audit (at, actor, op_id, invoice_id, kind, strategy, before_version, after_version,
                              before_checksum, after_checksum)
SELECT {now}, {actor}, {op}, w.id, w.kind, 'write_central', w.before_version, s.version, w.before_checksum, s.checksum
FROM ik_written w JOIN ik_stage s ON s.id = w.id
"""
_CAS_LINES = [
    "DELETE FROM invoice_lines WHERE invoice_id IN (SELECT id FROM ik_written)",
    f"INSERT INTO invoice_lines ({', '.join(_LINE_COLS)}) SELECT {', '.join(_LINE_COLS)} FROM ik_stage_lines "
    "WHERE invoice_id IN (SELECT id FROM ik_written)",
]


def write_central(
    invoice_set: InvoiceSet, url_or_engine: Any, *, validate: bool = True, force: bool = False,
    actor: str | None = None, batch_rows: int = 250_000, progress: bool | None = None,
) -> WriteResult:
    """Write ``invoice_set`` into the central store, compare-and-set, in one transaction.

    Per invoice: a new id is inserted, a higher version updates, the same version with the
    same content is left unchanged, and anything else (a lower version, other content at the
    same version, a live row over a tombstone) is refused and reported: a plain write never
    lowers a version, revives a deletion or overwrites what a sync wrote. ``force=True``
    overwrites whatever differs, and the audit trail names it. Every row written gets an
    audit row (``actor``, default ``user@host``). All or nothing: on any error nothing is
    written. Writing the same set again changes nothing.

    PostgreSQL: rows are streamed with ``COPY`` into temporary staging tables in batches of
    ``batch_rows``. With ``validate`` (default) a set that breaks a rule raises
    :class:`~invoicekit.errors.ValidationError` before anything is written. ``progress``
    shows a bar (default: for 100,000 invoices and lines or more). Returns a
    :class:`~invoicekit.io.WriteResult` (counts, and the refused rows with their reason).
    """
    import uuid

    from ..sync.apply import default_actor
    from ..validate import validate as _validate

    store = CentralStore(url_or_engine)
    _require_schema(store)
    if validate:
        _validate(invoice_set, strict=True)
    inv, lines = _central_rows(invoice_set, text=store.dialect == "sqlite")
    params = {"actor": actor or default_actor(), "op": f"write_central:{uuid.uuid4()}", "now": _now()}
    if store.dialect == "postgresql":
        results = _write_pg(store, inv, lines, force=force, params=params, batch_rows=batch_rows, progress=progress)
    else:
        results = _write_sqlite(store, inv, lines, force=force, params=params, progress=progress)
    return WriteResult(results=results, store=store.display, forced=force)


def _write_pg(store: CentralStore, inv: pa.Table, lines: pa.Table, *, force: bool, params: dict,
              batch_rows: int, progress: bool | None) -> pd.DataFrame:
    steps = [_CAS_UPDATE.format(cond=may_update(force), force="TRUE" if force else "FALSE"), _CAS_INSERT]
    rows = inv.num_rows + lines.num_rows
    marks = {"now": "%(now)s", "actor": "%(actor)s", "op": "%(op)s"}
    with _progress.bar(total=2 * rows, desc="write_central: staging", progress=progress) as bar, \
            store.pg() as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE ik_stage (LIKE invoices INCLUDING DEFAULTS) ON COMMIT DROP")
        cur.execute("CREATE TEMP TABLE ik_stage_lines (LIKE invoice_lines) ON COMMIT DROP")
        cur.execute("CREATE TEMP TABLE ik_written (id TEXT PRIMARY KEY, outcome TEXT, before_version INTEGER, "
                    "before_checksum TEXT, kind TEXT) ON COMMIT DROP")
        for stage, table, cols in (("ik_stage", inv, _INV_COLS), ("ik_stage_lines", lines, _LINE_COLS)):
            with cur.copy(f"COPY {stage} ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as copy:
                for batch in table.to_batches(max_chunksize=batch_rows):
                    copy.write(_csv(pa.Table.from_batches([batch], schema=table.schema)))
                    bar.update(batch.num_rows)
        cur.execute("CREATE UNIQUE INDEX ON ik_stage (id)")
        cur.execute("ANALYZE ik_stage")
        bar.set_description("write_central: merging invoices")
        # the rows as they were, for the audit trail (a view of the same snapshot as the update)
        cur.execute("CREATE TEMP VIEW ik_before AS SELECT id, version, checksum FROM invoices")
        for sql in steps:
            cur.execute(sql, params)
        cur.execute(_CAS_AUDIT.format(**marks), params)
        bar.update(inv.num_rows)
        bar.set_description("write_central: replacing lines")
        for sql in _CAS_LINES:
            cur.execute(sql)
        bar.update(lines.num_rows)
        cur.execute(decide_sql("ik_written"))
        results = result_frame(cur.fetchall())
        cur.execute("DROP VIEW ik_before")
        bar.set_description("write_central: committing")
    if inv.num_rows >= 10_000:  # a bulk load: fresh planner statistics (autovacuum may take a while)
        with store.pg(autocommit=True) as conn:
            conn.execute("ANALYZE invoices, invoice_lines")
    return results


def _sqlite_steps(force: bool) -> list[str]:
    """The compare-and-set writes on SQLite, which has no writing CTEs: decide, then write (a
    SQLite store has one writer at a time, so nothing moves in between)."""
    flag = "TRUE" if force else "FALSE"
    return [
        f"""INSERT INTO ik_written SELECT s.id, 'updated', i.version, i.checksum,
              CASE WHEN {flag} THEN 'force_write' WHEN s.deleted_at IS NOT NULL THEN 'delete' ELSE 'update' END
            FROM ik_stage s JOIN invoices i ON i.id = s.id WHERE {may_update(force)}""",
        f"UPDATE invoices AS i SET {_SET} FROM ik_stage s "
        "WHERE i.id = s.id AND i.id IN (SELECT id FROM ik_written)",
        "INSERT INTO ik_written SELECT s.id, 'inserted', NULL, NULL, 'insert' FROM ik_stage s "
        "WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.id = s.id)",
        f"INSERT INTO invoices ({', '.join(_INV_COLS)}) SELECT {', '.join(_INV_COLS)} FROM ik_stage "
        "WHERE id IN (SELECT id FROM ik_written WHERE outcome = 'inserted')",
    ]


def _write_sqlite(store: CentralStore, inv: pa.Table, lines: pa.Table, *, force: bool, params: dict,
                  progress: bool | None) -> pd.DataFrame:
    inv_rows = list(zip(*(c.to_pylist() for c in inv.columns)))
    line_rows = list(zip(*(c.to_pylist() for c in lines.columns)))
    marks = {"now": ":now", "actor": ":actor", "op": ":op"}
    with _progress.bar(total=inv.num_rows + lines.num_rows, desc="write_central", progress=progress) as bar, \
            _sqlite.write_transaction(store.path) as conn:
        conn.execute(f"CREATE TEMP TABLE ik_stage ({', '.join(_INV_COLS)}, PRIMARY KEY (id))")
        conn.execute(f"CREATE TEMP TABLE ik_stage_lines ({', '.join(_LINE_COLS)})")
        conn.execute("CREATE TEMP TABLE ik_written (id TEXT PRIMARY KEY, outcome TEXT, before_version INTEGER, "
                     "before_checksum TEXT, kind TEXT)")
        conn.executemany(f"INSERT INTO ik_stage VALUES ({', '.join('?' * len(_INV_COLS))})", inv_rows)
        conn.executemany(f"INSERT INTO ik_stage_lines VALUES ({', '.join('?' * len(_LINE_COLS))})", line_rows)
        for sql in _sqlite_steps(force):
            conn.execute(sql)
        conn.execute(_CAS_AUDIT.format(**marks), params)
        bar.update(len(inv_rows))
        for sql in _CAS_LINES:
            conn.execute(sql)
        bar.update(len(line_rows))
        results = result_frame(conn.execute(decide_sql("ik_written")).fetchall())
        for t in ("ik_stage", "ik_stage_lines", "ik_written"):
            conn.execute(f"DROP TABLE temp.{t}")
    return results
