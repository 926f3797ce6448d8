"""SQL-injection text (issue 11) in every text field of an invoice and in every name argument:
stored and read back literally on every store and path (LocalStore, the sync engine,
write_central on PostgreSQL and SQLite, the cache, settings, filters), nothing executed;
names of columns and fields come from allow-lists and anything else is a UsageError."""

from __future__ import annotations

import json
import sqlite3
import uuid

import pandas as pd
import psycopg
import pytest

import invoicekit as ik
from invoicekit.errors import UsageError
from invoicekit.security import encrypt, generate_key
from invoicekit.sync import SyncEngine

EVIL = [
    "x'); DROP TABLE invoices; --",
    "Robert'); DROP TABLE transactions;--",
    "' OR '1'='1",
    '" OR ""="',
    "1; SELECT pg_sleep(30); --",
    "$1 $2 %s %(id)s ? :name {0}",
    "\\'; DELETE FROM sync_queue; --",
    "'; UPDATE app_settings SET value = 'pwned'; --",
    "ä'--\u2028\t",
]


def _tables_pg(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def _tables_sqlite(path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def _device(path) -> list[str]:
    store = ik.LocalStore(path)
    ids = []
    for n, text in enumerate(EVIL):
        ids.append(store.create(
            invoice_id=f"{text}#{n}", invoice_number=text, currency="EUR",
            client={"name": text, "email": text, "address": text, "tax_id": text},
            line_items=[{"description": text, "quantity": 1, "unit_price": "1.00"},
                        {"description": text[::-1], "quantity": 2, "unit_price": "0.50"}]))
    store.update(ids[0], client={"address": EVIL[1]})
    store.delete(ids[1])
    return ids


def _literal(s: ik.InvoiceSet, ids: list[str]) -> None:
    inv = s.invoices.set_index("id")
    assert sorted(inv.index) == sorted(ids)
    for n, text in enumerate(EVIL):
        row = inv.loc[f"{text}#{n}"]
        assert row["invoice_number"] == text and row["client_name"] == text and row["client_email"] == text
        assert row["client_tax_id"] == text
        assert row["client_address"] == (EVIL[1] if n == 0 else text)
        lines = s.lines[s.lines["invoice_id"] == f"{text}#{n}"].sort_values("line_no")
        assert lines["description"].tolist() == [text, text[::-1]]
        assert json.loads(row["client_data"])["name"] == text


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_evil_text_survives_device_engine_and_central_literally(central_pg_url, tmp_path, monkeypatch, encrypted):
    monkeypatch.delenv("INVOICEKIT_KEY_FILE", raising=False)
    if encrypted:
        monkeypatch.setenv("INVOICEKIT_KEYS", generate_key())
    else:
        monkeypatch.delenv("INVOICEKIT_KEYS", raising=False)
    ik.init_db(central_pg_url)
    path = tmp_path / "device.sqlite"
    ids = _device(path)
    tables_local, tables_pg = _tables_sqlite(path), _tables_pg(central_pg_url)
    result = SyncEngine(path, central_pg_url, batch_size=4).drain()
    assert result.ok and set(result.results["outcome"]) == {"synced"}
    local, central = ik.read_local(path), ik.read_central(central_pg_url)
    _literal(local, ids)
    _literal(central, ids)
    assert local.invoices.set_index("id").loc[ids[1], "deleted_at"] is not pd.NaT
    assert _tables_sqlite(path) == tables_local and _tables_pg(central_pg_url) == tables_pg
    # filters bind the text as a value: each finds exactly its own invoice
    for n, text in enumerate(EVIL):
        hit = ik.read_central(central_pg_url, where={"invoice_number": text})
        assert hit.invoices["id"].tolist() == [f"{text}#{n}"]
        assert ik.get_invoice(central_pg_url, f"{text}#{n}", cache=False).invoices["invoice_number"].tolist() == [text]
        assert ik.get_invoice(path, f"{text}#{n}", cache=False).invoices["client_name"].tolist() == [text]
    # the same set through the embedded central store and write_central, twice
    url = f"sqlite:///{tmp_path / 'central.sqlite'}"
    ik.init_db(url)
    assert ik.write_central(central, url).inserted == len(EVIL)
    assert ik.write_central(central, url).unchanged == len(EVIL)
    _literal(ik.read_central(url), ids)
    assert {"invoices", "invoice_lines"} <= _tables_sqlite(tmp_path / "central.sqlite")


def test_evil_names_in_name_arguments_are_refused_or_taken_literally(tmp_path, redis_url):
    path = tmp_path / "device.sqlite"
    ids = _device(path)
    before = _tables_sqlite(path)
    s = ik.read_local(path)
    central = _central(tmp_path)
    for text in EVIL:
        with pytest.raises(UsageError, match="cannot filter on"):
            ik.read_central(central, where={text: 1})
        with pytest.raises(UsageError, match="cannot encrypt"):
            encrypt(s, keys=[generate_key()], fields=[text])
    # setting names and values are data
    settings = ik.Settings(path, cache=False)
    for text in EVIL:
        settings.set(text, {"v": text}, sync_required=True)
    assert all(ik.Settings(path, cache=False).get(text) == {"v": text} for text in EVIL)
    # cache keys made of evil ids and a namespace of evil text stay keys
    for text in EVIL:
        with pytest.raises(UsageError, match="namespace must be"):
            ik.Cache(redis_url, namespace=text)
    cache = ik.Cache(redis_url, namespace=f"iktest-{uuid.uuid4().hex}")
    for n, text in enumerate(EVIL):
        got = ik.get_invoice(path, f"{text}#{n}", cache=cache)
        again = ik.get_invoice(path, f"{text}#{n}", cache=cache)
        assert got.invoices["invoice_number"].tolist() == again.invoices["invoice_number"].tolist() == [text]
    assert _tables_sqlite(path) == before
    _literal(ik.read_local(path), ids)
    cache.clear()


def _central(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    ik.init_db(url)
    return url
