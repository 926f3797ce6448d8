"""Errors: one typed hierarchy that pickles, driver exceptions translated, arguments checked.

Every driver exception here is produced by a real call (sqlite3, psycopg, ADBC, SQLAlchemy,
DuckDB, pyarrow): no mocks.
"""

from __future__ import annotations

import inspect
import pickle
import shutil
import sqlite3
import time
from pathlib import Path

import pandas as pd
import psycopg
import pytest

import invoicekit as ik
from invoicekit import errors
from invoicekit.errors import (
    InvoicekitError,
    MissingDependencyError,
    NotAStoreError,
    StoreError,
    StoreSchemaError,
    StoreUnavailableError,
    UsageError,
    ValidationError,
    mask_secrets,
    translate,
)
from invoicekit.io import _central_sql as ddl
from invoicekit.io import _sqlite
from invoicekit.io.central import SCHEMA_VERSION, CentralStore
from invoicekit.samples import read_jsonl

from ._build import device_row, dump, write_device_store

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
UNREACHABLE = "postgresql://analyst:s3cr3t-pw@127.0.0.1:1/books"


# -- the hierarchy ------------------------------------------------------------------------
def _problems() -> pd.DataFrame:
    return pd.DataFrame({"source": ["a.sqlite"], "source_row": [3], "id": ["x-1"], "rule": ["total_mismatch"],
                         "field": ["total"], "value": ["9.99"], "message": ["total differs from its lines"]})


EXAMPLES = {
    InvoicekitError: lambda: InvoicekitError("something broke", reason="custom_reason"),
    UsageError: lambda: UsageError("bad option"),
    errors.RenderError: lambda: errors.RenderError("total 10.00 != lines 9.00", invoice_id="inv-1",
                                                   reason="total_mismatch"),
    MissingDependencyError: lambda: MissingDependencyError("psycopg", "postgres"),
    StoreError: lambda: StoreError("store broke", store="a.sqlite", reason="query_failed"),
    NotAStoreError: lambda: NotAStoreError("junk", store="junk.sqlite"),
    StoreSchemaError: lambda: StoreSchemaError("old", store="sqlite:///c.sqlite", missing=["invoices", "x"]),
    StoreUnavailableError: lambda: StoreUnavailableError("down", store=UNREACHABLE, reason="connection_lost"),
    errors.InvoiceNotFoundError: lambda: errors.InvoiceNotFoundError("no invoice 'x-1'", store="a.sqlite",
                                                                     invoice_id="x-1"),
    ValidationError: lambda: ValidationError(_problems(), context="write_central"),
    errors.KeyConfigError: lambda: errors.KeyConfigError("no encryption key configured: set INVOICEKIT_KEYS"),
    errors.DecryptionError: lambda: errors.DecryptionError(
        "decrypt: invoice 'inv-1' column 'client_email': invalid token", invoice_id="inv-1", column="client_email",
        failures=pd.DataFrame({"id": ["inv-1"], "column": ["client_email"], "reason": ["invalid_token"]}),
        reason="invalid_token"),
    errors.IdentityError: lambda: errors.IdentityError(
        "central store sqlite:///c.sqlite: identity token refused: the token has expired; issue a new one",
        store="sqlite:///c.sqlite", reason="token_expired"),
}


def test_every_error_class_has_a_pickle_example():
    classes = {obj for _, obj in inspect.getmembers(errors, inspect.isclass)
               if issubclass(obj, InvoicekitError) and obj.__module__ == errors.__name__}
    assert classes == set(EXAMPLES)


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda c: c.__name__)
def test_errors_survive_pickle(cls):
    err = EXAMPLES[cls]()
    err.add_note("a note")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == str(err) and back.args == err.args
    assert back.reason == err.reason and back.transient == err.transient
    assert back.__notes__ == ["a note"]
    for name, value in vars(err).items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(getattr(back, name), value)
        else:
            assert getattr(back, name) == value, name


def test_pickle_keeps_the_context_attributes():
    schema = pickle.loads(pickle.dumps(EXAMPLES[StoreSchemaError]()))
    assert schema.store == "sqlite:///c.sqlite" and schema.missing == ["invoices", "x"]
    dep = pickle.loads(pickle.dumps(EXAMPLES[MissingDependencyError]()))
    assert (dep.module, dep.extra) == ("psycopg", "postgres") and "invoicekit[postgres]" in str(dep)
    val = pickle.loads(pickle.dumps(EXAMPLES[ValidationError]()))
    assert val.problems["rule"].tolist() == ["total_mismatch"] and str(val).startswith("write_central: 1 ")


def test_an_attribute_that_does_not_pickle_travels_as_text():
    err = StoreError("with a connection attached", store="a.sqlite")
    err.connection = sqlite3.connect(":memory:")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back.connection, str) and "sqlite3.Connection" in back.connection
    err.connection.close()


def test_reason_and_transient_defaults_and_overrides():
    assert [EXAMPLES[c]().transient for c in EXAMPLES] == [c is StoreUnavailableError for c in EXAMPLES]
    assert UsageError("x").reason == "bad_usage" and StoreSchemaError("x", store="s", missing=[]).reason == \
        "schema_missing"
    assert InvoicekitError("x", reason="custom_reason").reason == "custom_reason"
    assert StoreError("x", store="s", transient=True).transient is True
    assert StoreUnavailableError("x", store="s", transient=False).transient is False
    assert issubclass(StoreUnavailableError, StoreError) and ik.StoreUnavailableError is StoreUnavailableError
    assert "StoreUnavailableError" in ik.__all__


def test_a_store_error_never_shows_a_password():
    err = StoreError(f"cannot use {UNREACHABLE}", store=UNREACHABLE)
    assert "s3cr3t" not in str(err) and "s3cr3t" not in err.store and "analyst:***@127.0.0.1" in err.store


@pytest.mark.parametrize("text, shown", [
    ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
    ("postgresql+psycopg://u:p%40ss@h:5/db?x=1", "postgresql+psycopg://u:***@h:5/db?x=1"),
    ("host=h password=pw dbname=x", "host=h password=*** dbname=x"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("/data/a.sqlite", "/data/a.sqlite"),
])
def test_mask_secrets(text, shown):
    assert mask_secrets(text) == shown


# -- translate: real driver exceptions -----------------------------------------------------
def _raised(fn, exc_type=Exception) -> BaseException:
    with pytest.raises(exc_type) as info:
        fn()
    return info.value


def test_translate_connection_refused_is_transient_and_masks_the_password():
    exc = _raised(lambda: psycopg.connect(UNREACHABLE, connect_timeout=3), psycopg.OperationalError)
    err = translate(exc, store=UNREACHABLE)
    assert type(err) is StoreUnavailableError and err.transient and err.reason == "connection_failed"
    assert "s3cr3t" not in str(err) and "s3cr3t" not in err.store
    assert str(err).startswith("cannot connect to central store postgresql://analyst:***@127.0.0.1:1/books")
    assert err.driver_error == "psycopg.OperationalError"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is StoreUnavailableError and back.transient and back.driver_error == err.driver_error


def test_translate_a_killed_connection_is_transient(pg_url):
    victim = psycopg.connect(pg_url, autocommit=True)
    pid = victim.info.backend_pid
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    exc = _raised(lambda: victim.execute("SELECT 1"), psycopg.OperationalError)
    victim.close()
    err = translate(exc, store=pg_url, context="apply_sync")
    assert type(err) is StoreUnavailableError and err.transient
    assert err.reason == "connection_lost" and str(err).startswith("apply_sync: central store ")


def test_translate_missing_table_and_column_say_to_run_db_init(pg_url):
    with psycopg.connect(pg_url) as conn:
        table = _raised(lambda: conn.execute("SELECT * FROM invoicekit_no_such_table"), psycopg.Error)
        conn.rollback()
        column = _raised(lambda: conn.execute("SELECT client_name FROM pg_class"), psycopg.Error)
    for exc, name in ((table, "invoicekit_no_such_table"), (column, "client_name")):
        err = translate(exc, store=pg_url)
        assert type(err) is StoreSchemaError and not err.transient, err
        assert err.missing == [name] and "`invoicekit db init URL`" in str(err)
        assert "LINE 1" not in str(err)  # the server's message, not its quote of the statement
    assert table.sqlstate == "42P01" and translate(table, store=pg_url).sqlstate == "42P01"


def test_translate_other_postgres_errors_are_not_transient(pg_url):
    bad_db = pg_url.rsplit("/", 1)[0] + "/invoicekit_no_such_database"
    err = translate(_raised(lambda: psycopg.connect(bad_db), psycopg.OperationalError), store=bad_db)
    assert type(err) is StoreError and not err.transient and err.reason == "no_such_database"
    with psycopg.connect(pg_url) as conn:
        exc = _raised(lambda: conn.execute("SELECT 1e30::numeric(12,2)"), psycopg.errors.NumericValueOutOfRange)
    err = translate(exc, store=pg_url)
    assert type(err) is StoreError and err.reason == "bad_value" and not err.transient


def test_translate_adbc_errors_by_sqlstate(pg_url):
    import adbc_driver_postgresql.dbapi as adbc_pg

    with adbc_pg.connect(pg_url) as conn:
        cur = conn.cursor()
        exc = _raised(lambda: cur.execute("SELECT client_name FROM invoicekit_missing"))
        cur.close()
    err = translate(exc, store=pg_url, context="read_central")
    assert type(err) is StoreSchemaError and err.missing == ["invoicekit_missing"]
    assert "Query was" not in str(err) and str(err).startswith("read_central: central store postgresql://")


def test_translate_a_locked_sqlite_store_is_transient(tmp_path):
    path = tmp_path / "dev.sqlite"
    write_device_store(path, [device_row(1)])
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    try:
        exc = _raised(lambda: other.execute("SELECT count(*) FROM transactions"), sqlite3.OperationalError)
    finally:
        other.close()
        holder.execute("ROLLBACK")
        holder.close()
    err = translate(exc, store=str(path))
    assert type(err) is StoreUnavailableError and err.transient and err.reason == "locked"
    assert str(err).startswith(f"{path}: database is locked")


def test_read_local_of_a_locked_store_raises_the_transient_error(tmp_path, monkeypatch):
    path = tmp_path / "dev.sqlite"
    write_device_store(path, [device_row(1)])
    monkeypatch.setattr(_sqlite, "BUSY_TIMEOUT_MS", 50)  # do not wait the default 10 s for the lock
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailableError, match="database is locked") as info:
            ik.read_local(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert info.value.transient and info.value.store == str(path)
    assert len(ik.read_local(path)) == 1  # released: the same call now succeeds


def test_translate_sqlite_schema_and_file_errors(tmp_path):
    path = tmp_path / "dev.sqlite"
    write_device_store(path, [device_row(1)])
    conn = sqlite3.connect(path)
    exc = _raised(lambda: conn.execute("SELECT * FROM nope"), sqlite3.OperationalError)
    conn.close()
    err = translate(exc, store=str(path))
    assert type(err) is StoreSchemaError and err.missing == ["nope"] and "offline store schema" in str(err)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database " * 100)
    conn = sqlite3.connect(junk)
    exc = _raised(lambda: conn.execute("SELECT 1 FROM sqlite_master"), sqlite3.DatabaseError)
    conn.close()
    err = translate(exc, store=str(junk))
    assert type(err) is NotAStoreError and err.store == str(junk) and not err.transient


def test_translate_bad_url_duckdb_and_arrow_errors():
    from sqlalchemy.engine import make_url

    err = translate(_raised(lambda: make_url("out/central.sqlite")), store="out/central.sqlite")
    assert type(err) is UsageError and err.reason == "bad_url" and "sqlite:///out/central.sqlite" in str(err)

    import duckdb

    exc = _raised(lambda: duckdb.sql("SELECT 1e30::DECIMAL(12,2)").fetchall(), duckdb.Error)
    assert type(translate(exc, store="")) is UsageError
    err = translate(exc, store="sqlite:///c.sqlite")
    assert type(err) is StoreError and err.reason == "bad_value"

    import pyarrow as pa

    exc = _raised(lambda: pa.array(["12.x"]).cast(pa.int64()), pa.ArrowInvalid)
    err = translate(exc, store="a.sqlite")
    assert type(err) is StoreError and err.reason == "bad_value" and err.store == "a.sqlite"


def test_translate_returns_an_invoicekit_error_unchanged():
    err = UsageError("already typed")
    assert translate(err, store="x") is err


# -- central stores: URLs and schema versions ---------------------------------------------
@pytest.mark.parametrize("value", ["out/central.sqlite", Path("out/central.sqlite")])
def test_a_bare_path_is_not_a_central_url(value):
    with pytest.raises(UsageError) as info:
        CentralStore(value)
    assert str(info.value) == ("central store 'out/central.sqlite' is not a URL; use sqlite:///out/central.sqlite "
                               "or postgresql://user@host/db")
    with pytest.raises(UsageError, match="is not a URL"):
        ik.read_central(value)


def test_unparseable_and_wrong_type_central_values_are_usage_errors():
    with pytest.raises(UsageError, match="not a URL SQLAlchemy can parse"):
        CentralStore("postgresql://u@h:notaport/db")
    with pytest.raises(UsageError, match="got int"):
        CentralStore(5432)
    assert CentralStore("postgres://u@h/db").dialect == "postgresql"  # libpq's spelling works too


def test_read_central_unreachable_is_transient_and_masked():
    with pytest.raises(StoreUnavailableError) as info:
        ik.read_central(UNREACHABLE)
    assert info.value.transient and "s3cr3t" not in str(info.value)


def _pg_central_at(url: str, versions: int) -> None:
    """A central store made by an older invoicekit: only the first ``versions`` migrations."""
    with psycopg.connect(url) as conn:
        conn.execute(ddl.META)
        for version in range(1, versions + 1):
            for stmt in ddl.POSTGRES[version - 1]:
                conn.execute(stmt)
            conn.execute("INSERT INTO invoicekit_schema VALUES (%s, %s)", (version, "2026-01-01T00:00:00+00:00"))


def test_read_central_of_an_older_postgres_schema_says_to_run_db_init(central_pg_url):
    _pg_central_at(central_pg_url, 2)
    with pytest.raises(StoreSchemaError) as info:
        ik.read_central(central_pg_url)
    err = info.value
    assert err.reason == "schema_outdated" and "`invoicekit db init URL`" in str(err)
    assert f"schema version 2, older than the version {SCHEMA_VERSION}" in str(err)
    assert err.missing[0] == "migration 3" and len(err.missing) == SCHEMA_VERSION - 2
    assert ik.init_db(central_pg_url) == SCHEMA_VERSION
    assert len(ik.read_central(central_pg_url)) == 0  # upgraded: it reads


def test_read_central_without_a_schema_table_says_to_run_db_init(central_pg_url):
    with psycopg.connect(central_pg_url) as conn:
        for stmt in ddl.POSTGRES[0]:
            conn.execute(stmt)
    with pytest.raises(StoreSchemaError, match="invoicekit db init") as info:
        ik.read_central(central_pg_url)
    assert info.value.missing == ["invoicekit_schema"]


def test_read_central_of_an_older_sqlite_schema_says_to_run_db_init(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(ddl.META)
    for version in (1, 2):
        for stmt in ddl.SQLITE[version - 1]:
            conn.execute(stmt)
        conn.execute("INSERT INTO invoicekit_schema VALUES (?, ?)", (version, "2026-01-01T00:00:00+00:00"))
    conn.commit()
    conn.close()
    url = f"sqlite:///{path}"
    with pytest.raises(StoreSchemaError, match="schema version 2, older") as info:
        ik.read_central(url)
    assert "invoicekit db init" in str(info.value) and info.value.store == url
    ik.init_db(url)
    assert len(ik.read_central(url)) == 0


# -- wrong arguments: accepted, or a clear UsageError ------------------------------------
@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A SQLite central store holding the sample central set, and copies of the sample devices."""
    base = tmp_path_factory.mktemp("errors")
    url = f"sqlite:///{base / 'central.sqlite'}"
    ik.init_db(url)
    ik.write_central(read_jsonl(SAMPLES / "central.jsonl"), url)
    for name in ("device_a", "device_b"):
        shutil.copy(SAMPLES / f"{name}.sqlite", base / f"{name}.sqlite")
    return {"url": url, "central_path": base / "central.sqlite", "a": base / "device_a.sqlite",
            "b": base / "device_b.sqlite"}


def test_reconcile_loads_store_paths_and_urls(stores):
    want = ik.reconcile(ik.read_local(stores["a"]), ik.read_central(stores["url"])).counts()
    assert sum(want.values()) > 0 and want["conflict"] > 0
    # the store itself is read for the device's ids only: central-only invoices are out of scope
    device = {k: v for k, v in want.items() if k != "central_only"}
    assert ik.reconcile(str(stores["a"]), stores["url"]).counts() == device
    assert ik.reconcile(stores["a"], stores["central_path"]).counts() == device  # a central SQLite file
    assert ik.reconcile(str(stores["a"]), stores["url"], scope="all").counts() == want
    both = ik.reconcile([stores["a"], stores["b"]], stores["url"])
    assert len(both.local) == len(ik.read_local(stores["a"])) + len(ik.read_local(stores["b"]))


def test_reconcile_of_what_cannot_be_loaded_says_what_to_pass(stores, tmp_path):
    with pytest.raises(NotAStoreError, match="no such file"):
        ik.reconcile(tmp_path / "dev.sqlite", stores["url"])
    with pytest.raises(UsageError, match=r"reconcile\(\) takes an InvoiceSet .* as local; got int: .*read_local"):
        ik.reconcile(7, stores["url"])
    local = ik.read_local(stores["a"])
    with pytest.raises(UsageError, match=r"as central; got DataFrame: wrap it with InvoiceSet\(frame\)"):
        ik.reconcile(local, local.invoices)


def test_validate_takes_a_path(stores):
    want = ik.validate(ik.read_local(stores["b"]))
    assert not want.ok
    got = ik.validate(str(stores["b"]))
    pd.testing.assert_frame_equal(got.problems, want.problems)
    with pytest.raises(UsageError, match=r"validate\(\) takes an InvoiceSet"):
        ik.validate({"id": "x"})


def test_integrity_takes_an_invoice_set_or_a_path(stores):
    local = ik.read_local(stores["b"])
    want = ik.tampered(local.invoices)
    assert len(want) == 2
    pd.testing.assert_frame_equal(ik.tampered(local), want)
    pd.testing.assert_frame_equal(ik.tampered(stores["b"]), want)
    pd.testing.assert_series_equal(ik.verify(local), ik.verify(local.invoices))
    pd.testing.assert_series_equal(ik.checksum(str(stores["b"])), ik.checksum(local.invoices))
    with pytest.raises(UsageError, match=r"tampered\(\): invoices lacks column\(s\) .*checksum"):
        ik.tampered(local.invoices.drop(columns=["checksum"]))
    with pytest.raises(UsageError, match=r"verify\(\) takes the invoices DataFrame"):
        ik.verify(None)


def test_resolve_needs_a_reconciliation(stores):
    local = ik.read_local(stores["a"])
    with pytest.raises(UsageError, match=r"resolve\(\) takes a Reconciliation .* got InvoiceSet: reconcile"):
        ik.resolve(local)


def _a_conflicting_field(rec):
    conflicts = set(rec.of("conflict")["id"])
    row = rec.fields[rec.fields["id"].isin(conflicts)].iloc[0]
    return row["id"], row["field"]


def test_decisions_as_tuples(stores):
    rec = ik.reconcile(stores["a"], stores["url"])
    inv, field = _a_conflicting_field(rec)
    now = pd.Timestamp("2026-05-01T12:00:00Z").to_pydatetime()
    undecided = ik.resolve(rec, strategy="three_way", now=now)
    assert ((undecided.unresolved["id"] == inv) & (undecided.unresolved["field"] == field)).any()
    by_tuple = ik.resolve(rec, strategy="three_way", decisions=[(inv, field, "central")], now=now)
    by_frame = ik.resolve(rec, strategy="three_way", now=now,
                          decisions=pd.DataFrame({"id": [inv], "field": [field], "choice": ["central"]}))
    by_dict = ik.resolve(rec, strategy="three_way", decisions=[{"id": inv, "field": field, "choice": "central"}],
                         now=now)
    assert not ((by_tuple.unresolved["id"] == inv) & (by_tuple.unresolved["field"] == field)).any()
    for other in (by_frame, by_dict):
        pd.testing.assert_frame_equal(by_tuple.actions, other.actions)
        pd.testing.assert_frame_equal(by_tuple.unresolved, other.unresolved)


@pytest.mark.parametrize("decisions, message", [
    ([("ID", "FIELD", "theirs")], r"decisions\[0\] \('ID', 'FIELD'\): choice 'theirs' is not one of local"),
    ([("ID", "FIELD", "central"), ("ID", "FIELD")], r"decisions\[1\] is \('ID', 'FIELD'\); expected an \(id"),
    ([("ID", None, "central")], r"decisions\[0\] .*field must be a non-empty string"),
    ([{"id": "ID", "choice": "local"}], r"decisions\[0\] is a mapping without \['field'\]"),
    ("central", r"takes decisions as a DataFrame .* got str"),
    (pd.DataFrame({"id": ["ID"], "choice": ["local"]}), r"decisions lack column\(s\) \['field'\]"),
])
def test_bad_decisions_name_the_row(stores, decisions, message):
    rec = ik.reconcile(stores["a"], stores["url"])
    inv, field = _a_conflicting_field(rec)
    if isinstance(decisions, list):
        decisions = [tuple(inv if v == "ID" else field if v == "FIELD" else v for v in d) if isinstance(d, tuple)
                     else {k: inv if v == "ID" else v for k, v in d.items()} for d in decisions]
        message = message.replace("ID", inv).replace("FIELD", field.replace("[", r"\[").replace("]", r"\]"))
    with pytest.raises(UsageError, match=message):
        ik.resolve(rec, decisions=decisions)


def test_plan_sync_needs_a_resolution(stores):
    rec = ik.reconcile(stores["a"], stores["url"])
    with pytest.raises(UsageError, match=r"plan_sync\(\) takes a Resolution .* got Reconciliation: "
                                         r"resolve it first: .*resolve\(rec, strategy=\.\.\.\)"):
        ik.plan_sync(rec)


@pytest.fixture
def device(stores, tmp_path):
    path = tmp_path / "device_a.sqlite"
    shutil.copy(stores["a"], path)
    central = tmp_path / "central.sqlite"
    shutil.copy(stores["central_path"], central)
    return path, f"sqlite:///{central}", central


def test_apply_sync_checks_every_argument_before_writing(device):
    path, url, central_file = device
    resolution = ik.resolve(ik.reconcile(path, url), strategy="merge_fields")
    plan = ik.plan_sync(resolution)
    assert (plan.ops["kind"] == "push").any()
    before = dump(path), dump(central_file)
    bad = [
        (dict(plan=resolution, local=path, central=url), UsageError, r"got Resolution: .*plan_sync\(resolution\)"),
        (dict(plan=plan, local=url, central=url), UsageError, "local takes the offline store's file path"),
        (dict(plan=plan, local=ik.read_local(path), central=url), UsageError, f"local='{path}'"),
        (dict(plan=plan, local=path.with_name("missing.sqlite"), central=url), NotAStoreError, "no such file"),
        (dict(plan=plan, local=path, central=str(central_file)), UsageError, "is not a URL; use sqlite:///"),
        (dict(plan=plan, local=path, central=ik.read_central(url)), UsageError, "got InvoiceSet"),
    ]
    for kwargs, exc_type, message in bad:
        plan_arg = kwargs.pop("plan")
        with pytest.raises(exc_type, match=message):
            ik.apply_sync(plan_arg, **kwargs)
    assert (dump(path), dump(central_file)) == before  # nothing written by any of them
    assert ik.apply_sync(plan, local=str(path), central=url).results["central"].eq("applied").any()


def test_a_validation_error_without_row_or_id_does_not_print_na():
    import pandas as pd

    from invoicekit.errors import ValidationError

    bare = pd.DataFrame({"source": ["decisions.csv"], "source_row": [pd.NA], "id": [pd.NA],
                         "rule": ["missing_column"], "field": ["choice"], "message": ["no column 'choice'"]})
    text = str(ValidationError(bare))
    assert "<NA>" not in text and "first: decisions.csv: no column 'choice'" in text
    full = bare.assign(source_row=[4], id=["inv-1"])
    assert "first: decisions.csv row 4 id 'inv-1': no column 'choice'" in str(ValidationError(full))
