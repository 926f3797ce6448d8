"""The PostgreSQL central store: psycopg for writes (``COPY`` into staging tables), ADBC
(Arrow, binary COPY) for reads; money and timestamps travel typed.

A sync batch (:meth:`PostgresStore.apply_batch`) is one transaction: the payloads go
through a staging table (COPY), operations already in ``invoicekit_ledger`` are skipped,
``UPDATE ... FROM`` staging ``WHERE version = expected`` applies the edits and deletions
(two statements: edits that keep the client text, then those that change it) and one
``INSERT ... ON CONFLICT (id) DO NOTHING`` the new invoices. Rows whose central version
moved since the plan (or that appeared meanwhile) are not touched and come back as
conflicts. Applied operations enter the ledger and the append-only audit trail in the same
statement, so an operation is applied exactly once even if the caller dies between the
commit and its acknowledgement.

Why an ``UPDATE`` and not one ``INSERT ... ON CONFLICT DO UPDATE`` for edits: the update
can return the row as it was (version and checksum before, for the audit) from the same
index probe, and it needs no per-row subquery for the expected version; see BENCHMARKS.md
for the measured difference.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ... import _progress
from ..._normalize import ITEM_COLUMNS
from ...errors import MissingDependencyError, translate
from ...schema import INVOICE_SCHEMA, PROBLEM_SCHEMA, InvoiceSet, to_frame
from ...security.identity import TokenLike, TokenSecret
from .. import _central_sql as ddl
from .. import _lines_view
from .._write import decide_sql, kind_sql, may_update, result_frame
from ._shared import (
    CAS_AUDIT,
    CAS_SET,
    CAS_WRITTEN,
    CENTRAL_SAME,
    INV_COLS,
    LEDGER_HAS_CONTENT,
    LEDGER_SAME,
    LINE_COLS,
    STAGE_EXTRA,
    apply_migrations,
    csv_bytes,
    with_stage_extra,
)
from .base import CentralStore, SnapshotState, now_iso

__all__ = ["PostgresStore", "PG_SELECT", "default_push_role"]


class PostgresStore(CentralStore):
    """A PostgreSQL central store (``postgresql://`` URL); ``libpq`` is its connection string."""

    dialect = "postgresql"
    migrations = ddl.POSTGRES
    rows_as_text = False
    client_name_sql = "client_data->>'name'"

    libpq: str

    def _configure(self) -> None:
        self.libpq = self.url.set(drivername="postgresql").render_as_string(hide_password=False)

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

    # -- schema -----------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply the missing migrations in one transaction, one initialiser at a time (advisory lock)."""
        with self.pg() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(7260417)")  # one initialiser at a time
            conn.execute(ddl.META)
            return apply_migrations(conn, self.migrations, mark="%s", now=now_iso())

    def schema_state(self) -> tuple[bool, int | None]:
        """One query; a second only when ``invoicekit_schema`` is missing."""
        import psycopg

        with self.pg() as conn:
            try:
                has, version = conn.execute(_SCHEMA_SQL).fetchone()
            except psycopg.errors.UndefinedTable:  # no invoicekit_schema: not made by init_db
                conn.rollback()
                has, version = conn.execute(_HAS_TABLE_SQL, ("invoices",)).fetchone()[0], None
        return bool(has), version

    def has_table(self, name: str) -> bool:
        """``to_regclass(name)`` on the connection's search path."""
        with self.pg() as conn:
            return bool(conn.execute(_HAS_TABLE_SQL, (name,)).fetchone()[0])

    def ping(self, timeout: float) -> None:
        """Connect and ``SELECT 1``; libpq counts its connect timeout in whole seconds, at
        least 2, so ``timeout`` is rounded up to that; the query gets ``statement_timeout``."""
        import math

        ms = max(1, int(timeout * 1000))
        with self.pg(connect_timeout=max(2, math.ceil(timeout)), autocommit=True,
                     options=f"-c statement_timeout={ms}") as conn:
            conn.execute("SELECT 1")

    def probe_hard_delete(self, invoice_id: str) -> None:
        """Refused by the schema's trigger (version 5): psycopg raises its message."""
        with self.pg() as conn:
            try:
                conn.execute("DELETE FROM invoices WHERE id = %s", (invoice_id,))
            finally:
                conn.rollback()

    # -- whole-store comparison pushed down (invoicekit.io.pushdown) -----------------------
    compares_keys = True

    def compare_keys(self, keys: pa.Table, *, opaque: Sequence[str] = ()) -> pa.Table:
        """ADBC's bulk ingest (binary ``COPY``) stages ``keys`` into a temporary table of the
        session (in memory: ``temp_buffers`` is raised before it exists), which is
        full-outer-joined with ``invoices`` on id in one hash join (``work_mem`` raised
        for the transaction so the hash of the staged keys stays in memory); only the rows
        whose keys differ come back."""
        try:
            import adbc_driver_postgresql.dbapi as adbc_pg
        except ImportError as exc:  # pragma: no cover
            raise MissingDependencyError("adbc-driver-postgresql", "postgres") from exc
        marks = "".join(f" OR starts_with(i.client_data_text, ${n})" for n in range(1, len(opaque) + 1))
        sql = _KEYS_DIFF.format(keys=_KEYS_TABLE, opaque=f" AND NOT coalesce(false{marks}, false)" if opaque else "")
        with adbc_pg.connect(self.libpq) as conn:
            cur = conn.cursor()
            try:
                cur.execute(_KEYS_SESSION)
                cur.adbc_ingest(_KEYS_TABLE, keys, mode="create", temporary=True)
                for stmt in _KEYS_PREPARE:
                    cur.execute(stmt)
                cur.execute(sql, list(opaque) or None)
                return cur.fetch_arrow_table()
            finally:
                cur.close()

    def central_keys(self, *, opaque: Sequence[str] = ()) -> pa.Table:
        """The keys of every row (no line items, no client text: about 130 B a row), read
        by two sessions in one exported snapshot, each scanning half of the table's pages
        (a TID range scan), so two server processes do the scan."""
        marks = " OR ".join(f"starts_with(client_data_text, ${n})" for n in range(2, len(opaque) + 2))
        sql = _KEYS_PULL.format(opaque=f"coalesce({marks}, false)" if opaque else "false")
        with self.read_session() as session:
            session._query("SET LOCAL jit = off")
            pages = session._query(_KEYS_PAGES).column(0)[0].as_py() or 0
            middle = f"({max(int(pages) // 2, 1)},0)"
            if (os.cpu_count() or 1) < 2 or pages < 2:
                return session._query(sql.format(op=">="), ["(0,0)", *opaque])
            return session.in_two(lambda s: s._query(sql.format(op="<"), [middle, *opaque]),
                                  lambda s: s._query(sql.format(op=">="), [middle, *opaque]))

    # -- incremental snapshots --------------------------------------------------------------
    def snapshot_state(self, since: str | None, *, identity: str | None = None) -> SnapshotState:
        """The marker is ``pg_current_snapshot()`` (which transactions had committed), taken
        first; the identity is the store's uuid, its database's oid and its schema (a database
        cloned from a template keeps the uuid, not the oid)."""
        with self.read_session() as session:
            return session.snapshot_state(since, identity=identity)

    def read_session(self) -> "_AdbcSession":
        """One ADBC connection for a snapshot's state and the read of what changed."""
        return _AdbcSession(self)

    # -- plain statements -------------------------------------------------------------------
    mark = "%s"

    def fetch(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Through psycopg, in a transaction of its own."""
        with self.pg() as conn:
            return conn.execute(sql, tuple(params)).fetchall()

    def execute(self, sql: str, rows: Sequence[Sequence], *, token: TokenLike = None) -> None:
        """``executemany`` through psycopg, one transaction (the token verified first)."""
        with self.pg() as conn, conn.cursor() as cur:
            self._authorize(cur, token)
            cur.executemany(sql, [tuple(r) for r in rows])

    # -- signed identities ------------------------------------------------------------------
    def enable_tokens(self, secret: TokenSecret, *, issuer: str, push_role: str | None = None) -> str:
        """In one transaction: pgcrypto, the secret (owner-only table), the push role (created
        NOLOGIN unless it exists: grant it to the login roles that push), the verifying
        function, grants and row-level security policies (``_central_sql.PG_IDENTITY_ON``)."""
        from psycopg import sql

        with self.pg() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(7260417)")  # one initialiser at a time
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
            database, schema, ext = conn.execute(ddl.PG_IDENTITY_NAMES).fetchone()
            role = push_role or default_push_role(database, schema)
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            conn.execute(_SECRET_UPSERT, (secret.reveal(),))
            conn.execute(_IDENTITY_UPSERT, (issuer, role, now_iso()))
            names = {"schema": sql.Identifier(schema), "ext": sql.Identifier(ext), "role": sql.Identifier(role)}
            for stmt in ddl.PG_IDENTITY_ON:
                conn.execute(sql.SQL(stmt).format(**names))
        return role

    def tokens_enabled(self) -> bool:
        """Whether ``invoicekit_identity`` holds its row."""
        with self.pg() as conn:
            return conn.execute("SELECT count(*) FROM invoicekit_identity").fetchone()[0] > 0

    def identify(self, token: TokenLike) -> str | None:
        """Verified by the store, in a transaction that writes nothing."""
        with self.pg() as conn, conn.cursor() as cur:
            return self._authorize(cur, token)

    def _authorize(self, cur, token: TokenLike) -> str | None:
        """First thing in a push's transaction: the token's verified subject (the store itself
        checks it, see ``_central_sql.PG_TOKEN_FUNCTION``), or None on a store without tokens."""
        cur.execute("SELECT count(*) FROM invoicekit_identity")
        text = self.push_token(token, enabled=cur.fetchone()[0] > 0)
        if text is None:
            return None
        cur.execute("SELECT set_config('invoicekit.token', %s, true)", (text,))
        cur.execute("SELECT invoicekit_token_subject()")
        return cur.fetchone()[0]

    # -- read -------------------------------------------------------------------------------
    def param(self, n: int) -> str:
        """ADBC's numbered placeholders (``$1``, ``$2``, ...)."""
        return f"${n}"

    def read(self, clause: str, params: list, *, lines: bool, ids: pa.Array | None = None) -> InvoiceSet:
        """Through ADBC (Arrow, binary COPY): every column arrives typed, amounts as exact
        cents; line items are left for the InvoiceSet to parse when first asked for.

        With ``ids``: ADBC's bulk ingest (binary ``COPY``) stages them, with their position,
        into a temporary table of the session (gone when it closes), which is analysed and
        joined on the invoices' primary key; rows come in the order of ``ids``."""
        with self.read_session() as session:
            raw = session.fetch_rows(clause, params, ids=ids)
        return self.invoice_set(raw, ids=ids, lines=lines)

    def invoice_set(self, raw: pa.Table, *, ids: pa.Array | None, lines: bool) -> InvoiceSet:
        """The rows of :data:`PG_SELECT` (or of the read by ids) as an InvoiceSet."""
        if ids is not None:
            raw = raw.take(pc.sort_indices(raw.column("ik_ord"))).drop_columns(["ik_ord"])
        n = raw.num_rows
        cols = {name: raw.column(name) for name in raw.column_names}
        cols["total"] = _cents_to_decimal(cols.pop("total_cents"))
        cols["source"] = pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([self.display]))
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

    # -- write_central ----------------------------------------------------------------------
    def write(self, inv: pa.Table, lines: pa.Table, *, force: bool, params: dict, batch_rows: int,
              progress: bool | None, undelete: frozenset[str] = frozenset(),
              notes: Mapping[str, str] | None = None, token: TokenLike = None) -> pd.DataFrame:
        """Rows ``COPY``'d into staging tables in batches of ``batch_rows``, then merged by
        writing CTEs whose ``WHERE`` holds the compare-and-set guard. The lines are staged
        only for invoices the ``invoice_lines`` view does not derive (schema version 11)."""
        steps = [_CAS_UPDATE.format(cond=may_update(force), kind=kind_sql(force)), _CAS_INSERT]
        inv = with_stage_extra(inv, undelete, notes)
        kept, kept_lines = _kept(inv, lines)  # lines the invoice_lines view does not derive
        rows = inv.num_rows + kept.num_rows + kept_lines.num_rows
        marks = {"now": "%(now)s", "actor": "%(actor)s", "op": "%(op)s"}
        with _progress.bar(total=2 * rows, desc="write_central: staging", progress=progress) as bar, \
                self.pg() as conn, conn.cursor() as cur:
            subject = self._authorize(cur, token)
            if subject is not None:  # the audit names the verified identity, not a free-text actor
                params = {**params, "actor": subject}
            cur.execute("CREATE TEMP TABLE ik_stage (LIKE invoices INCLUDING DEFAULTS) ON COMMIT DROP")
            cur.execute("ALTER TABLE ik_stage ADD COLUMN undelete BOOLEAN NOT NULL DEFAULT FALSE, ADD COLUMN note TEXT")
            cur.execute(_lines_view.STAGE_KEPT.format(ids="ik_stage_kept"))
            cur.execute(_lines_view.STAGE_KEPT_LINES.format(lines="ik_stage_lines"))
            cur.execute(f"CREATE TEMP TABLE {CAS_WRITTEN} ON COMMIT DROP")
            for stage, table, cols in (("ik_stage", inv, INV_COLS + STAGE_EXTRA),
                                       ("ik_stage_kept", kept, ["id"]),
                                       ("ik_stage_lines", kept_lines, LINE_COLS)):
                with cur.copy(f"COPY {stage} ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as copy:
                    for batch in table.to_batches(max_chunksize=batch_rows):
                        copy.write(csv_bytes(pa.Table.from_batches([batch], schema=table.schema)))
                        bar.update(batch.num_rows)
            cur.execute("CREATE UNIQUE INDEX ON ik_stage (id)")
            cur.execute("ANALYZE ik_stage")
            bar.set_description("write_central: merging invoices")
            # the rows as they were, for the audit trail (a view of the same snapshot as the update)
            cur.execute("CREATE TEMP VIEW ik_before AS SELECT id, version, checksum, deleted_at FROM invoices")
            for sql in steps:
                cur.execute(sql, params)
            cur.execute(CAS_AUDIT.format(**marks), params)
            bar.update(inv.num_rows)
            bar.set_description("write_central: lines kept as stored")
            for sql in _lines_view.WRITE_KEPT:
                cur.execute(sql)
            bar.update(kept.num_rows + kept_lines.num_rows)
            cur.execute(decide_sql("ik_written"))
            results = result_frame(cur.fetchall())
            cur.execute("DROP VIEW ik_before")
            bar.set_description("write_central: committing")
        if inv.num_rows >= 10_000:  # a bulk load: fresh planner statistics (autovacuum may take a while)
            with self.pg(autocommit=True) as conn:
                conn.execute("ANALYZE invoices")
        return results

    # -- sync batches -----------------------------------------------------------------------
    def push_workers(self, workers: int, batches: int) -> int:
        """``workers`` connections at once: a plan pushes each invoice at most once, so batches
        touch disjoint rows (each batch its own transaction)."""
        return max(1, min(workers, batches))

    def apply_batch(self, inv: pa.Table, lines: pa.Table, *, actor: str, strategy: str,
                    now: str | None = None, token: TokenLike = None) -> tuple[set, set]:
        """Apply one batch (see the module doc); ``now`` is unused: the server stamps the rows.

        Every join in the batch's statements has an index on its inner side (the central
        tables' keys, the staging tables' unique indexes), and a batch is small beside the
        central table, so the planner is told to use nested loops: one index probe per staged
        row instead of a scan (or a hash) of the whole central table, with no ``ANALYZE`` of
        the staging tables. Updates that leave every indexed column alone are HOT updates
        (schema version 4 keeps free space in the central tables' pages). No line is
        written: the ``invoice_lines`` view derives them from the text (schema version 11),
        except for the rare invoices it would not derive as the toolkit does (kept).
        """
        cols = INV_COLS + ["op_id", "expected", "content_sha"]
        inv = inv.sort_by("id")
        kept, kept_lines = _kept(inv, lines)
        with self.pg() as conn, conn.cursor() as cur:
            actor = self._authorize(cur, token) or actor
            # staging tables in memory (before the session's first temporary table), no JIT
            # compilation for statements that run once, index probes rather than whole-table joins
            cur.execute("SET LOCAL temp_buffers = '256MB'")
            cur.execute("SET LOCAL jit = off")
            cur.execute("SET LOCAL enable_hashjoin = off")
            cur.execute("SET LOCAL enable_mergejoin = off")
            cur.execute("CREATE TEMP TABLE ik_push (LIKE invoices INCLUDING DEFAULTS) ON COMMIT DROP")
            cur.execute("ALTER TABLE ik_push ADD COLUMN op_id TEXT, ADD COLUMN expected INTEGER, "
                        "ADD COLUMN content_sha TEXT")
            cur.execute(_lines_view.STAGE_KEPT.format(ids="ik_push_kept"))
            cur.execute(_lines_view.STAGE_KEPT_LINES.format(lines="ik_push_lines"))
            cur.execute("CREATE TEMP TABLE ik_applied (id TEXT PRIMARY KEY, op_id TEXT, lines_changed BOOLEAN) "
                        "ON COMMIT DROP")
            with cur.copy(f"COPY ik_push ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as copy:
                copy.write(csv_bytes(inv.select(cols)))
            if kept_lines.num_rows:
                with cur.copy(f"COPY ik_push_lines ({_LCOLS}) FROM STDIN (FORMAT csv)") as copy:
                    copy.write(csv_bytes(kept_lines))
            if len(kept):
                with cur.copy("COPY ik_push_kept (id) FROM STDIN (FORMAT csv)") as copy:
                    copy.write(csv_bytes(kept))
            cur.execute("CREATE UNIQUE INDEX ON ik_push (id)")
            cur.execute(f"DELETE FROM ik_push p USING invoicekit_ledger l WHERE l.op_id = p.op_id "
                        f"RETURNING p.op_id, {LEDGER_SAME}")
            seen = cur.fetchall()
            already = {r[0] for r in seen if r[1]}
            params = {"actor": actor, "strategy": strategy}
            for sql in _PUSH_UPDATES:
                cur.execute(sql, params)
            cur.execute(_PUSH_INSERT, params)
            for sql in _lines_view.PUSH_KEPT:
                cur.execute(sql)
            cur.execute("SELECT op_id FROM ik_applied")
            applied = {r[0] for r in cur.fetchall()}
            # a concurrent run of the same plan may have committed these ops while we waited on
            # their rows; or the central row holds this very change already (under another op id)
            cur.execute(_PUSH_ALREADY)
            already |= {r[0] for r in cur.fetchall()}
        return applied, already


def _kept(inv: pa.Table, lines: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(ids, lines) of the invoices of a write whose lines the ``invoice_lines`` view would
    not derive as the toolkit does (see :mod:`invoicekit.io._lines_view`): they are stored."""
    ids = _lines_view.kept_ids(inv, lines)
    kept_lines = lines.filter(pc.is_in(lines.column("invoice_id"), value_set=ids)) if len(ids) else \
        lines.schema.empty_table()
    return pa.table({"id": ids}), kept_lines.select(LINE_COLS)


def default_push_role(database: str, schema: str) -> str:
    """The push role of a store: ``<database>_ik_push`` (``<database>_<schema>_ik_push`` outside
    schema ``public``); roles are global to the cluster, so each store has its own. A name
    longer than PostgreSQL's 63 bytes becomes ``ik_push_`` and a hash of the two."""
    import hashlib

    name = f"{database}_ik_push" if schema == "public" else f"{database}_{schema}_ik_push"
    if len(name.encode()) <= 63:
        return name
    return "ik_push_" + hashlib.sha256(f"{database}.{schema}".encode()).hexdigest()[:24]


# -- signed identities: the secret (owner-only) and the public settings, one row each ----------
_SECRET_UPSERT = ("INSERT INTO invoicekit_token_secret (singleton, secret) VALUES (1, %s) "
                  "ON CONFLICT (singleton) DO UPDATE SET secret = excluded.secret")
_IDENTITY_UPSERT = ("INSERT INTO invoicekit_identity (singleton, issuer, push_role, enabled_at) VALUES (1, %s, %s, %s) "
                    "ON CONFLICT (singleton) DO UPDATE SET issuer = excluded.issuer, push_role = excluded.push_role")

class _AdbcSession:
    """One ADBC connection (opened by :meth:`open`, or on first use) for the statements of
    one read: a snapshot's state, then the rows. Used by one thread at a time; the
    connection may be opened on another thread than the one that uses it (a snapshot
    opens it while it maps its files)."""

    def __init__(self, store: PostgresStore) -> None:
        self.store, self._conn = store, None

    def open(self, *, snapshot: str | None = None) -> "_AdbcSession":
        """Connect, in a REPEATABLE READ transaction (its statements see one snapshot of the
        store; ``snapshot``: the one another session exported)."""
        if self._conn is None:
            try:
                import adbc_driver_postgresql.dbapi as adbc_pg
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise MissingDependencyError("adbc-driver-postgresql", "postgres") from exc
            conn = adbc_pg.connect(self.store.libpq)
            try:
                cur = conn.cursor()
                try:
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    if snapshot is not None:
                        if not _EXPORTED.fullmatch(snapshot):  # (the server's own text; checked anyway)
                            raise ValueError(f"not an exported snapshot: {snapshot!r}")
                        cur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                finally:
                    cur.close()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def __enter__(self) -> "_AdbcSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _query(self, sql: str, params: Sequence = ()) -> pa.Table:
        cur = self.open()._conn.cursor()
        try:
            cur.execute(sql, list(params) or None)
            return cur.fetch_arrow_table()
        finally:
            cur.close()

    def snapshot_state(self, since: str | None, *, identity: str | None = None) -> SnapshotState:
        """See :meth:`PostgresStore.snapshot_state`; the changed ids arrive as Arrow."""
        current, version, marker = self._query(_SNAPSHOT_NOW_ADBC).to_pylist()[0].values()
        if since is None or identity != current:
            return SnapshotState(current, version, marker)
        if not self._query(_SNAPSHOT_SINCE_OK_ADBC, (since, marker)).column(0)[0].as_py():
            return SnapshotState(current, version, marker, since_ok=False)
        self._query("SET jit = off")  # (a plan over a million markers would compile: 75 ms)
        changed = self._query(_SNAPSHOT_CHANGED_ADBC, (since, since)).column(0)
        return SnapshotState(current, version, marker, changed=changed.combine_chunks().cast(pa.string()))

    def read(self, clause: str, params: list, *, lines: bool, ids: pa.Array | None = None,
             split: bool = True) -> InvoiceSet:
        """See :meth:`PostgresStore.read` and :meth:`fetch_rows`."""
        return self.store.invoice_set(self.fetch_rows(clause, params, ids=ids, split=split), ids=ids, lines=lines)

    def fetch_rows(self, clause: str, params: list, *, ids: pa.Array | None, split: bool = True) -> pa.Table:
        """The raw rows (with ``ik_ord``, the position in ``ids``, when read by ``ids``).

        The ids are staged sorted (the join then probes the primary key in order: about 15%
        less time than in the caller's order). From :data:`_SPLIT_IDS` ids on, on a machine
        with more than one core, the lower half is read here and the upper half by a second
        session in the same snapshot (``pg_export_snapshot``), each by its own server
        process: the index probes and heap fetches of a read by id are the server's work.
        ``split=False`` keeps it to this session (a caller that keeps the cores busy itself)."""
        if ids is None:
            return self._query(PG_SELECT + clause, params or ())
        order = pc.sort_indices(ids)
        staged = pa.table({"ik_id": ids.take(order), "ik_ord": order.cast(pa.int64())})
        if not split or len(ids) < _SPLIT_IDS or (os.cpu_count() or 1) < 2:
            return self._select_ids(staged, clause, params)
        half = len(ids) // 2
        return self.in_two(lambda s: s._select_ids(staged.slice(0, half), clause, params),
                           lambda s: s._select_ids(staged.slice(half), clause, params))

    def in_two(self, lower, upper) -> pa.Table:
        """``lower(self)`` here and ``upper(other)`` on a second session in this one's snapshot
        (``pg_export_snapshot``), at once on a thread; their rows, lower first. JIT is off in
        both (their plans read many rows by simple means)."""
        from concurrent.futures import ThreadPoolExecutor

        self._query("SET LOCAL jit = off")
        exported = self._query("SELECT pg_export_snapshot()").column(0)[0].as_py()

        def other_half() -> pa.Table:
            with _AdbcSession(self.store) as other:
                other.open(snapshot=exported)._query("SET LOCAL jit = off")
                return upper(other)

        with ThreadPoolExecutor(1, thread_name_prefix="invoicekit-read") as pool:
            theirs = pool.submit(other_half)
            try:
                mine = lower(self)
            finally:
                rows = theirs.result()  # (the other session is done before this one goes on)
        return pa.concat_tables([mine, rows])

    def _select_ids(self, staged: pa.Table, clause: str, params: list) -> pa.Table:
        cur = self.open()._conn.cursor()
        try:
            cur.adbc_ingest(_IDS_TABLE, staged, mode="replace", temporary=True)
            for sql in _IDS_PREPARE:
                cur.execute(sql)
            cur.execute(_IDS_SELECT + clause, params or None)
            return cur.fetch_arrow_table()
        finally:
            cur.close()



# -- incremental snapshots (schema version 10) -------------------------------------------------
_SNAPSHOT_NOW_ADBC = ("SELECT (SELECT store_id FROM invoicekit_store) || '/' || (SELECT oid FROM pg_database "
                      "WHERE datname = current_database())::text || '/' || current_schema() AS identity, "
                      "(SELECT max(version) FROM invoicekit_schema)::int8 AS version, "
                      "pg_current_snapshot()::text AS marker")
_SNAPSHOT_SINCE_OK_ADBC = "SELECT pg_snapshot_xmax($1::text::pg_snapshot) <= pg_snapshot_xmax($2::text::pg_snapshot)"
# the invoices whose last writing transaction is not visible in snapshot ``since``: an index
# range from the snapshot's xmin on (the parameter is bound, so the planner sees its value),
# then the snapshot's own visibility test (whether the store still holds each, the fetch says)
_SNAPSHOT_CHANGED_ADBC = ("SELECT c.invoice_id FROM invoicekit_changes c "
                          "WHERE c.xid >= pg_snapshot_xmin($1::text::pg_snapshot) "
                          "AND NOT pg_visible_in_snapshot(c.xid, $2::text::pg_snapshot) ORDER BY c.invoice_id")

# -- schema checks: one query on the happy path ------------------------------------------------
_SCHEMA_SQL = "SELECT to_regclass('invoices') IS NOT NULL, max(version) FROM invoicekit_schema"
_HAS_TABLE_SQL = "SELECT to_regclass(%s) IS NOT NULL"

# -- read_central ------------------------------------------------------------------------------
# PostgreSQL hands every column in its canonical type: the client fields are generated
# columns, amounts travel as exact integer cents (binary int8) and become decimal128 without
# any text parsing, timestamps arrive as timestamptz. Nothing is left to parse but the
# line items, which the InvoiceSet defers. (Client values that are not JSON strings, e.g. a
# number or a nested object, come out as PostgreSQL renders them: '123.50', '{"a": 1}'.)
_PG_COLUMNS = (
    "id, invoice_number, client_name, client_email, client_address, client_tax_id, "
    "client_data_text AS client_data, line_items_text AS line_items, currency, "
    "(total * 100)::int8 AS total_cents, created_at, modified_at, version::int8 AS version, "
    "sync_status, checksum, deleted_at, jsonb_typeof(client_data) = 'object' AS client_ok"
)
PG_SELECT = f"SELECT {_PG_COLUMNS} FROM invoices"

# read_central(ids=...): the ids (distinct) staged in a temporary table (ADBC bulk ingest =
# binary COPY) with their position, given statistics (temporary tables are never analysed by
# autovacuum: without them the planner guesses their size), and joined on the invoices'
# primary key; the rows are put in the ids' order afterwards, in Arrow (a sort of the wide
# rows in the server would spill to disk beyond work_mem)
_IDS_TABLE = "ik_read_ids"
#: a read of at least this many ids is split over two sessions (see _AdbcSession.fetch_rows)
_SPLIT_IDS = 8192
#: what pg_export_snapshot() returns
_EXPORTED = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")
_IDS_PREPARE = [f"ANALYZE {_IDS_TABLE}", "SET LOCAL jit = off"]  # (a read of ids costs no JIT compilation)
_IDS_SELECT = f"SELECT {_PG_COLUMNS}, k.ik_ord FROM invoices JOIN {_IDS_TABLE} k ON k.ik_id = invoices.id"

# reconcile(..., scope="all") pushed down: the local keys staged (see read_central(ids=...)
# above), joined with every central row on id, and only the ids whose keys differ (or that
# one side lacks) returned, with the central row's keys
_KEYS_TABLE = "ik_compare_keys"
_KEYS_SESSION = "SET temp_buffers = '1GB'"  # before the session's first temporary table
# (no ANALYZE: a full join has one plan, a hash join, whose size the planner takes from the
# table's pages)
# the keys of every central row, half of the table's pages at a time ({op} < or >= the middle page)
_KEYS_PAGES = "SELECT pg_relation_size('invoices') / current_setting('block_size')::int8"
_KEYS_PULL = ("SELECT id, version::int8 AS version, checksum, currency, modified_at, deleted_at, {opaque} AS ik_opaque "
              "FROM invoices WHERE ctid {{op}} $1::text::tid")
_KEYS_PREPARE = ["SET LOCAL jit = off", "SET LOCAL work_mem = '512MB'"]
_KEYS_DIFF = """
SELECT coalesce(k.ik_id, i.id) AS id, k.ik_id IS NOT NULL AS in_local, i.id IS NOT NULL AS in_central,
       i.version::int8 AS version, i.checksum, i.modified_at, i.deleted_at
FROM {keys} k FULL JOIN invoices i ON i.id = k.ik_id
WHERE NOT coalesce(i.version = k.ik_version AND i.checksum = k.ik_checksum
                   AND i.currency IS NOT DISTINCT FROM k.ik_currency
                   AND i.modified_at IS NOT DISTINCT FROM k.ik_modified_at
                   AND i.deleted_at IS NOT DISTINCT FROM k.ik_deleted_at{opaque}, false)
"""


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


# -- write_central: compare-and-set (see io/_write.py) ------------------------------------------
# updates guarded in their own WHERE clause, inserts of ids the store lacks, one audit row per
# row written (CAS_AUDIT), lines replaced for those rows only (CAS_LINES)
_CAS_UPDATE = f"""
WITH upd AS (
  UPDATE invoices AS i SET {CAS_SET}
  FROM ik_stage s JOIN ik_before o ON o.id = s.id
  WHERE i.id = s.id AND {{cond}}
  RETURNING i.id, o.version AS before_version, o.checksum AS before_checksum, {{kind}} AS kind
)
INSERT INTO ik_written (id, outcome, before_version, before_checksum, kind)
SELECT id, 'updated', before_version, before_checksum, kind FROM upd
"""
_CAS_INSERT = f"""
WITH ins AS (
  INSERT INTO invoices ({', '.join(INV_COLS)})
  SELECT {', '.join(INV_COLS)} FROM ik_stage s WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.id = s.id)
  ON CONFLICT (id) DO NOTHING
  RETURNING id
)
INSERT INTO ik_written (id, outcome, before_version, before_checksum, kind)
SELECT id, 'inserted', NULL, NULL, 'insert' FROM ins
"""

# -- sync batches --------------------------------------------------------------------------------
_COLS = ", ".join(INV_COLS)
_LCOLS = ", ".join(LINE_COLS)
_UPD_SET = ", ".join(f"{c} = p.{c}" for c in INV_COLS if c != "id")

# What every applied operation leaves, from a CTE ``done`` (id, op_id, version, checksum,
# before_version, before_checksum, kind, lines_changed): its ledger row, its audit row, and
# its id in ``ik_applied`` for the line items step.
_RECORD = """, led AS (
  INSERT INTO invoicekit_ledger (op_id, invoice_id, new_version, payload_checksum, content_sha)
  SELECT op_id, id, version, checksum, content_sha FROM done
), aud AS (
  INSERT INTO invoicekit_audit (actor, op_id, invoice_id, kind, strategy, before_version, after_version,
                                before_checksum, after_checksum)
  SELECT %(actor)s, op_id, id, kind, %(strategy)s, before_version, version, before_checksum, checksum FROM done
)
INSERT INTO ik_applied (id, op_id, lines_changed) SELECT id, op_id, lines_changed FROM done
"""

# Updates: one index probe per staged row (the planner is steered to nested loops, see
# apply_batch); ``o`` is the row as it was before this statement (same snapshot), which the
# audit trail records. A row whose version moved is not matched: it comes back as a conflict.
# Two statements: edits that keep the client text as it is leave ``client_data_text`` out of
# the SET list, so PostgreSQL does not recompute the five generated client columns (five JSON
# parses per row, about a third of the update's CPU); the second statement takes the edits
# whose client text changed (and only the staged rows the first did not apply).
_PUSH_UPDATE_SQL = """
WITH done AS (
  UPDATE invoices i SET {set}
  FROM ik_push p JOIN invoices o ON o.id = p.id
  WHERE i.id = p.id AND p.expected IS NOT NULL AND i.version = p.expected AND {client}
  RETURNING i.id, p.op_id, p.content_sha, i.version, i.checksum, o.version AS before_version,
            o.checksum AS before_checksum,
            CASE WHEN p.deleted_at IS NOT NULL THEN 'delete' ELSE 'update' END AS kind,
            o.line_items_text IS DISTINCT FROM i.line_items_text AS lines_changed
)"""
_PUSH_UPDATES = [
    _PUSH_UPDATE_SQL.format(set=", ".join(f"{c} = p.{c}" for c in INV_COLS if c not in ("id", "client_data_text")),
                            client="i.client_data_text = p.client_data_text") + _RECORD,
    _PUSH_UPDATE_SQL.format(set=_UPD_SET, client="i.client_data_text IS DISTINCT FROM p.client_data_text "
                                                  "AND NOT EXISTS (SELECT 1 FROM ik_applied a WHERE a.id = p.id)")
    + _RECORD,
]

# Creates: rows the central store does not have yet (an id it has already is a conflict).
_PUSH_INSERT = f"""
WITH ins AS (
  INSERT INTO invoices ({_COLS})
  SELECT {_COLS} FROM ik_push p WHERE p.expected IS NULL
  ON CONFLICT (id) DO NOTHING
  RETURNING id, version, checksum
), done AS (
  SELECT ins.id, p.op_id, p.content_sha, ins.version, ins.checksum, NULL::integer AS before_version,
         NULL::text AS before_checksum,
         'insert' AS kind, true AS lines_changed
  FROM ins JOIN ik_push p USING (id)
)""" + _RECORD

# staged pushes not applied that are redeliveries: by the ledger, or by the central row's content
_PUSH_ALREADY = (f"SELECT p.op_id FROM ik_push p LEFT JOIN invoicekit_ledger l USING (op_id) "
                 f"LEFT JOIN invoices i ON i.id = p.id "
                 f"WHERE NOT EXISTS (SELECT 1 FROM ik_applied a WHERE a.id = p.id) "
                 f"AND ((l.op_id IS NOT NULL AND {LEDGER_SAME}) "
                 f"OR (l.op_id IS NULL AND ({CENTRAL_SAME} OR {LEDGER_HAS_CONTENT})))")
