"""The reconcile report's content, computed from a :class:`~invoicekit.reconcile.Reconciliation`.

Everything is prepared column by column (pandas/pyarrow); the template only lays it out.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from markupsafe import Markup

from ._cells import Cell, Parts, cells_html, column_cells, column_parts, escape_array, money_text
from ._chart import bars, color

__all__ = ["reconcile_context", "ACTION_ORDER"]

#: order of the sections needing action: decisions first
ACTION_ORDER = ("conflict", "local_ahead", "central_ahead", "deleted_local", "deleted_central", "local_only")
IN_SYNC_ORDER = ("same", "central_only")
SIDES = ("base", "local", "central")
DASH = "\u2014"

#: (invoice column, label, display kind) compared field by field and shown side by side
FIELDS = (
    ("invoice_number", "invoice number", "text"), ("client_name", "client name", "text"),
    ("client_email", "client email", "text"), ("client_address", "client address", "text"),
    ("client_tax_id", "client tax id", "text"), ("currency", "currency", "text"), ("total", "total", "money"),
    ("deleted_at", "deleted at", "ts"), ("version", "version", "int"), ("checksum", "checksum", "hex"),
)
_STAT_FIELDS = (*[(c, label) for c, label, _ in FIELDS if c != "deleted_at"], ("line_items", "line items"),
                ("_deleted", "deleted"))
_HEAD = ["id", "invoice_number", "client_name", "total", "currency"]
#: fields that change with every edit: highlighted side by side, left out of the "changed" summary
_BOOKKEEPING = ("version", "checksum")


def _side_rows(s, ids: pd.Series, columns: list[str]) -> pd.DataFrame:
    if s is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    inv = s.invoices
    return inv.loc[inv["id"].isin(ids), columns].drop_duplicates("id")


def _raw(series: pd.Series) -> pd.Series:
    """Lossless text of a column, for exact null-safe comparisons."""
    return series.astype("string[pyarrow]")


def _same(a: pd.Series, b: pd.Series) -> pd.Series:
    return (a == b).fillna(False).astype(bool) | (a.isna() & b.isna())


# -- header: counts, money at stake, chart -------------------------------------------------------
def _heads(rec) -> pd.DataFrame:
    """Per status row: number, client, total and currency (the device's when it holds the invoice)."""
    st = rec.status[["id", "status", "has_base", "base_version", "local_version", "central_version"]]
    loc = _side_rows(rec.local, st["id"], _HEAD)
    cen = _side_rows(rec.central, st["id"][rec.status["local_version"].isna()], _HEAD)
    head = pd.concat([loc, cen], ignore_index=True).drop_duplicates("id")
    return st.merge(head, on="id", how="left", sort=False)


def _money(heads: pd.DataFrame) -> dict[str, list[tuple[str, Decimal, int]]]:
    """Per status, (currency, exact sum of totals, invoices), currencies in name order."""
    if heads.empty:
        return {}
    table = pa.table({"status": pa.array(heads["status"].astype(object).tolist(), pa.string()),
                      "currency": pa.array(heads["currency"].astype(object).where(heads["currency"].notna(), None)
                                           .tolist(), pa.string()),
                      "total": heads["total"].array.__arrow_array__() if isinstance(
                          heads["total"].dtype, pd.ArrowDtype) else pa.array(heads["total"].tolist())})
    agg = table.group_by(["status", "currency"]).aggregate([("total", "sum"), ("status", "count")])
    out: dict[str, list] = {}
    for row in sorted(agg.to_pylist(), key=lambda r: (r["status"], r["currency"] or "")):
        out.setdefault(row["status"], []).append((row["currency"] or "\u2014", row["total_sum"], row["status_count"]))
    return out


def _scope_notes(rec) -> dict[str, str]:
    """Statuses out of the reconciliation's scope, with the summary's note on each."""
    summary = rec.summary()
    if "note" not in summary.columns:
        return {}
    return {s: str(n) for s, n in zip(summary["status"], summary["note"]) if isinstance(n, str) and n}


def _header(rec, heads: pd.DataFrame, statuses) -> dict:
    notes = _scope_notes(rec)
    counts = {s: int(n) for s, n in zip(rec.summary()["status"], rec.summary()["invoices"])}
    money = _money(heads)
    currencies = sorted({cur for parts in money.values() for cur, _, _ in parts})
    rows = []
    for s in statuses:
        by = {cur: (amount, n) for cur, amount, n in money.get(s, [])}
        cells = [Cell(money_text(by[c][0]), None, str(by[c][0]), "num")
                 if c in by and by[c][0] is not None else None for c in currencies]
        rows.append({"status": s, "color": color(s), "n": counts.get(s, 0), "cells": cells, "note": notes.get(s)})
    need = sum(counts.get(s, 0) for s in statuses if s not in IN_SYNC_ORDER)
    kpis = [{"label": "invoice ids", "value": f"{len(rec.status):,}", "warn": False},
            {"label": "need action", "value": f"{need:,}", "warn": need > 0},
            {"label": "conflicts", "value": f"{counts.get('conflict', 0):,}", "warn": counts.get("conflict", 0) > 0},
            {"label": "differing fields", "value": f"{len(rec.fields):,}", "warn": False}]
    chart = bars([(s, counts.get(s, 0)) for s in statuses if s not in notes], label="invoices per status")
    return {"status_rows": rows, "currencies": currencies, "kpis": kpis, "status_chart": chart,
            "scope_notes": sorted(set(notes.values()))}


# -- per-field match statistics -----------------------------------------------------------------------
def _field_stats(rec) -> list[dict]:
    """Per field, over the invoices held on both sides: compared, equal, differing; and, where a
    base is known, how many changed on each side since it."""
    cols = ["id", *[c for c, _ in _STAT_FIELDS if not c.startswith("_")], "deleted_at"]
    loc = rec.local.invoices[cols].drop_duplicates("id")
    cen = _side_rows(rec.central, loc["id"], cols)
    both = loc.merge(cen, on="id", suffixes=("_l", "_c"))
    base = _side_rows(rec.local.base, both["id"], cols) if rec.local.base is not None else None
    if base is not None:
        based = both.merge(base.rename(columns={c: f"{c}_b" for c in cols if c != "id"}), on="id")
    stats = []
    for col, label in _STAT_FIELDS:
        def pick(frame, suffix, col=col):
            if col == "_deleted":
                return frame[f"deleted_at_{suffix}"].notna().astype("string[pyarrow]")
            return _raw(frame[f"{col}_{suffix}"])
        equal = int(_same(pick(both, "l"), pick(both, "c")).sum())
        row = {"field": label, "compared": len(both), "equal": equal, "differing": len(both) - equal,
               "rate": (100.0 * equal / len(both)) if len(both) else None, "local_changed": None,
               "central_changed": None}
        if base is not None and len(based):
            row["local_changed"] = int((~_same(pick(based, "l"), pick(based, "b"))).sum())
            row["central_changed"] = int((~_same(pick(based, "c"), pick(based, "b"))).sum())
        stats.append(row)
    return stats


# -- side by side ---------------------------------------------------------------------------------------------
# Each field row of each side is kept as its cell's parts (t text, ti title, v sort key, c classes),
# and every row's HTML is built a column at a time (``cells_html``): a report has ~14 field rows
# x 3 sides per invoice needing action, hundreds of thousands of cells at a few thousand invoices.
_STR = pd.ArrowDtype(pa.string())


def _s(arr: pa.Array) -> pd.Series:
    return pd.Series(pd.arrays.ArrowExtensionArray(arr.cast(pa.string())))


def _const(text: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(text, pa.string()), n)


def _empty_long(name: str) -> pd.DataFrame:
    return pd.DataFrame({"id": pd.Series([], dtype=object), "field": pd.Series([], dtype=object),
                         "order": pd.Series([], dtype="int64"),
                         **{f"{k}_{name}": pd.Series([], dtype=_STR) for k in ("raw", "t", "ti", "v", "c")}})


def _parts_frame(ids, field, order, raw: pd.Series, parts, name: str) -> pd.DataFrame:
    n = len(raw)
    nulls = pa.nulls(n, pa.string())
    text = pc.if_else(parts.valid, parts.text.cast(pa.string()), nulls)
    return pd.DataFrame({
        "id": ids, "field": field, "order": order, f"raw_{name}": raw.astype(_STR).reset_index(drop=True),
        f"t_{name}": _s(text), f"ti_{name}": _s(parts.title if parts.title is not None else nulls),
        f"v_{name}": _s(parts.v if parts.v is not None else nulls), f"c_{name}": _s(_const(parts.cls, n)),
    })


def _long_invoice(side: pd.DataFrame, name: str) -> pd.DataFrame:
    ids = side["id"].astype(object).to_numpy()
    parts = [_parts_frame(ids, label, order, _raw(side[col]), column_parts(side[col], name=col, kind=kind), name)
             for order, (col, label, kind) in enumerate(FIELDS)]
    return pd.concat(parts, ignore_index=True) if parts else _empty_long(name)


def _side_lines(s, ids: pd.Series) -> pd.DataFrame:
    if s is None:
        return pd.DataFrame(columns=["invoice_id", "line_no", "description", "quantity", "unit_price", "line_total"])
    table = s.lines_of(pa.array(ids.astype(object).tolist(), pa.string())) if s.lines_deferred else None
    lines = table.to_pandas(types_mapper=pd.ArrowDtype) if table is not None else s.lines
    return lines[lines["invoice_id"].isin(ids)]


def _shown(parts) -> pa.Array:
    return pc.if_else(parts.valid, parts.text.cast(pa.string()), pa.scalar(DASH))


def _long_lines(lines: pd.DataFrame, name: str) -> pd.DataFrame:
    """One row per line, keyed by its identity (description and occurrence), as reconcile keys them."""
    if lines.empty:
        return _empty_long(name)
    lines = lines.sort_values(["invoice_id", "line_no"], kind="stable")
    occurrence = lines.groupby(["invoice_id", "description"], sort=False).cumcount() + 1
    qty = _shown(column_parts(lines["quantity"], kind="quantity"))
    price = _shown(column_parts(lines["unit_price"], kind="money"))
    total = _shown(column_parts(lines["line_total"], kind="money"))
    text = pc.binary_join_element_wise(qty, " \u00d7 ", price, " = ", total, "")
    parts = Parts(pa.repeat(pa.scalar(True), len(lines)), text, None, None, "num")
    raw = _raw(lines["quantity"]).fillna("") + "|" + _raw(lines["unit_price"]).fillna("")
    desc = lines["description"].astype("string[pyarrow]").fillna("")
    return _parts_frame(lines["invoice_id"].astype(object).to_numpy(),
                        ("line: " + desc + " #" + occurrence.astype(str)).to_numpy(),
                        (100 + lines["line_no"].astype("int64")).to_numpy(), raw, parts, name)


def _side_html(long: pd.DataFrame, name: str, changed: np.ndarray) -> pa.Array:
    cols = [pa.array(long[f"{k}_{name}"].astype(_STR).array) for k in ("t", "ti", "v", "c")]
    cols[3] = pc.fill_null(cols[3], "")
    plain = cells_html(*cols)
    if not changed.any():
        return plain
    return pc.if_else(pa.array(changed), cells_html(*cols, extra="chg"), plain)


def _side_by_side(rec, todo: pd.DataFrame) -> dict[str, tuple[Markup, list[str]]]:
    """Per invoice needing action: its field rows as HTML (label, three cells, the changed side
    highlighted) and the fields that changed."""
    ids = todo["id"]
    sets = {"base": rec.local.base, "local": rec.local, "central": rec.central}
    cols = ["id", *[c for c, _, _ in FIELDS]]
    frames = []
    for name in SIDES:
        side = _side_rows(sets[name], ids, cols)
        inv = _long_invoice(side, name) if len(side) else None
        ln = _long_lines(_side_lines(sets[name], ids), name)
        present = [f for f in (inv, ln) if f is not None and len(f)]
        frames.append(pd.concat(present, ignore_index=True) if present else _empty_long(name))
    long = frames[0]
    for f in frames[1:]:
        long = long.merge(f, on=["id", "field"], how="outer", suffixes=("", "_r"))
        long["order"] = long[["order", "order_r"]].min(axis=1)
        long = long.drop(columns="order_r")
    if long.empty:
        return {}
    info = todo.set_index("id")
    has_base = long["id"].map(info["has_base"].astype(bool)).to_numpy(dtype=bool)
    in_c = long["id"].map(info["central_version"].notna()).to_numpy(dtype=bool)
    in_l = long["id"].map(info["local_version"].notna()).to_numpy(dtype=bool)
    rb, rl, rc = (long[f"raw_{s}"].astype("string[pyarrow]") for s in SIDES)
    d_lc = (~_same(rl, rc)).to_numpy() & in_c & in_l
    chg_local = (has_base & (~_same(rl, rb)).to_numpy() & in_l) | (~has_base & d_lc)
    chg_central = (has_base & (~_same(rc, rb)).to_numpy() & in_c) | (~has_base & d_lc)
    long = long.assign(chg_local=chg_local, chg_central=chg_central)
    long = long.sort_values(["id", "order", "field"], kind="stable").reset_index(drop=True)
    row = pc.binary_join_element_wise(
        '<tr><th scope="row">', escape_array(pa.array(long["field"].astype(str).tolist(), pa.string())), "</th>",
        _side_html(long, "base", np.zeros(len(long), dtype=bool)),
        _side_html(long, "local", long["chg_local"].to_numpy()),
        _side_html(long, "central", long["chg_central"].to_numpy()), "</tr>\n", "")
    # one string, cut at each invoice's first row (rows are sorted by invoice)
    ids_sorted = long["id"].astype(str).to_numpy()
    starts = np.flatnonzero(np.r_[True, ids_sorted[1:] != ids_sorted[:-1]])
    ends = np.cumsum(pc.utf8_length(row).to_numpy())
    at = np.r_[0, ends][np.r_[starts, len(long)]]
    whole = "".join(row.to_pylist())
    hit = (long["chg_local"] | long["chg_central"]) & ~long["field"].isin(_BOOKKEEPING)
    changed = long.loc[hit, ["id", "field"]]
    changed_of: dict[str, list[str]] = {}
    for i, f in zip(changed["id"].astype(str), changed["field"].astype(str)):
        changed_of.setdefault(i, []).append(f)
    return {ids_sorted[a]: (Markup(whole[at[k]:at[k + 1]]), changed_of.get(ids_sorted[a], []))
            for k, a in enumerate(starts)}


# -- the whole report --------------------------------------------------------------------------------
def _invoice_rows(heads: pd.DataFrame, details: dict[str, tuple[Markup, list[str]]] | None) -> list[dict]:
    number = column_cells(heads["invoice_number"], kind="text")
    client = column_cells(heads["client_name"], kind="text")
    total = column_cells(heads["total"], kind="money")
    ident = column_cells(heads["id"], kind="id")
    versions = list(zip(*(column_cells(heads[f"{s}_version"], kind="int") for s in SIDES)))
    currency = heads["currency"].astype(object).where(heads["currency"].notna(), None).tolist()
    details = details or {}
    rows = []
    for k, (i, status, reason) in enumerate(zip(heads["id"].tolist(), heads["status"].tolist(),
                                                heads["reason"].tolist())):
        fields_html, changed = details.get(i, (Markup(""), []))
        rows.append({
            "id": ident[k], "number": number[k], "client": client[k], "total": total[k], "currency": currency[k],
            "status": status, "color": color(status), "reason": reason, "versions": versions[k],
            "changed": changed, "fields_html": fields_html,
        })
    return rows


def _td(parts, extra: str = "") -> pa.Array:
    nulls = pa.nulls(len(parts.text), pa.string())
    text = pc.if_else(parts.valid, parts.text.cast(pa.string()), nulls)
    return cells_html(text, parts.title if parts.title is not None else nulls,
                      parts.v if parts.v is not None else nulls, _const(parts.cls, len(text)), extra=extra)


def _in_sync_html(part: pd.DataFrame) -> Markup:
    """The rows of an in-sync section (thousands of them), built a column at a time."""
    if part.empty:
        return Markup("")
    ident = column_parts(part["id"], kind="id")
    total = column_parts(part["total"], kind="money")
    currency = escape_array(pc.fill_null(pa.array(part["currency"].astype(object).where(part["currency"].notna(), None)
                                                  .tolist(), pa.string()), ""))
    total_html = pc.if_else(total.valid, pc.binary_join_element_wise(
        '<td class="num" data-v="', escape_array(total.v), '">', escape_array(total.text), ' <span class="muted">',
        currency, "</span></td>", ""), pa.scalar('<td class="na num">&mdash;</td>'))
    rows = pc.binary_join_element_wise(
        '<tr data-row data-id="', escape_array(ident.title), '">',
        _td(column_parts(part["invoice_number"], kind="text")), _td(column_parts(part["client_name"], kind="text")),
        "\n", total_html, _td(column_parts(part["local_version"], kind="int"), "num"),
        _td(column_parts(part["central_version"], kind="int"), "num"), _td(ident), "</tr>\n", "")
    return Markup("".join(rows.to_pylist()))


def reconcile_context(rec, *, limit: int | None = None) -> dict:
    """Everything the reconcile template shows; ``limit`` caps the invoices listed (compact view)."""
    from ..reconcile import STATUSES

    heads = _heads(rec)
    heads = heads.merge(rec.status[["id", "reason"]], on="id", how="left", sort=False)
    ctx = _header(rec, heads, STATUSES)
    ctx["field_stats"] = _field_stats(rec)
    action = heads[heads["status"].isin(ACTION_ORDER)]
    order = {s: k for k, s in enumerate(ACTION_ORDER)}
    action = action.iloc[action["status"].map(order).argsort(kind="stable")]
    shown = action if limit is None else action.head(limit)
    details = _side_by_side(rec, shown)
    rows = _invoice_rows(shown.reset_index(drop=True), details)
    groups = [{"status": s, "color": color(s), "n": int((action["status"] == s).sum()),
               "rows": [r for r in rows if r["status"] == s]} for s in ACTION_ORDER]
    ctx["groups"] = [g for g in groups if g["n"]]
    ctx["more"] = len(action) - len(shown)
    ctx["in_sync"] = []
    if limit is None:
        for s in IN_SYNC_ORDER:
            part = heads[heads["status"] == s].reset_index(drop=True)
            ctx["in_sync"].append({"status": s, "color": color(s), "n": len(part), "rows_html": _in_sync_html(part)})
    sources = sorted(set(rec.local.invoices["source"].dropna().astype(str)))
    ctx["subtitle"] = (f"{', '.join(sources[:3]) or 'offline store'}{' …' if len(sources) > 3 else ''}"
                       f" against the central store; {len(rec.local):,} invoices on the device, "
                       f"{len(rec.central):,} central")
    ctx["has_base"] = bool(rec.status["has_base"].any())
    return ctx
