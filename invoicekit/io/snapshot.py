"""Incremental snapshots of the central store: ``read_central(url, snapshot=PATH)``.

A snapshot is two Arrow IPC files: ``PATH`` (the *base*: every central invoice as the store
holds it) and ``PATH.delta`` (the invoices written since the base was taken, as they are
now, and the ids the store no longer holds). Both hold the rows as the store holds them
(encrypted fields stay sealed: the loaders decrypt after reading, see
:func:`invoicekit.security.decrypt_if_configured`) and the load problems of each invoice;
their schema metadata holds a format version, the number of rows and the store's change
marker taken *before* the rows were read; the base also the identity of the store it was
taken from and the store's schema version, and an id that its delta names.

A call maps the base (no copy), reads the delta, asks the store which invoices were written
since the delta's marker (the store keeps the marker itself, schema version 10: on
PostgreSQL the last writing transaction of each invoice, compared with the recorded
``pg_current_snapshot()``; on SQLite a change counter), fetches only those (tombstones
included) and merges them into the delta, vectorised in Arrow. Only the small delta is
rewritten; once it holds more than a twentieth of the base, base and delta are merged into
a new base. Every file is written beside the old one and moved over it with ``os.replace``,
so a reader sees an old file or a new one, never a torn one, and several analysts
(processes) may share one directory: a base alone, and a base with the delta that names
it, are each a correct snapshot (a delta naming another base is ignored), so whichever
rename wins, the next call fetches what its files lack.

A base that cannot be read (truncated, not a snapshot), of another format version, of
another store or of another schema version, or whose row count disagrees with its metadata,
is rebuilt from a full read with a logged warning; a delta like that is ignored (a warning:
the base's marker is used instead). Neither is ever used.

Every call logs (logger ``invoicekit.io.snapshot``, level INFO) a :class:`SnapshotInfo`
saying what it did and how many rows it fetched from the store (``record.snapshot``);
:func:`snapshot_info` reads the metadata of a snapshot without its rows.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .._html import frame_html, page
from .._normalize import ITEM_COLUMNS
from ..errors import UsageError
from ..schema import INVOICE_SCHEMA, PROBLEM_SCHEMA, InvoiceSet, to_frame
from .backends import SCHEMA_VERSION, CentralStore
from .backends.base import SnapshotState

__all__ = ["SnapshotInfo", "read_snapshot", "snapshot_info", "FORMAT_VERSION"]

log = logging.getLogger(__name__)

#: version of the file layout; a file of another version is rebuilt
FORMAT_VERSION = 1
_META_KEY = b"invoicekit.snapshot"
#: the columns a snapshot keeps per invoice: the invoice (as read, without its source) and
#: the invoice's load problems (list of rule, field, value, message; null when none)
_PROBLEM_FIELDS = ("rule", "field", "value", "message")
_PROBLEM_TYPE = pa.list_(pa.struct([(name, pa.string()) for name in _PROBLEM_FIELDS]))
_ROW_COLUMNS = [f for f in INVOICE_SCHEMA if f.name not in ("source", "source_row")]
COPY_SCHEMA = pa.schema([*_ROW_COLUMNS, pa.field("ik_problems", _PROBLEM_TYPE)])
#: the delta is merged into a new base once it holds more rows than this share of the base
_COMPACT_SHARE = 0.05
#: a snapshot's temporary files older than this (seconds) belong to a writer that died
_STALE_TMP_S = 3600.0


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot file holds and what the call that wrote (or used) it did.

    ``mode``: ``built`` (no usable file: a full read), ``refreshed`` (the changed invoices
    fetched and merged), ``unchanged`` (nothing changed since the marker: the file as it is);
    ``reason`` says why a file was rebuilt (None otherwise). ``fetched``: invoice rows read
    from the store by that call; ``removed``: rows dropped from the copy (replaced or gone);
    ``gone``: ids the store no longer holds; ``delta_rows``: rows the delta file holds (0
    after a merge into a new base)."""

    path: str
    store: str
    identity: str
    schema_version: int
    marker: str
    rows: int
    mode: str
    fetched: int
    removed: int = 0
    gone: int = 0
    reason: str | None = None
    delta_rows: int = 0
    seconds: float = 0.0

    def summary(self) -> pd.DataFrame:
        """The fields as a one-row frame."""
        return pd.DataFrame([asdict(self)])

    def _repr_html_(self) -> str:
        head = (f"<b>Snapshot</b> of {self.store}: {self.rows:,} invoices, {self.mode} "
                f"({self.fetched:,} fetched, {self.removed:,} removed)")
        return head + frame_html(self.summary().T.rename(columns={0: "value"}), caption="snapshot")

    def to_html(self, path: str) -> None:
        """Write the info as a standalone HTML page."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page("Snapshot", self._repr_html_()))


def read_snapshot(store: CentralStore, path: Any, *, lines: bool = True) -> InvoiceSet:
    """The central invoices of ``store`` through the snapshot at ``path`` (see the module doc),
    as :func:`~invoicekit.io.central.read_central` returns them before decryption. Driver
    errors are the caller's to translate."""
    path = _path(path)
    t0 = time.perf_counter()
    # (the session's connection closes after the pool's thread has finished with it)
    with store.read_session() as session, ThreadPoolExecutor(1, thread_name_prefix="invoicekit-snapshot") as pool:
        opening = pool.submit(session.open)  # the store's connection opens while the files are mapped
        base, meta, reason = _load_base(path)
        delta, dmeta = _load_delta(path, meta) if meta is not None else (None, None)
        since = (dmeta or meta or {}).get("marker")
        opening.result()
        state = session.snapshot_state(since, identity=meta["identity"] if meta else None)
        if meta is not None:
            reason = _stale_reason(meta, state)
        if meta is None or reason is not None:
            if reason is not None:
                log.warning("snapshot %s %s; rebuilding it from a full read of %s", path, reason, store.display)
            table = _copy_table(session.read("", [], lines=False))
            info = _info(path, store, state, rows=table.num_rows, mode="built", fetched=table.num_rows,
                         reason=reason)
            _save(path, table, _base_meta(info))
        else:
            table, info = _refresh(store, session, pool, path, base, meta, delta, dmeta, state)
    info = replace(info, seconds=round(time.perf_counter() - t0, 4))
    log.info("snapshot %s: %s, %s rows fetched, %s removed, %s invoices", path, info.mode, info.fetched,
             info.removed, info.rows, extra={"snapshot": info})
    return _invoice_set(table, store.display, lines=lines)


def snapshot_info(path: Any) -> SnapshotInfo:
    """What the snapshot at ``path`` holds and what the last call that wrote it did (read
    from the files' metadata, not their rows). A UsageError when ``path`` is no usable snapshot."""
    path = _path(path)
    try:
        with pa.OSFile(path, "rb") as src:
            meta = _meta(pa.ipc.open_file(src).schema)
    except (OSError, pa.ArrowException) as exc:
        raise UsageError(f"{path} is not a readable invoicekit snapshot ({exc})", reason="bad_snapshot") from None
    if meta is None or not isinstance(meta.get("info"), dict):
        raise UsageError(f"{path} is not an invoicekit snapshot (no snapshot metadata)", reason="bad_snapshot")
    _, dmeta = _load_delta(path, meta, quiet=True)
    return SnapshotInfo(**(dmeta or meta)["info"])


# -- steps ---------------------------------------------------------------------------------
def _refresh(store: CentralStore, session: Any, pool: ThreadPoolExecutor, path: str, base: pa.Table, meta: dict,
             delta: pa.Table | None, dmeta: dict | None, state: SnapshotState) -> tuple[pa.Table, SnapshotInfo]:
    """Base and delta with the invoices written since the delta's marker fetched and merged
    into the delta (one membership test and one filter of the base: vectorised). The fetch
    runs on a thread of its own while the base is filtered: the ids it fetches are known
    before it starts, and the store does its work while this process filters."""
    gone_before = tuple(dmeta["gone"]) if dmeta else ()
    touched = _ids(state.changed)
    if len(touched) == 0:
        info = SnapshotInfo(**{**(dmeta or meta)["info"], "mode": "unchanged", "fetched": 0, "removed": 0,
                               "gone": 0, "reason": None, "path": path, "store": store.display})
        return _merge(base, delta, gone_before), info
    # (split=False: the filter keeps both cores busy, a second server process would only compete)
    pending = pool.submit(lambda: _copy_table(session.read("", [], lines=False, ids=touched, split=False)))
    try:
        # every row of the base the result cannot hold: the delta's rows, the ids gone before,
        # and every id written since (its row is fetched, or it is gone)
        hit = pc.is_in(base.column("id"), value_set=touched)
        before = _replaced(delta, gone_before)
        if len(before):
            hit_before = pc.is_in(base.column("id"), value_set=before)
            removed = _true(pc.and_(hit, pc.invert(hit_before)))
            hit = pc.or_(hit, hit_before)
        else:
            removed = _true(hit)
        kept = _filter(base, pc.invert(hit))
    finally:
        new = pending.result()  # (also when the filter failed: the thread is done with the session)
    parts = [] if delta is None else [_filter(delta, pc.invert(pc.is_in(delta.column("id"), value_set=touched)))]
    removed += (0 if delta is None else delta.num_rows - parts[0].num_rows)
    new_delta = pa.concat_tables([*parts, new.cast(COPY_SCHEMA)])
    now_gone = set(touched.filter(pc.invert(pc.is_in(touched, value_set=new.column("id")))).to_pylist())
    gone = sorted((set(gone_before) - set(touched.to_pylist())) | now_gone)
    table = pa.concat_tables([kept, new_delta])
    info = _info(path, store, state, rows=table.num_rows, mode="refreshed", fetched=new.num_rows,
                 removed=removed, gone=len(now_gone), delta_rows=new_delta.num_rows)
    if new_delta.num_rows + len(gone) > _COMPACT_SHARE * max(base.num_rows, 1):
        info = replace(info, delta_rows=0)
        if _save(path, table, _base_meta(info)):  # a new base: the old delta names the old one, it can go
            try:
                os.remove(path + ".delta")
            except OSError:
                pass
    else:
        _save(path + ".delta", new_delta, {"format": FORMAT_VERSION, "base": meta["base"], "marker": state.marker,
                                           "rows": new_delta.num_rows, "gone": gone, "info": asdict(info)})
    return table, info


def _ids(ids: Any) -> pa.Array:
    """Distinct ids as a sorted string array (the store probes its index in order)."""
    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    arr = arr.cast(pa.string()) if isinstance(arr, pa.Array) else pa.array(list(arr), pa.string())
    arr = pc.unique(arr)
    return arr.take(pc.sort_indices(arr))


def _merge(base: pa.Table, delta: pa.Table | None, gone) -> pa.Table:
    """The base without the rows the delta replaces or the store lost, then the delta."""
    out = _replaced(delta, gone)
    if len(out) == 0:
        return base if delta is None else pa.concat_tables([base, delta])
    kept = _filter(base, pc.invert(pc.is_in(base.column("id"), value_set=out)))
    return kept if delta is None else pa.concat_tables([kept, delta])


def _filter(table: pa.Table, mask) -> pa.Table:
    """``table.filter(mask)``, a record batch at a time: a batch that keeps every row is kept
    as it is (no copy: a mapped base stays mapped), the others are filtered on two threads
    (the copy is bound by memory bandwidth and page faults, which one thread does not use up)."""
    if table.num_rows < 100_000:
        return table.filter(mask)
    mask = mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask
    batches, parts, offset = table.to_batches(), [], 0
    for batch in batches:
        part = mask.slice(offset, batch.num_rows)
        offset += batch.num_rows
        parts.append(None if pc.all(part).as_py() is not False else part)
    with ThreadPoolExecutor(2, thread_name_prefix="invoicekit-filter") as pool:
        out = list(pool.map(lambda bm: bm[0] if bm[1] is None else bm[0].filter(bm[1]), zip(batches, parts)))
    return pa.Table.from_batches(out, schema=table.schema)


def _replaced(delta: pa.Table | None, gone) -> pa.Array:
    """The ids of the base that a delta and its list of gone ids take out."""
    ids = [] if delta is None else delta.column("id").chunks
    return pa.concat_arrays([*ids, pa.array(list(gone), pa.string())])


def _true(mask) -> int:
    """How many values of a boolean array are true."""
    return int(pc.sum(mask.cast(pa.int64())).as_py() or 0)


def _stale_reason(meta: dict, state: SnapshotState) -> str | None:
    """Why a readable base cannot be used with the store as it is now (None: it can)."""
    if meta["identity"] != state.identity:
        return f"was taken from another central store ({meta['identity']}, this one is {state.identity})"
    if meta["schema_version"] != state.schema_version or state.schema_version != SCHEMA_VERSION:
        return f"is of schema version {meta['schema_version']}, the store's is {state.schema_version}"
    if not state.since_ok:
        return "has a change marker ahead of the store's (the store was restored or rebuilt since)"
    return None


def _copy_table(invoice_set: InvoiceSet) -> pa.Table:
    """An InvoiceSet read with ``lines=False`` as the snapshot's rows (:data:`COPY_SCHEMA`)."""
    inv = pa.Table.from_pandas(invoice_set.invoices[[f.name for f in _ROW_COLUMNS]], preserve_index=False)
    inv = inv.cast(pa.schema(_ROW_COLUMNS))
    probs = invoice_set.problems  # read with lines=False: the loader's problems, nothing deferred
    if len(probs) == 0:
        return inv.append_column("ik_problems", _no_problems(inv.num_rows))
    pt = pa.Table.from_pandas(probs[["id", *_PROBLEM_FIELDS]], preserve_index=False)
    pt = pt.cast(pa.schema([("id", pa.string()), *((n, pa.string()) for n in _PROBLEM_FIELDS)]))
    entry = pc.make_struct(*(pt.column(n) for n in _PROBLEM_FIELDS), field_names=list(_PROBLEM_FIELDS))
    grouped = pa.table({"id": pt.column("id"), "p": entry}).group_by("id", use_threads=False).aggregate(
        [("p", "list")])
    pos = pc.index_in(inv.column("id"), value_set=grouped.column("id"))
    return inv.append_column("ik_problems", pc.take(grouped.column("p_list"), pos).cast(_PROBLEM_TYPE))


def _no_problems(n: int) -> pa.Array:
    """``n`` null problem lists with an empty child. (``pa.nulls`` gives each null list a
    null struct of its own, and a file written in record batches repeats that child in full
    in every batch: 614 MB of nothing at 1M rows, half the file.)"""
    offsets = pa.array(np.zeros(n + 1, np.int32))
    valid = pa.array(np.ones(n, np.bool_))  # (the mask marks the nulls)
    return pa.ListArray.from_arrays(offsets, pa.array([], _PROBLEM_TYPE.value_type), type=_PROBLEM_TYPE, mask=valid)


def _invoice_set(table: pa.Table, display: str, *, lines: bool) -> InvoiceSet:
    """The snapshot's rows as read_central's InvoiceSet: ``source`` the store, ``source_row``
    numbering the rows, the load problems unnested; line items deferred as a read defers them."""
    n = table.num_rows
    cols = {name: table.column(name) for name in table.column_names}
    cols["source"] = pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([display]))
    cols["source_row"] = pa.array(np.arange(1, n + 1, dtype=np.int64))
    invoices = pa.table({name: cols[name] for name in INVOICE_SCHEMA.names}).cast(INVOICE_SCHEMA)
    frame = to_frame(invoices, INVOICE_SCHEMA)
    problems = to_frame(_problems(table.column("ik_problems"), display, lines=lines), PROBLEM_SCHEMA)
    if not lines:
        return InvoiceSet(frame, None, problems)
    return InvoiceSet(frame, None, problems, pending_lines=invoices.select(ITEM_COLUMNS))


def _problems(column: pa.ChunkedArray, display: str, *, lines: bool) -> pa.Table:
    """The load problems kept per row, one row per problem in row order. With ``lines`` the
    line-items problems are left to the parse of the deferred lines, which reports them."""
    if column.null_count == len(column):
        return PROBLEM_SCHEMA.empty_table()
    arr = column.combine_chunks()
    flat = pc.list_flatten(arr)
    rows = pc.add(pc.list_parent_indices(arr), 1).cast(pa.int64())
    out = pa.table({
        "source": pa.array(np.full(len(flat), display, dtype=object), pa.string()),
        "source_row": rows,
        **{n: flat.field(n) for n in _PROBLEM_FIELDS},
    })
    if lines:
        out = out.filter(pc.invert(pc.equal(out.column("field"), "line_items")))
    return out


def _info(path: str, store: CentralStore, state: SnapshotState, *, rows: int, mode: str, fetched: int,
          removed: int = 0, gone: int = 0, reason: str | None = None, delta_rows: int = 0) -> SnapshotInfo:
    return SnapshotInfo(path=path, store=store.display, identity=state.identity,
                        schema_version=state.schema_version, marker=state.marker, rows=rows, mode=mode,
                        fetched=fetched, removed=removed, gone=gone, reason=reason, delta_rows=delta_rows)


def _base_meta(info: SnapshotInfo) -> dict:
    return {"format": FORMAT_VERSION, "base": uuid.uuid4().hex, "identity": info.identity,
            "schema_version": info.schema_version, "marker": info.marker, "rows": info.rows, "info": asdict(info)}


# -- the files -----------------------------------------------------------------------------
def _path(path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"read_central: snapshot= takes a file path; got {type(path).__name__}",
                         reason="bad_snapshot")
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.isdir(path):
        raise UsageError(f"read_central: snapshot={path!r} is a directory; name a file in it, e.g. "
                         f"{os.path.join(path, 'central.arrow')!r}", reason="bad_snapshot")
    return path


def _meta(schema: pa.Schema) -> dict | None:
    raw = (schema.metadata or {}).get(_META_KEY)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


def _read(path: str) -> tuple[pa.Table | None, dict | None, str | None]:
    """(rows, metadata, None) of a well-formed snapshot file, else (None, None, why not).
    The file is memory-mapped: the rows are not copied. (Snapshot files are only ever
    replaced by a rename, never rewritten in place, so a mapping stays valid.)"""
    try:
        reader = pa.ipc.open_file(_map(path))
        meta = _meta(reader.schema)
        table = reader.read_all() if meta is not None else None
    except (OSError, pa.ArrowException) as exc:
        return None, None, f"cannot be read (truncated or not a snapshot: {exc})"
    if meta is None:
        return None, None, "is not an invoicekit snapshot (no snapshot metadata)"
    if meta.get("format") != FORMAT_VERSION:
        return None, None, f"is of format version {meta.get('format')}, this invoicekit writes {FORMAT_VERSION}"
    if not table.schema.remove_metadata().equals(COPY_SCHEMA):
        return None, None, "has other columns than a snapshot of this invoicekit"
    if table.num_rows != meta.get("rows"):
        return None, None, f"holds {table.num_rows} rows, its metadata says {meta.get('rows')} (truncated)"
    if not isinstance(meta.get("marker"), str) or not isinstance(meta.get("info"), dict):
        return None, None, "has incomplete snapshot metadata"
    return table, meta, None


def _map(path: str):
    """``path`` memory-mapped read-only, its pages mapped at once (``MAP_POPULATE`` on Linux:
    one call instead of a page fault per 4 KiB page touched later)."""
    import mmap

    if os.name == "nt" or not hasattr(mmap, "MAP_POPULATE"):
        return pa.memory_map(path, "r")
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise OSError(f"{path} is empty")
        mapped = mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
    return pa.BufferReader(pa.py_buffer(mapped))


def _load_base(path: str) -> tuple[pa.Table | None, dict | None, str | None]:
    """The base (rows, metadata, None); no file is (None, None, None); a file that cannot be
    used is (None, None, why)."""
    if not os.path.exists(path):
        return None, None, None
    table, meta, why = _read(path)
    if meta is not None and not all(isinstance(meta.get(k), t) for k, t in
                                    (("identity", str), ("schema_version", int), ("base", str))):
        return None, None, "has incomplete snapshot metadata"
    return table, meta, why


def _load_delta(path: str, meta: dict, *, quiet: bool = False) -> tuple[pa.Table | None, dict | None]:
    """The delta of base ``meta`` (rows, metadata), or (None, None): none, or one that names
    another base (a rename raced with a merge: the base alone is used), or one that cannot
    be used (a warning)."""
    dpath = path + ".delta"
    if not os.path.exists(dpath):
        return None, None
    table, dmeta, why = _read(dpath)
    if why is None and not isinstance(dmeta.get("gone"), list):
        why = "has incomplete snapshot metadata"
    if why is not None:
        if not quiet:
            log.warning("snapshot delta %s %s; ignored (the base's marker is used)", dpath, why)
        return None, None
    if dmeta.get("base") != meta.get("base"):
        return None, None
    return table, dmeta


def _save(path: str, table: pa.Table, meta: dict) -> bool:
    """Write ``table`` to a temporary file in the same directory and move it over ``path``
    (atomic); False when it could not be written (logged; the old file stays as it was).
    No fsync: a file torn by a crash is detected (footer, row count) and rebuilt or ignored."""
    schema = COPY_SCHEMA.with_metadata({_META_KEY: json.dumps(meta).encode()})
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _drop_stale_tmp(path)
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            writer.write_table(table.replace_schema_metadata(schema.metadata))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("snapshot %s could not be saved (%s); the data read is returned, the file is unchanged",
                    path, exc)
        try:
            os.remove(tmp)
        except OSError:
            pass
        return False
    return True


def _drop_stale_tmp(path: str) -> None:
    """Remove temporary files of this snapshot left by writers that died long ago."""
    directory, base = os.path.split(path)
    now = time.time()
    for name in os.listdir(directory):
        if name.startswith(base + ".tmp-"):
            full = os.path.join(directory, name)
            try:
                if now - os.stat(full).st_mtime > _STALE_TMP_S:
                    os.remove(full)
            except OSError:
                pass
