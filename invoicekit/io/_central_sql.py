"""DDL of the central store, per dialect, as numbered idempotent migrations."""

from __future__ import annotations

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
    # version 2: sync ledger (each applied operation once) and an append-only audit trail
    [
        """CREATE TABLE IF NOT EXISTS invoicekit_ledger (
            op_id TEXT PRIMARY KEY,
            invoice_id TEXT NOT NULL,
            new_version INTEGER NOT NULL,
            payload_checksum TEXT,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )""",
        """CREATE TABLE IF NOT EXISTS invoicekit_audit (
            seq BIGSERIAL PRIMARY KEY,
            at TIMESTAMPTZ NOT NULL DEFAULT now(),
            actor TEXT NOT NULL,
            op_id TEXT NOT NULL,
            invoice_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            strategy TEXT,
            before_version INTEGER,
            after_version INTEGER,
            before_checksum TEXT,
            after_checksum TEXT
        )""",
        """CREATE OR REPLACE FUNCTION invoicekit_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'invoicekit_audit is append-only'; END $$""",
        "DROP TRIGGER IF EXISTS invoicekit_audit_append_only ON invoicekit_audit",
        """CREATE TRIGGER invoicekit_audit_append_only BEFORE UPDATE OR DELETE ON invoicekit_audit
           FOR EACH ROW EXECUTE FUNCTION invoicekit_audit_append_only()""",
        "CREATE INDEX IF NOT EXISTS invoicekit_audit_invoice_idx ON invoicekit_audit (invoice_id, seq)",
    ],
    # version 3: the client fields as stored generated columns, parsed once at write time so
    # that reads fetch them instead of parsing JSON (read_central's fast path)
    [
        "ALTER TABLE invoices " + ", ".join(
            f"ADD COLUMN IF NOT EXISTS client_{k} TEXT GENERATED ALWAYS AS (client_data_text::jsonb->>'{k}') STORED"
            for k in ("name", "email", "address", "tax_id")),
    ],
    # version 4: pushes update rows in place. Free space in every page (fillfactor, for pages
    # written from now on) and no index on a column an edit changes (the unsynced index was on
    # modified_at) let PostgreSQL make them HOT updates: the new row version goes in the same
    # page and no index gets a new entry, which also spares the WAL their page images.
    [
        "ALTER TABLE invoices SET (fillfactor = 80)",
        "ALTER TABLE invoice_lines SET (fillfactor = 85)",
        "DROP INDEX IF EXISTS invoices_unsynced_idx",
        "CREATE INDEX IF NOT EXISTS invoices_unsynced_idx ON invoices (created_at) WHERE sync_status <> 'synced'",
    ],
    # version 5: a line's invoice is checked once per statement instead of once per row. The
    # foreign key checked each inserted line on its own and locked its invoice row (FOR KEY
    # SHARE), which rewrote every invoice page a bulk load touched: 3M lines took ~80 s, ~14 s
    # without it. Invoices are never deleted (a deletion is a tombstone, deleted_at) nor
    # re-keyed, and triggers now refuse both, so an invoice that exists stays; a line can
    # therefore be checked without a lock, by one anti-join over the statement's new lines.
    [
        """DO $$ DECLARE c record; BEGIN
             -- only the lines' key to their invoice; a key an administrator added to
             -- another table stays
             FOR c IN SELECT conname FROM pg_constraint
                      WHERE conrelid = 'invoice_lines'::regclass AND contype = 'f'
                        AND confrelid = 'invoices'::regclass LOOP
               EXECUTE format('ALTER TABLE invoice_lines DROP CONSTRAINT %I', c.conname);
             END LOOP;
           END $$""",
        # no LIMIT 1 in the check: it would steer the planner to a nested loop (one index probe
        # per new line: 29 s for 3M lines) where a hash anti-join takes a couple of seconds
        """CREATE OR REPLACE FUNCTION invoicekit_lines_have_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
           DECLARE orphans bigint; orphan text;
           BEGIN
             EXECUTE format('SELECT count(*), min(n.invoice_id) FROM invoicekit_new_lines n WHERE NOT EXISTS '
                            '(SELECT 1 FROM %I.invoices i WHERE i.id = n.invoice_id)', TG_TABLE_SCHEMA)
               INTO orphans, orphan;
             IF orphans > 0 THEN
               RAISE EXCEPTION 'invoice_lines: invoice % does not exist (% new line(s) name no existing invoice)',
                 quote_literal(orphan), orphans
                 USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
             END IF;
             RETURN NULL;
           END $$""",
        "DROP TRIGGER IF EXISTS invoicekit_lines_have_invoice ON invoice_lines",
        """CREATE TRIGGER invoicekit_lines_have_invoice AFTER INSERT ON invoice_lines
           REFERENCING NEW TABLE AS invoicekit_new_lines
           FOR EACH STATEMENT EXECUTE FUNCTION invoicekit_lines_have_invoice()""",
        """CREATE OR REPLACE FUNCTION invoicekit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation', TABLE = TG_TABLE_NAME; END $$""",
        "DROP TRIGGER IF EXISTS invoicekit_lines_keep_invoice ON invoice_lines",
        """CREATE TRIGGER invoicekit_lines_keep_invoice BEFORE UPDATE OF invoice_id ON invoice_lines
           FOR EACH ROW WHEN (NEW.invoice_id IS DISTINCT FROM OLD.invoice_id)
           EXECUTE FUNCTION invoicekit_refuse('invoice_lines: a line cannot move to another invoice')""",
        "DROP TRIGGER IF EXISTS invoicekit_invoices_no_delete ON invoices",
        """CREATE TRIGGER invoicekit_invoices_no_delete BEFORE DELETE ON invoices
           FOR EACH ROW EXECUTE FUNCTION invoicekit_refuse(
             'invoices are never deleted: a deletion is a tombstone (set deleted_at), kept with its audit trail')""",
        "DROP TRIGGER IF EXISTS invoicekit_invoices_no_truncate ON invoices",
        """CREATE TRIGGER invoicekit_invoices_no_truncate BEFORE TRUNCATE ON invoices
           FOR EACH STATEMENT EXECUTE FUNCTION invoicekit_refuse(
             'invoices are never deleted: a deletion is a tombstone (set deleted_at), kept with its audit trail')""",
        "DROP TRIGGER IF EXISTS invoicekit_invoices_keep_id ON invoices",
        """CREATE TRIGGER invoicekit_invoices_keep_id BEFORE UPDATE OF id ON invoices
           FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
           EXECUTE FUNCTION invoicekit_refuse('invoices: an invoice id never changes')""",
    ],
    # version 6: the ledger records the hash of everything an operation wrote (see
    # invoicekit.sync._content), so an op id met again with other content is never taken
    # for the operation it recorded
    [
        "ALTER TABLE invoicekit_ledger ADD COLUMN IF NOT EXISTS content_sha TEXT",
        "CREATE INDEX IF NOT EXISTS invoicekit_ledger_invoice_idx ON invoicekit_ledger (invoice_id, new_version)",
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
    [
        """CREATE TABLE IF NOT EXISTS invoicekit_ledger (
            op_id TEXT PRIMARY KEY,
            invoice_id TEXT NOT NULL,
            new_version INTEGER NOT NULL,
            payload_checksum TEXT,
            applied_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS invoicekit_audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            op_id TEXT NOT NULL,
            invoice_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            strategy TEXT,
            before_version INTEGER,
            after_version INTEGER,
            before_checksum TEXT,
            after_checksum TEXT
        )""",
        """CREATE TRIGGER IF NOT EXISTS invoicekit_audit_no_update BEFORE UPDATE ON invoicekit_audit
           BEGIN SELECT RAISE(ABORT, 'invoicekit_audit is append-only'); END""",
        """CREATE TRIGGER IF NOT EXISTS invoicekit_audit_no_delete BEFORE DELETE ON invoicekit_audit
           BEGIN SELECT RAISE(ABORT, 'invoicekit_audit is append-only'); END""",
        "CREATE INDEX IF NOT EXISTS invoicekit_audit_invoice_idx ON invoicekit_audit (invoice_id, seq)",
    ],
    [],  # version 3 (PostgreSQL's generated client columns): SQLite parses client fields at read
    [],  # version 4 (PostgreSQL page fill factors for HOT updates): nothing to do on SQLite
    # version 5: as on PostgreSQL, invoices are never deleted nor re-keyed (SQLite keeps its
    # foreign key on the lines: it costs little there)
    [
        """CREATE TRIGGER IF NOT EXISTS invoicekit_invoices_no_delete BEFORE DELETE ON invoices
           BEGIN SELECT RAISE(ABORT, 'invoices are never deleted: a deletion is a tombstone (set deleted_at)'); END""",
        """CREATE TRIGGER IF NOT EXISTS invoicekit_invoices_keep_id BEFORE UPDATE OF id ON invoices
           WHEN NEW.id IS NOT OLD.id
           BEGIN SELECT RAISE(ABORT, 'invoices: an invoice id never changes'); END""",
    ],
    # version 6: as on PostgreSQL
    [
        "ALTER TABLE invoicekit_ledger ADD COLUMN content_sha TEXT",
        "CREATE INDEX IF NOT EXISTS invoicekit_ledger_invoice_idx ON invoicekit_ledger (invoice_id, new_version)",
    ],
]

META = "CREATE TABLE IF NOT EXISTS invoicekit_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"

# the columns read_central's `where` filters on (client_name: each backend's client_name_sql)
FILTERABLE = ("id", "invoice_number", "currency", "sync_status", "version", "client_name")
