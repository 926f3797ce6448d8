"""``render_batch`` and ``render_pdf``: plan in the caller's process, render in workers.

The plan is vectorised (selection, exact totals, output paths, resume check); workers get
chunks of invoices as plain rows (:mod:`._worker`), lay each chunk out in one WeasyPrint
document, split it per invoice and write ``<name>.pdf`` plus its sidecar
``<name>.pdf.json`` (invoice checksum, render key, sha256), PDF first, both atomically.
A PDF whose sidecar matches is skipped on the next run, so an interrupted batch resumes.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import time
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import _progress
from ..errors import MissingDependencyError, RenderError, UsageError
from ..schema import InvoiceSet
from ._context import resolve_sellers
from ._engine import CHUNK
from ._format import Formatter
from ._result import FILE_COLUMNS, RenderResult
from ._templates import find_template
from ._worker import error_text, record, render_chunk, sidecar, worker_init

__all__ = ["render_batch", "render_pdf", "EINVOICE_KINDS"]

EINVOICE_KINDS = ("factur-x",)
_ROW_COLUMNS = ["id", "invoice_number", "client_name", "client_email", "client_address", "client_tax_id",
                "client_data", "line_items", "currency", "total", "created_at", "modified_at", "source"]
_WIDE = pa.decimal128(38, 2)
_INFLIGHT_PER_WORKER = 2


# -- options ---------------------------------------------------------------------------------
def _require(names) -> None:
    import importlib

    for module in names:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingDependencyError(module, "pdf") from None


def _options(invoice_set, *, template, locale, seller, einvoice, allow_urls) -> dict:
    _require(("jinja2", "weasyprint", "segno") + (("facturx", "lxml") if einvoice else ()))
    if not isinstance(invoice_set, InvoiceSet):
        raise UsageError(f"expected an InvoiceSet, got {type(invoice_set).__name__}", reason="bad_input")
    if einvoice is not None and einvoice not in EINVOICE_KINDS:
        raise UsageError(f"einvoice={einvoice!r}: expected None or one of {list(EINVOICE_KINDS)}",
                         reason="bad_einvoice")
    Formatter(locale)  # a bad locale is bad usage, not a per-invoice failure
    return {"spec": find_template(template), "locale": locale, "lang": locale.replace("_", "-"),
            "seller": seller, "einvoice": einvoice, "allow": tuple(str(u) for u in (allow_urls or ()))}


def _with_sellers(opts: dict, sources) -> dict:
    """``opts`` plus the seller of each source being rendered and the render key (everything
    that changes the output besides the invoice itself)."""
    sellers = resolve_sellers(sources, opts["seller"]) if sources or opts["seller"] is not None else {}
    key = hashlib.sha256(json.dumps([opts["spec"].sha256, opts["locale"], opts["einvoice"], opts["allow"], sorted(
        json.dumps(s, sort_keys=True) for s in sellers.values())]).encode()).hexdigest()
    return {**opts, "sellers": sellers, "key": key}


def _where_mask(inv: pd.DataFrame, where) -> pd.Series:
    mask = inv["deleted_at"].isna()
    for col, value in dict(where or {}).items():
        if col not in inv.columns:
            raise UsageError(f"where: no column {col!r}; columns are {list(inv.columns)}", reason="bad_where")
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        mask &= inv[col].astype("string").isin([str(v) for v in values]).fillna(False).astype(bool)
    return mask


# -- plan (vectorised) -------------------------------------------------------------------------
def _file_names(work: pd.DataFrame) -> pd.Series:
    number = work["invoice_number"].astype("string").fillna("invoice")
    safe = number.str.replace(r"[^A-Za-z0-9._-]+", "-", regex=True).str.slice(0, 80)
    ident = work["id"].astype("string").str.replace(r"[^A-Za-z0-9]+", "", regex=True).str.slice(0, 12)
    return (safe + "_" + ident + ".pdf").astype(object)


def _lines_in_order(invoice_set: InvoiceSet, ids: pa.Array) -> tuple[pa.Table, np.ndarray, pa.Array]:
    """The lines of ``ids`` sorted by invoice position then line number, with recomputed line
    totals; the offsets of each invoice's lines; each invoice's exact sum."""
    lines = invoice_set.lines_of(ids.to_pylist())
    pos = pc.index_in(lines.column("invoice_id"), value_set=ids)
    q = pc.cast(lines.column("quantity"), pa.decimal128(17, 3))
    p = pc.cast(lines.column("unit_price"), pa.decimal128(17, 2))
    total = pc.cast(pc.round(pc.multiply(q, p), ndigits=2, round_mode="half_towards_infinity"), _WIDE)
    lines = (lines.append_column("_pos", pos).set_column(lines.schema.get_field_index("line_total"), "line_total",
                                                         total)
             .sort_by([("_pos", "ascending"), ("line_no", "ascending")]))
    counts = np.bincount(lines.column("_pos").to_numpy(zero_copy_only=False), minlength=len(ids))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    sums = lines.group_by("_pos").aggregate([("line_total", "sum")])
    at = pc.index_in(pa.array(np.arange(len(ids))), value_set=sums.column("_pos"))
    computed = pc.fill_null(pc.take(sums.column("line_total_sum"), at), pa.scalar(Decimal("0.00"), _WIDE))
    return lines, offsets, computed


def _content_key(work: pd.DataFrame) -> pd.Series:
    fallback = "nochecksum:" + work["modified_at"].astype("string").fillna("") + ":" + \
        work["line_items"].fillna("").str.len().astype("string")
    return work["checksum"].astype("string").fillna(fallback).astype(object)


def _up_to_date(path: str, content: str, key: str) -> dict | None:
    """The sidecar of ``path`` when the PDF is there, unchanged, for this content and render key."""
    try:
        with open(sidecar(path), encoding="utf-8") as fh:
            meta = json.load(fh)
        if meta.get("checksum") != content or meta.get("render_key") != key:
            return None
        with open(path, "rb") as fh:
            data = fh.read()
    except (OSError, ValueError):
        return None
    return meta if hashlib.sha256(data).hexdigest() == meta.get("sha256") else None


# -- plan --------------------------------------------------------------------------------------
def _mismatch_errors(work: pd.DataFrame, computed: pa.Array) -> pd.Series:
    """The error text of each invoice whose stored total differs from its lines (else None)."""
    stored = pa.Table.from_pandas(work[["total"]], preserve_index=False).column(0).combine_chunks()
    bad = pc.fill_null(pc.not_equal(pc.cast(stored, _WIDE), computed), True).to_numpy(zero_copy_only=False)
    out = pd.Series([None] * len(work), index=work.index, dtype=object)
    where = np.flatnonzero(bad)
    if len(where):
        s, c = stored.take(pa.array(where)).to_pylist(), computed.take(pa.array(where)).to_pylist()
        out.iloc[where] = [f"RenderError: total mismatch: stored total {a} but the lines sum to {b}; fix the "
                           "invoice or pass allow_mismatch=True (CLI: --allow-mismatch)" for a, b in zip(s, c)]
    return out


def _plan(invoice_set: InvoiceSet, opts: dict, *, where, out_dir, allow_mismatch: bool) -> dict:
    inv = invoice_set.invoices
    sel = inv[_where_mask(inv, where)].reset_index(drop=True)
    sel = sel.assign(_row=np.arange(len(sel)), source=sel["source"].astype(object).where(sel["source"].notna(), ""))
    dup = sel["id"].duplicated(keep="first").to_numpy(dtype=bool)
    work = sel[~dup].sort_values("source", kind="stable").reset_index(drop=True)
    work["path"] = (os.path.join(out_dir, "") + _file_names(work)) if out_dir is not None else None
    work["content"] = _content_key(work)
    ids = pa.array(work["id"].astype(object).tolist(), pa.string())
    lines, offsets, computed = _lines_in_order(invoice_set, ids)
    error = _mismatch_errors(work, computed)
    if allow_mismatch:
        error[:] = None
    opts.update(_with_sellers(opts, work["source"].unique().tolist()))
    return {"sel": sel, "dup": sel[dup], "work": work, "lines": lines, "offsets": offsets, "error": error}


def _prechecked(plan: dict, key: str) -> tuple[list[dict], list[int]]:
    """Records for duplicates, mismatches and up-to-date files; positions still to render."""
    records = [record(r, error=f"RenderError: duplicate id {r['id']!r} in the set; deduplicate it or narrow "
                       "the batch with where=") for r in plan["dup"][["id", "invoice_number", "_row"]]
               .to_dict("records")]
    work, todo = plan["work"], []
    meta_cols = work[["id", "invoice_number", "_row", "path", "content"]].to_dict("records")
    for pos, (row, err) in enumerate(zip(meta_cols, plan["error"].tolist())):
        if err is not None:
            records.append(record(row, error=err))
            continue
        meta = _up_to_date(row["path"], row["content"], key) if row["path"] else None
        if meta is not None:
            records.append(record(row, pages=meta["pages"], bytes=meta["bytes"], sha256=meta["sha256"], ok=True,
                                   skipped=True))
        else:
            todo.append(pos)
    return records, todo


def _chunks(plan: dict, todo: list[int]):
    """Positions of ``todo`` in runs of at most ``CHUNK`` invoices from one source."""
    sources = plan["work"]["source"].to_numpy(dtype=object)
    run: list[int] = []
    for pos in todo:
        if run and (len(run) >= CHUNK or sources[pos] != sources[run[0]]):
            yield run
            run = []
        run.append(pos)
    if run:
        yield run


def _job(plan: dict, opts: dict, positions: list[int], out_dir) -> dict:
    work, lines, offsets = plan["work"], plan["lines"], plan["offsets"]
    cols = _ROW_COLUMNS + ["_row", "path", "content"]
    rows = work.iloc[positions][cols]
    rows = pa.Table.from_pandas(rows.astype({"path": object}), preserve_index=False).to_pylist()
    starts, ends = offsets[positions], offsets[np.asarray(positions) + 1]
    take = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) if len(positions) else np.array([], int)
    items = lines.take(pa.array(take, pa.int64())).select(
        ["line_no", "description", "quantity", "unit_price", "line_total"]).to_pylist()
    at = 0
    for row, n in zip(rows, ends - starts):
        row["lines"], at = items[at:at + n], at + n
    seller = opts["sellers"].get(rows[0]["source"]) or next(iter(opts["sellers"].values()))
    return {"spec": opts["spec"], "allow": opts["allow"], "locale": opts["locale"], "lang": opts["lang"],
            "seller": seller, "einvoice": opts["einvoice"], "key": opts["key"], "out_dir": out_dir, "rows": rows}


# -- run -----------------------------------------------------------------------------------------
def _pool(workers: int) -> cf.Executor:
    import multiprocessing as mp

    # fork: workers start in milliseconds with everything imported, and scripts need no
    # ``if __name__ == "__main__"`` guard; they only run render_chunk (no DuckDB, no threads)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=worker_init)


def _failed(job: dict, exc: BaseException) -> list[dict]:
    return [record(r, error=f"worker failed: {error_text(exc)}") for r in job["rows"]]


def _execute(jobs, *, executor, workers: int, n_jobs: int):
    """Each job's records, as jobs finish; at most a few jobs in flight (memory stays flat)."""
    if executor is None and (workers <= 1 or n_jobs <= 1):
        for job in jobs:
            yield render_chunk(job)
        return
    own = executor is None
    pool = _pool(min(workers, n_jobs)) if own else executor
    limit = max(2, _INFLIGHT_PER_WORKER * (workers if own else max(workers, 2)))
    pending: dict = {}
    jobs = iter(jobs)
    try:
        while True:
            for job in jobs:
                pending[pool.submit(render_chunk, job)] = job
                if len(pending) >= limit:
                    break
            if not pending:
                return
            finished, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                job = pending.pop(fut)
                try:
                    yield fut.result()
                except Exception as exc:  # noqa: BLE001 - a dead worker fails its chunk, not the batch
                    yield _failed(job, exc)
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)


def _files_frame(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=[*FILE_COLUMNS, "_row"]).sort_values("_row")
    types = {"id": pa.string(), "invoice_number": pa.string(), "path": pa.string(), "pages": pa.int64(),
             "bytes": pa.int64(), "sha256": pa.string(), "ok": pa.bool_(), "skipped": pa.bool_(),
             "error": pa.string()}
    table = pa.table({c: pa.array(frame[c].astype(object).where(frame[c].notna(), None).tolist(), t)
                      for c, t in types.items()})
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def render_batch(invoice_set: InvoiceSet, out_dir: str | os.PathLike, *, template: str = "invoice",
                 locale: str = "en_GB", seller=None, einvoice: str | None = None, where=None,
                 workers: int | None = None, executor: cf.Executor | None = None, progress: bool | None = None,
                 allow_mismatch: bool = False, allow_urls=()) -> RenderResult:
    """Render every live invoice of ``invoice_set`` (or those matching ``where``, a mapping
    ``{column: value or list of values}``) to ``out_dir/<number>_<id>.pdf``.

    One broken invoice does not stop the batch: it gets ``ok=False`` and its ``error``.
    Invoices whose PDF is already there and unchanged (same invoice checksum, template and
    options) are skipped, so a re-run resumes. Output bytes depend only on the invoice,
    the template and the options. ``executor`` is any :class:`concurrent.futures.Executor`
    (e.g. ``distributed.Client(...).get_executor()``); otherwise ``workers`` processes
    (default: the CPU count; 1 renders in this process). ``allow_urls`` lists URL prefixes
    templates may fetch from; nothing else outside the template's folder is ever fetched.
    The input is not modified.
    """
    started = time.perf_counter()
    opts = _options(invoice_set, template=template, locale=locale, seller=seller, einvoice=einvoice,
                    allow_urls=allow_urls)
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    plan = _plan(invoice_set, opts, where=where, out_dir=out, allow_mismatch=allow_mismatch)
    records, todo = _prechecked(plan, opts["key"])
    runs = list(_chunks(plan, todo))
    workers = os.cpu_count() or 1 if workers is None else int(workers)
    bar = _progress.bar(total=len(plan["sel"]), desc="render", progress=progress, unit="invoice")
    bar.update(len(records))
    try:
        jobs = (_job(plan, opts, run, out) for run in runs)
        for done in _execute(jobs, executor=executor, workers=workers, n_jobs=len(runs)):
            records.extend(done)
            bar.update(len(done))
    finally:
        bar.close()
    return RenderResult(_files_frame(records), out, opts["spec"].name, time.perf_counter() - started)


def render_pdf(invoice_set: InvoiceSet, invoice_id: str, *, template: str = "invoice", locale: str = "en_GB",
               seller=None, einvoice: str | None = None, allow_mismatch: bool = False, allow_urls=()) -> bytes:
    """The PDF of the live invoice ``invoice_id`` as bytes (see :func:`render_batch` for the
    options). Raises :class:`~invoicekit.errors.RenderError` when it cannot be rendered."""
    opts = _options(invoice_set, template=template, locale=locale, seller=seller, einvoice=einvoice,
                    allow_urls=allow_urls)
    plan = _plan(invoice_set, opts, where={"id": str(invoice_id)}, out_dir=None, allow_mismatch=allow_mismatch)
    if not len(plan["sel"]):
        raise UsageError(f"no live invoice with id {invoice_id!r} in the set", reason="no_such_invoice")
    if len(plan["dup"]):
        raise RenderError(f"id {invoice_id!r} appears {len(plan['sel'])} times in the set; deduplicate it first",
                          invoice_id=str(invoice_id), reason="duplicate_id")
    err = plan["error"].iloc[0]
    if err is not None:
        raise RenderError(err.removeprefix("RenderError: "), invoice_id=str(invoice_id), reason="total_mismatch")
    (record,) = render_chunk(_job(plan, opts, [0], None))
    if not record["ok"]:
        raise RenderError(f"invoice {invoice_id!r}: {record['error']}", invoice_id=str(invoice_id))
    return record["pdf"]

