"""The plan and sync-result reports' content."""

from __future__ import annotations

import pandas as pd

from ._cells import column_cells, titled, with_suffix
from ._table import chart_of, section, table

__all__ = ["plan_context", "sync_result_context"]

_PLAN_LABELS = {"invoice_number": "invoice", "client_name": "client", "total": "total", "status": "status",
                "winner": "winner", "versions": "central v.", "expected_local_version": "local v.",
                "deletes": "deletes", "payload_checksum": "payload", "op_id": "op id", "note": "note"}
_PLAN_WIDTHS = {"invoice_number": "12%", "client_name": "15%", "total": "11%", "status": "10%", "winner": "6.5%",
                "versions": "7%", "expected_local_version": "5.5%", "deletes": "6.5%", "payload_checksum": "9%",
                "op_id": "8%"}
_PLAN_KINDS = {"status": "chip", "expected_local_version": "int", "payload_checksum": "hex", "op_id": "id",
               "total": "money", "deletes": "bool", "versions": "text"}
_PLAN_COLUMNS = list(_PLAN_LABELS)


def _plan_cells(frame: pd.DataFrame) -> dict:
    return {"invoice_number": titled(frame["invoice_number"], frame["invoice_id"], fallback=frame["invoice_id"]),
            "total": with_suffix(column_cells(frame["total"], kind="money"), frame["currency"].astype(object)),
            "versions": [c._replace(cls="num") if c else c for c in column_cells(frame["versions"], kind="text")]}


def _versions(ops: pd.DataFrame) -> pd.Series:
    """``2 → 3``: the central version an operation expects (``new``: none yet) and the one it writes."""
    expected = ops["expected_central_version"].astype("string[pyarrow]").fillna("new")
    return expected + " \u2192 " + ops["new_version"].astype("string[pyarrow]").fillna("\u2014")


def _with_invoices(ops: pd.DataFrame, target) -> pd.DataFrame:
    """The operations with the payload's invoice number, client and total (push and pull)."""
    heads = target.invoices[["id", "invoice_number", "client_name", "total", "currency"]].drop_duplicates("id")
    return ops.merge(heads.rename(columns={"id": "invoice_id"}), on="invoice_id", how="left", sort=False)


def plan_context(plan, *, limit: int | None = None) -> dict:
    """Everything the plan report shows: counts by kind, then every operation by kind."""
    from ..sync.plan import KINDS

    summary = plan.summary()
    ops = _with_invoices(plan.ops, plan.target)
    ops = ops.assign(versions=_versions(ops))
    shown = ops if limit is None else ops.head(limit)
    sections = [section(k, shown[shown["kind"] == k], open=k != "push" or len(ops) < 200, columns=_PLAN_COLUMNS,
                        kinds=_PLAN_KINDS, labels=_PLAN_LABELS, widths=_PLAN_WIDTHS, cells=_plan_cells)
                for k in KINDS if (shown["kind"] == k).any()]
    counts = summary.set_index("kind")["operations"]
    kpis = [{"label": "operations", "value": f"{len(ops):,}", "warn": False},
            *({"label": k, "value": f"{int(n):,}", "warn": k in ("flag_conflict", "quarantine") and n > 0}
              for k, n in counts.items())]
    more = "" if len(shown) == len(ops) else (
        f"… and {len(ops) - len(shown):,} more operations: plan.to_html(\"plan.html\") writes every one.")
    return {"title": f"Sync plan ({plan.strategy})", "name": f"SyncPlan ({plan.strategy})",
            "subtitle": "a dry run: nothing has been written yet",
            "what": "operations", "kpis": kpis, "charts": [chart_of(counts, label="operations per kind")],
            "summaries": [], "notes": ["central v.: the central version each operation expects (new: the invoice must "
                                       "not exist centrally yet) \u2192 the version it writes; local v.: the local "
                                       "version that must still be there for the local side to be written."],
            "sections_title": "Operations", "sections": sections, "more": more}


_RESULT_KINDS = {"kind": "chip", "central": "chip", "local": "chip", "invoice_id": "id", "op_id": "id"}
_RESULT_LABELS = {"op_id": "op id", "invoice_id": "invoice id", "central": "central outcome",
                  "local": "local outcome"}


def sync_result_context(result, *, limit: int | None = None) -> dict:
    """Everything the sync-result report shows: outcomes, the new conflicts, every operation."""
    res = result.results
    summary = result.summary()
    shown = res if limit is None else res.head(limit)
    conflicts = shown[(shown["central"] == "conflict") | (shown["local"] == "local_changed")]
    sections = []
    if len(conflicts):
        sections.append(section("conflict", conflicts, kinds=_RESULT_KINDS, labels=_RESULT_LABELS))
    for k in pd.unique(shown["kind"].astype(object)):
        sections.append(section(str(k), shown[shown["kind"] == k], open=len(res) < 200, kinds=_RESULT_KINDS,
                                labels=_RESULT_LABELS))
    central = res["central"].value_counts()
    local = res["local"].value_counts()
    kpis = [{"label": "operations", "value": f"{len(res):,}", "warn": False},
            {"label": "new conflicts", "value": f"{len(result.conflicts):,}", "warn": len(result.conflicts) > 0},
            {"label": "applied centrally", "value": f"{int(central.get('applied', 0)):,}", "warn": False},
            {"label": "applied locally", "value": f"{int(local.get('applied', 0)):,}", "warn": False}]
    more = "" if len(shown) == len(res) else (
        f"… and {len(res) - len(shown):,} more operations: result.to_html(\"sync.html\") writes every one.")
    return {"title": "Sync result", "name": "SyncResult", "subtitle": ("every operation took effect" if result.ok else
                                          "not every operation took effect: see the conflicts below"),
            "what": "operations", "kpis": kpis,
            "charts": [chart_of(central, label="central outcomes"), chart_of(local, label="local outcomes")],
            "summaries": [table(summary, caption="operations per kind and outcome",
                                kinds={"kind": "chip", "central": "chip", "local": "chip"})],
            "notes": [], "sections_title": "Operations", "sections": sections, "more": more}
