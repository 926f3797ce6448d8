"""The offline store: SQLite files in the field devices' schema.

Files written by other software in this schema load unchanged. The toolkit's own
additions are additive columns that older stores simply lack (``currency``,
``deleted_at``); when ``currency`` is absent the store's ``app_settings`` key
``default_currency`` (JSON text or plain) is used.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timezone
from functools import partial
from typing import Mapping, Sequence

import pyarrow as pa

from .. import _duck, _progress
from .. import cache as _cache
from .._normalize import normalize
from ..errors import NotAStoreError, UsageError
from ..schema import InvoiceSet
from . import _sqlite
from ._write import kind_sql, same_client
from .offline_schema import ADDITIVE_COLUMNS, DEVICE_SCHEMA_SQL, ROW_COLUMNS, columns_sql, upgrade

__all__ = ["read_local", "write_local", "create_local", "ensure_schema", "OFFLINE_SCHEMA_SQL", "ADDITIVE_COLUMNS"]

#: the devices' schema (kept under its old name for callers that create device-style stores)
OFFLINE_SCHEMA_SQL = DEVICE_SCHEMA_SQL

REQUIRED_TABLES = ("transactions", "sync_queue", "app_settings")


#: ``app_settings`` keys naming the store's currency, in order of precedence
CURRENCY_SETTINGS = ("currency", "default_currency")


def _default_currency(conn: sqlite3.Connection) -> str | None:
    """The currency ``app_settings`` names (key ``currency``, else ``default_currency``;
    JSON text or plain), or None."""
    for key in CURRENCY_SETTINGS:
        row = conn.execute("SELECT value FROM app_settings WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] is None or not str(row[0]).strip():
            continue
        value = row[0]
        try:
            value = json.loads(value)
        except (TypeError, ValueError):
            pass
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def store_currency(conn: sqlite3.Connection, given: str | None = None) -> str | None:
    """The currency for rows that record none: the store's setting, else ``given`` (the caller's).

    What the store records wins: a caller's default (one ``--currency`` for many stores)
    never relabels a store whose settings name its currency.
    """
    setting = _default_currency(conn)
    return setting if setting is not None else given


#: how to supply a currency to a store that records none (one line, for errors)
CURRENCY_HINT = ("the store records no currency: pass currency='EUR' (CLI: --currency EUR) or set the "
                 "store's app_settings key 'currency'")


#: ``app_settings`` key holding the store's identity (a uuid the toolkit gives a store on its first write)
STORE_ID_KEY = "invoicekit_store_id"


def store_identity(path: str | os.PathLike) -> str | None:
    """The identity a toolkit write gave the store at ``path`` (None for a store never
    written by the toolkit, or no store at all). Read-only."""
    try:
        conn = _sqlite.open_checked(path, tables=("app_settings",))
    except Exception:  # noqa: BLE001 - no store (or not one): no identity
        return None
    try:
        row = conn.execute("SELECT value FROM app_settings WHERE key = ?", (STORE_ID_KEY,)).fetchone()
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])


def _ensure_identity(conn: sqlite3.Connection) -> None:
    import uuid

    conn.execute("INSERT OR IGNORE INTO app_settings (key, value, sync_required) VALUES (?, ?, 0)",
                 (STORE_ID_KEY, str(uuid.uuid4())))


def kept_deletes_sql(has_deleted_at: bool) -> str:
    """Invoices whose last queued operation is a ``delete`` but whose row the device kept
    (a device honouring ``sync_queue``'s foreign key keeps the row, content and version
    unchanged, and queues ``{"id", "version"}``): id, the time of deletion (the queue row's,
    else the row's ``modified_at``) and the tombstone's version (one past the row's, or the
    payload's when higher). Both mean deleted: such a row reads as a tombstone, and a write
    to the store first makes it one (:func:`adopt_kept_deletes`)."""
    alive = "t.deleted_at IS NULL" if has_deleted_at else "1"
    return f"""
SELECT t.id AS id, CAST(coalesce(q.created_at, t.modified_at) AS TEXT) AS at,
  CASE WHEN json_valid(q.payload)
            AND CAST(json_extract(q.payload, '$.version') AS INTEGER) > CAST(t.version AS INTEGER)
       THEN CAST(json_extract(q.payload, '$.version') AS INTEGER)
       ELSE coalesce(CAST(t.version AS INTEGER), 0) + 1 END AS version
FROM (SELECT max(id) AS qid FROM sync_queue GROUP BY transaction_id) m
JOIN sync_queue q ON q.id = m.qid JOIN transactions t ON t.id = q.transaction_id
WHERE q.operation = 'delete' AND {alive}
"""


def adopt_kept_deletes(conn: sqlite3.Connection) -> int:
    """Inside a write transaction: make every kept-row deletion (see :func:`kept_deletes_sql`)
    a tombstone in the toolkit's convention (``deleted_at`` set, version one up, pending), so
    it reconciles and syncs as a deletion. Idempotent; returns the rows changed."""
    return conn.execute(f"""
        UPDATE transactions AS t SET deleted_at = k.at, version = k.version, sync_status = 'pending'
        FROM ({kept_deletes_sql(True)}) AS k WHERE t.id = k.id""").rowcount


def _select(have: set[str], currency_param: bool) -> list[tuple[str, str, str]]:
    currency = "CAST(currency AS TEXT)" if "currency" in have else "NULL"
    if currency_param:
        currency = f"COALESCE({currency}, ?)"
    deleted = "CAST(deleted_at AS TEXT)" if "deleted_at" in have else "NULL"
    return [
        ("rowid", "source_row", "int"),
        ("CAST(id AS TEXT)", "id", "text"),
        ("CAST(invoice_number AS TEXT)", "invoice_number", "text"),
        ("CAST(client_data AS TEXT)", "client_data", "text"),
        ("CAST(line_items AS TEXT)", "line_items", "text"),
        ("CASE WHEN typeof(total_amount) IN ('integer','real') THEN CAST(total_amount AS REAL) END",
         "total_amount", "real"),
        ("CASE WHEN typeof(total_amount) NOT IN ('integer','real','null') THEN CAST(total_amount AS TEXT) END",
         "total_text", "text"),
        (currency, "currency", "text"),
        ("CAST(created_at AS TEXT)", "created_at", "text"),
        ("CAST(modified_at AS TEXT)", "modified_at", "text"),
        (deleted, "deleted_at", "text"),
        ("CAST(version AS TEXT)", "version", "text"),
        ("CAST(sync_status AS TEXT)", "sync_status", "text"),
        ("CAST(checksum AS TEXT)", "checksum", "text"),
    ]


# A legacy device that deletes a row outright leaves only its queued 'delete' operation;
# that operation becomes a tombstone row, so the deletion reaches reconcile and is not lost.
# Its version is the payload's, one up when an earlier queued insert or update carried that
# same version (the device queued the row it deleted, as it was: the deletion is a change).
_QUEUED_DELETES = """
(SELECT q.id AS rowid, q.transaction_id AS id, json_extract(q.payload, '$.invoice_number') AS invoice_number,
        json_extract(q.payload, '$.client_data') AS client_data, json_extract(q.payload, '$.line_items') AS line_items,
        json_extract(q.payload, '$.total_amount') AS total_amount,
        coalesce(json_extract(q.payload, '$.currency'), {currency}) AS currency,
        json_extract(q.payload, '$.created_at') AS created_at, q.created_at AS modified_at, q.created_at AS deleted_at,
        coalesce(json_extract(q.payload, '$.version'), 1) + (e.first_qid IS NOT NULL) AS version,
        'pending' AS sync_status, json_extract(q.payload, '$.checksum') AS checksum
 FROM (SELECT max(id) AS qid FROM sync_queue GROUP BY transaction_id) m JOIN sync_queue q ON q.id = m.qid
 LEFT JOIN (SELECT transaction_id AS tid, CAST(json_extract(payload, '$.version') AS INTEGER) AS v,
                   min(id) AS first_qid
            FROM sync_queue WHERE operation IN ('insert', 'update') AND json_valid(payload) GROUP BY 1, 2) e
   ON e.tid = q.transaction_id AND e.v = CAST(json_extract(q.payload, '$.version') AS INTEGER)
      AND e.first_qid < q.id
 WHERE q.operation = 'delete' AND json_valid(q.payload)
   AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = q.transaction_id)
 ORDER BY q.id)
"""


def _same(text: str, n: int) -> pa.Array:
    """``text`` repeated ``n`` times, filled in C (a Python list of n strings costs ~0.3 s per 1M)."""
    return pa.repeat(pa.scalar(text, pa.string()), n)


def read_local(path: str | os.PathLike | Sequence[str | os.PathLike], *, lines: bool = True,
               currency: str | None = None) -> InvoiceSet:
    """Load an offline store (SQLite file) into an :class:`InvoiceSet`; a list of paths loads
    each store and stacks them (``source`` tells the rows apart).

    Raises :class:`~invoicekit.errors.NotAStoreError` for a missing, non-SQLite or
    corrupt file and :class:`~invoicekit.errors.StoreSchemaError` for one lacking the
    offline tables. Rows that do not parse are kept and listed in ``.problems``.
    The toolkit's last-synced snapshots (table ``invoicekit_base``), when present,
    become ``.base``. A queued ``delete`` whose row the device already removed becomes
    a tombstone row (``source`` ends in ``#sync_queue``, ``source_row`` is the queue id); a
    queued ``delete`` whose row the device kept reads as that row's tombstone (one version up).

    ``currency`` is the currency of rows that record none (the devices' schema has no
    currency column) in a store whose ``app_settings`` key ``currency`` (or
    ``default_currency``) names none either; what the store records always wins. Without
    any, such rows load with a null currency, which validation reports and writers refuse.
    """
    if isinstance(path, (list, tuple)):
        if not path:
            raise UsageError("read_local() got an empty list of store paths")
        return InvoiceSet.concat(read_local(p, lines=lines, currency=currency) for p in path)
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"read_local() takes an offline store's path, or a list of paths; got "
                         f"{type(path).__name__}")
    path = os.fspath(path)
    conn = _sqlite.open_checked(path, tables=REQUIRED_TABLES)
    try:
        have = _sqlite.columns(conn, "transactions")
        default_currency = store_currency(conn, currency)
        has_base = bool(conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='invoicekit_base'").fetchone()[0])
        queued_deletes = conn.execute(
            "SELECT count(*) FROM sync_queue q WHERE operation = 'delete' "
            "AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = q.transaction_id)").fetchone()[0]
        kept = conn.execute(kept_deletes_sql("deleted_at" in have)).fetchall()
    except sqlite3.DatabaseError as exc:
        raise NotAStoreError(f"{path}: cannot read ({exc})", store=path) from exc
    finally:
        conn.close()
    param = default_currency is not None
    params = [default_currency] if param else []
    # the rows, the queued deletions and the snapshots in one consistent state, read in parallel
    queries = [(_select(have, param), "transactions", params)]
    if queued_deletes:
        queries.append((_select({"currency", "deleted_at"}, False),
                        _QUEUED_DELETES.format(currency="?" if param else "NULL"), params))
    if has_base:
        queries.append((_select({"currency", "deleted_at"}, False), "invoicekit_base", []))
    tables = _sqlite.select_arrow_many(path, queries)
    raw = tables.pop(0)
    raw = raw.append_column("source", _same(path, raw.num_rows))
    raw = _status_lower(raw)
    if kept:
        raw = _as_tombstones(raw, kept)
    if queued_deletes:
        ghosts = tables.pop(0)
        ghosts = ghosts.append_column("source", _same(f"{path}#sync_queue", ghosts.num_rows))
        raw = pa.concat_tables([raw, ghosts])
    result = normalize(raw, lines=lines)
    if has_base:
        # read now (the snapshot of this very state), parsed on first use of .base (reconcile
        # uses it; many reads never do), once
        base = tables.pop(0)
        base = base.append_column("source", _same(f"{path}#base", base.num_rows))
        result = result.with_base(partial(normalize, base, lines=lines))
    from ..security import decrypt_if_configured

    return decrypt_if_configured(result)


def held_ids(path: str | os.PathLike) -> pa.Array:
    """The invoice ids an offline store holds, as text: its rows' and those its queue names (a
    superset of the ids :func:`read_local` returns, read in one query without parsing anything,
    e.g. to fetch their central counterparts while the store loads)."""
    path = os.fspath(path)
    _sqlite.open_checked(path, tables=REQUIRED_TABLES).close()
    ids = _sqlite.select_arrow(path, [("CAST(id AS TEXT)", "id", "text")],
                               "(SELECT id FROM transactions UNION SELECT transaction_id FROM sync_queue)")
    return ids.column("id").combine_chunks()


def _status_lower(raw: pa.Table) -> pa.Table:
    """``sync_status`` as the devices' lower-case words ('PENDING', ' Synced' read as 'pending',
    'synced'): two Arrow passes, and the column is only replaced when some value differs."""
    import pyarrow.compute as pc

    status = raw.column("sync_status")
    low = pc.utf8_lower(pc.utf8_trim_whitespace(status))
    if pc.all(pc.equal(low, status)).as_py() is not False:
        return raw
    return raw.set_column(raw.schema.get_field_index("sync_status"), "sync_status", low)


def _as_tombstones(raw: pa.Table, kept: list[tuple]) -> pa.Table:
    """``raw`` with the kept-row deletions ``kept`` (id, at, version) read as tombstones."""
    import pyarrow.compute as pc

    ids = pa.array([k[0] for k in kept], pa.string())
    pos = pc.index_in(raw.column("id"), value_set=ids)
    hit = pc.is_valid(pos)
    for name, values in (("deleted_at", [k[1] for k in kept]), ("version", [str(k[2]) for k in kept])):
        new = pc.take(pa.array(values, pa.string()), pos)
        col = raw.column(name).cast(pa.string())
        raw = raw.set_column(raw.schema.get_field_index(name), name, pc.if_else(hit, new, col))
    return raw


def create_local(path: str | os.PathLike) -> None:
    """Create (or complete) an offline store at ``path``: the devices' schema plus the
    toolkit's additive columns. Idempotent."""
    with _sqlite.write_transaction(path) as conn:
        _ensure_schema(conn)


def _ensure_schema(conn: sqlite3.Connection) -> None:
    """Inside a write transaction: the offline schema brought up to date (see
    :mod:`~invoicekit.io.offline_schema`), the store's identity, kept-row deletions adopted."""
    upgrade(conn)
    _ensure_identity(conn)
    adopt_kept_deletes(conn)


ensure_schema = _ensure_schema


def _offline_rows(invoice_set: InvoiceSet, where: str = "true") -> list[tuple]:
    """The invoices as offline-schema tuples: total as a float (as devices store it),
    timestamps as ISO text in UTC without offset (as devices write ``utcnow().isoformat()``);
    the client JSON encrypted where the environment configures keys."""
    from ..security import encrypt_if_configured

    invoice_set = encrypt_if_configured(invoice_set)
    con = _duck.connect(inv=invoice_set.invoices_table())
    table = _duck.arrow(
        con,
        "SELECT " + ", ".join(f"{_OFFLINE_EXPR.get(c, c)} AS {c}" for c in ROW_COLUMNS) + " FROM inv WHERE " + where,
    )
    con.close()
    return list(zip(*(table.column(c).to_pylist() for c in ROW_COLUMNS)))


# canonical column -> its offline-schema form (by name; other columns are taken as they are)
_OFFLINE_EXPR = {
    "total_amount": "CAST(CAST(total AS VARCHAR) AS DOUBLE)",
    "created_at": "strftime(created_at, '%Y-%m-%dT%H:%M:%S.%f')",
    "modified_at": "strftime(modified_at, '%Y-%m-%dT%H:%M:%S.%f')",
    "deleted_at": "strftime(deleted_at, '%Y-%m-%dT%H:%M:%S.%f')",
}


#: rows per ``executemany`` call of :func:`write_local` (all in one transaction; the bar ticks per call)
WRITE_BATCH_ROWS = 50_000


_ROW_NAMES = ROW_COLUMNS

# compare-and-set on the offline store (see invoicekit.io._write): the same rule as central;
# versions and totals compared as numbers (other software's untyped columns may hold text)
_LOCAL_SAME = f"""(CAST(t.version AS INTEGER) = s.version AND t.checksum IS s.checksum
  AND t.invoice_number IS s.invoice_number AND {same_client("t", "s", column="client_data", equal="IS")}
  AND t.line_items IS s.line_items
  AND CAST(t.total_amount AS REAL) = CAST(s.total_amount AS REAL)
  AND t.currency IS s.currency AND (t.deleted_at IS NULL) = (s.deleted_at IS NULL))"""
_LOCAL_MAY = """(({force} AND NOT {same})
  OR (s.version > CAST(t.version AS INTEGER) AND (s.id IN (SELECT id FROM ik_flags WHERE undelete)
      OR NOT (t.deleted_at IS NOT NULL AND s.deleted_at IS NULL))))"""
_LOCAL_DECIDE = f"""
SELECT s.id, coalesce(w.outcome, CASE WHEN {_LOCAL_SAME} THEN 'unchanged' ELSE 'refused' END),
  CASE WHEN w.outcome IS NOT NULL OR {_LOCAL_SAME} THEN NULL
       WHEN s.version < CAST(t.version AS INTEGER) THEN 'lower_version'
       WHEN s.version = CAST(t.version AS INTEGER) THEN 'same_version_other_content' ELSE 'tombstone' END,
  s.version, CASE WHEN w.id IS NOT NULL THEN w.before_version ELSE CAST(t.version AS INTEGER) END
FROM ik_stage s LEFT JOIN transactions t ON t.id = s.id LEFT JOIN ik_written w ON w.id = s.id ORDER BY s.id"""


def _local_steps(force: bool) -> list[str]:
    cols = ", ".join(_ROW_NAMES)
    may = _LOCAL_MAY.format(force="TRUE" if force else "FALSE", same=_LOCAL_SAME)
    return [
        f"INSERT INTO ik_written SELECT s.id, 'updated', t.version, t.checksum, {kind_sql(force, 't')} "
        f"FROM ik_stage s JOIN transactions t ON t.id = s.id WHERE {may}",
        "UPDATE transactions AS t SET " + ", ".join(f"{c} = s.{c}" for c in _ROW_NAMES if c != "id")
        + " FROM ik_stage s WHERE t.id = s.id AND t.id IN (SELECT id FROM ik_written)",
        "INSERT INTO ik_written SELECT s.id, 'inserted', NULL, NULL, 'insert' FROM ik_stage s "
        "WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = s.id)",
        f"INSERT INTO transactions ({cols}) SELECT {cols} FROM ik_stage "
        "WHERE id IN (SELECT id FROM ik_written WHERE outcome = 'inserted') ORDER BY rowid",
        # the last-synced snapshots move forward only
        f"INSERT INTO invoicekit_base ({cols}) SELECT {cols} FROM ik_base_stage s WHERE true ORDER BY rowid "
        "ON CONFLICT(id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _ROW_NAMES if c != "id")
        + " WHERE excluded.version >= invoicekit_base.version",
    ]


#: with ``op_id``: one audit row per row written (the offline ``invoicekit_audit``, schema 6)
_LOCAL_AUDIT = """INSERT INTO invoicekit_audit (at, actor, op_id, invoice_id, kind, strategy, before_version,
  after_version, before_checksum, after_checksum, detail)
SELECT ?, ?, ?, w.id, w.kind, 'write_local', w.before_version, s.version, w.before_checksum, s.checksum, f.note
FROM ik_written w JOIN ik_stage s ON s.id = w.id LEFT JOIN ik_flags f ON f.id = w.id ORDER BY w.id"""

#: with ``queue``: the rows written, as LocalStore queues them
_LOCAL_QUEUED = (f"SELECT {columns_sql('t.')}, w.outcome FROM ik_written w JOIN transactions t ON t.id = w.id "
                 "ORDER BY w.id")


def _queue_written(conn: sqlite3.Connection) -> None:
    """Queue every row just written in ``sync_queue`` exactly as :class:`~invoicekit.LocalStore`
    does (``insert`` for a new id, ``delete`` for a tombstone, else ``update``; the row as
    stored is the payload, with a uuid op id), so the device's next sync pushes it."""
    import uuid

    queued = []
    for values in conn.execute(_LOCAL_QUEUED).fetchall():
        row = dict(zip(ROW_COLUMNS, values[:-1]))
        row["total_amount"] = None if row["total_amount"] is None else float(row["total_amount"])
        op = "insert" if values[-1] == "inserted" else "delete" if row["deleted_at"] else "update"
        payload = json.dumps({c: row[c] for c in ROW_COLUMNS if c != "sync_status"}, sort_keys=True)
        queued.append((row["id"], op, payload, row["modified_at"], str(uuid.uuid4())))
    conn.executemany("INSERT INTO sync_queue (transaction_id, operation, payload, retry_count, created_at, op_id, "
                     "status) VALUES (?, ?, ?, 0, ?, ?, 'pending')", queued)


def write_local(
    invoice_set: InvoiceSet, path: str | os.PathLike, *, validate: bool = True, force: bool = False,
    progress: bool | None = None, undelete: frozenset[str] = frozenset(), op_id: str | None = None,
    notes: Mapping[str, str] | None = None, actor: str | None = None, queue: bool = False,
):
    """Write ``invoice_set`` into the offline store at ``path`` (created if missing),
    compare-and-set like :func:`~invoicekit.write_central`: a new id is inserted, a higher
    version updates, the same content is left unchanged, anything else (a lower version,
    other content at the same version, a live row over a tombstone) is refused and reported;
    ``force=True`` overwrites whatever differs. The last-synced snapshots only move forward.

    One ``BEGIN IMMEDIATE`` transaction in WAL mode with ``synchronous=FULL``: either
    every row is written or none is. Writing the same set twice leaves the same file
    content. With ``validate`` (default) the set is checked first and a
    :class:`~invoicekit.errors.ValidationError` leaves the store untouched.
    ``progress`` shows a bar (default: for 100,000 rows or more). Returns a
    :class:`~invoicekit.io.WriteResult`.

    Narrow options for audited cleanups (see :func:`~invoicekit.write_central`): ``undelete``
    lets exactly those ids go from tombstone to live at a higher version; ``op_id`` records
    one audit row per row written (``invoicekit_audit``: ``actor``, kind, versions,
    checksums, ``notes[id]`` as its detail); ``queue=True`` also queues every row written
    in ``sync_queue`` as :class:`~invoicekit.LocalStore` would, for the device's next sync.
    """
    from ..sync.apply import default_actor
    from ..validate import validate as _validate
    from ._write import WriteResult, result_frame

    if validate:
        _validate(invoice_set, strict=True)
    rows = _offline_rows(invoice_set)
    path = os.fspath(path)
    if os.path.exists(path):
        _sqlite.open_checked(path, tables=REQUIRED_TABLES, integrity=True).close()
    # the last-synced snapshot: given bases, then every synced row is its own base
    base_rows = _offline_rows(invoice_set.base) if invoice_set.base is not None else []
    base_rows += _offline_rows(invoice_set, "sync_status = 'synced'")
    marks = ", ".join("?" * len(_ROW_NAMES))
    steps = [(f"INSERT INTO ik_stage VALUES ({marks})", rows),
             (f"INSERT OR REPLACE INTO ik_base_stage VALUES ({marks})", base_rows)]
    with _progress.bar(total=len(rows) + len(base_rows), desc=f"write_local {os.path.basename(path)}",
                       progress=progress) as bar, _sqlite.write_transaction(path) as conn:
        _ensure_schema(conn)
        for table in ("ik_stage", "ik_base_stage"):
            conn.execute(f"CREATE TEMP TABLE {table} ({', '.join(_ROW_NAMES)}, PRIMARY KEY (id))")
        conn.execute("CREATE TEMP TABLE ik_written (id TEXT PRIMARY KEY, outcome TEXT, before_version INTEGER, "
                     "before_checksum TEXT, kind TEXT)")
        conn.execute("CREATE TEMP TABLE ik_flags (id TEXT PRIMARY KEY, undelete INTEGER, note TEXT)")
        conn.executemany("INSERT INTO ik_flags VALUES (?, ?, ?)",
                         [(i, i in undelete, (notes or {}).get(i)) for i in sorted(set(undelete) | set(notes or {}))])
        for sql, step_rows in steps:
            for start in range(0, len(step_rows), WRITE_BATCH_ROWS):
                batch = step_rows[start:start + WRITE_BATCH_ROWS]
                conn.executemany(sql, batch)
                bar.update(len(batch))
        for sql in _local_steps(force):
            conn.execute(sql)
        if op_id is not None:
            conn.execute(_LOCAL_AUDIT, (datetime.now(timezone.utc).isoformat(), actor or default_actor(), op_id))
        if queue:
            _queue_written(conn)
        results = conn.execute(_LOCAL_DECIDE).fetchall()
        for table in ("ik_stage", "ik_base_stage", "ik_written", "ik_flags"):
            conn.execute(f"DROP TABLE temp.{table}")
    result = WriteResult(results=result_frame(results), store=path, forced=force)
    _cache.invalidate_written(path, result)
    return result
