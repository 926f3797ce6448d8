"""DDL of the central store, per dialect, as numbered idempotent migrations."""

from __future__ import annotations

SCHEMA_VERSION = 1

POSTGRES = [
    # version 1
    [
        """CREATE TABLE IF NOT EXISTS invoices (
            id TEXT PRIMARY KEY,
            invoice_number TEXT NOT NULL,
            client_data_text TEXT NOT NULL,
            client_data JSONB GENERATED ALWAYS AS (client_data_text::jsonb) STORED,
            line_items_text TEXT NOT NULL,
            currency TEXT NOT NULL,
            total NUMERIC(12,2) NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            modified_at TIMESTAMPTZ,
            version INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
            sync_status TEXT NOT NULL DEFAULT 'synced',
            checksum TEXT,
            deleted_at TIMESTAMPTZ,
            origin TEXT
        )""",
        """CREATE TABLE IF NOT EXISTS invoice_lines (
            invoice_id TEXT NOT NULL REFERENCES invoices(id) ON DELETE CASCADE,
            line_no INTEGER NOT NULL,
            description TEXT,
            quantity NUMERIC(12,3) NOT NULL,
            unit_price NUMERIC(12,2) NOT NULL,
            line_total NUMERIC(12,2) NOT NULL,
            PRIMARY KEY (invoice_id, line_no)
        )""",
        "CREATE INDEX IF NOT EXISTS invoices_created_at_idx ON invoices (created_at DESC)",
        "CREATE INDEX IF NOT EXISTS invoices_client_idx ON invoices ((client_data->>'name'))",
        "CREATE INDEX IF NOT EXISTS invoices_unsynced_idx ON invoices (modified_at) WHERE sync_status <> 'synced'",
    ],
]

SQLITE = [
    [
        """CREATE TABLE IF NOT EXISTS invoices (
            id TEXT PRIMARY KEY,
            invoice_number TEXT NOT NULL,
            client_data_text TEXT NOT NULL CHECK (json_valid(client_data_text)),
            line_items_text TEXT NOT NULL CHECK (json_valid(line_items_text)),
            currency TEXT NOT NULL,
            total TEXT NOT NULL,            -- exact decimal text, e.g. '1234.50'
            created_at TEXT NOT NULL,       -- ISO 8601 UTC
            modified_at TEXT,
            version INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
            sync_status TEXT NOT NULL DEFAULT 'synced',
            checksum TEXT,
            deleted_at TEXT,
            origin TEXT
        )""",
        """CREATE TABLE IF NOT EXISTS invoice_lines (
            invoice_id TEXT NOT NULL REFERENCES invoices(id) ON DELETE CASCADE,
            line_no INTEGER NOT NULL,
            description TEXT,
            quantity TEXT NOT NULL,
            unit_price TEXT NOT NULL,
            line_total TEXT NOT NULL,
            PRIMARY KEY (invoice_id, line_no)
        )""",
        "CREATE INDEX IF NOT EXISTS invoices_created_at_idx ON invoices (created_at DESC)",
        "CREATE INDEX IF NOT EXISTS invoices_client_idx ON invoices (json_extract(client_data_text, '$.name'))",
        "CREATE INDEX IF NOT EXISTS invoices_unsynced_idx ON invoices (modified_at) WHERE sync_status <> 'synced'",
    ],
]

META = "CREATE TABLE IF NOT EXISTS invoicekit_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"

# canonical invoice column -> central SQL expression (used for reads and `where`)
CLIENT_NAME = {"postgresql": "client_data->>'name'", "sqlite": "json_extract(client_data_text, '$.name')"}
FILTERABLE = ("id", "invoice_number", "currency", "sync_status", "version", "client_name")
