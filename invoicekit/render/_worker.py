"""The worker side of a batch: one chunk of plain rows -> PDF files and their records.

Runs in whatever process the executor gives it (so everything it gets and returns is
plain, picklable data); builds the template contexts, lays the chunk out in one document
(one per invoice for templates that count pages) and writes each invoice's PDF and
sidecar atomically. Every failure is caught per invoice.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import threading
from contextlib import contextmanager

from ._context import invoice_context
from ._engine import CHUNK, engine
from ._format import Formatter
from ._templates import TemplateSpec

__all__ = ["render_chunk", "record", "sidecar", "error_text", "worker_init"]

#: the cyclic garbage collector's first threshold while a chunk renders. WeasyPrint
#: allocates millions of short-lived objects per chunk, few in cycles; Python's default
#: (700) runs a collection every 700 of them, which cost 10-20% of the render time
#: (measured: 3.5-7.8 ms of ~35 ms per invoice, 0.5 ms at 10,000). Memory stays bounded:
#: collections still run, only less often.
GC_THRESHOLD = 10_000


def record(row: dict, **kw) -> dict:
    """One row of ``RenderResult.files`` (plus ``_row``, its position in the selection)."""
    out = {"id": row["id"], "invoice_number": row["invoice_number"], "path": row.get("path"), "pages": None,
           "bytes": None, "sha256": None, "ok": False, "skipped": False, "error": None, "_row": row["_row"]}
    out.update(kw)
    return out


def sidecar(path: str) -> str:
    """The manifest next to the PDF at ``path``."""
    return path + ".json"


def _anchor(invoice_id: str) -> str:
    return "inv-" + hashlib.sha256(str(invoice_id).encode()).hexdigest()[:16]


def error_text(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 500 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _contexts(rows, seller, fmt, done) -> list[dict]:
    out = []
    for row in rows:
        try:
            ctx = invoice_context(row, seller, fmt, _anchor(row["id"]))
        except Exception as exc:  # noqa: BLE001 - one broken invoice must not stop the others
            done[row["_row"]] = record(row, error=error_text(exc))
            continue
        ctx["_row"], ctx["_created_at"], ctx["_modified_at"] = row, row["created_at"], row["modified_at"] \
            or row["created_at"]
        out.append(ctx)
    return out


def _emit(eng, doc, span, ctx, seller, lang, einvoice, job, done) -> None:
    row = ctx["_row"]
    try:
        pdf = eng.write(doc, span, ctx, seller, lang, einvoice)
        digest = hashlib.sha256(pdf).hexdigest()
        pages = span[1] - span[0]
        if job["out_dir"] is not None:
            _write_atomic(row["path"], pdf)
            meta = {"id": row["id"], "invoice_number": row["invoice_number"], "checksum": row["content"],
                    "render_key": job["key"], "sha256": digest, "pages": pages, "bytes": len(pdf)}
            _write_atomic(sidecar(row["path"]), json.dumps(meta, sort_keys=True).encode())
        done[row["_row"]] = record(row, pages=pages, bytes=len(pdf), sha256=digest, ok=True,
                                    pdf=None if job["out_dir"] is not None else pdf)
    except Exception as exc:  # noqa: BLE001 - one broken invoice must not stop the others
        done[row["_row"]] = record(row, error=error_text(exc))


def _lay_out(eng, group, seller, lang, einvoice, job, done) -> None:
    try:
        doc, spans = eng.layout(group, seller, lang)
    except Exception as exc:  # noqa: BLE001 - isolate the broken invoice, render the rest
        if len(group) > 1:
            for ctx in group:
                _lay_out(eng, [ctx], seller, lang, einvoice, job, done)
            return
        done[group[0]["_row"]["_row"]] = record(group[0]["_row"], error=error_text(exc))
        return
    for ctx, span in zip(group, spans):
        _emit(eng, doc, span, ctx, seller, lang, einvoice, job, done)


def worker_init() -> None:
    """Initializer of the toolkit's own worker processes: everything the fork inherited
    (the parent's data, the imported modules) is frozen out of the garbage collector's
    scans, so full collections only walk what the worker itself allocates."""
    gc.freeze()


_GC_LOCK = threading.Lock()
_GC_STATE = {"active": 0, "saved": None}


@contextmanager
def _fewer_collections():
    """Collect less often while chunks render, then restore the caller's setting (chunks
    may run in the caller's process or in an executor's threads: the first one in saves
    the setting, the last one out restores it)."""
    with _GC_LOCK:
        if _GC_STATE["active"] == 0:
            old = _GC_STATE["saved"] = gc.get_threshold()
            if old[0] and old[0] < GC_THRESHOLD:
                gc.set_threshold(GC_THRESHOLD, *old[1:])
        _GC_STATE["active"] += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_STATE["active"] -= 1
            if _GC_STATE["active"] == 0:
                gc.set_threshold(*_GC_STATE["saved"])


def render_chunk(job: dict) -> list[dict]:
    """Render one chunk of rows (runs in a worker; everything in ``job`` is plain data)."""
    with _fewer_collections():
        return _render_chunk(job)


def _render_chunk(job: dict) -> list[dict]:
    from ._einvoice import einvoice_writer

    spec: TemplateSpec = job["spec"]
    eng = engine(spec, job["allow"])
    fmt = Formatter(job["locale"])
    seller, lang = job["seller"], job["lang"]
    einvoice = einvoice_writer(job["einvoice"])
    done: dict[int, dict] = {}
    ctxs = _contexts(job["rows"], seller, fmt, done)
    groups = [[c] for c in ctxs] if spec.single else [ctxs[i:i + CHUNK] for i in range(0, len(ctxs), CHUNK)]
    for group in groups:
        if group:
            _lay_out(eng, group, seller, lang, einvoice, job, done)
    return [done[r["_row"]] for r in job["rows"]]
