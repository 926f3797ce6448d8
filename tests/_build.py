"""Helpers for tests: write offline-schema stores row by row, exactly as devices do."""

from __future__ import annotations

import hashlib
import json
import sqlite3

from invoicekit.io.local import OFFLINE_SCHEMA_SQL


def device_checksum(row: dict) -> str:
    """The field devices' checksum, verbatim from the design."""
    relevant_fields = ["invoice_number", "client_data", "line_items", "total_amount"]
    checksum_data = {k: row.get(k) for k in relevant_fields}
    json_str = json.dumps(checksum_data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(json_str.encode()).hexdigest()


def device_row(i: int, **over) -> dict:
    """A valid device row; ``over`` replaces fields (checksum recomputed unless given)."""
    row = {
        "id": f"00000000-0000-4000-8000-{i:012d}",
        "invoice_number": f"INV-{i:05d}",
        "client_data": json.dumps({"name": f"Client {i}", "email": f"c{i}@example.com",
                                   "address": "1 Main St", "tax_id": "DE123"}),
        "line_items": json.dumps([{"description": "Work", "quantity": 2, "unit_price": 10.25},
                                  {"description": "Parts", "quantity": 1.5, "unit_price": 3.0}]),
        "total_amount": 25.0,
        "created_at": "2026-03-01T10:00:00.000001",
        "modified_at": "2026-03-01T10:05:00",
        "sync_status": "synced",
        "version": 1,
    }
    row.update({k: v for k, v in over.items() if k != "checksum"})
    row["checksum"] = over.get("checksum", device_checksum(row))
    return row


COLUMNS = ["id", "invoice_number", "client_data", "line_items", "total_amount", "created_at",
           "modified_at", "sync_status", "checksum", "version"]


def write_device_store(path, rows: list[dict], *, settings: dict | None = None) -> None:
    """A store exactly as other software writes it: the bare offline schema, nothing more."""
    conn = sqlite3.connect(path)
    conn.executescript(OFFLINE_SCHEMA_SQL)
    conn.executemany(f"INSERT INTO transactions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                     [tuple(r[c] for c in COLUMNS) for r in rows])
    for key, value in (settings or {}).items():
        conn.execute("INSERT INTO app_settings (key, value) VALUES (?, ?)", (key, value))
    conn.commit()
    conn.close()


def dump(path) -> list[str]:
    """Logical content of a SQLite file (schema and rows), for equality checks; the store's
    identity (a uuid each file gets on its first toolkit write) and when its migrations ran are left out."""
    conn = sqlite3.connect(path)
    try:
        return [line for line in conn.iterdump()
                if "'invoicekit_store_id'" not in line and not line.startswith('INSERT INTO "invoicekit_local_schema"')]
    finally:
        conn.close()
