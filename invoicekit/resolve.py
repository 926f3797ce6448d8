"""Resolve a :class:`~invoicekit.reconcile.Reconciliation`: decide, per invoice, what to write where.

Statuses that are not conflicts resolve themselves: ``local_only``, ``local_ahead`` and
``deleted_local`` are pushed to the central store; ``central_ahead`` and
``deleted_central`` are pulled into the offline store; ``same`` and ``central_only`` need
nothing. Conflicts follow the ``strategy``:

``last_write_wins``
    the side with the newer ``modified_at`` wins whole (central on a tie); the result
    is pushed with version ``max(local, central) + 1``.
``merge_fields``
    field by field: equal values are kept; with a base, a field changed on one side
    only comes from that side; otherwise the newer side's value wins. Line items merge
    by identity (description and occurrence), so a line added on either side is kept;
    ``total`` is recomputed from the merged lines. Version ``max + 1``.
``three_way``
    field by field against the base: changed on one side only -> that side; changed on
    both to the same value -> that value; changed on both to different values (or no
    base to compare with) -> needs a decision: the invoice stays ``unresolved``.
``prefer_local`` / ``prefer_central``
    that side wins whole (local is pushed with ``max + 1``; central is pulled).

``decisions`` (a DataFrame with ``id``, ``field``, ``choice`` in local/central/base;
``field='*'`` takes the whole invoice from that side) override the strategy for the
fields they name, in one vectorised step: an invoice with a field decision is merged,
the fields not named following the strategy (the winning side's value for
``prefer_*`` and ``last_write_wins``). Only conflicts take decisions, and ``base``
only where a base snapshot exists; anything else is a :class:`UsageError`. Nothing unresolved is written: such invoices
keep action ``unresolved`` and their fields are listed in ``Resolution.unresolved``.
An invoice whose local row fails its checksum or did not parse gets action
``quarantine`` (with ``quarantine_reason``): it is reported and left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa

from . import _duck
from ._args import as_decisions, expect
from ._html import frame_html, page
from ._payload import client_json_sql, rebuild
from .errors import UsageError
from .reconcile import Reconciliation
from .schema import INVOICE_SCHEMA, LINE_SCHEMA, InvoiceSet, empty

__all__ = ["resolve", "Resolution", "STRATEGIES", "ACTIONS"]

STRATEGIES = ("last_write_wins", "merge_fields", "three_way", "prefer_local", "prefer_central")
ACTIONS = ("none", "push", "pull", "unresolved", "quarantine")
CHOICES = ("local", "central", "base")

_ACTIONS_SQL = """
SELECT s.id, s.status, s.local_version, s.central_version, s.base_version, s.local_checksum, s.central_checksum,
  CASE
    WHEN s.status IN ('same', 'central_only') THEN 'none'
    WHEN s.status IN ('local_only', 'local_ahead', 'deleted_local') THEN 'push'
    WHEN s.status IN ('central_ahead', 'deleted_central') THEN 'pull'
    WHEN w.whole = 'central' THEN 'pull'
    WHEN w.whole IN ('local', 'base') THEN 'push'
    WHEN f.id IS NOT NULL THEN 'merge'
    WHEN '{strategy}' = 'prefer_local' THEN 'push'
    WHEN '{strategy}' = 'prefer_central' THEN 'pull'
    WHEN '{strategy}' = 'last_write_wins' THEN 'push'
    ELSE 'merge'
  END AS action,
  CASE
    WHEN s.status IN ('local_only', 'local_ahead', 'deleted_local') THEN 'local'
    WHEN s.status IN ('central_ahead', 'deleted_central') THEN 'central'
    WHEN s.status <> 'conflict' THEN NULL
    WHEN w.whole IS NOT NULL THEN w.whole
    WHEN f.id IS NOT NULL THEN 'merged'
    WHEN '{strategy}' = 'prefer_local' THEN 'local'
    WHEN '{strategy}' = 'prefer_central' THEN 'central'
    WHEN '{strategy}' = 'last_write_wins' THEN
      CASE WHEN s.local_modified_at > s.central_modified_at THEN 'local' ELSE 'central' END
    ELSE 'merged'
  END AS winner
FROM st s LEFT JOIN (SELECT id, any_value(choice) AS whole FROM dec WHERE field = '*' GROUP BY id) w USING (id)
  LEFT JOIN (SELECT DISTINCT id FROM dec WHERE field <> '*') f USING (id)
"""

# long form of the invoices to merge: (id, field, value, pos); lines keyed by identity
_LONG = """
CREATE TEMP TABLE {out} AS
SELECT id, field, value, NULL::INTEGER AS pos FROM (
  SELECT id, invoice_number AS "invoice_number", client_name AS "client.name", client_email AS "client.email",
         client_address AS "client.address", client_tax_id AS "client.tax_id", currency AS "currency",
         CAST(deleted_at AS VARCHAR) AS "deleted_at"
  FROM {inv} WHERE id IN (SELECT id FROM todo)
) UNPIVOT INCLUDE NULLS (value FOR field IN ("invoice_number", "client.name", "client.email", "client.address",
                                             "client.tax_id", "currency", "deleted_at"))
UNION ALL
SELECT invoice_id, 'lines[' || key || '].' || part, value, line_no FROM (
  SELECT invoice_id, line_no,
         description || '#' || row_number() OVER (PARTITION BY invoice_id, description ORDER BY line_no) AS key,
         CAST(quantity AS VARCHAR) AS "quantity", CAST(unit_price AS VARCHAR) AS "unit_price"
  FROM {lines} WHERE invoice_id IN (SELECT id FROM todo)
) UNPIVOT INCLUDE NULLS (value FOR part IN ("quantity", "unit_price"))
"""

_CHOOSE = """
CREATE TEMP TABLE chosen AS
WITH f AS (
  SELECT coalesce(l.id, c.id) AS id, coalesce(l.field, c.field) AS field,
         l.value AS lv, c.value AS cv, b.value AS bv, coalesce(l.pos, 1000 + c.pos) AS pos,
         t.has_base, t.local_modified_at > t.central_modified_at AS local_newer, d.choice
  FROM lf l FULL OUTER JOIN cf c ON c.id = l.id AND c.field = l.field
  JOIN todo t ON t.id = coalesce(l.id, c.id)
  LEFT JOIN bf b ON b.id = coalesce(l.id, c.id) AND b.field = coalesce(l.field, c.field)
  LEFT JOIN dec d ON d.id = coalesce(l.id, c.id) AND d.field = coalesce(l.field, c.field)
), r AS (
  SELECT *,
    CASE
      WHEN choice IS NOT NULL THEN choice
      WHEN lv IS NOT DISTINCT FROM cv THEN 'local'
      WHEN '{strategy}' = 'prefer_local' THEN 'local'
      WHEN '{strategy}' = 'prefer_central' THEN 'central'
      WHEN '{strategy}' = 'last_write_wins' THEN CASE WHEN local_newer THEN 'local' ELSE 'central' END
      WHEN has_base AND lv IS NOT DISTINCT FROM bv THEN 'central'
      WHEN has_base AND cv IS NOT DISTINCT FROM bv THEN 'local'
      WHEN '{strategy}' = 'three_way' THEN NULL
      WHEN field <> 'deleted_at' AND lv IS NULL THEN 'central'
      WHEN field <> 'deleted_at' AND cv IS NULL THEN 'local'
      WHEN local_newer THEN 'local'
      ELSE 'central'
    END AS pick
  FROM f
)
SELECT id, field, pos, lv, cv, bv, pick,
       CASE pick WHEN 'local' THEN lv WHEN 'central' THEN cv WHEN 'base' THEN bv END AS value
FROM r
"""

def _same_client(side: str) -> str:
    return "(" + " AND ".join(
        f"p.client_{k} IS NOT DISTINCT FROM {side}.client_{k}" for k in ("name", "email", "address", "tax_id")
    ) + ")"


#: Central's content taken over a device whose version is as high or higher (a device that
#: edited twice offline, or a foreign store's numbering): pulled at central's version it would
#: lower the device's version, or give one version two contents. It is pushed instead, central's
#: content one version past both sides, so both hold it at the same new version at once.
_PULL_OVER_AHEAD_DEVICE = """
UPDATE act SET action = 'push'
WHERE action = 'pull' AND local_version IS NOT NULL AND central_version IS NOT NULL
  AND central_version <= local_version
"""

#: SQL (``{p}`` the action row's prefix): the version a push or pull writes. A pull takes
#: central's (only ever above the device's, see ``_PULL_OVER_AHEAD_DEVICE``); a resolved
#: conflict or central's content pushed goes one past both sides; any other push one past
#: central's, or the device's own when that is higher (a device that edited twice offline
#: keeps its version, never lowered) or when central has none.
NEW_VERSION = """CASE WHEN {p}action = 'pull' THEN {p}central_version
  WHEN {p}status = 'conflict' OR {p}winner = 'central' THEN greatest({p}local_version, {p}central_version) + 1
  WHEN {p}central_version IS NULL THEN {p}local_version
  ELSE greatest({p}local_version, {p}central_version + 1) END"""

_MERGED_INVOICES = f"""
WITH p AS (
  SELECT id,
    any_value(value) FILTER (WHERE field = 'invoice_number') AS invoice_number,
    any_value(value) FILTER (WHERE field = 'client.name') AS client_name,
    any_value(value) FILTER (WHERE field = 'client.email') AS client_email,
    any_value(value) FILTER (WHERE field = 'client.address') AS client_address,
    any_value(value) FILTER (WHERE field = 'client.tax_id') AS client_tax_id,
    any_value(value) FILTER (WHERE field = 'currency') AS currency,
    any_value(value) FILTER (WHERE field = 'deleted_at') AS deleted_at
  FROM chosen WHERE id IN (SELECT id FROM merge_ok) GROUP BY id
)
SELECT p.id, p.invoice_number, p.client_name, p.client_email, p.client_address, p.client_tax_id,
  CASE
    WHEN {_same_client('l')} THEN l.client_data
    WHEN {_same_client('c')} THEN c.client_data
    ELSE {client_json_sql('p.')}
  END AS client_data,
  NULL::VARCHAR AS line_items, p.currency, NULL::DECIMAL(12,2) AS total,
  l.created_at, $now::TIMESTAMPTZ AS modified_at,
  greatest(l.version, c.version) + 1 AS version, 'synced' AS sync_status, NULL::VARCHAR AS checksum,
  CAST(p.deleted_at AS TIMESTAMPTZ) AS deleted_at, 'resolved' AS source, l.source_row
FROM p JOIN loc l USING (id) JOIN cen c USING (id)
"""

_MERGED_LINES = """
SELECT id AS invoice_id, row_number() OVER (PARTITION BY id ORDER BY min(pos), key)::INTEGER AS line_no,
       regexp_replace(key, '#[0-9]+$', '') AS description,
       CAST(any_value(value) FILTER (WHERE part = 'quantity') AS DECIMAL(12,3)) AS quantity,
       CAST(any_value(value) FILTER (WHERE part = 'unit_price') AS DECIMAL(12,2)) AS unit_price,
       ROUND(CAST(any_value(value) FILTER (WHERE part = 'quantity') AS DECIMAL(12,3))
             * CAST(any_value(value) FILTER (WHERE part = 'unit_price') AS DECIMAL(12,2)), 2)::DECIMAL(12,2)
         AS line_total
FROM (
  SELECT id, value, pos, regexp_extract(field, '^lines\\[(.*)\\]\\.(quantity|unit_price)$', 1) AS key,
         regexp_extract(field, '^lines\\[(.*)\\]\\.(quantity|unit_price)$', 2) AS part
  FROM chosen WHERE field LIKE 'lines[%' AND id IN (SELECT id FROM merge_ok)
)
GROUP BY id, key
HAVING any_value(value) FILTER (WHERE part = 'quantity') IS NOT NULL
   AND any_value(value) FILTER (WHERE part = 'unit_price') IS NOT NULL
"""


def _quarantine(actions: pd.DataFrame, local: InvoiceSet, target: InvoiceSet) -> pd.DataFrame:
    """Hold back every invoice whose local row is damaged: it fails its stored checksum, did
    not parse, or what would be pushed breaks a validation rule (a value the central store
    cannot hold: NUL characters, a version past its INTEGER, ...). Only rows needing action
    are checked (whole-column, vectorised)."""
    from .integrity import verify
    from .validate import validate

    involved = actions["id"][actions["action"] != "none"]
    rows = local.invoices[local.invoices["id"].isin(involved)]
    bad_sum = rows["id"][~verify(rows).to_numpy()]
    bad_parse = local.problems["id"].dropna()
    pushed = actions["id"][actions["action"] == "push"]
    out_rows = target.invoices[target.invoices["id"].isin(pushed)]
    broken = validate(InvoiceSet(out_rows, target.lines[target.lines["invoice_id"].isin(pushed)])).problems
    broken = broken.dropna(subset=["id"]).drop_duplicates("id").set_index("id")
    reason = pd.Series(pd.NA, index=actions.index, dtype="string[pyarrow]")
    rule = actions["id"].map("the invoice to push fails validation: " + broken["rule"] + " (" + broken["field"] + ")")
    reason[rule.notna().to_numpy()] = rule[rule.notna()]
    reason[actions["id"].isin(bad_parse) & actions["id"].isin(involved)] = "local row does not parse"
    reason[actions["id"].isin(bad_sum)] = "local row fails its checksum"
    hold = reason.notna()
    out = actions.copy()
    out.loc[hold, "action"] = "quarantine"
    out.loc[hold, ["winner", "expected_central_version", "new_version"]] = None
    out["quarantine_reason"] = reason
    return out


@dataclass(frozen=True)
class Resolution:
    """What to write where, per invoice.

    ``actions``: one row per invoice id: ``status``, ``action`` (none / push / pull /
    unresolved), ``winner`` (local / central / merged), ``expected_central_version``
    (the version the central row must still have for a push to apply; null for an
    insert), ``new_version``. ``invoices``/``lines``: the content to write for every
    push and pull (version set, ``sync_status='synced'``). ``unresolved``: the fields
    still needing a decision (id, field, base, local, central).
    """

    actions: pd.DataFrame
    invoices: pd.DataFrame
    lines: pd.DataFrame
    unresolved: pd.DataFrame
    strategy: str
    #: the offline store files the local side was read from (a plan is only applied to them)
    sources: tuple[str, ...] = ()
    #: the :class:`~invoicekit.Reconciliation` decided (so a review, e.g.
    #: ``invoicekit.widgets.ConflictReview(resolution)``, can decide again with more decisions)
    reconciliation: Reconciliation | None = field(default=None, repr=False, compare=False)

    @property
    def target(self) -> InvoiceSet:
        """The content to write, as an :class:`InvoiceSet`."""
        return InvoiceSet(self.invoices, self.lines)

    def summary(self) -> pd.DataFrame:
        """Invoices per (status, action)."""
        return self.actions.groupby(["status", "action"]).size().rename("invoices").reset_index()

    def _repr_html_(self) -> str:
        todo = self.actions[self.actions["action"] != "none"]
        return (
            f"<b>Resolution</b> ({self.strategy}): {len(todo):,} invoices to write, "
            f"{int((self.actions['action'] == 'unresolved').sum()):,} unresolved"
            + frame_html(self.summary(), caption="by status and action")
            + frame_html(self.unresolved, caption="fields needing a decision")
        )

    def to_html(self, path: str) -> None:
        """Write a standalone HTML report."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page(f"Resolution ({self.strategy})", self._repr_html_()))

    def __repr__(self) -> str:
        counts = self.actions["action"].value_counts()
        return f"Resolution({self.strategy}: " + ", ".join(f"{a}={int(counts.get(a, 0)):,}" for a in ACTIONS) + ")"


def _decisions(decisions: pd.DataFrame | None, rec: Reconciliation) -> pa.Table:
    if decisions is None or len(decisions) == 0:
        return pa.table({"id": pa.array([], pa.string()), "field": pa.array([], pa.string()),
                         "choice": pa.array([], pa.string())})
    missing = {"id", "field", "choice"} - set(decisions.columns)
    if missing:
        raise UsageError(f"decisions lack column(s) {sorted(missing)}; expected id, field, choice")
    d = decisions[["id", "field", "choice"]].astype(str)
    bad = d[~d["choice"].isin(CHOICES)]
    if len(bad):
        raise UsageError(f"decision choice {bad['choice'].iloc[0]!r} for {bad['id'].iloc[0]!r}: "
                         f"expected one of {', '.join(CHOICES)}")
    known = set(rec.status["id"])
    unknown = d[~d["id"].isin(known)]
    if len(unknown):
        raise UsageError(f"decision for unknown invoice id {unknown['id'].iloc[0]!r}")
    if d.duplicated(["id", "field"]).any():
        dup = d[d.duplicated(["id", "field"])].iloc[0]
        raise UsageError(f"decisions name ({dup['id']!r}, {dup['field']!r}) twice")
    status = rec.status.set_index("id")
    st = status.loc[d["id"], "status"].to_numpy()
    settled = d[st != "conflict"]
    if len(settled):
        i = settled["id"].iloc[0]
        raise UsageError(f"decision for {i!r}, which is {status.loc[i, 'status']!r}, not a conflict: "
                         "only conflicts take decisions")
    no_base = d[(d["choice"] == "base") & ~status.loc[d["id"], "has_base"].fillna(False).astype(bool).to_numpy()]
    if len(no_base):
        raise UsageError(f"decision 'base' for {no_base['id'].iloc[0]!r}, which has no base snapshot "
                         "(its store was not written by invoicekit): choose local or central")
    return pa.Table.from_pandas(d, preserve_index=False)


def resolve(
    reconciliation: Reconciliation, *, strategy: str = "three_way", decisions: pd.DataFrame | None = None,
    now: datetime | None = None,
) -> Resolution:
    """Decide every invoice of ``reconciliation`` (see module doc); inputs are not mutated.

    ``now`` stamps ``modified_at`` of merged invoices (default: the current UTC time).
    ``decisions`` settle conflicting fields: a DataFrame (id, field, choice) or a list of
    ``(id, field, choice)`` tuples, choice one of local, central, base.
    """
    reconciliation = expect(reconciliation, Reconciliation, func="resolve", param="reconciliation")
    decisions = as_decisions(decisions, func="resolve", choices=CHOICES)
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    rec = reconciliation
    now = now or datetime.now(timezone.utc)
    local, central = rec.local, rec.central
    base = local.base if local.base is not None else InvoiceSet(empty(INVOICE_SCHEMA), empty(LINE_SCHEMA))
    st = pa.Table.from_pandas(rec.status, preserve_index=False)
    con = _duck.connect(
        st=st, dec=_decisions(decisions, rec), loc=local.invoices_table(), cen=central.invoices_table(),
        bas=base.invoices_table(),
    )
    try:
        con.execute("CREATE TEMP TABLE act AS " + _ACTIONS_SQL.format(strategy=strategy))
        con.execute(_PULL_OVER_AHEAD_DEVICE)
        # line items only of the invoices that get written (deferred sets parse just those)
        busy = _duck.arrow(con, "SELECT id FROM act WHERE action <> 'none'").column("id")
        for name, side in (("ll", local), ("cl", central), ("bl", base)):
            con.register(name, side.lines_of(busy))
        con.execute(
            "CREATE TEMP TABLE todo AS SELECT s.id, s.has_base, s.local_modified_at, s.central_modified_at "
            "FROM st s JOIN act a USING (id) WHERE a.action = 'merge'"
        )
        for out, inv, lines in (("lf", "loc", "ll"), ("cf", "cen", "cl"), ("bf", "bas", "bl")):
            con.execute(_LONG.format(out=out, inv=inv, lines=lines))
        con.execute(_CHOOSE.format(strategy=strategy))
        con.execute("CREATE TEMP TABLE merge_ok AS SELECT id FROM todo "
                    "WHERE id NOT IN (SELECT id FROM chosen WHERE pick IS NULL)")
        unresolved = _duck.arrow(con, """
            SELECT id, field, bv AS base, lv AS local, cv AS central FROM chosen WHERE pick IS NULL
            ORDER BY id, field""")
        merged_inv = _duck.arrow(con, _MERGED_INVOICES, {"now": now})
        merged_lines = _duck.arrow(con, _MERGED_LINES)
        actions = _duck.arrow(con, f"""
            SELECT a.id, a.status,
              CASE WHEN a.action = 'merge' AND a.id NOT IN (SELECT id FROM merge_ok) THEN 'unresolved'
                   WHEN a.action = 'merge' THEN 'push' ELSE a.action END AS action,
              CASE WHEN a.action = 'merge' AND a.id NOT IN (SELECT id FROM merge_ok) THEN NULL ELSE a.winner END
                AS winner,
              a.local_version, a.central_version, a.base_version, a.local_checksum, a.central_checksum,
              CASE WHEN a.action IN ('push', 'merge') THEN a.central_version END AS expected_central_version,
              CASE
                WHEN a.action = 'none' THEN NULL
                WHEN a.action = 'merge' AND a.id NOT IN (SELECT id FROM merge_ok) THEN NULL
                ELSE {NEW_VERSION.format(p='a.')}
              END AS new_version
            FROM act a ORDER BY a.id""")
        whole = _duck.arrow(con, f"""
            SELECT x.* REPLACE (a.new_version AS version, 'synced' AS sync_status,
                   CASE WHEN a.status = 'conflict' AND a.action = 'push' THEN $now::TIMESTAMPTZ ELSE x.modified_at END
                     AS modified_at)
            FROM (SELECT 'local' AS side, * FROM loc UNION ALL BY NAME SELECT 'central' AS side, * FROM cen
                  UNION ALL BY NAME SELECT 'base' AS side, * FROM bas) x
            JOIN (SELECT id, action, winner, status,
                         {NEW_VERSION.format(p='')} AS new_version
                  FROM act WHERE action IN ('push', 'pull')) a
              ON a.id = x.id AND a.winner = x.side""", {"now": now})
        whole_lines = _duck.arrow(con, """
            SELECT l.* FROM ll l
              JOIN act a ON a.id = l.invoice_id AND a.action IN ('push', 'pull') AND a.winner = 'local'
            UNION ALL
            SELECT c.* FROM cl c
              JOIN act a ON a.id = c.invoice_id AND a.action IN ('push', 'pull') AND a.winner = 'central'
            UNION ALL
            SELECT b.* FROM bl b JOIN act a ON a.id = b.invoice_id AND a.action = 'push' AND a.winner = 'base'""")
    finally:
        con.close()
    merged = rebuild(merged_inv.cast(INVOICE_SCHEMA), merged_lines.cast(LINE_SCHEMA)) if merged_inv.num_rows else None
    whole_set = InvoiceSet.from_arrow(whole.select(INVOICE_SCHEMA.names).cast(INVOICE_SCHEMA), whole_lines)
    target = InvoiceSet.concat([whole_set, merged] if merged is not None else [whole_set])
    target.invoices["sync_status"] = "synced"
    actions = _quarantine(actions.to_pandas(types_mapper=pd.ArrowDtype), local, target)
    held = actions["id"][actions["action"] == "quarantine"]
    target = InvoiceSet(target.invoices[~target.invoices["id"].isin(held)],
                        target.lines[~target.lines["invoice_id"].isin(held)])
    return Resolution(
        actions=actions,
        invoices=target.invoices.sort_values("id").reset_index(drop=True),
        lines=target.lines.sort_values(["invoice_id", "line_no"]).reset_index(drop=True),
        unresolved=unresolved.to_pandas(types_mapper=pd.ArrowDtype),
        strategy=strategy,
        sources=_sources(local),
        reconciliation=reconciliation,
    )


def _sources(local: InvoiceSet) -> tuple[str, ...]:
    """The store files behind ``local``'s rows (``path#sync_queue`` rows are the file's too)."""
    names = local.invoices["source"].dropna().astype(str).str.replace(r"#(sync_queue|base)$", "", regex=True)
    return tuple(sorted(set(names)))
