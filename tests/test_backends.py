"""The central store's seam: one backend class per dialect behind one interface, and no
dialect tests anywhere else in the package."""

from __future__ import annotations

import inspect
import pickle
import re
from pathlib import Path

import pytest

import invoicekit as ik
from invoicekit.errors import UsageError
from invoicekit.io import backends
from invoicekit.io.backends import SCHEMA_VERSION, CentralStore, PostgresStore, SqliteStore
from invoicekit.samples import make_invoices

PACKAGE = Path(ik.__file__).resolve().parent
SEAM = PACKAGE / "io" / "backends"

#: what the rest of the package asks a store for (the interface, declared once)
INTERFACE = {"migrate", "schema_state", "has_table", "param", "read", "write", "apply_batch", "push_workers",
             "probe_hard_delete", "ping", "fetch", "execute", "_configure", "enable_tokens", "tokens_enabled",
             "identify", "snapshot_state"}


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request, tmp_path) -> CentralStore:
    url = (request.getfixturevalue("central_pg_url") if request.param == "postgresql"
           else f"sqlite:///{tmp_path / 'central.sqlite'}")
    return CentralStore(url)


def test_the_interface_is_abstract_and_every_backend_implements_all_of_it():
    assert CentralStore.__abstractmethods__ == INTERFACE
    with pytest.raises(TypeError, match="abstract"):
        object.__new__(CentralStore)  # the interface alone is no store
    assert backends.backends() == {"postgresql": PostgresStore, "sqlite": SqliteStore}
    for cls in (PostgresStore, SqliteStore):
        assert not cls.__abstractmethods__, f"{cls.__name__} leaves {sorted(cls.__abstractmethods__)} abstract"
        for name in INTERFACE:  # implemented in the backend's own class, with the interface's signature
            assert name in cls.__dict__, f"{cls.__name__}.{name} is inherited, not implemented"
            assert (list(inspect.signature(getattr(cls, name)).parameters)
                    == list(inspect.signature(getattr(CentralStore, name)).parameters)), f"{cls.__name__}.{name}"
        assert len(cls.migrations) == SCHEMA_VERSION
        assert isinstance(cls.rows_as_text, bool) and cls.client_name_sql


def test_a_backend_missing_a_method_stays_abstract():
    methods = {name: SqliteStore.__dict__[name] for name in INTERFACE - {"apply_batch"}}
    partial = type("Partial", (CentralStore,), methods)
    assert partial.__abstractmethods__ == {"apply_batch"}


def test_a_backend_with_other_migrations_is_refused_when_declared():
    with pytest.raises(TypeError, match="numbers its migrations alike"):
        type("Odd", (SqliteStore,), {"dialect": "odd", "migrations": SqliteStore.migrations[:-1]})
    assert "odd" not in backends.backends()


def test_the_url_chooses_the_backend(tmp_path):
    pg = CentralStore("postgres://u:secret@h:5433/db")
    assert type(pg) is PostgresStore and pg.dialect == "postgresql"
    assert pg.libpq == "postgresql://u:secret@h:5433/db" and "secret" not in pg.display
    lite = CentralStore(f"sqlite:///{tmp_path / 'c.sqlite'}")
    assert type(lite) is SqliteStore and lite.path == str(tmp_path / "c.sqlite")
    assert type(CentralStore(lite)) is SqliteStore and CentralStore(pg).libpq == pg.libpq
    assert type(PostgresStore("postgresql://u@h/db")) is PostgresStore
    with pytest.raises(UsageError, match="PostgresStore takes a postgresql URL"):
        PostgresStore(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with pytest.raises(UsageError, match="dialect 'mysql' is not supported"):
        CentralStore("mysql://u@h/db")
    with pytest.raises(UsageError, match="must be a file"):
        CentralStore("sqlite://")


def test_a_store_pickles_as_its_backend():
    store = CentralStore("postgresql://u:pw@h/db")
    store.application_name = "invoicekit-sync"
    back = pickle.loads(pickle.dumps(store))
    assert type(back) is PostgresStore and back.libpq == store.libpq and back.application_name == "invoicekit-sync"


def test_what_differs_is_asked_of_the_backend(tmp_path):
    pg, lite = CentralStore("postgresql://u@h/db"), CentralStore(f"sqlite:///{tmp_path / 'c.sqlite'}")
    assert (pg.rows_as_text, lite.rows_as_text) == (False, True)
    assert (pg.push_workers(4, 3), pg.push_workers(4, 0), lite.push_workers(4, 3)) == (3, 1, 1)
    where = {"currency": ["EUR", "USD"], "client_name": "Acme", "version": []}
    assert pg.where_sql(where) == (" WHERE currency IN ($1, $2) AND client_data->>'name' IN ($3) AND FALSE",
                                   ["EUR", "USD", "Acme"])
    assert lite.where_sql(where) == (" WHERE currency IN (?, ?) AND json_extract(client_data_text, '$.name') "
                                     "IN (?) AND 0", ["EUR", "USD", "Acme"])


def test_every_backend_creates_checks_and_refuses_a_hard_delete(store):
    assert store.schema_state() == (False, None)
    assert store.migrate() == SCHEMA_VERSION
    assert store.schema_state() == (True, SCHEMA_VERSION)
    assert store.has_table("invoicekit_ledger") and not store.has_table("no_such_table")
    store.require_schema()
    store.require_ledger()
    ik.write_central(make_invoices(2, seed=3), store)
    invoice_id = ik.read_central(store).invoices["id"].iloc[0]
    with pytest.raises(Exception, match="never deleted"):
        store.probe_hard_delete(invoice_id)
    assert len(ik.read_central(store, where={"id": invoice_id})) == 1


# -- no dialect tests outside the seam ----------------------------------------------------------
# a comparison with a dialect, a backend name looked up by hand, or a type test of a backend
DIALECT_TEST = re.compile(
    r"dialect\s*(?:[!=]=|(?:not\s+)?in\b)"
    r"|[!=]=\s*[\"'](?:postgresql|sqlite)[\"']"
    r"|get_backend_name\(\)"
    r"|isinstance\([^)]*\b(?:PostgresStore|SqliteStore)\b"
)


def dialect_tests(text: str) -> list[str]:
    """The lines of ``text`` that test a store's dialect."""
    return [line.strip() for line in text.splitlines() if DIALECT_TEST.search(line)]


def test_the_source_check_finds_what_it_looks_for():
    planted = """
        if store.dialect == "postgresql":
        text=self.central.dialect != 'sqlite'
        pg = url.get_backend_name()
        if isinstance(store, SqliteStore):
        kind = "postgresql" if store.dialect in ("postgresql",) else "x"
    """
    assert len(dialect_tests(planted)) == 5
    assert dialect_tests("store = CentralStore(url)\nrows = store.central_rows(s)\n") == []


def test_no_dialect_test_outside_the_backends():
    files = [p for p in PACKAGE.rglob("*.py") if SEAM not in p.parents]
    assert len(files) > 20 and PACKAGE / "io" / "central.py" in files
    found = {str(p.relative_to(PACKAGE)): hits for p in files if (hits := dialect_tests(p.read_text("utf-8")))}
    assert found == {}, f"dialect tests outside invoicekit/io/backends/: {found}"
