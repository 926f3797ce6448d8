"""The device side: :class:`LocalStore`, an offline store whose every change is queued.

``create``, ``update`` and ``delete`` each write the invoice row and its ``sync_queue``
operation in one ``BEGIN IMMEDIATE`` transaction (WAL, ``synchronous=FULL``), so a
change is never stored without its queue entry or the other way round. Each operation
gets a uuid op id (additive column ``sync_queue.op_id``) that the central ledger uses to
apply it exactly once. Versions follow the devices' rule: a new invoice is version 1,
each local edit adds one, and the row is ``pending`` until synced. Deletes are
tombstones (``deleted_at``), never row removals.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping, Sequence

import pandas as pd

from .errors import UsageError
from .integrity import row_checksum
from .io import _sqlite
from .io.local import _ensure_schema, create_local
from .io.offline_schema import QUEUE_COLUMNS, ROW_COLUMNS, upgrade

__all__ = ["LocalStore", "QUEUE_COLUMNS"]

_CLIENT_KEYS = ("name", "email", "address", "tax_id")


def ensure_queue_columns(conn) -> None:
    """The toolkit's queue columns where missing (the offline schema's migrations)."""
    upgrade(conn)


def _now() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")


def _number(value: Any, places: int) -> float | int:
    """A JSON number as a device writes it: whole quantities as ints, the rest as floats."""
    d = Decimal(str(value))
    if d != d.quantize(Decimal(1).scaleb(-places)):
        raise UsageError(f"{value!r} has more than {places} decimal places")
    if places == 3 and d == d.to_integral_value():
        return int(d)
    return float(d)


def _line_items(items: Sequence[Mapping[str, Any]]) -> tuple[str, Decimal]:
    if not items:
        raise UsageError("an invoice needs at least one line item")
    out, total = [], Decimal("0")
    for n, item in enumerate(items, start=1):
        missing = {"description", "quantity", "unit_price"} - set(item)
        if missing:
            raise UsageError(f"line item {n} lacks {sorted(missing)}")
        q, p = _number(item["quantity"], 3), _number(item["unit_price"], 2)
        if q < 0 or p < 0:
            raise UsageError(f"line item {n}: quantity and unit price must not be negative")
        out.append({"description": str(item["description"]), "quantity": q, "unit_price": p})
        total += (Decimal(str(q)) * Decimal(str(p))).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
    return json.dumps(out), total


class LocalStore:
    """An offline store (SQLite file) for a device; created with the offline schema if missing.

    >>> import tempfile, os
    >>> store = LocalStore(os.path.join(tempfile.mkdtemp(), "device.sqlite"))
    >>> inv = store.create(invoice_number="INV-1", client={"name": "Ada"}, currency="EUR",
    ...                    line_items=[{"description": "Work", "quantity": 2, "unit_price": "10.50"}])
    >>> store.get(inv)["total_amount"], store.get(inv)["version"], len(store.queue())
    (21, 1, 1)
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        create_local(self.path)  # the offline schema, the queue's op id columns included

    def __repr__(self) -> str:
        return f"LocalStore({self.path!r})"

    # -- reads ------------------------------------------------------------------------
    def get(self, invoice_id: str) -> dict:
        """The stored row of one invoice (tombstones included)."""
        conn = _sqlite.open_checked(self.path, tables=("transactions",))
        try:
            conn.row_factory = __import__("sqlite3").Row
            row = conn.execute("SELECT * FROM transactions WHERE id = ?", (invoice_id,)).fetchone()
        finally:
            conn.close()
        if row is None:
            raise UsageError(f"{self.path}: no invoice {invoice_id!r}")
        return dict(row)

    def queue(self) -> pd.DataFrame:
        """The pending queue, oldest first."""
        conn = _sqlite.open_checked(self.path, tables=("sync_queue",))
        try:
            return pd.read_sql("SELECT * FROM sync_queue ORDER BY id", conn)
        finally:
            conn.close()

    # -- writes -----------------------------------------------------------------------
    def create(self, *, invoice_number: str, client: Mapping[str, Any], line_items: Sequence[Mapping[str, Any]],
               currency: str, invoice_id: str | None = None, created_at: str | None = None) -> str:
        """Store a new invoice (version 1, pending) and queue its ``insert``; returns its id."""
        unknown = set(client) - set(_CLIENT_KEYS)
        if unknown:
            raise UsageError(f"unknown client field(s) {sorted(unknown)}; expected {', '.join(_CLIENT_KEYS)}")
        items_text, total = _line_items(line_items)
        now = created_at or _now()
        row = {
            "id": invoice_id or str(uuid.uuid4()), "invoice_number": invoice_number,
            "client_data": json.dumps({k: client.get(k) for k in _CLIENT_KEYS}), "line_items": items_text,
            "total_amount": float(total), "created_at": now, "modified_at": now, "sync_status": "pending",
            "version": 1, "currency": currency, "deleted_at": None,
        }
        self._write(row, "insert", new=True)
        return row["id"]

    def update(self, invoice_id: str, *, invoice_number: str | None = None, client: Mapping[str, Any] | None = None,
               line_items: Sequence[Mapping[str, Any]] | None = None, currency: str | None = None) -> int:
        """Change an invoice (version + 1, pending) and queue the ``update``; returns the new version."""
        row = self.get(invoice_id)
        if row.get("deleted_at"):
            raise UsageError(f"invoice {invoice_id!r} is deleted")
        if invoice_number is not None:
            row["invoice_number"] = invoice_number
        if client is not None:
            merged = {**json.loads(row["client_data"] or "{}"), **client}
            row["client_data"] = json.dumps({k: merged.get(k) for k in _CLIENT_KEYS})
        if line_items is not None:
            row["line_items"], total = _line_items(line_items)
            row["total_amount"] = float(total)
        if currency is not None:
            row["currency"] = currency
        row.update(version=row["version"] + 1, modified_at=_now(), sync_status="pending")
        self._write(row, "update")
        return row["version"]

    def delete(self, invoice_id: str) -> int:
        """Tombstone an invoice (version + 1, pending) and queue the ``delete``; returns the new version."""
        row = self.get(invoice_id)
        if row.get("deleted_at"):
            raise UsageError(f"invoice {invoice_id!r} is already deleted")
        now = _now()
        row.update(version=row["version"] + 1, modified_at=now, deleted_at=now, sync_status="pending")
        self._write(row, "delete")
        return row["version"]

    def _write(self, row: dict, operation: str, *, new: bool = False) -> None:
        # SQLite hands whole amounts back as int (numeric affinity); devices checksum a float
        row["total_amount"] = None if row["total_amount"] is None else float(row["total_amount"])
        row["checksum"] = row_checksum(row)
        cols = list(ROW_COLUMNS)
        payload = json.dumps({c: row[c] for c in cols if c != "sync_status"}, sort_keys=True)
        with _sqlite.write_transaction(self.path) as conn:
            _ensure_schema(conn)
            if new:
                conn.execute(f"INSERT INTO transactions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                             [row[c] for c in cols])
            else:
                changed = conn.execute(
                    f"UPDATE transactions SET {', '.join(f'{c} = ?' for c in cols[1:])} WHERE id = ? AND version = ?",
                    [row[c] for c in cols[1:]] + [row["id"], row["version"] - 1]).rowcount
                if changed != 1:
                    raise UsageError(f"invoice {row['id']!r} changed meanwhile; read it again")
            conn.execute("INSERT INTO sync_queue (transaction_id, operation, payload, retry_count, created_at, op_id, "
                         "status) VALUES (?, ?, ?, 0, ?, ?, 'pending')",
                         (row["id"], operation, payload, row["modified_at"], str(uuid.uuid4())))
