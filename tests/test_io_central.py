import contextlib
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import invoicekit as ik
from invoicekit.io import _central_sql as ddl
from invoicekit.io.backends._shared import apply_migrations
from invoicekit.io.central import SCHEMA_VERSION
from invoicekit.samples import make_invoices, make_scenario
from tests._pg_versions import central_at_version_10

KEY = ["id"]


def same(a: ik.InvoiceSet, b: ik.InvoiceSet) -> None:
    cols = [c for c in a.invoices.columns if c not in ("source", "source_row")]
    pd.testing.assert_frame_equal(a.invoices[cols].sort_values("id").reset_index(drop=True),
                                  b.invoices[cols].sort_values("id").reset_index(drop=True))
    pd.testing.assert_frame_equal(a.lines.sort_values(["invoice_id", "line_no"]).reset_index(drop=True),
                                  b.lines.sort_values(["invoice_id", "line_no"]).reset_index(drop=True))


@pytest.fixture(params=["postgresql", "sqlite"])
def central(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("central_pg_url")
    return f"sqlite:///{tmp_path / 'central.sqlite'}"


def test_init_is_idempotent_and_creates_indexes(central_pg_url):
    assert ik.init_db(central_pg_url) == SCHEMA_VERSION == 11
    assert ik.init_db(central_pg_url) == SCHEMA_VERSION
    store = ik.io.central.CentralStore(central_pg_url)
    with store.pg() as conn:
        idx = {r[0]: r[1] for r in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'invoices'")}
        types = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'invoices'"
            " AND table_schema = current_schema()").fetchall())
        versions = conn.execute("SELECT count(*) FROM invoicekit_schema").fetchone()[0]
        options = dict(conn.execute("SELECT relname, reloptions FROM pg_class WHERE relname IN "
                                    "('invoices', 'invoice_lines')").fetchall())
        kinds = dict(conn.execute("SELECT relname, relkind FROM pg_class WHERE relname IN "
                                  "('invoices', 'invoice_lines')").fetchall())
    assert "created_at DESC" in idx["invoices_created_at_idx"]
    assert "client_data ->> 'name'" in idx["invoices_client_idx"]
    assert "WHERE (sync_status <> 'synced'" in idx["invoices_unsynced_idx"]
    # room for HOT updates: free space in pages, no index on a column that every edit changes
    assert options == {"invoices": ["fillfactor=80"], "invoice_lines": None}
    assert kinds == {"invoices": "r", "invoice_lines": "v"}  # the lines: a view (version 11)
    assert not any("modified_at" in d or "version" in d or "checksum" in d for d in idx.values())
    assert types["total"] == "numeric" and types["client_data"] == "jsonb"
    assert types["created_at"] == "timestamp with time zone"
    assert versions == SCHEMA_VERSION


def test_round_trip_is_exact_with_tombstones(central):
    sc = make_scenario(n_central=120, new_per_device=3)
    ik.init_db(central)
    assert ik.write_central(sc.central, central).inserted == 120
    back = ik.read_central(central)
    same(sc.central, back)
    assert back.invoices["deleted_at"].notna().sum() == sc.central.invoices["deleted_at"].notna().sum() > 0
    assert ik.verify(back.invoices).all()
    assert ik.validate(back).ok


def test_write_is_idempotent(central):
    s = make_invoices(80, seed=5)
    ik.init_db(central)
    ik.write_central(s, central)
    ik.write_central(s, central)
    back = ik.read_central(central)
    assert len(back) == 80 and len(back.lines) == len(s.lines)
    same(s, back)


def test_upsert_replaces_lines(central):
    s = make_invoices(10, seed=6)
    ik.init_db(central)
    ik.write_central(s, central)
    fewer = make_invoices(10, seed=6)
    # the same invoices, now with only their first line
    lines = fewer.lines[fewer.lines["line_no"] == 1].reset_index(drop=True)
    inv = fewer.invoices.copy()
    inv["version"] = inv["version"] + 1  # a newer version: compare-and-set lets it through
    from invoicekit._payload import rebuild
    rebuilt = rebuild(ik.InvoiceSet(inv, lines).invoices_table(), ik.InvoiceSet(inv, lines).lines_table())
    ik.write_central(rebuilt, central)
    back = ik.read_central(central)
    assert (back.lines["line_no"] == 1).all() and len(back.lines) == 10
    same(rebuilt, back)


def test_where_filters_bind_values(central):
    s = make_invoices(60, seed=7)
    ik.init_db(central)
    ik.write_central(s, central)
    eur = ik.read_central(central, where={"currency": "EUR"})
    assert len(eur) == (s.invoices["currency"] == "EUR").sum() and set(eur.invoices["currency"]) == {"EUR"}
    two = ik.read_central(central, where={"id": list(s.invoices["id"][:2])})
    assert sorted(two.invoices["id"]) == sorted(s.invoices["id"][:2])
    name = s.invoices["client_name"].iloc[0]
    assert set(ik.read_central(central, where={"client_name": name}).invoices["client_name"]) == {name}
    evil = ik.read_central(central, where={"currency": "EUR' OR '1'='1"})
    assert len(evil) == 0
    assert len(ik.read_central(central)) == 60
    with pytest.raises(ik.UsageError, match="cannot filter on"):
        ik.read_central(central, where={"1=1; DROP TABLE invoices; --": 1})


def test_uninitialised_store_says_what_to_do(central):
    with pytest.raises(ik.StoreSchemaError, match="invoicekit db init"):
        ik.read_central(central)


def test_invalid_set_writes_nothing(central):
    ik.init_db(central)
    good = make_invoices(20, seed=8)
    ik.write_central(good, central)
    bad = make_invoices(20, seed=9)
    bad.invoices.loc[5, "line_items"] = "[broken"
    bad = ik.InvoiceSet(bad.invoices, bad.lines, pd.DataFrame(
        {"source": ["x"], "source_row": [6], "id": [bad.invoices.loc[5, "id"]], "rule": ["unparseable_json"],
         "field": ["line_items"], "value": ["[broken"], "message": ["line_items is not a JSON array"]}))
    with pytest.raises(ik.ValidationError):
        ik.write_central(bad, central)
    same(good, ik.read_central(central))


def test_unsupported_dialect_is_a_usage_error():
    with pytest.raises(ik.UsageError, match="not supported"):
        ik.read_central("mysql://u@h/db")


_WRITER = """
import sys, invoicekit as ik
from invoicekit.samples import make_invoices
s = make_invoices(int(sys.argv[2]), seed=31)
print("ready", flush=True)
ik.write_central(s, sys.argv[1], batch_rows=2000)
print("done", flush=True)
"""


@pytest.mark.parametrize("delay", [0.1, 0.4, 0.8, 1.5])
def test_sigkill_mid_write_is_all_or_nothing(central_pg_url, delay):
    ik.init_db(central_pg_url)
    old = make_invoices(50, seed=30)
    ik.write_central(old, central_pg_url)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, central_pg_url, "30000"], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.2)  # the server notices the dead client and rolls back
    back = ik.read_central(central_pg_url)
    assert len(back) in (50, 30050)
    assert ik.verify(back.invoices).all()
    per_invoice = back.lines.groupby("invoice_id").size()
    assert per_invoice.index.nunique() == len(back)  # no invoice without its lines


def test_upgrade_from_version_2_fills_the_generated_client_columns(central_pg_url):
    ik.init_db(central_pg_url)
    s = make_invoices(30, seed=11)
    ik.write_central(s, central_pg_url)
    store = ik.io.central.CentralStore(central_pg_url)
    with store.pg() as conn:  # back to a version-2 store holding data
        conn.execute("ALTER TABLE invoices DROP COLUMN client_name, DROP COLUMN client_email, "
                     "DROP COLUMN client_address, DROP COLUMN client_tax_id")
        conn.execute("DELETE FROM invoicekit_schema WHERE version = 3")
    assert ik.init_db(central_pg_url) == SCHEMA_VERSION
    back = ik.read_central(central_pg_url).invoices.set_index("id").sort_index()
    want = s.invoices.set_index("id").sort_index()
    for col in ("client_name", "client_email", "client_address", "client_tax_id", "total", "created_at"):
        assert back[col].tolist() == want[col].tolist(), col


def test_client_data_that_is_not_an_object_is_a_load_problem(central_pg_url):
    ik.init_db(central_pg_url)
    s = make_invoices(5, seed=3)
    inv = s.invoices.copy()
    inv.loc[1, "client_data"] = '["not", "an", "object"]'
    inv["checksum"] = ik.checksum(inv)
    store = ik.io.central.CentralStore(central_pg_url)
    ik.write_central(s, central_pg_url)
    with store.pg() as conn:  # written by other software: the toolkit's writer would refuse it
        conn.execute("UPDATE invoices SET client_data_text = %s WHERE id = %s",
                     (inv.loc[1, "client_data"], inv.loc[1, "id"]))
    back = ik.read_central(central_pg_url)
    assert list(zip(back.problems["id"], back.problems["rule"], back.problems["field"])) == [
        (inv.loc[1, "id"], "unparseable_json", "client_data")]
    assert back.invoices.set_index("id").loc[inv.loc[1, "id"], "client_name"] is pd.NA


def _execute(central: str, sql: str, params: tuple = ()) -> None:
    store = ik.io.central.CentralStore(central)
    if store.dialect == "postgresql":
        with store.pg() as conn:
            conn.execute(sql, params)
    else:
        with ik.io._sqlite.write_transaction(store.path) as conn:
            conn.execute(sql.replace("%s", "?"), params)


def _count(central: str, sql: str) -> int:
    store = ik.io.central.CentralStore(central)
    if store.dialect == "postgresql":
        with store.pg() as conn:
            return conn.execute(sql).fetchone()[0]
    import sqlite3
    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        return conn.execute(sql).fetchone()[0]


def _db_error(central: str):
    if central.startswith("postgresql"):
        import psycopg
        return psycopg.Error
    import sqlite3
    return sqlite3.DatabaseError


def test_invoices_are_never_deleted_nor_rekeyed_and_lines_keep_their_invoice(central):
    s = make_invoices(6, seed=12)
    ik.init_db(central)
    ik.write_central(s, central)
    first, second = sorted(s.invoices["id"])[:2]
    refused = [
        ("DELETE FROM invoices WHERE id = %s", (first,), "never deleted"),
        ("UPDATE invoices SET id = %s WHERE id = %s", (first + "-x", first), "never changes"),
        ("INSERT INTO invoice_lines (invoice_id, line_no, description, quantity, unit_price, line_total) "
         "VALUES (%s, 1, 'x', 1, 1, 1)", ("no-such-invoice",),
         "no-such-invoice" if central.startswith("sqlite") else "cannot insert into view"),
    ]
    if central.startswith("postgresql"):  # the lines are a view of the invoices' text (version 11)
        refused += [
            ("UPDATE invoice_lines SET invoice_id = %s WHERE invoice_id = %s", (second, first), "cannot update view"),
            ("TRUNCATE invoices", (), "never deleted"),
        ]
    for sql, params, message in refused:
        with pytest.raises(_db_error(central)) as err:
            _execute(central, sql, params)
        if central.startswith("postgresql"):  # SQLite's foreign key error names no row
            assert message in str(err.value), sql
    same(s, ik.read_central(central))  # each refused statement left everything as it was
    assert _count(central, "SELECT count(*) FROM invoice_lines") == len(s.lines)
    if central.startswith("sqlite"):  # a line for an invoice that exists is fine
        _execute(central, "INSERT INTO invoice_lines (invoice_id, line_no, description, quantity, unit_price, "
                          "line_total) VALUES (%s, 99, 'extra', 1, 2, 2)", (first,))
        assert _count(central, "SELECT count(*) FROM invoice_lines WHERE line_no = 99") == 1


def test_upgrade_from_version_4_replaces_the_foreign_key(central_pg_url):
    s = make_invoices(20, seed=14)
    store = central_at_version_10(central_pg_url, s)
    with store.pg() as conn:  # back to a version-4 store: its foreign key, none of version 5's triggers
        for name, table in (("invoicekit_lines_have_invoice", "invoice_lines"),
                            ("invoicekit_lines_keep_invoice", "invoice_lines"),
                            ("invoicekit_invoices_no_delete", "invoices"),
                            ("invoicekit_invoices_no_truncate", "invoices"),
                            ("invoicekit_invoices_keep_id", "invoices")):
            conn.execute(f"DROP TRIGGER {name} ON {table}")
        conn.execute("ALTER TABLE invoice_lines ADD FOREIGN KEY (invoice_id) REFERENCES invoices(id) "
                     "ON DELETE CASCADE")
        # a key an administrator added to a table of their own is not the toolkit's to drop
        conn.execute("CREATE TABLE admin_descriptions (description TEXT PRIMARY KEY)")
        conn.execute("INSERT INTO admin_descriptions SELECT DISTINCT description FROM invoice_lines")
        conn.execute("ALTER TABLE invoice_lines ADD CONSTRAINT admin_line_description "
                     "FOREIGN KEY (description) REFERENCES admin_descriptions(description)")
        conn.execute("DELETE FROM invoicekit_schema WHERE version = 5")
        # the upgrade as far as version 10 (version 11 replaces the table by a view: see
        # tests/test_lines_view.py)
        apply_migrations(conn, ddl.POSTGRES[:10], mark="%s", now="2026-12-04T00:00:00Z")
    with store.pg() as conn:
        fks = {r[0] for r in conn.execute("SELECT conname FROM pg_constraint "
                                          "WHERE conrelid = 'invoice_lines'::regclass AND contype = 'f'")}
        triggers = {r[0] for r in conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid IN ('invoices'::regclass, 'invoice_lines'::regclass) "
            "AND NOT tgisinternal")}
    assert fks == {"admin_line_description"}
    assert {"invoicekit_lines_have_invoice", "invoicekit_invoices_no_delete"} <= triggers
    with store.pg() as conn:
        assert conn.execute("SELECT count(*) FROM invoice_lines").fetchone()[0] == len(s.lines)


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_write_central_progress_bar_names_its_phases(dialect, central_pg_url, tmp_path, capsys):
    url = central_pg_url if dialect == "postgresql" else f"sqlite:///{tmp_path / 'c.sqlite'}"
    ik.init_db(url)
    s = make_invoices(25, seed=22)
    ik.write_central(s, url)
    assert capsys.readouterr().err == ""  # small writes stay quiet by default
    ik.write_central(s, url, progress=True, batch_rows=10)
    err = capsys.readouterr().err
    assert "write_central" in err and "100%" in err
    if dialect == "postgresql":
        assert "merging invoices" in err and "lines kept as stored" in err
    same(s, ik.read_central(url))


# -- several central stores at once ------------------------------------------------------------
def test_a_list_of_central_stores_reads_each_and_stacks_them(central_pg_url, tmp_path):
    """As read_local takes a list of paths: a PostgreSQL and a SQLite central store, read with
    the same options (ids, where, lines, snapshots one per store), rows told apart by source."""
    lite = f"sqlite:///{tmp_path / 'other.sqlite'}"
    sets = {central_pg_url: make_invoices(12, seed=31), lite: make_invoices(9, seed=32)}
    for url, s in sets.items():
        ik.init_db(url)
        ik.write_central(s, url)
    both = ik.read_central([central_pg_url, lite])
    alone = [ik.read_central(url) for url in sets]
    assert len(both) == 21 and len(both.lines) == sum(len(s.lines) for s in alone)
    cols = [c for c in both.invoices.columns if c != "source_row"]
    pd.testing.assert_frame_equal(both.invoices[cols].reset_index(drop=True),
                                  pd.concat([s.invoices[cols] for s in alone], ignore_index=True))
    assert list(both.invoices["source"].unique()) == [s.invoices["source"].iloc[0] for s in alone]
    # ids and where go to every store
    ids = [sets[central_pg_url].invoices["id"].iloc[3], sets[lite].invoices["id"].iloc[5], "no-such-id"]
    assert list(ik.read_central((central_pg_url, lite), ids=ids).invoices["id"]) == ids[:2]
    eur = ik.read_central([central_pg_url, lite], where={"currency": "EUR"}, lines=False)
    assert set(eur.invoices["currency"]) == {"EUR"} and len(eur.lines) == 0
    # one snapshot per store; a single path for two stores says what to give
    paths = [tmp_path / "pg.arrow", tmp_path / "lite.arrow"]
    snap = ik.read_central([central_pg_url, lite], snapshot=paths)
    assert all(p.exists() for p in paths) and len(snap) == 21
    with pytest.raises(ik.UsageError, match="list of 2 paths, one per store"):
        ik.read_central([central_pg_url, lite], snapshot=paths[0])
    with pytest.raises(ik.UsageError, match="empty list"):
        ik.read_central([])
