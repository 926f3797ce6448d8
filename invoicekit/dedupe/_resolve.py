"""``resolve_duplicates``: pick a survivor per cluster; the removed ids and a merge map.

Pure and in memory: nothing is written (the store-writing step is separate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from .._html import frame_html, page
from ..errors import UsageError
from ..schema import InvoiceSet
from ._cluster import DuplicateClusters

__all__ = ["resolve_duplicates", "DuplicateResolution", "KEEP"]

KEEP = ("earliest", "latest", "most_complete")
_FILLED = ("invoice_number", "client_name", "client_email", "client_address", "client_tax_id", "line_items")


@dataclass(frozen=True)
class DuplicateResolution:
    """What a cleanup would do.

    ``survivors``: ``cluster_id``, ``id`` (one kept invoice per cluster); ``removed``:
    ``id``, ``survivor_id``, ``cluster_id`` (entries to tombstone), ``score`` (of the pair with
    the survivor, else the entry's strongest pair in its cluster), ``version`` and ``checksum``
    (as found, so a cleanup refuses an entry changed since); ``merge_map``: ``id`` ->
    ``survivor_id`` for every cluster member (a survivor maps to itself); ``invoices``:
    the invoices frame without the removed entries; ``keep``: the rule used.
    """

    survivors: pd.DataFrame
    removed: pd.DataFrame
    merge_map: pd.DataFrame
    invoices: pd.DataFrame
    keep: str

    @property
    def removed_ids(self) -> list[str]:
        """The ids of the removed entries."""
        return self.removed["id"].tolist()

    def summary(self) -> pd.DataFrame:
        """Counts of clusters, survivors and removed entries."""
        live = int(self.invoices["deleted_at"].isna().sum()) if "deleted_at" in self.invoices else len(self.invoices)
        return pd.DataFrame({"what": ["clusters", "removed", "live invoices left"],
                             "count": [len(self.survivors), len(self.removed), live]})

    def _repr_html_(self) -> str:
        return (f"<b>DuplicateResolution</b> (keep={self.keep}): {len(self.removed):,} entries removed from "
                f"{len(self.survivors):,} clusters" + frame_html(self.summary())
                + frame_html(self.removed, caption="removed"))

    def to_html(self, path: str) -> None:
        """Write a standalone HTML report."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page("Duplicate cleanup (not applied)", self._repr_html_()))

    def __repr__(self) -> str:
        return (f"DuplicateResolution({len(self.removed):,} removed, {len(self.survivors):,} clusters, "
                f"keep={self.keep!r})")


def _filled(inv: pd.DataFrame) -> np.ndarray:
    total = np.zeros(len(inv), np.int64)
    for col in _FILLED:
        values = inv[col].astype("string[pyarrow]")
        total += (values.notna() & (values.str.strip().str.len() > 0)).fillna(False).to_numpy(dtype=bool)
    return total


def _choose(members: pd.DataFrame, keep) -> pd.Series:
    """Boolean survivor flag per member row."""
    if callable(keep):
        chosen = keep(members.copy())
        chosen = pd.Series(list(chosen), dtype=object) if not isinstance(chosen, pd.Series) else chosen
        ids = set(chosen.astype(str)) if chosen.dtype != bool else None
        flag = members["id"].isin(ids) if ids is not None else chosen.reindex(members.index).fillna(False)
        per = flag.groupby(members["cluster_id"]).sum()
        if not (per == 1).all():
            raise UsageError(f"keep callable must choose exactly one survivor per cluster; "
                             f"{int((per != 1).sum())} cluster(s) got {sorted(set(per[per != 1].tolist()))}")
        return flag.astype(bool)
    if keep not in KEEP:
        raise UsageError(f"keep must be one of {KEEP} or a callable, not {keep!r}", reason="bad_keep")
    m = members.assign(_t=members["created_at"], _filled=_filled(members))
    if keep == "earliest":
        order = m.sort_values(["cluster_id", "_t", "id"], ascending=[True, True, True])
    elif keep == "latest":
        order = m.sort_values(["cluster_id", "_t", "id"], ascending=[True, False, True])
    else:
        order = m.sort_values(["cluster_id", "_filled", "_t", "id"], ascending=[True, False, True, True])
    first = order.index[~order["cluster_id"].duplicated()]
    return pd.Series(members.index.isin(first), index=members.index)


def _with_found(removed: pd.DataFrame, links: pd.DataFrame, inv: pd.DataFrame) -> pd.DataFrame:
    """``removed`` plus ``score`` (the pair with the survivor, else the strongest pair of the
    entry) and the ``version`` and ``checksum`` the entry had when found."""
    both = pd.concat([links.rename(columns={"id_a": "id", "id_b": "other"}),
                      links.rename(columns={"id_b": "id", "id_a": "other"})], ignore_index=True)
    hit = removed[["id", "survivor_id"]].merge(both, on="id")
    hit = hit.assign(direct=hit["other"] == hit["survivor_id"]).sort_values(
        ["id", "direct", "score"], ascending=[True, False, False]).drop_duplicates("id")
    out = removed.merge(hit[["id", "score"]], on="id", how="left")
    found = inv[["id"]].assign(
        version=inv["version"].astype("Int64") if "version" in inv.columns else pd.NA,
        checksum=inv["checksum"].astype("string") if "checksum" in inv.columns else pd.NA)
    out = out.merge(found.drop_duplicates("id"), on="id", how="left")
    return out.astype({"score": "float64", "version": "Int64", "checksum": "string"}).reset_index(drop=True)


def resolve_duplicates(invoice_set, clusters: DuplicateClusters, *,
                       keep: str | Callable[[pd.DataFrame], object] = "earliest") -> DuplicateResolution:
    """Choose one survivor per cluster (``keep``: ``"earliest"``, ``"latest"`` by
    ``created_at``, ``"most_complete"`` by filled client/number/line fields, or a callable
    taking the members frame - invoice columns plus ``cluster_id`` - and returning the
    survivor ids or a boolean Series); returns :class:`DuplicateResolution`. Not mutated."""
    if not isinstance(clusters, DuplicateClusters):
        raise UsageError(f"resolve_duplicates takes DuplicateClusters, not {type(clusters).__name__}")
    inv = invoice_set.invoices if isinstance(invoice_set, InvoiceSet) else invoice_set
    if not isinstance(inv, pd.DataFrame) or "id" not in inv.columns:
        raise UsageError("resolve_duplicates takes the InvoiceSet (or invoices frame) the pairs came from")
    c = clusters.clusters[["cluster_id", "id"]]
    members = inv.merge(c, on="id", how="inner").drop_duplicates("id").reset_index(drop=True)
    missing = set(c["id"]) - set(members["id"])
    if missing:
        raise UsageError(f"{len(missing)} clustered invoice(s) are not in invoice_set, e.g. {sorted(missing)[0]!r}; "
                         "pass the set find_duplicates was run on", reason="unknown_ids")
    flag = _choose(members, keep)
    surv = members.loc[flag.to_numpy(), ["cluster_id", "id"]].sort_values("cluster_id").reset_index(drop=True)
    mm = members[["id", "cluster_id"]].merge(surv.rename(columns={"id": "survivor_id"}), on="cluster_id")
    mm = mm[["id", "survivor_id", "cluster_id"]].sort_values(["cluster_id", "id"]).reset_index(drop=True)
    removed = _with_found(mm[mm["id"] != mm["survivor_id"]], clusters.links, inv)
    left = inv[~inv["id"].isin(removed["id"])]
    name = keep if isinstance(keep, str) else getattr(keep, "__name__", "callable")
    return DuplicateResolution(surv, removed, mm, left, name)
