"""``plan_sync``: turn a :class:`~invoicekit.resolve.Resolution` into operations, before writing anything.

A :class:`SyncPlan` is a dry run: one row per operation (op id, kind, invoice id, the
central version it expects, the version it writes, the checksum of the payload) and the
payloads themselves. Op ids are derived from the operation's content (a SHA-256 of
invoice id, kind, versions, payload checksum and everything the payload writes: currency,
timestamps and tombstone included, see ``_content``), so planning the same resolution
twice gives the same op ids and the ledgers recognise an operation already applied.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from .. import _duck
from ..io.local import store_identity
from ..resolve import Resolution
from ..schema import InvoiceSet
from ._content import content_sql

__all__ = ["plan_sync", "SyncPlan", "KINDS"]

#: push: write to central (and acknowledge locally); pull: write central's row locally;
#: flag_conflict: mark the local row ``conflict``; quarantine: mark it ``error`` and report
KINDS = ("push", "pull", "flag_conflict", "quarantine")

_PLAN_SQL = """
WITH a AS (
  SELECT a.*, t.checksum AS payload_checksum, t.deleted_at IS NOT NULL AS deletes,
    CASE WHEN t.id IS NOT NULL THEN $content END AS payload_content,
    CASE a.action WHEN 'push' THEN 'push' WHEN 'pull' THEN 'pull' WHEN 'unresolved' THEN 'flag_conflict'
                  WHEN 'quarantine' THEN 'quarantine' END AS kind
  FROM act a LEFT JOIN tgt t ON t.id = a.id
  WHERE a.action <> 'none'
)
SELECT
  regexp_replace(left(sha256(concat_ws('|', id, kind, coalesce(expected_central_version::VARCHAR, '-'),
        coalesce(new_version::VARCHAR, '-'), coalesce(payload_checksum, '-'), coalesce(local_version::VARCHAR, '-'),
        coalesce(local_checksum, '-'), coalesce(payload_content, '-'))), 32),
    '^(.{8})(.{4})(.{4})(.{4})(.{12})$', '\\1-\\2-\\3-\\4-\\5') AS op_id,
  kind, id AS invoice_id, status, winner,
  expected_central_version, new_version,
  local_version AS expected_local_version, local_checksum AS expected_local_checksum,
  payload_checksum, deletes,
  coalesce(quarantine_reason, CASE kind WHEN 'flag_conflict' THEN 'conflict needs a decision' END) AS note
FROM a
ORDER BY CASE kind WHEN 'push' THEN 1 WHEN 'pull' THEN 2 WHEN 'flag_conflict' THEN 3 ELSE 4 END, id
"""


@dataclass(frozen=True)
class SyncPlan:
    """Operations to apply, inspectable before anything is written (a dry run).

    ``ops``: op_id, kind (see :data:`KINDS`), invoice_id, status, winner,
    expected_central_version (null: the invoice must not exist centrally yet),
    new_version, expected_local_version / expected_local_checksum (the local row must
    be unchanged for the local side to be written), payload_checksum, deletes, note.
    ``target``: the payloads of push and pull operations.
    """

    ops: pd.DataFrame
    target: InvoiceSet
    strategy: str
    #: (absolute path, store identity or None) of each offline store the plan was made from
    stores: tuple[tuple[str, str | None], ...] = ()

    def summary(self) -> pd.DataFrame:
        """Operations per kind."""
        counts = self.ops["kind"].value_counts()
        return pd.DataFrame({"kind": list(KINDS), "operations": [int(counts.get(k, 0)) for k in KINDS]})

    def __len__(self) -> int:
        return len(self.ops)

    def _repr_html_(self) -> str:
        """The compact report: counts by kind and the first operations."""
        from ..reports import plan_html

        return plan_html(self, standalone=False)

    def to_html(self, path: str) -> None:
        """Write the plan as a standalone HTML report (every operation, filter and sort, works offline)."""
        from ..reports import plan_html, write

        write(path, plan_html(self))

    def __repr__(self) -> str:
        return f"SyncPlan({self.strategy}: " + ", ".join(
            f"{k}={n:,}" for k, n in zip(self.summary()["kind"], self.summary()["operations"])) + ")"


def plan_sync(resolution: Resolution) -> SyncPlan:
    """The operations that carry out ``resolution`` (nothing is written)."""
    from .._args import expect

    resolution = expect(resolution, Resolution, func="plan_sync", param="resolution")
    con = _duck.connect(
        act=pa.Table.from_pandas(resolution.actions, preserve_index=False),
        tgt=resolution.target.invoices_table(),
    )
    try:
        ops = _duck.arrow(con, _PLAN_SQL.replace("$content", content_sql("t.")))
    finally:
        con.close()
    stores = tuple((os.path.realpath(p), store_identity(p)) for p in resolution.sources if os.path.isfile(p))
    return SyncPlan(ops=ops.to_pandas(types_mapper=pd.ArrowDtype), target=resolution.target,
                    strategy=resolution.strategy, stores=stores)
