"""The device side: :class:`LocalStore`, an offline store whose every change is queued.

``create``, ``update`` and ``delete`` each write the invoice row and its ``sync_queue``
operation in one ``BEGIN IMMEDIATE`` transaction (WAL, ``synchronous=FULL``), so a
change is never stored without its queue entry or the other way round. Each operation
gets a uuid op id (additive column ``sync_queue.op_id``) that the central ledger uses to
apply it exactly once. Versions follow the devices' rule: a new invoice is version 1,
each local edit adds one, and the row is ``pending`` until synced. Deletes are
tombstones (``deleted_at``), never row removals.

A change whose values the central store cannot hold is refused with a
:class:`~invoicekit.errors.ValidationError` naming each field and rule (the rules
``nul_character``, ``out_of_range``, ``bad_timestamp``, ``bad_version`` and, for client
values JSON writes as ``NaN``/``Infinity``, ``unparseable_json`` of :mod:`invoicekit.validate`),
and nothing is stored or queued.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Sequence

import pandas as pd
import pyarrow as pa

from . import cache as _cache
from ._normalize import MAX_MONEY, MAX_QUANTITY, MAX_VERSION, NUL_ESCAPE, timestamp_problem
from .errors import UsageError, ValidationError
from .integrity import row_checksum
from .io import _sqlite
from .io.local import _ensure_schema, create_local
from .io.offline_schema import QUEUE_COLUMNS, ROW_COLUMNS, upgrade
from .schema import PROBLEM_SCHEMA, to_frame
from .security import open_client_data, seal_client_data

__all__ = ["LocalStore", "QUEUE_COLUMNS"]

_CLIENT_KEYS = ("name", "email", "address", "tax_id")


def ensure_queue_columns(conn) -> None:
    """The toolkit's queue columns where missing (the offline schema's migrations)."""
    upgrade(conn)


def _now() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")


def _problem(field: str, rule: str, value: Any, message: str) -> dict:
    """One problem of a refused change (its NUL characters made visible)."""
    shown = None if value is None else str(value).replace("\x00", "\\x00")[:80]
    return {"field": field, "rule": rule, "value": shown, "message": message}


def _beyond(field: str, value: Any, places: int) -> dict:
    largest = MAX_QUANTITY if places == 3 else MAX_MONEY
    return _problem(field, "out_of_range", value, f"{field} {value} is beyond ±{largest}, the most the central "
                                                  f"store's NUMERIC(12,{places}) holds")


def _number(value: Any, places: int, field: str, problems: list[dict]) -> float | int | None:
    """A JSON number as a device writes it: whole quantities as ints, the rest as floats;
    None (and a problem) for one the central store cannot hold."""
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        d = Decimal("NaN")
    if not d.is_finite():
        raise UsageError(f"{field}: {value!r} is not a number", reason="not_numeric")
    largest = MAX_QUANTITY if places == 3 else MAX_MONEY
    if abs(d) >= largest + Decimal(5).scaleb(-places - 1):  # rounds beyond it, as the loader reads it
        problems.append(_beyond(field, value, places))
        return None
    if d != d.quantize(Decimal(1).scaleb(-places)):
        raise UsageError(f"{field}: {value!r} has more than {places} decimal places", reason="not_numeric")
    if places == 3 and d == d.to_integral_value():
        return int(d)
    return float(d)


def _line_items(items: Sequence[Mapping[str, Any]], problems: list[dict]) -> tuple[str, Decimal]:
    """The line-item JSON text and the total; amounts the central store cannot hold go to ``problems``."""
    if not items:
        raise UsageError("an invoice needs at least one line item")
    out, total = [], Decimal("0")
    for n, item in enumerate(items, start=1):
        missing = {"description", "quantity", "unit_price"} - set(item)
        if missing:
            raise UsageError(f"line item {n} lacks {sorted(missing)}")
        q = _number(item["quantity"], 3, f"line_items[{n}].quantity", problems)
        p = _number(item["unit_price"], 2, f"line_items[{n}].unit_price", problems)
        out.append({"description": str(item["description"]), "quantity": q, "unit_price": p})
        if q is None or p is None:
            continue
        if q < 0 or p < 0:
            raise UsageError(f"line item {n}: quantity and unit price must not be negative", reason="negative_amount")
        line = (Decimal(str(q)) * Decimal(str(p))).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
        if abs(line) > MAX_MONEY:
            problems.append(_beyond(f"line_items[{n}].line_total", line, 2))
        total += line
    if abs(total) > MAX_MONEY:
        problems.append(_beyond("total", total, 2))
    return json.dumps(out), total


_TEXT_FIELDS = ("id", "invoice_number", "currency", "line_items")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _jsonb_reads(text: str) -> bool:
    """Whether ``text`` is JSON without NaN/Infinity (which Python's json writes, jsonb refuses)."""
    try:
        json.loads(text, parse_constant=_no_constant)
    except ValueError:
        return False
    return True


_NUL_ESCAPE = re.compile(NUL_ESCAPE)


def _unstorable(row: dict) -> list[dict]:
    """The problems of ``row`` (as stored) that the central store cannot hold, by the rules
    of :mod:`invoicekit.validate`: NULs (in client_data also the escape ``\\u0000``, which
    ``jsonb`` refuses, and in a line's description), NaN/Infinity in client_data, created_at's
    range and the version."""
    found = [_problem(f, "nul_character", row[f], f"{f} contains a NUL character, which the central store "
                                                  "cannot hold (PostgreSQL text)")
             for f in _TEXT_FIELDS if isinstance(row[f], str) and "\x00" in row[f]]
    client = row["client_data"]
    if isinstance(client, str) and ("\x00" in client or _NUL_ESCAPE.search(client)):
        found.append(_problem("client_data", "nul_character", client,
                              "client_data contains a NUL character or the JSON escape \\u0000, which the central "
                              "store cannot hold (PostgreSQL text holds no NUL, jsonb refuses the escape)"))
    if isinstance(client, str) and not _jsonb_reads(client):
        found.append(_problem("client_data", "unparseable_json", client,
                              "client_data is not JSON that the central store (PostgreSQL jsonb) reads: "
                              "NaN or Infinity (a float client value), or not JSON at all"))
    items = row["line_items"]
    if isinstance(items, str) and "\\u0000" in items:
        try:
            parsed = json.loads(items)
        except ValueError:
            parsed = None
        for n, item in enumerate(parsed if isinstance(parsed, list) else [], start=1):
            text = item.get("description") if isinstance(item, dict) else None
            if isinstance(text, str) and "\x00" in text:
                found.append(_problem(f"line_items[{n}].description", "nul_character", text,
                                      "description contains a NUL character, which the central store cannot hold "
                                      "(PostgreSQL text)"))
    why = timestamp_problem(str(row["created_at"])) if row["created_at"] is not None else None
    if why:
        found.append(_problem("created_at", "bad_timestamp", row["created_at"], f"created_at {why}"))
    if not isinstance(row["version"], int) or not 1 <= row["version"] <= MAX_VERSION:
        found.append(_problem("version", "bad_version", row["version"],
                              f"version must be an integer from 1 to {MAX_VERSION} (the central store's INTEGER)"))
    return found


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
        """The stored row of one invoice (tombstones included; ``client_data`` decrypted where it is
        stored encrypted)."""
        conn = _sqlite.open_checked(self.path, tables=("transactions",))
        try:
            conn.row_factory = __import__("sqlite3").Row
            row = conn.execute("SELECT * FROM transactions WHERE id = ?", (invoice_id,)).fetchone()
        finally:
            conn.close()
        if row is None:
            raise UsageError(f"{self.path}: no invoice {invoice_id!r}")
        row = dict(row)
        row["client_data"] = open_client_data(row["client_data"], store=self.path, invoice_id=invoice_id)
        return row

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
        problems: list[dict] = []
        items_text, total = _line_items(line_items, problems)
        now = created_at or _now()
        row = {
            "id": invoice_id or str(uuid.uuid4()), "invoice_number": invoice_number,
            "client_data": json.dumps({k: client.get(k) for k in _CLIENT_KEYS}), "line_items": items_text,
            "total_amount": float(total), "created_at": now, "modified_at": now, "sync_status": "pending",
            "version": 1, "currency": currency, "deleted_at": None,
        }
        self._write(row, "insert", new=True, problems=problems)
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
        problems: list[dict] = []
        if line_items is not None:
            row["line_items"], total = _line_items(line_items, problems)
            row["total_amount"] = float(total)
        if currency is not None:
            row["currency"] = currency
        row.update(version=row["version"] + 1, modified_at=_now(), sync_status="pending")
        self._write(row, "update", problems=problems)
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

    def _refuse(self, row: dict, operation: str, problems: list[dict]) -> ValidationError:
        """The error refusing a change whose values the central store cannot hold."""
        table = pa.Table.from_pylist([{"source": self.path, "source_row": None, "id": row["id"], **p}
                                      for p in problems], schema=PROBLEM_SCHEMA)
        rules = {p["rule"] for p in problems}
        return ValidationError(to_frame(table, PROBLEM_SCHEMA),
                               context=f"{self.path}: {operation} of invoice {row['id']!r} refused (nothing stored); "
                                       f"{', '.join(p['field'] + ' ' + p['rule'] for p in problems)}",
                               reason=rules.pop() if len(rules) == 1 else None)

    def _write(self, row: dict, operation: str, *, new: bool = False, problems: Sequence[dict] = ()) -> None:
        problems = [*problems, *_unstorable(row)]
        if problems:
            raise self._refuse(row, operation, problems)
        # SQLite hands whole amounts back as int (numeric affinity); devices checksum a float
        row["total_amount"] = None if row["total_amount"] is None else float(row["total_amount"])
        row["checksum"] = row_checksum(row)  # over the plaintext, as devices compute it
        row["client_data"] = seal_client_data(row["client_data"])  # encrypted at rest where keys are set
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
        _cache.invalidate(self.path, invoices=[row["id"]])
