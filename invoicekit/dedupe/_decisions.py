"""Reviewers' decisions on candidate pairs (same invoice or not), kept in the store and
respected by later runs of :func:`~invoicekit.dedupe.find_duplicates`.

A pair marked *not the same* is never a duplicate (action ``keep_both``); a pair marked *the
same* is a duplicate (action ``merge``), added with score 1.0 when the blocking rules did
not propose it (both invoices must be among those compared). The reason names the reviewer.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..io.records import identify, is_central, write_decisions
from ..io.records import read_decisions as _read_stored

__all__ = ["record_decisions", "read_decisions", "respect_decisions", "as_decisions"]

_COLUMNS = ["id_a", "id_b", "same", "actor", "at"]


def _actor(actor: str | None) -> str:
    from ..sync.apply import default_actor

    return actor or default_actor()


def as_decisions(decisions: Any, *, actor: str | None = None, at: Any = None) -> pd.DataFrame:
    """Decisions as a frame ``id_a < id_b, same, actor, at`` (the latest per pair kept), from a
    DataFrame (``id_a``, ``id_b``, ``same``, optionally ``actor``, ``at``) or (id_a, id_b, same)
    tuples; ``actor`` and ``at`` fill what the input lacks. The input is not mutated."""
    if isinstance(decisions, pd.DataFrame):
        frame = decisions.copy()
    else:
        rows = [tuple(r) for r in (decisions or [])]
        if any(len(r) != 3 for r in rows):
            raise UsageError("decisions are (id_a, id_b, same) tuples", reason="bad_decisions")
        frame = pd.DataFrame(rows, columns=["id_a", "id_b", "same"])
    missing = [c for c in ("id_a", "id_b", "same") if c not in frame.columns]
    if missing:
        raise UsageError(f"decisions lack column(s) {missing}; expected id_a, id_b, same (and optionally actor, at)",
                         reason="bad_decisions")
    frame["same"] = _booleans(frame["same"])
    if "actor" not in frame.columns:
        frame["actor"] = _actor(actor)
    frame["actor"] = frame["actor"].fillna(_actor(actor)).astype(str)
    stamp = pd.Timestamp(at if at is not None else datetime.now(timezone.utc))
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601").fillna(stamp) if "at" in frame.columns \
        else stamp
    a, b = frame["id_a"].astype(str).to_numpy(), frame["id_b"].astype(str).to_numpy()
    if (a == b).any():
        raise UsageError("a decision pairs an invoice with itself", reason="bad_decisions")
    frame["id_a"], frame["id_b"] = np.minimum(a, b), np.maximum(a, b)
    frame = frame.drop_duplicates(["id_a", "id_b"], keep="last")
    return frame[_COLUMNS].sort_values(["id_a", "id_b"]).reset_index(drop=True)


def _booleans(values: pd.Series) -> pd.Series:
    if values.dtype == bool:
        return values
    text = values.astype(str).str.strip().str.lower()
    known = {"true": True, "1": True, "yes": True, "same": True,
             "false": False, "0": False, "no": False, "not_same": False, "different": False}
    out = text.map(known)
    if out.isna().any():
        raise UsageError(f"decision 'same' must be true or false, not {values[out.isna()].iloc[0]!r}",
                         reason="bad_decisions")
    return out.astype(bool)


def record_decisions(store: Any, decisions: Any, *, actor: str | None = None, at: Any = None,
                     token=None) -> pd.DataFrame:
    """Store review decisions in ``store`` (central URL or offline path); the latest decision
    on a pair replaces an earlier one. Returns the decisions as stored (see :func:`as_decisions`).
    ``token``: the reviewer's signed identity, required by a central store with identities on;
    every decision then names its verified subject as actor."""
    frame = as_decisions(decisions, actor=actor, at=at)
    subject = identify(store, token)
    if subject is not None:
        frame = frame.assign(actor=subject)
    rows = zip(frame["id_a"], frame["id_b"], frame["same"], frame["actor"],
               frame["at"].map(lambda t: t.isoformat()))  # one value per decision, written once
    write_decisions(store, list(rows), token=token)
    return frame


def read_decisions(store: Any) -> pd.DataFrame:
    """The decisions stored in ``store``: ``id_a``, ``id_b``, ``same``, ``actor``, ``at``."""
    return _read_stored(store)


def _load(decisions: Any) -> pd.DataFrame:
    if isinstance(decisions, (str, os.PathLike)) or hasattr(decisions, "path") or is_central(decisions):
        return read_decisions(decisions)
    return as_decisions(decisions)


def respect_decisions(pairs, decisions: Any):
    """``pairs`` (DuplicatePairs) with ``decisions`` (a frame, tuples, or a store to read them
    from) applied: not-the-same pairs ``keep_both``, same pairs merged. ``pairs`` is not mutated."""
    dec = _load(decisions)
    if dec.empty:
        return pairs
    out = pairs.pairs
    known = set(pairs.invoices["id"].astype(str))
    dec = dec[dec["id_a"].isin(known) & dec["id_b"].isin(known)]
    keyed = out[["id_a", "id_b"]].astype(str).merge(dec, on=["id_a", "id_b"], how="left")
    hit = keyed["same"].notna().to_numpy()
    same = keyed["same"].fillna(False).astype(bool).to_numpy()
    out = out.copy()
    verdict = np.where(same, "marked the same by ", "marked not the same by ") + keyed["actor"].fillna("").astype(str)
    out.loc[hit, "reason"] = (verdict[hit] + " (" + out.loc[hit, "reason"].astype(str) + ")").astype(str)
    out.loc[hit, "is_duplicate"] = same[hit]
    out.loc[hit, "action"] = np.where(same[hit], "merge", "keep_both")
    out = pd.concat([out, _added(out, dec, pairs.pairs.dtypes)], ignore_index=True)
    out = out.sort_values(["id_a", "id_b"], kind="stable").reset_index(drop=True).astype(pairs.pairs.dtypes)
    stats = {**pairs.stats, "duplicates": int(out["is_duplicate"].sum()), "decisions": int(hit.sum())}
    return dataclasses.replace(pairs, pairs=out, stats=stats)


def _added(out: pd.DataFrame, dec: pd.DataFrame, dtypes: pd.Series) -> pd.DataFrame:
    """Rows for pairs marked the same that no blocking rule proposed."""
    same = dec[dec["same"]]
    new = same.merge(out[["id_a", "id_b"]].astype(str), on=["id_a", "id_b"], how="left", indicator=True)
    new = new[new["_merge"] == "left_only"]
    rows = pd.DataFrame({c: pd.Series([np.nan] * len(new)) for c in out.columns})
    rows["id_a"], rows["id_b"] = new["id_a"].to_numpy(), new["id_b"].to_numpy()
    rows["score"], rows["is_duplicate"], rows["action"] = 1.0, True, "merge"
    rows["reason"] = ("marked the same by " + new["actor"].astype(str)).to_numpy()
    rows["rules"] = "decision"
    return rows if len(rows) else rows.iloc[0:0]
