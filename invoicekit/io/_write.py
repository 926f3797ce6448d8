"""Compare-and-set writes of whole invoice sets to the central store, and their result.

Per invoice, against the row the central store holds in the same transaction:

* a new id is inserted;
* a higher incoming version updates the row, unless it would bring a tombstone back to
  life (a deletion is final for a plain write);
* the same version with the same content leaves the row unchanged;
* anything else (a lower version, the same version with other content, a live row over a
  tombstone) is refused and reported, never written.

The guard sits in the ``UPDATE``'s own ``WHERE`` clause, so a row another writer changes
while this one waits for its lock is re-checked against its new version (PostgreSQL's read
committed re-evaluation; SQLite writes one transaction at a time). ``force=True`` writes
every row that differs, and the audit trail names it (``kind`` ``force_write``). Every row
written leaves an audit row, as the sync does.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .._html import frame_html, page
from ..security import ENVELOPE_HEAD

__all__ = ["WriteResult", "OUTCOMES", "REFUSALS", "decide_sql", "may_update", "result_frame", "SAME_CONTENT",
           "KIND_SQL", "kind_sql", "same_client"]

OUTCOMES = ("inserted", "updated", "unchanged", "refused")

#: why a row was refused
REFUSALS = {
    "lower_version": "the central store holds a newer version",
    "same_version_other_content": "the central store holds other content at this version",
    "tombstone": "the central store holds this invoice as deleted; a write cannot revive it",
}

def same_client(a: str, b: str, *, column: str = "client_data_text", equal: str = "=") -> str:
    """SQL: rows ``a`` and ``b`` hold the same client text. Encrypted text (a Fernet token is
    random, so one plaintext has many) is compared by the checksum over the plaintext, which
    covers the client JSON: equal when the texts are equal, or when either is encrypted and
    both carry the same checksum."""
    head = ENVELOPE_HEAD.replace("'", "''")
    n = len(ENVELOPE_HEAD)
    return (f"({a}.{column} {equal} {b}.{column} OR ({a}.checksum = {b}.checksum AND "
            f"(substr({a}.{column}, 1, {n}) = '{head}' OR substr({b}.{column}, 1, {n}) = '{head}')))")


#: incoming row ``s`` carries the same content as central row ``i`` (the fields a writer sets)
SAME_CONTENT = f"""(i.version = s.version AND i.checksum IS NOT DISTINCT FROM s.checksum
  AND i.invoice_number = s.invoice_number AND {same_client("i", "s")}
  AND i.line_items_text = s.line_items_text AND i.currency = s.currency AND i.total = s.total
  AND (i.deleted_at IS NULL) = (s.deleted_at IS NULL))"""

#: the CAS rule for an update of central row ``i`` by incoming row ``s`` ({force}: a SQL boolean);
#: a staged row flagged ``s.undelete`` (write_central's ``undelete=``) may clear a tombstone
MAY_UPDATE = """(({force} AND NOT {same})
  OR (s.version > i.version AND (s.undelete OR NOT (i.deleted_at IS NOT NULL AND s.deleted_at IS NULL))))"""

#: the audit ``kind`` of staged row ``s`` updating central row {o} (as it was); {force}: a SQL boolean
KIND_SQL = """CASE WHEN {force} THEN 'force_write'
  WHEN {o}.deleted_at IS NOT NULL AND s.deleted_at IS NULL THEN 'undelete'
  WHEN s.deleted_at IS NOT NULL THEN 'delete' ELSE 'update' END"""


def may_update(force: bool) -> str:
    """SQL condition under which incoming ``s`` may overwrite central ``i``."""
    return MAY_UPDATE.format(force="TRUE" if force else "FALSE", same=SAME_CONTENT)


def kind_sql(force: bool, before: str = "o") -> str:
    """SQL of the audit ``kind`` of staged ``s`` over central row ``before`` (as it was before the write)."""
    return KIND_SQL.format(force="TRUE" if force else "FALSE", o=before)


def decide_sql(written: str) -> str:
    """Outcome of each staged row ``s`` after the writes; ``written`` is a table of (id, outcome)."""
    return f"""
SELECT s.id, coalesce(w.outcome, CASE WHEN {SAME_CONTENT} THEN 'unchanged' ELSE 'refused' END) AS outcome,
  CASE WHEN w.outcome IS NOT NULL OR {SAME_CONTENT} THEN NULL
       WHEN s.version < i.version THEN 'lower_version'
       WHEN s.version = i.version THEN 'same_version_other_content'
       ELSE 'tombstone' END AS reason,
  s.version AS incoming_version, CASE WHEN w.id IS NOT NULL THEN w.before_version ELSE i.version END
    AS central_version
FROM ik_stage s LEFT JOIN invoices i ON i.id = s.id LEFT JOIN {written} w ON w.id = s.id
ORDER BY s.id"""


def result_frame(rows: list[tuple]) -> pd.DataFrame:
    """``WriteResult.results`` from (id, outcome, reason, incoming_version, central_version) rows."""
    frame = pd.DataFrame(rows, columns=["id", "outcome", "reason", "incoming_version", "central_version"])
    return frame.astype({"id": "string[pyarrow]", "outcome": "string[pyarrow]", "reason": "string[pyarrow]",
                         "incoming_version": "Int64", "central_version": "Int64"})


@dataclass(frozen=True)
class WriteResult:
    """What :func:`~invoicekit.write_central` did, per invoice.

    ``results``: id, outcome (inserted / updated / unchanged / refused), reason (for a
    refusal: lower_version, same_version_other_content, tombstone), incoming_version,
    central_version (before the write; null for a new invoice). ``forced``: written with
    ``force=True``.
    """

    results: pd.DataFrame
    store: str
    forced: bool = False

    def count(self, outcome: str) -> int:
        """Invoices with ``outcome``."""
        return int((self.results["outcome"] == outcome).sum())

    @property
    def inserted(self) -> int:
        """New invoices written."""
        return self.count("inserted")

    @property
    def updated(self) -> int:
        """Invoices overwritten by a newer version (or by force)."""
        return self.count("updated")

    @property
    def unchanged(self) -> int:
        """Invoices the store already held exactly."""
        return self.count("unchanged")

    @property
    def written(self) -> int:
        """Invoices inserted or updated."""
        return self.inserted + self.updated

    @property
    def refused(self) -> pd.DataFrame:
        """The invoices not written, with the reason and both versions."""
        out = self.results[self.results["outcome"] == "refused"].reset_index(drop=True)
        return out.assign(message=out["reason"].map(REFUSALS))

    @property
    def ok(self) -> bool:
        """True when nothing was refused."""
        return self.count("refused") == 0

    def summary(self) -> pd.DataFrame:
        """Invoices per outcome."""
        return pd.DataFrame({"outcome": list(OUTCOMES), "invoices": [self.count(o) for o in OUTCOMES]})

    def _repr_html_(self) -> str:
        head = (f"<b>WriteResult</b> to {self.store}{' (forced)' if self.forced else ''}: "
                f"{self.inserted:,} inserted, {self.updated:,} updated, {self.unchanged:,} unchanged, "
                f"{self.count('refused'):,} refused")
        return head + frame_html(self.summary(), caption="by outcome") + (
            frame_html(self.refused, caption="refused") if not self.ok else "")

    def to_html(self, path: str) -> None:
        """Write the result as a standalone HTML page."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page("Write result", self._repr_html_()))

    def __repr__(self) -> str:
        return (f"WriteResult({self.store}: inserted={self.inserted}, updated={self.updated}, "
                f"unchanged={self.unchanged}, refused={self.count('refused')}{', forced' if self.forced else ''})")
