"""``cluster_duplicates``: duplicate pairs -> groups of entries of the same invoice.

Connected components over the duplicate pairs (vectorised label propagation with pointer
jumping), with two guards against chaining unrelated invoices through weak links:

* a *weak* link (score below ``strong``) inside a group of three or more is kept only
  when its two invoices share another duplicate (a triangle); a lone weak bridge between
  two groups is cut;
* two invoices a reviewer marked not the same (``record_decisions``) never end in one
  group, even when each is a duplicate of a third: the group's weakest links are cut until
  they part;
* a group larger than ``max_size`` is rebuilt from ever stronger links only (0.9, 0.99,
  0.999); what is still too large is left out (listed in ``oversize``) rather than merged.

``cluster_id`` is the smallest member id, so it depends on the members only: identical
across runs and row orders. The survivor (``is_survivor``) is the earliest entry
(``created_at``, then id); :func:`~invoicekit.dedupe.resolve_duplicates` may choose another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._html import frame_html, page
from ..errors import UsageError
from ._find import DuplicatePairs

__all__ = ["cluster_duplicates", "DuplicateClusters", "components"]


@dataclass(frozen=True)
class DuplicateClusters:
    """Groups of duplicate entries: ``clusters`` has ``cluster_id``, ``id``, ``is_survivor``,
    ``size``, one row per member (groups of two or more only); ``oversize`` lists the ids of
    groups too large to trust (left out); ``invoices`` is the pairs' invoice metadata;
    ``links``: ``id_a``, ``id_b``, ``score`` of the duplicate pairs that hold the clusters together."""

    clusters: pd.DataFrame
    oversize: pd.DataFrame
    invoices: pd.DataFrame
    links: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({"id_a": [], "id_b": [], "score": []}))

    def summary(self) -> pd.DataFrame:
        """Clusters by size."""
        sizes = self.clusters.drop_duplicates("cluster_id")["size"].value_counts().sort_index()
        out = sizes.rename_axis("size").rename("clusters").reset_index()
        out.attrs["removable"] = int((~self.clusters["is_survivor"]).sum())
        out.attrs["oversize"] = len(self.oversize)
        return out

    def _repr_html_(self) -> str:
        n = self.clusters["cluster_id"].nunique()
        head = (f"<b>DuplicateClusters</b>: {n:,} clusters, {int((~self.clusters['is_survivor']).sum()):,} "
                f"removable entries, {len(self.oversize):,} invoices in oversize groups left out")
        return head + frame_html(self.summary()) + frame_html(self.clusters, caption="members")

    def to_html(self, path: str) -> None:
        """Write a standalone HTML report."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page("Duplicate clusters", self._repr_html_()))

    def __repr__(self) -> str:
        return f"DuplicateClusters({self.clusters['cluster_id'].nunique():,} clusters, {len(self.clusters):,} members)"


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component label (smallest member index) of each of ``n`` nodes joined by edges (a, b)."""
    labels = np.arange(n)
    while True:
        low = np.minimum(labels[a], labels[b])
        new = labels.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        while True:  # pointer jumping
            nxt = new[new]
            if np.array_equal(nxt, new):
                break
            new = nxt
        if np.array_equal(new, labels):
            return labels
        labels = new


def _apart(pairs: DuplicatePairs, ids: np.ndarray, a: np.ndarray, b: np.ndarray,
           score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The links and labels with every pair a reviewer marked not the same (action
    ``keep_both``) in two clusters: while such a pair shares a cluster (chained through a
    third invoice), that cluster's weakest link is cut. Loops over the clusters that hold
    such a pair only (reviewers' decisions: few), never over rows."""
    labels = components(len(ids), a, b)
    if "action" not in pairs.pairs.columns or not len(ids):
        return a, b, score, labels
    apart = pairs.pairs[pairs.pairs["action"] == "keep_both"]
    if apart.empty:
        return a, b, score, labels
    x = np.searchsorted(ids, apart["id_a"].to_numpy(dtype=object))
    y = np.searchsorted(ids, apart["id_b"].to_numpy(dtype=object))
    known = (x < len(ids)) & (y < len(ids))
    known[known] &= (ids[x[known]] == apart["id_a"].to_numpy(dtype=object)[known]) \
        & (ids[y[known]] == apart["id_b"].to_numpy(dtype=object)[known])
    x, y = x[known], y[known]
    while True:
        together = labels[x] == labels[y]
        if not together.any():
            return a, b, score, labels
        inside = np.flatnonzero(labels[a] == labels[x[together][0]])
        cut = inside[np.argmin(score[inside])]
        a, b, score = np.delete(a, cut), np.delete(b, cut), np.delete(score, cut)
        labels = components(len(ids), a, b)


def _supported(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each edge: do its two nodes share a neighbour (is it in a triangle)?"""
    if not len(a):
        return np.zeros(0, bool)
    adj = pd.DataFrame({"u": np.r_[a, b], "x": np.r_[b, a]})
    edges = pd.DataFrame({"e": np.arange(len(a)), "a": a, "b": b})
    left = edges.merge(adj, left_on="a", right_on="u")[["e", "b", "x"]]
    tri = left.merge(adj, left_on=["b", "x"], right_on=["u", "x"])
    out = np.zeros(len(a), bool)
    out[tri["e"].unique()] = True
    return out


def cluster_duplicates(pairs: DuplicatePairs, *, max_size: int = 20, strong: float = 0.9) -> DuplicateClusters:
    """Group the duplicate pairs of ``pairs`` into clusters (see module doc); not mutated."""
    if not isinstance(pairs, DuplicatePairs):
        raise UsageError(f"cluster_duplicates takes the DuplicatePairs of find_duplicates, not {type(pairs).__name__}")
    if max_size < 2:
        raise UsageError(f"max_size must be at least 2, not {max_size}")
    dup = pairs.duplicates
    ids = np.unique(np.r_[dup["id_a"].to_numpy(dtype=object), dup["id_b"].to_numpy(dtype=object)]).astype(object)
    a = np.searchsorted(ids, dup["id_a"].to_numpy(dtype=object))
    b = np.searchsorted(ids, dup["id_b"].to_numpy(dtype=object))
    score = dup["score"].to_numpy(dtype=float)
    labels = components(len(ids), a, b)
    size = np.bincount(labels, minlength=len(ids))
    weak = (score < strong) & (size[labels[a]] > 2)
    keep = ~weak | _supported(a, b)
    a, b, score = a[keep], b[keep], score[keep]
    a, b, score, labels = _apart(pairs, ids, a, b, score)
    for level in (strong, 0.99, 0.999):
        size = np.bincount(labels, minlength=len(ids))
        big = size[labels] > max_size
        if not big.any():
            break
        inside = big[a]
        sel = ~inside | (score >= level)
        a, b, score = a[sel], b[sel], score[sel]
        labels = components(len(ids), a, b)
    size = np.bincount(labels, minlength=len(ids))
    members = pd.DataFrame({"id": ids, "label": labels, "size": size[labels]})
    oversize = members[members["size"] > max_size][["id"]].reset_index(drop=True)
    members = members[(members["size"] >= 2) & (members["size"] <= max_size)]
    members = members.assign(cluster_id=ids[members["label"].to_numpy()])
    meta = pairs.invoices[["id", "created_at"]]
    members = members.merge(meta, on="id", how="left").sort_values(["cluster_id", "created_at", "id"])
    members["is_survivor"] = ~members["cluster_id"].duplicated()
    out = members[["cluster_id", "id", "is_survivor", "size"]].reset_index(drop=True)
    out = out.astype({"cluster_id": "string[pyarrow]", "id": "string[pyarrow]", "size": "int64"})
    links = pd.DataFrame({"id_a": ids[a], "id_b": ids[b], "score": score})
    links = links[links["id_a"].isin(out["id"])].reset_index(drop=True)
    return DuplicateClusters(out, oversize, pairs.invoices, links)
