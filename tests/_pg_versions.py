"""Helpers for tests: PostgreSQL central stores as earlier schema versions left them."""

from __future__ import annotations

from invoicekit.io import _central_sql as ddl
from invoicekit.io.backends._shared import INV_COLS, LINE_COLS, apply_migrations, csv_bytes
from invoicekit.io.central import CentralStore


def central_at_version_10(url: str, invoice_set) -> CentralStore:
    """A store at schema version 10 holding ``invoice_set`` as version-10 writers left it:
    the invoices and, in the ``invoice_lines`` table, their lines."""
    store = CentralStore(url)
    inv, lines = store.central_rows(invoice_set)
    with store.pg() as conn:
        conn.execute(ddl.META)
        apply_migrations(conn, ddl.POSTGRES[:10], mark="%s", now="2026-12-01T00:00:00Z")
        with conn.cursor() as cur:
            for table, rows, cols in (("invoices", inv, INV_COLS), ("invoice_lines", lines, LINE_COLS)):
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as copy:
                    copy.write(csv_bytes(rows.select(cols)))
    return store


def version(store: CentralStore) -> int:
    with store.pg() as conn:
        return conn.execute("SELECT max(version) FROM invoicekit_schema").fetchone()[0]
