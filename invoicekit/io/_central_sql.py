"""DDL of the central store, per dialect, as numbered idempotent migrations."""

from __future__ import annotations

from . import _lines_view

#: each device's settings marked ``sync_required`` (the same DDL on both dialects): value is
#: the JSON text the device stores, version counts the central changes of one key
SETTINGS_TABLE = """CREATE TABLE IF NOT EXISTS settings (
            device TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT,
            version INTEGER NOT NULL CHECK (version >= 1),
            updated_at TEXT NOT NULL,     -- ISO 8601 UTC
            updated_by TEXT NOT NULL,
            PRIMARY KEY (device, key)
        )"""

#: whether pushes need a signed identity token (a row, once init_db got a token secret), who
#: issues the tokens, and the PostgreSQL role pushes connect with (same DDL on both dialects)
IDENTITY_TABLE = """CREATE TABLE IF NOT EXISTS invoicekit_identity (
            singleton INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
            issuer TEXT NOT NULL,
            push_role TEXT,
            enabled_at TEXT NOT NULL      -- ISO 8601 UTC
        )"""
#: the HMAC secret of the tokens; on PostgreSQL only the owner reads it (and the verifying
#: SECURITY DEFINER function, which runs as the owner)
PG_TOKEN_SECRET_TABLE = """CREATE TABLE IF NOT EXISTS invoicekit_token_secret (
            singleton INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
            secret BYTEA NOT NULL CHECK (octet_length(secret) >= 32)
        )"""
SQLITE_TOKEN_SECRET_TABLE = """CREATE TABLE IF NOT EXISTS invoicekit_token_secret (
            singleton INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
            secret BLOB NOT NULL CHECK (length(secret) >= 32)
        )"""

#: the store's identity: snapshots of one store are never applied to another
STORE_ID_TABLE_PG = """CREATE TABLE IF NOT EXISTS invoicekit_store (
            singleton INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
            store_id TEXT NOT NULL DEFAULT gen_random_uuid()::text,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )"""

#: schema version 10 on PostgreSQL: store identity and the change marker (see POSTGRES[9])
PG_SNAPSHOT_MARKER = [
    STORE_ID_TABLE_PG,
    "INSERT INTO invoicekit_store (singleton) VALUES (1) ON CONFLICT (singleton) DO NOTHING",
    """CREATE TABLE IF NOT EXISTS invoicekit_changes (
            invoice_id TEXT PRIMARY KEY,
            xid xid8 NOT NULL              -- the last transaction that inserted, updated or deleted it
        )""",
    "CREATE INDEX IF NOT EXISTS invoicekit_changes_xid_idx ON invoicekit_changes (xid)",
    """INSERT INTO invoicekit_changes (invoice_id, xid) SELECT id, pg_current_xact_id() FROM invoices
       ON CONFLICT (invoice_id) DO NOTHING""",
    # one statement per triggering statement; the schema is the invoices table's, whatever the
    # search path of the session (the function runs with a fixed one)
    """CREATE OR REPLACE FUNCTION invoicekit_mark_changes() RETURNS trigger LANGUAGE plpgsql
       SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
       BEGIN
         EXECUTE format('INSERT INTO %I.invoicekit_changes AS c (invoice_id, xid) '
                        'SELECT id, pg_current_xact_id() FROM invoicekit_changed_rows '
                        'ON CONFLICT (invoice_id) DO UPDATE SET xid = excluded.xid WHERE c.xid <> excluded.xid',
                        TG_TABLE_SCHEMA);
         RETURN NULL;
       END $$""",
    "REVOKE ALL ON FUNCTION invoicekit_mark_changes() FROM PUBLIC",
    *(stmt for event, table in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")) for stmt in (
        f"DROP TRIGGER IF EXISTS invoicekit_mark_{event.lower()} ON invoices",
        f"""CREATE TRIGGER invoicekit_mark_{event.lower()} AFTER {event} ON invoices
           REFERENCING {table} TABLE AS invoicekit_changed_rows
           FOR EACH STATEMENT EXECUTE FUNCTION invoicekit_mark_changes()""")),
    # a store whose signed identities were turned on before this version: its push role reads
    # the new tables too (init_db with a token secret grants them from now on, PUSH_READS)
    """DO $$ DECLARE r text; BEGIN
         SELECT push_role INTO r FROM invoicekit_identity;
         IF r IS NOT NULL AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
           EXECUTE format('GRANT SELECT ON invoicekit_store, invoicekit_changes TO %I', r);
         END IF;
       END $$""",
]

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
    # version 7: duplicate cleanups. An audit row may carry a detail (JSON text: a cleanup's
    # survivor and pair score), audit rows are found by op id (a cleanup id), and reviewers'
    # decisions on candidate pairs (same invoice or not) are kept, the latest per pair
    [
        "ALTER TABLE invoicekit_audit ADD COLUMN IF NOT EXISTS detail TEXT",
        "CREATE INDEX IF NOT EXISTS invoicekit_audit_op_idx ON invoicekit_audit (op_id)",
        """CREATE TABLE IF NOT EXISTS invoicekit_decisions (
            id_a TEXT NOT NULL,
            id_b TEXT NOT NULL,
            same BOOLEAN NOT NULL,
            actor TEXT NOT NULL,
            at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (id_a, id_b),
            CHECK (id_a < id_b)
        )""",
    ],
    # version 8: each device's settings marked sync_required (app_settings), with a version
    # per key for compare-and-set pushes and conflicts
    [SETTINGS_TABLE],
    # version 9: signed identities. Empty until init_db(url, token_secret=...) turns them on
    # (PG_IDENTITY_ON): then every push must carry a token signed with the secret, which
    # only the tables' owner may read
    [IDENTITY_TABLE, PG_TOKEN_SECRET_TABLE, "REVOKE ALL ON invoicekit_token_secret FROM PUBLIC"],
    # version 10: incremental snapshots (read_central(url, snapshot=PATH), invoicekit.io.snapshot).
    # The store gets an identity (a uuid), and a change marker the database keeps itself:
    # invoicekit_changes holds, per invoice, the id of the last transaction that wrote it
    # (pg_current_xact_id(), never a client clock), kept by statement-level AFTER triggers
    # with transition tables. It is a table of its own, so no column of invoices (let alone
    # an indexed one) changes and pushes keep their HOT updates. The trigger function runs as
    # the owner (SECURITY DEFINER): a push role writes invoices, never the marker. Existing
    # invoices are marked with the migration's transaction.
    PG_SNAPSHOT_MARKER,
    # version 11: invoice_lines becomes a view deriving the lines from line_items_text (see
    # invoicekit.io._lines_view): pushes and writes no longer write a line table, which cost
    # about 30% of a push. Lines PostgreSQL's JSON functions would not derive exactly are kept
    # as stored (invoicekit_kept, invoicekit_kept_lines); the upgrade keeps so every invoice
    # whose stored lines differ from the derivation, and stops, changing nothing, where
    # another object depends on the old table.
    _lines_view.MIGRATION,
]

#: reviewers' decisions on candidate duplicate pairs (central SQLite and offline stores alike)
DECISIONS_SQLITE = """CREATE TABLE IF NOT EXISTS invoicekit_decisions (
            id_a TEXT NOT NULL,
            id_b TEXT NOT NULL,
            same INTEGER NOT NULL CHECK (same IN (0, 1)),
            actor TEXT NOT NULL,
            at TEXT NOT NULL,             -- ISO 8601 UTC
            PRIMARY KEY (id_a, id_b),
            CHECK (id_a < id_b)
        )"""

META = "CREATE TABLE IF NOT EXISTS invoicekit_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"

# the columns read_central's `where` filters on (client_name: each backend's client_name_sql)
FILTERABLE = ("id", "invoice_number", "currency", "sync_status", "version", "client_name")

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
    # version 7: as on PostgreSQL
    [
        "ALTER TABLE invoicekit_audit ADD COLUMN detail TEXT",
        "CREATE INDEX IF NOT EXISTS invoicekit_audit_op_idx ON invoicekit_audit (op_id)",
        DECISIONS_SQLITE,
    ],
    # version 8: as on PostgreSQL
    [SETTINGS_TABLE],
    # version 9: as on PostgreSQL (the toolkit verifies tokens itself: SQLite has no roles)
    [IDENTITY_TABLE, SQLITE_TOKEN_SECRET_TABLE],
    # version 10: as on PostgreSQL, with a counter for a marker (SQLite has one writer at a
    # time, so a counter bumped by every written row orders the changes as they commit)
    [
        """CREATE TABLE IF NOT EXISTS invoicekit_store (
            singleton INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
            store_id TEXT NOT NULL,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        )""",
        "INSERT OR IGNORE INTO invoicekit_store (singleton, store_id) VALUES (1, lower(hex(randomblob(16))))",
        """CREATE TABLE IF NOT EXISTS invoicekit_change_seq (
            singleton INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
            seq INTEGER NOT NULL
        )""",
        "INSERT OR IGNORE INTO invoicekit_change_seq (singleton, seq) VALUES (1, 1)",
        """CREATE TABLE IF NOT EXISTS invoicekit_changes (
            invoice_id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS invoicekit_changes_seq_idx ON invoicekit_changes (seq)",
        "INSERT OR IGNORE INTO invoicekit_changes (invoice_id, seq) SELECT id, 1 FROM invoices",
        *(f"""CREATE TRIGGER IF NOT EXISTS invoicekit_mark_{event.lower()} AFTER {event} ON invoices
           BEGIN
             UPDATE invoicekit_change_seq SET seq = seq + 1 WHERE singleton = 1;
             INSERT INTO invoicekit_changes (invoice_id, seq)
               VALUES ({row}.id, (SELECT seq FROM invoicekit_change_seq WHERE singleton = 1))
               ON CONFLICT (invoice_id) DO UPDATE SET seq = excluded.seq;
           END""" for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD"))),
    ],
    # version 11 (PostgreSQL's invoice_lines view): SQLite keeps its lines table, which costs
    # its writes little (one writer, no per-page images in a write-ahead log)
    [],
]


# -- signed identities on PostgreSQL (init_db(url, token_secret=...)) ----------------------------
# Pushes connect as login roles that are members of the push role. Row-level security lets the
# push role read the pushed tables but write them only while the transaction's setting
# ``invoicekit.token`` holds a token this store verifies: the policies call the SECURITY
# DEFINER function invoicekit_token_subject(), which runs as the owner (the only role that may
# read the secret), checks the HS256 HMAC with pgcrypto, the header, the issuer and the expiry,
# and raises SQLSTATE IK401 (DETAIL: the reason code) for anything else. Each policy wraps the
# call in a scalar subquery, which PostgreSQL runs once per statement (an InitPlan), not once
# per row. (A cache in a transaction-local setting would be forgeable: the push role may set
# any setting.) Audit rows written by the push role must name the token's subject as actor.
# The owner (who ran init_db) is not subject to row-level security: it is the administrator.
# Placeholders: {schema} (the store's), {ext} (pgcrypto's schema), {role} (the push role).

#: tables a push writes, with what the push role may do to them
PUSH_TABLES = {
    "invoices": ("SELECT", "INSERT", "UPDATE"),
    "invoicekit_kept": ("SELECT", "INSERT", "DELETE"),
    "invoicekit_kept_lines": ("SELECT", "INSERT", "DELETE"),
    "invoicekit_ledger": ("SELECT", "INSERT"),
    "invoicekit_audit": ("SELECT", "INSERT"),
    "settings": ("SELECT", "INSERT", "UPDATE"),
    "invoicekit_decisions": ("SELECT", "INSERT", "UPDATE"),
}
#: the column naming who wrote a row, which must be the token's subject
PUSH_ACTOR = {"invoicekit_audit": "actor", "settings": "updated_by", "invoicekit_decisions": "actor"}


def _push_check(table: str) -> str:
    """A policy's condition: a verified token (once per statement), naming the row's writer."""
    if table in PUSH_ACTOR:
        return f"{PUSH_ACTOR[table]} = (SELECT {{schema}}.invoicekit_token_subject())"
    return "(SELECT {schema}.invoicekit_token_subject()) IS NOT NULL"

#: tables (and the lines view) the push role only reads
PUSH_READS = ("invoicekit_schema", "invoicekit_identity", "invoicekit_store", "invoicekit_changes", "invoice_lines")

PG_TOKEN_FUNCTION = r"""
CREATE OR REPLACE FUNCTION {schema}.invoicekit_token_subject() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  tok text := current_setting('invoicekit.token', true);
  part text[];
  head jsonb;
  claims jsonb;
  key bytea;
  want_iss text;
  now_s numeric := extract(epoch FROM clock_timestamp());
  skew CONSTANT numeric := 60;  -- seconds of clock difference allowed for iat / nbf
BEGIN
  IF tok IS NULL OR tok = '' THEN
    RAISE EXCEPTION 'identity token refused: this push carries none (set invoicekit.token)'
      USING ERRCODE = 'IK401', DETAIL = 'token_required';
  END IF;
  SELECT s.secret, i.issuer INTO key, want_iss
    FROM {schema}.invoicekit_token_secret s CROSS JOIN {schema}.invoicekit_identity i;
  IF key IS NULL THEN
    RAISE EXCEPTION 'identity token refused: this store has no token secret'
      USING ERRCODE = 'IK401', DETAIL = 'tokens_not_enabled';
  END IF;
  part := string_to_array(tok, '.');
  IF length(tok) > 8192 OR cardinality(part) <> 3 THEN
    RAISE EXCEPTION 'identity token refused: it is not a well-formed signed token'
      USING ERRCODE = 'IK401', DETAIL = 'malformed_token';
  END IF;
  BEGIN  -- base64url (no padding) -> JSON
    head := convert_from(decode(translate(part[1], '-_', '+/')
                                || repeat('=', (4 - length(part[1]) % 4) % 4), 'base64'), 'UTF8')::jsonb;
    claims := convert_from(decode(translate(part[2], '-_', '+/')
                                  || repeat('=', (4 - length(part[2]) % 4) % 4), 'base64'), 'UTF8')::jsonb;
  EXCEPTION WHEN others THEN
    RAISE EXCEPTION 'identity token refused: it is not a well-formed signed token'
      USING ERRCODE = 'IK401', DETAIL = 'malformed_token';
  END;
  IF jsonb_typeof(head) IS DISTINCT FROM 'object' OR jsonb_typeof(claims) IS DISTINCT FROM 'object' THEN
    RAISE EXCEPTION 'identity token refused: it is not a well-formed signed token'
      USING ERRCODE = 'IK401', DETAIL = 'malformed_token';
  END IF;
  IF head->>'alg' IS DISTINCT FROM 'HS256' OR jsonb_typeof(head->'alg') IS DISTINCT FROM 'string' THEN
    RAISE EXCEPTION 'identity token refused: it is not signed with HS256 (unsigned alg none tokens are refused)'
      USING ERRCODE = 'IK401', DETAIL = 'bad_algorithm';
  END IF;
  -- compared as digests, so the comparison takes the same time wherever the texts differ
  IF {ext}.digest(rtrim(translate(encode({ext}.hmac(convert_to(part[1] || '.' || part[2], 'UTF8'), key, 'sha256'),
                                         'base64'), E'+/\n', '-_'), '='), 'sha256')
     <> {ext}.digest(part[3], 'sha256') THEN
    RAISE EXCEPTION 'identity token refused: its signature does not match this store''s secret'
      USING ERRCODE = 'IK401', DETAIL = 'bad_signature';
  END IF;
  IF jsonb_typeof(claims->'exp') IS DISTINCT FROM 'number' OR jsonb_typeof(claims->'iat') IS DISTINCT FROM 'number'
     OR jsonb_typeof(claims->'iss') IS DISTINCT FROM 'string' OR jsonb_typeof(claims->'sub') IS DISTINCT FROM 'string'
     OR btrim(claims->>'sub') = '' THEN
    RAISE EXCEPTION 'identity token refused: it lacks one of the claims exp, iat, iss, sub'
      USING ERRCODE = 'IK401', DETAIL = 'missing_claim';
  END IF;
  IF claims->>'iss' IS DISTINCT FROM want_iss THEN
    RAISE EXCEPTION 'identity token refused: it was issued by another issuer'
      USING ERRCODE = 'IK401', DETAIL = 'wrong_issuer';
  END IF;
  IF (claims->>'exp')::numeric <= now_s THEN
    RAISE EXCEPTION 'identity token refused: the token has expired; issue a new one'
      USING ERRCODE = 'IK401', DETAIL = 'token_expired';
  END IF;
  IF (claims->>'iat')::numeric > now_s + skew
     OR (jsonb_typeof(claims->'nbf') = 'number' AND (claims->>'nbf')::numeric > now_s + skew) THEN
    RAISE EXCEPTION 'identity token refused: it is not valid yet (issued in the future)'
      USING ERRCODE = 'IK401', DETAIL = 'not_yet_valid';
  END IF;
  IF claims ? 'kind' AND coalesce(claims->>'kind', '') NOT IN ('user', 'device') THEN
    RAISE EXCEPTION 'identity token refused: its kind is neither user nor device'
      USING ERRCODE = 'IK401', DETAIL = 'malformed_token';
  END IF;
  RETURN claims->>'sub';
END $fn$"""

#: the statements that turn identities on (idempotent; the secret and identity rows are
#: written before them, the push role exists)
PG_IDENTITY_ON = [
    PG_TOKEN_FUNCTION,
    "REVOKE ALL ON FUNCTION {schema}.invoicekit_token_subject() FROM PUBLIC",
    "GRANT EXECUTE ON FUNCTION {schema}.invoicekit_token_subject() TO {role}",
    "REVOKE ALL ON {schema}.invoicekit_token_secret FROM PUBLIC, {role}",
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT ON " + ", ".join("{schema}." + t for t in PUSH_READS) + " TO {role}",
    "GRANT USAGE ON SEQUENCE {schema}.invoicekit_audit_seq_seq TO {role}",
] + [
    stmt for table, privileges in PUSH_TABLES.items() for stmt in [
        f"GRANT {', '.join(privileges)} ON {{schema}}.{table} TO {{role}}",
        f"ALTER TABLE {{schema}}.{table} ENABLE ROW LEVEL SECURITY",
        *(f"DROP POLICY IF EXISTS invoicekit_push_{cmd.lower()} ON {{schema}}.{table}" for cmd in
          ("SELECT", "INSERT", "UPDATE", "DELETE")),
        f"CREATE POLICY invoicekit_push_select ON {{schema}}.{table} FOR SELECT TO {{role}} USING (true)",
        # every written row needs a verified token; a row naming its writer, the token's subject
        f"CREATE POLICY invoicekit_push_insert ON {{schema}}.{table} FOR INSERT TO {{role}} "
        f"WITH CHECK ({_push_check(table)})",
        *([f"CREATE POLICY invoicekit_push_update ON {{schema}}.{table} FOR UPDATE TO {{role}} "
           f"USING ((SELECT {{schema}}.invoicekit_token_subject()) IS NOT NULL) WITH CHECK ({_push_check(table)})"]
          if "UPDATE" in privileges else []),
        *([f"CREATE POLICY invoicekit_push_delete ON {{schema}}.{table} FOR DELETE TO {{role}} "
           "USING ((SELECT {schema}.invoicekit_token_subject()) IS NOT NULL)"] if "DELETE" in privileges else []),
    ]
]

#: the names identities on PostgreSQL are set up under: database, store schema, pgcrypto's schema
PG_IDENTITY_NAMES = ("SELECT current_database(), current_schema(), "
                     "(SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                     "WHERE e.extname = 'pgcrypto')")
