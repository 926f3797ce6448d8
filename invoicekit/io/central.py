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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .. import _duck, _progress
from .._normalize import ITEM_COLUMNS, normalize
from ..errors import MissingDependencyError, StoreError, StoreSchemaError, UsageError
from ..schema import INVOICE_SCHEMA, PROBLEM_SCHEMA, InvoiceSet, to_frame
from . import _central_sql as ddl
from . import _sqlite

__all__ = ["init_db", "read_central", "write_central", "CentralStore", "SCHEMA_VERSION"]

#: the schema version :func:`init_db` creates or upgrades to
SCHEMA_VERSION = len(ddl.POSTGRES)
assert SCHEMA_VERSION == len(ddl.SQLITE), "both dialects number their migrations alike"


class CentralStore:
    """A parsed central-store URL (or SQLAlchemy Engine): dialect, libpq URL or file path."""

    #: ``application_name`` of the PostgreSQL sessions this store opens
    application_name = "invoicekit"

    def __init__(self, url_or_engine: Any) -> None:
        from sqlalchemy.engine import Engine, make_url

        if isinstance(url_or_engine, CentralStore):
            url_or_engine = url_or_engine.url
        url = url_or_engine.url if isinstance(url_or_engine, Engine) else make_url(str(url_or_engine))
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
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to central store {self.display}: {exc}", store=self.display) from exc


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def init_db(url_or_engine: Any) -> int:
    """Create or upgrade the central store idempotently; returns the schema version."""
    store = CentralStore(url_or_engine)
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


def _require_schema(store: CentralStore) -> None:
    hint = f"central store {store.display} has no table 'invoices'; run `invoicekit db init URL` first"
    if store.dialect == "postgresql":
        with store.pg() as conn:
            ok = conn.execute("SELECT to_regclass('invoices') IS NOT NULL").fetchone()[0]
    else:
        if not os.path.exists(store.path):
            raise StoreSchemaError(hint, store=store.display, missing=["invoices"])
        conn = _sqlite.open_checked(store.path, tables=())
        try:
            ok = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='invoices'"
            ).fetchone()[0] == 1
        finally:
            conn.close()
    if not ok:
        raise StoreSchemaError(hint, store=store.display, missing=["invoices"])


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
    if store.dialect == "postgresql":
        return _read_pg(store, clause, params, lines=lines)
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


_PG_UPSERT = f"""
INSERT INTO invoices ({', '.join(_INV_COLS)})
SELECT {', '.join(_INV_COLS)} FROM ik_stage
ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in _INV_COLS if c != 'id')}
"""


def write_central(
    invoice_set: InvoiceSet, url_or_engine: Any, *, validate: bool = True, batch_rows: int = 250_000,
    progress: bool | None = None,
) -> int:
    """Upsert ``invoice_set`` into the central store in one transaction; returns rows written.

    PostgreSQL: rows are streamed with ``COPY`` into a temporary staging table in
    batches of ``batch_rows``, then merged with one ``INSERT ... ON CONFLICT`` and the
    affected invoices' lines replaced. All or nothing: on any error nothing is written.
    Writing the same set again leaves the same content (idempotent). With ``validate``
    (default) a set that breaks a rule raises :class:`~invoicekit.errors.ValidationError`
    before anything is written. ``progress`` shows a bar (default: for 100,000 invoices
    and lines or more) that counts the rows staged, then the invoices merged and the lines
    replaced (each of those one statement, so the bar moves when it ends).
    """
    from ..validate import validate as _validate

    store = CentralStore(url_or_engine)
    _require_schema(store)
    if validate:
        _validate(invoice_set, strict=True)
    inv, lines = _central_rows(invoice_set, text=store.dialect == "sqlite")
    rows = inv.num_rows + lines.num_rows
    if store.dialect == "postgresql":
        with _progress.bar(total=2 * rows, desc="write_central: staging", progress=progress) as bar, \
                store.pg() as conn, conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE ik_stage (LIKE invoices INCLUDING DEFAULTS) ON COMMIT DROP")
            cur.execute("CREATE TEMP TABLE ik_stage_lines (LIKE invoice_lines) ON COMMIT DROP")
            for stage, table, cols in (("ik_stage", inv, _INV_COLS), ("ik_stage_lines", lines, _LINE_COLS)):
                with cur.copy(f"COPY {stage} ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as copy:
                    for batch in table.to_batches(max_chunksize=batch_rows):
                        copy.write(_csv(pa.Table.from_batches([batch], schema=table.schema)))
                        bar.update(batch.num_rows)
            bar.set_description("write_central: merging invoices")
            cur.execute(_PG_UPSERT)
            bar.update(inv.num_rows)
            bar.set_description("write_central: replacing lines")
            cur.execute("DELETE FROM invoice_lines WHERE invoice_id IN (SELECT id FROM ik_stage)")
            cur.execute(f"INSERT INTO invoice_lines ({', '.join(_LINE_COLS)}) "
                        f"SELECT {', '.join(_LINE_COLS)} FROM ik_stage_lines")
            bar.update(lines.num_rows)
            bar.set_description("write_central: committing")
        if inv.num_rows >= 10_000:  # a bulk load: fresh planner statistics (autovacuum may take a while)
            with store.pg(autocommit=True) as conn:
                conn.execute("ANALYZE invoices, invoice_lines")
    else:
        inv_rows = list(zip(*(c.to_pylist() for c in inv.columns)))
        line_rows = list(zip(*(c.to_pylist() for c in lines.columns)))
        marks = ", ".join("?" * len(_INV_COLS))
        upsert = (
            f"INSERT INTO invoices ({', '.join(_INV_COLS)}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in _INV_COLS if c != "id")
        )
        with _progress.bar(total=rows, desc="write_central", progress=progress) as bar, \
                _sqlite.write_transaction(store.path) as conn:
            conn.executemany(upsert, inv_rows)
            bar.update(len(inv_rows))
            conn.executemany("DELETE FROM invoice_lines WHERE invoice_id = ?", [(r[0],) for r in inv_rows])
            conn.executemany(
                f"INSERT INTO invoice_lines ({', '.join(_LINE_COLS)}) VALUES (?, ?, ?, ?, ?, ?)", line_rows
            )
            bar.update(len(line_rows))
    return inv.num_rows
