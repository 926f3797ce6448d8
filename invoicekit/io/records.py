"""Records a store keeps beside its invoices: the audit trail, and reviewers' decisions on
candidate duplicate pairs. The same calls for a central store (URL) and an offline store
(SQLite file path); what differs between central dialects lives in their backends.

``store`` is a central URL (``postgresql://...``, ``sqlite:///...``), a
:class:`~invoicekit.io.central.CentralStore`, an offline store path, or anything with a
``path`` attribute naming one (a :class:`~invoicekit.LocalStore`).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Sequence

import pandas as pd

from ..errors import driver_errors, translate
from . import _sqlite
from .backends import CentralStore

__all__ = ["is_central", "store_name", "read_audit", "write_decisions", "identify", "read_decisions", "AUDIT_COLUMNS",
           "DECISION_COLUMNS"]

#: columns of the audit trail (central ``invoicekit_audit``; offline stores keep the same table)
AUDIT_COLUMNS = ["seq", "at", "actor", "op_id", "invoice_id", "kind", "strategy", "before_version", "after_version",
                 "before_checksum", "after_checksum", "detail"]
#: columns of ``invoicekit_decisions``
DECISION_COLUMNS = ["id_a", "id_b", "same", "actor", "at"]

_AUDIT_SQL = f"SELECT {', '.join(AUDIT_COLUMNS)} FROM invoicekit_audit WHERE op_id = {{m}} ORDER BY seq"
_DECISIONS_SQL = f"SELECT {', '.join(DECISION_COLUMNS)} FROM invoicekit_decisions ORDER BY id_a, id_b"
_DECIDE_SQL = ("INSERT INTO invoicekit_decisions (id_a, id_b, same, actor, at) VALUES ({m}, {m}, {m}, {m}, {m}) "
               "ON CONFLICT (id_a, id_b) DO UPDATE SET same = excluded.same, actor = excluded.actor, at = excluded.at")


def is_central(store: Any) -> bool:
    """Whether ``store`` names a central store (a URL or CentralStore) rather than an offline file."""
    if isinstance(store, CentralStore) or type(store).__name__ == "Engine":
        return True
    return isinstance(store, str) and "://" in store


def _path(store: Any) -> str:
    return os.fspath(getattr(store, "path", store))


def store_name(store: Any) -> str:
    """How results name ``store`` (a central URL with its password masked, or the file path)."""
    return CentralStore(store).display if is_central(store) else _path(store)


def _central(store: Any) -> CentralStore:
    central = CentralStore(store)
    central.require_schema()
    return central


def _offline_rows(path: str, sql: str, params: Sequence = ()) -> list[tuple]:
    """Rows of ``sql`` on an offline store; none when the store predates the table."""
    conn = _sqlite.open_checked(path, tables=("transactions",))
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise translate(exc, store=path) from exc
    finally:
        conn.close()


def read_audit(store: Any, *, op_id: str) -> pd.DataFrame:
    """The audit rows of the write(s) named ``op_id`` (e.g. a duplicate cleanup id), oldest first."""
    if is_central(store):
        central = _central(store)
        try:
            rows = central.fetch(_AUDIT_SQL.format(m=central.mark), (op_id,))
        except driver_errors() as exc:
            raise translate(exc, store=central.display, context="read_audit") from exc
    else:
        rows = _offline_rows(_path(store), _AUDIT_SQL.format(m="?"), (op_id,))
    out = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
    out["at"] = pd.to_datetime(out["at"], utc=True, format="ISO8601")
    return out.astype({"before_version": "Int64", "after_version": "Int64"})


def identify(store: Any, token: Any) -> str | None:
    """The verified subject of a push's ``token`` to a central ``store`` (None for an offline
    store, or a central one without identities); see ``CentralStore.identify``."""
    if not is_central(store):
        return None
    central = _central(store)
    try:
        return central.identify(token)
    except driver_errors() as exc:
        raise translate(exc, store=central.display) from exc


def write_decisions(store: Any, rows: Sequence[tuple], *, token: Any = None) -> None:
    """Upsert (id_a, id_b, same, actor, at ISO text) rows into ``invoicekit_decisions``, in one
    transaction; the latest decision on a pair replaces the earlier one (on a central store
    with identities on, with ``token``)."""
    rows = [(a, b, bool(same), actor, at) for a, b, same, actor, at in rows]
    if is_central(store):
        central = _central(store)
        try:
            central.execute(_DECIDE_SQL.format(m=central.mark), rows, token=token)
        except driver_errors() as exc:
            raise translate(exc, store=central.display, context="record_decisions") from exc
        return
    from .local import ensure_schema

    path = _path(store)
    _sqlite.open_checked(path, tables=("transactions", "sync_queue", "app_settings")).close()
    with _sqlite.write_transaction(path) as conn:
        ensure_schema(conn)
        conn.executemany(_DECIDE_SQL.format(m="?"), rows)


def read_decisions(store: Any) -> pd.DataFrame:
    """Every stored decision: ``id_a``, ``id_b`` (``id_a < id_b``), ``same``, ``actor``, ``at``."""
    if is_central(store):
        central = _central(store)
        try:
            rows = central.fetch(_DECISIONS_SQL)
        except driver_errors() as exc:
            raise translate(exc, store=central.display, context="read_decisions") from exc
    else:
        rows = _offline_rows(_path(store), _DECISIONS_SQL)
    out = pd.DataFrame(rows, columns=DECISION_COLUMNS)
    out["same"] = out["same"].astype(bool)
    out["at"] = pd.to_datetime(out["at"], utc=True, format="ISO8601")
    return out.astype({"id_a": "string", "id_b": "string", "actor": "string"})
