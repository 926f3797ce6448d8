"""``find_duplicates``: block, compare, score, explain; and its result :class:`DuplicatePairs`."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .._progress import bar
from ..errors import UsageError
from ..schema import InvoiceSet
from . import _blocking, _compare
from ._reason import reasons
from ._score import PRESETS

__all__ = ["find_duplicates", "DuplicatePairs", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("id", "invoice_number", "client_name", "client_email", "client_address", "client_tax_id",
                    "line_items", "currency", "total", "created_at")
#: pairs compared per chunk (one task on an executor)
CHUNK = 250_000
SIM_COLUMNS = [f"sim_{f}" for f in _compare.FIELDS]
_LEVELS = ("number_level", "tax_level", "cents_diff", "days", "same_currency")


@dataclass(frozen=True)
class DuplicatePairs:
    """Candidate duplicate pairs at or above the preset's review level.

    ``pairs``: ``id_a``, ``id_b`` (``id_a < id_b``), ``sim_<field>`` (0-1, NaN where a side
    lacks the field), ``score`` (0-1), ``is_duplicate`` (the preset's decision at its fixed
    threshold), ``action`` (``merge``, ``review`` or ``skip``; ``keep_both`` for a pair a
    reviewer marked not the same), ``reason``, ``rules`` (the blocking rules that proposed
    the pair). ``invoices``: ``id``, ``created_at``, ``modified_at``, ``filled`` (non-empty
    client and number fields) of the invoices compared, for clustering and survivor choice.
    ``stats``: counts of the run.
    """

    pairs: pd.DataFrame
    invoices: pd.DataFrame
    preset: str
    threshold: float
    stats: dict = field(default_factory=dict)

    @property
    def duplicates(self) -> pd.DataFrame:
        """The pairs decided to be duplicates."""
        return self.pairs[self.pairs["is_duplicate"]]

    def summary(self) -> pd.DataFrame:
        """Pairs by action, with the run's counts in ``attrs``."""
        counts = self.pairs["action"].value_counts().reindex(["skip", "merge", "review", "keep_both"], fill_value=0)
        out = counts.rename_axis("action").rename("pairs").reset_index()
        out.attrs.update(self.stats)
        return out

    def histogram(self, bins: int = 10) -> pd.DataFrame:
        """Pairs per score bin (``low`` inclusive)."""
        edges = np.linspace(0, 1, bins + 1)
        counts, _ = np.histogram(self.pairs["score"].to_numpy(dtype=float), bins=edges)
        return pd.DataFrame({"low": edges[:-1].round(2), "high": edges[1:].round(2), "pairs": counts})

    def _repr_html_(self) -> str:
        """The compact report: counts, the score histogram and the best pairs."""
        from ..reports import duplicates_html

        return duplicates_html(self, standalone=False)

    def to_html(self, path: str) -> None:
        """Write the complete report: every pair with its similarities, filter and sort (works offline)."""
        from ..reports import duplicates_html, write

        write(path, duplicates_html(self))

    def __repr__(self) -> str:
        return (f"DuplicatePairs({int(self.pairs['is_duplicate'].sum()):,} duplicates, {len(self.pairs):,} pairs, "
                f"preset={self.preset!r})")


def _frame(invoices, name: str) -> pd.DataFrame:
    frame = invoices.invoices if isinstance(invoices, InvoiceSet) else invoices
    if not isinstance(frame, pd.DataFrame):
        raise UsageError(f"{name} must be an InvoiceSet or its invoices DataFrame, not {type(invoices).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise UsageError(f"{name} lacks column(s) {missing}; expected the invoices frame of an InvoiceSet "
                         f"(columns {list(REQUIRED_COLUMNS)})", reason="missing_columns")
    if "deleted_at" in frame.columns and frame["deleted_at"].notna().any():
        frame = frame[frame["deleted_at"].isna()]
    return frame[[c for c in (*REQUIRED_COLUMNS, "modified_at") if c in frame.columns]]


def _rank(frames: list[pd.DataFrame], created: np.ndarray) -> np.ndarray:
    """The blocking's tie-break (so results do not depend on row order): among rows created
    at the same instant, the rank of the id; 0 for the others (the ids are sorted only there)."""
    order = pl.Series(created).arg_sort().to_numpy()
    same = created[order[1:]] == created[order[:-1]]
    tied = np.zeros(len(created), bool)
    tied[1:] |= same
    tied[:-1] |= same
    rows = order[tied]
    rank = np.zeros(len(created), np.int64)
    if len(rows):
        ids = _compare._column(frames, "id").take(pa.array(rows))
        rank[rows] = pl.from_arrow(ids).rank("ordinal").cast(pl.Int64).to_numpy()
    return rank


def _incremental(new: pd.DataFrame, old: pd.DataFrame):
    """``(frame, is_new, (a, b, rules))``: the new invoices and the existing ones that some
    blocking rule pairs with a new one, and those pairs (row positions in ``frame``).
    Blocking runs over all rows on the key columns only (:func:`_compare.block_columns`),
    so the pairs are those a run over everything would find that touch a new invoice."""
    fresh = pc.invert(pc.is_in(_compare._strings(old, "id"), value_set=_compare._strings(new, "id")))
    if not pc.all(fresh).as_py():
        old = old[fresh.to_numpy(zero_copy_only=False)]
    is_new = np.r_[np.ones(len(new), bool), np.zeros(len(old), bool)]
    columns = _compare.block_columns([new, old])
    keys = _keys(columns, _rank([new, old], columns["created"]))
    a, b, rules = _blocking.candidate_pairs(keys, is_new=is_new)
    rows = _rows(len(is_new), a, b)
    kept = np.r_[np.flatnonzero(is_new), rows[~is_new[rows]]]
    position = np.full(len(is_new), -1, np.int64)
    position[kept] = np.arange(len(kept))
    frame = pd.concat([new, old.iloc[kept[len(new):] - len(new)]], ignore_index=True)
    return frame, is_new[kept], (position[a], position[b], rules)


def _rows(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rows (of ``n``) in some pair, ascending."""
    used = np.zeros(n, bool)
    used[a] = used[b] = True
    return np.flatnonzero(used)


def _keys(p: dict, id_rank: np.ndarray) -> _blocking.Keys:
    cents = np.where(p["has_cents"], p["cents"], -(np.arange(len(p["cents"])) + 10))
    return _blocking.Keys(tax=p["tax_code"], name=p["name_key_code"], number=p["number_nozero_code"],
                          anagram=p["number_anagram_code"], tail=p["number_tail_code"], cents=cents,
                          has_cents=p["has_cents"], currency=p["currency"], created=p["created"], rank=id_rank)


def _compare_all(p: dict, a: np.ndarray, b: np.ndarray, *, workers, executor, progress) -> dict:
    """Comparison arrays for all pairs, chunk by chunk (on ``executor`` when given)."""
    keys = [k for k in _compare.INPUTS if k in p]
    chunks = [(a[i:i + CHUNK], b[i:i + CHUNK]) for i in range(0, len(a), CHUNK)] or [(a, b)]
    w = -1 if workers is None else workers
    args = [({k: p[k][ca] for k in keys}, {k: p[k][cb] for k in keys}, w) for ca, cb in chunks]
    results = []
    with bar(total=len(a), desc="comparing pairs", progress=progress, unit="pair") as pbar:
        if executor is None:
            for sa, sb, ww in args:
                results.append(_compare.compare(sa, sb, ww))
                pbar.update(len(sa["cents"]))
        else:
            futures = [executor.submit(_compare.compare, sa, sb, ww) for sa, sb, ww in args]
            for fut, (sa, _, _) in zip(futures, args):
                results.append(fut.result())
                pbar.update(len(sa["cents"]))
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def find_duplicates(invoices, *, against=None, preset: str = "invoice", threshold: float | None = None,
                    workers: int | None = None, executor: Executor | None = None,
                    progress: bool | None = None, decisions=None) -> DuplicatePairs:
    """Find invoices entered more than once; returns :class:`DuplicatePairs`. Input is not mutated.

    ``invoices`` is an :class:`~invoicekit.InvoiceSet` or its ``invoices`` frame (tombstones
    are ignored). ``against``: existing invoices; then only new x existing and new x new
    pairs are scored (check a device's new invoices before they are pushed). ``preset``:
    ``"invoice"`` (default) or ``"seed"`` (see :mod:`invoicekit.dedupe._score`);
    ``threshold`` overrides the preset's. ``workers``: threads for the string comparisons
    (default all cores); ``executor``: any ``concurrent.futures.Executor`` to compare
    chunks of pairs on; ``progress``: show a bar (default: for large runs). ``decisions``:
    reviewers' decisions (a DataFrame, or a store to read them from) that override the
    preset's (see :mod:`invoicekit.dedupe._decisions`).
    """
    if preset not in PRESETS:
        raise UsageError(f"preset must be one of {sorted(PRESETS)}, not {preset!r}", reason="bad_preset")
    model = PRESETS[preset]
    cut = model.threshold if threshold is None else float(threshold)
    if not 0 <= cut <= 1:
        raise UsageError(f"threshold must be between 0 and 1, not {threshold!r}", reason="bad_threshold")
    if executor is not None and not isinstance(executor, Executor):
        raise UsageError("executor must be a concurrent.futures.Executor (e.g. a Dask client's get_executor())")
    frame = _frame(invoices, "invoices")
    is_new = found = None
    if against is not None:
        frame, is_new, found = _incremental(frame, _frame(against, "against"))
    frame = frame.reset_index(drop=True)
    prepared = _compare.prepare(frame)
    ids = pl.from_arrow(_compare._strings(frame, "id")).to_numpy()
    a, b, rules = found if found is not None else _blocking.candidate_pairs(
        _keys(prepared, _rank([frame], prepared["created"])))
    keep = ids[a] != ids[b]  # the same invoice read twice is no duplicate
    a, b, rules = a[keep], b[keep], rules[keep]
    _compare.add_lines(prepared, frame, _rows(len(frame), a, b))
    comp = _compare_all(prepared, a, b, workers=workers, executor=executor, progress=progress)
    score = model.score(comp)
    shown = score >= min(model.review, cut)
    comp = {k: v[shown] for k, v in comp.items()}
    pairs = _pairs_frame(ids, a[shown], b[shown], rules[shown], comp, score[shown], cut, model)
    stats = {"invoices": len(frame), "new": int(is_new.sum()) if is_new is not None else len(frame),
             "candidates": int(len(a)), "duplicates": int(pairs["is_duplicate"].sum())}
    result = DuplicatePairs(pairs, _meta(frame, prepared), preset, cut, stats)
    if decisions is None:
        return result
    from ._decisions import respect_decisions

    return respect_decisions(result, decisions)


def _rule_names(mask: np.ndarray) -> np.ndarray:
    from ._reason import _join

    parts = [np.where(mask & bit, name, "") for name, bit in _blocking.RULES.items()]
    return np.char.replace(_join(parts), ", ", "+") if len(mask) else np.zeros(0, dtype=object)


def _pairs_frame(ids, a, b, rules, comp, score, cut, model) -> pd.DataFrame:
    ia, ib = ids[a], ids[b]
    swap = ia > ib
    out = pd.DataFrame({"id_a": np.where(swap, ib, ia), "id_b": np.where(swap, ia, ib)})
    for col in SIM_COLUMNS:
        out[col] = np.round(comp[col], 4)
    out["score"] = np.round(score, 6)
    out["is_duplicate"] = score >= cut
    out["action"] = model.action(comp, score, cut)
    out["reason"] = reasons(comp).astype(object) if len(out) else pd.Series([], dtype=object)
    out["rules"] = _rule_names(rules).astype(object) if len(out) else pd.Series([], dtype=object)
    out = out.sort_values(["id_a", "id_b"], kind="stable").reset_index(drop=True)
    types = {"id_a": pa.string(), "id_b": pa.string(), "action": pa.string(), "reason": pa.string(),
             "rules": pa.string()}
    return out.astype({k: pd.ArrowDtype(v) for k, v in types.items()})


def _meta(frame: pd.DataFrame, p: dict) -> pd.DataFrame:
    filled = sum(p[f"{k}_ok"].astype(np.int64) for k in ("number_plain", "tax", "name", "email", "address", "lines"))
    out = pd.DataFrame({"id": frame["id"], "created_at": frame["created_at"]})
    out["modified_at"] = frame["modified_at"] if "modified_at" in frame.columns else frame["created_at"]
    out["filled"] = filled
    return out.drop_duplicates("id").reset_index(drop=True)
