"""The validation, duplicate-pairs and render-result reports' content (the generic layout)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess

import pandas as pd

from ._cells import Cell
from ._chart import bars
from ._table import chart_of, section, table

__all__ = ["validation_context", "duplicates_context", "render_context"]


def _more(shown: int, total: int, what: str, call: str) -> str:
    return "" if shown == total else f"\u2026 and {total - shown:,} more {what}: {call} writes every one."


# -- validation --------------------------------------------------------------------------------------------
_PROBLEM_LABELS = {"source_row": "row", "id": "invoice id"}
_PROBLEM_WIDTHS = {"source": "18%", "source_row": "6%", "id": "10%", "field": "14%", "value": "20%"}


def validation_context(report, *, limit: int | None = None) -> dict:
    """Counts by rule, then every problem by rule (source, row, id, field, value, message)."""
    problems = report.problems
    shown = problems if limit is None else problems.head(limit)
    summary = report.summary()
    rules = list(summary["rule"]) if len(summary) else []
    cols = ["source", "source_row", "id", "field", "value", "message"]
    sections = [section(r, shown[shown["rule"] == r], columns=cols, labels=_PROBLEM_LABELS, widths=_PROBLEM_WIDTHS,
                        kinds={"id": "id"}) for r in rules if (shown["rule"] == r).any()]
    affected = int(problems["id"].nunique()) if len(problems) else 0
    kpis = [{"label": "invoices checked", "value": f"{report.n_invoices:,}", "warn": False},
            {"label": "problems", "value": f"{len(problems):,}", "warn": len(problems) > 0},
            {"label": "rules broken", "value": f"{len(rules):,}", "warn": len(rules) > 0},
            {"label": "invoices affected", "value": f"{affected:,}", "warn": affected > 0}]
    counts = summary.set_index("rule")["problems"] if len(summary) else pd.Series(dtype="int64")
    return {"title": "Validation report", "name": "ValidationReport",
            "subtitle": ("no problems: every rule holds" if report.ok
                         else "every broken rule, with the file, row and field"),
            "what": "problems", "kpis": kpis,
            "charts": [chart_of(counts, label="problems per rule")] if len(counts) else [],
            "summaries": [table(summary, caption="by rule", kinds={"rule": "chip"})] if len(summary) else [],
            "notes": [],
            "sections_title": "Problems", "sections": sections,
            "more": _more(len(shown), len(problems), "problems", 'report.to_html("validation.html")')}


# -- duplicates -------------------------------------------------------------------------------------------
_SIM_LABELS = {"sim_invoice_number": "number", "sim_client_tax_id": "tax id", "sim_client_name": "name",
               "sim_client_email": "email", "sim_client_address": "address", "sim_total": "total",
               "sim_created_at": "date", "sim_line_items": "lines"}
_ACTIONS = ("merge", "review", "skip", "keep_both")


def _similarity(values: pd.Series) -> list[Cell | None]:
    """A similarity as a percentage, highlighted where the two invoices differ (below 100 %)."""
    v = pd.to_numeric(values, errors="coerce").astype("float64")
    text = (v * 100).round(1).astype(str) + "%"
    return [None if pd.isna(x) else Cell(t, None, f"{x:.4f}", "num" if x >= 1 else "num chg")
            for x, t in zip(v.tolist(), text.tolist())]


def _pair_cells(frame: pd.DataFrame) -> dict:
    score = [c if c is None else c._replace(cls="num") for c in _similarity(frame["score"])]
    return {c: _similarity(frame[c]) for c in _SIM_LABELS if c in frame.columns} | {"score": score}


def duplicates_context(pairs, *, limit: int | None = None) -> dict:
    """The score histogram, pairs by action, then every pair (best first) with its similarities."""
    frame = pairs.pairs.sort_values("score", ascending=False, kind="stable")
    shown = frame if limit is None else frame.head(limit)
    sims = [c for c in _SIM_LABELS if c in frame.columns]
    cols = ["id_a", "id_b", "score", *sims, "reason"]
    widths = {"id_a": "8%", "id_b": "8%", "score": "6.5%", **{c: "6%" for c in sims}}
    labels = {"id_a": "invoice a", "id_b": "invoice b", **_SIM_LABELS}
    sections = [section(a, shown[shown["action"] == a], columns=cols, open=a != "skip", kinds={"id_a": "id",
                        "id_b": "id"}, labels=labels, widths=widths, cells=_pair_cells)
                for a in _ACTIONS if (shown["action"] == a).any()]
    hist = pairs.histogram()
    chart = bars([(f"{lo:.1f}\u2013{hi:.1f}", int(n)) for lo, hi, n in hist.itertuples(index=False)],
                 label="score histogram (pairs per score)", left=70)
    s = pairs.stats
    kpis = [{"label": "invoices", "value": f"{int(s.get('invoices', 0)):,}", "warn": False},
            {"label": "candidate pairs", "value": f"{int(s.get('candidates', 0)):,}", "warn": False},
            {"label": "duplicate pairs", "value": f"{int(pairs.pairs['is_duplicate'].sum()):,}",
             "warn": bool(pairs.pairs["is_duplicate"].any())},
            {"label": "to review", "value": f"{int((pairs.pairs['action'] == 'review').sum()):,}", "warn": False}]
    return {"title": "Duplicate invoices", "name": "DuplicatePairs",
            "subtitle": f"preset {pairs.preset}, threshold {pairs.threshold}",
            "what": "pairs", "kpis": kpis, "charts": [chart],
            "summaries": [table(pairs.summary(), caption="pairs by action", kinds={"action": "chip"})],
            "notes": ["Similarities per field, 100% where the two invoices agree; highlighted where they differ."],
            "sections_title": "Pairs, best first", "sections": sections,
            "more": _more(len(shown), len(frame), "pairs", 'pairs.to_html("duplicates.html")')}


# -- render results ---------------------------------------------------------------------------------------
_FILE_LABELS = {"invoice_number": "invoice", "id": "invoice id", "sha256": "sha-256"}
_FILE_WIDTHS = {"invoice_number": "13%", "id": "9%", "path": "25%", "pages": "6%", "bytes": "8%", "sha256": "10%",
                "ok": "5%", "skipped": "7%"}


#: page-1 thumbnails a render report shows (the first files rendered)
THUMBNAILS = 12


def _thumbnail(path: str) -> str | None:
    """Page 1 of a PDF as a small PNG data URI (poppler's pdftoppm), or None."""
    exe = shutil.which("pdftoppm")
    if exe is None or not os.path.isfile(path):
        return None
    # no output root: the PNG goes to stdout; an absolute path never reads as an option
    proc = subprocess.run([exe, "-png", "-f", "1", "-l", "1", "-scale-to", "220", os.path.abspath(path)],
                          capture_output=True, timeout=60, check=False)
    if proc.returncode != 0 or not proc.stdout.startswith(b"\x89PNG"):
        return None
    return "data:image/png;base64," + base64.b64encode(proc.stdout).decode("ascii")


def _thumbnails(files: pd.DataFrame, n: int) -> tuple[list[dict], str]:
    ok = files[files["ok"].astype(bool) & files["path"].notna()].head(n)
    thumbs = [{"src": src, "label": str(num) if pd.notna(num) else str(i), "title": str(p)}
              for i, num, p in zip(ok["id"], ok["invoice_number"], ok["path"])
              if (src := _thumbnail(str(p))) is not None]
    note = "" if thumbs or ok.empty else ("page-1 thumbnails need poppler's pdftoppm "
                                          "(Debian/Ubuntu: apt-get install poppler-utils)")
    return thumbs, note


def render_context(result, *, limit: int | None = None) -> dict:
    """Counts, the failures first, then every file."""
    files = result.files
    shown = files if limit is None else files.head(limit)
    ok = shown["ok"].astype(bool)
    cols = [c for c in ("invoice_number", "id", "path", "pages", "bytes", "sha256", "ok", "skipped", "error")
            if c in files.columns]
    opts = {"columns": cols, "labels": _FILE_LABELS, "widths": _FILE_WIDTHS, "kinds": {"id": "id", "sha256": "hex"}}
    sections = ([section("failed", shown[~ok], **opts)] if (~ok).any() else []) + (
        [section("rendered", shown[ok], open=len(files) < 200, **opts)] if ok.any() else [])
    c = result.counts()
    kpis = [{"label": "rendered", "value": f"{c['rendered']:,}", "warn": False},
            {"label": "skipped (unchanged)", "value": f"{c['skipped']:,}", "warn": False},
            {"label": "failed", "value": f"{c['failed']:,}", "warn": c["failed"] > 0},
            {"label": "pages", "value": f"{c['pages']:,}", "warn": False}]
    counts = pd.Series({"rendered": c["rendered"], "skipped": c["skipped"], "failed": c["failed"]})
    thumbs, note = _thumbnails(files, THUMBNAILS if limit is None else min(limit, 4))
    return {"title": "Render result", "name": "RenderResult",
            "subtitle": f"template {result.template}, into {result.out_dir}",
            "what": "files", "kpis": kpis, "charts": [chart_of(counts, label="invoices")],
            "summaries": [table(result.summary(), caption="summary")], "notes": [note] if note else [],
            "thumbs": thumbs, "sections_title": "Files", "sections": sections,
            "more": _more(len(shown), len(files), "files", 'result.to_html("render.html")')}
