"""Values the central store cannot hold (issue 8, "one poisoned operation blocks the whole queue").

``LocalStore`` refuses them; a queued one written by other software is quarantined by the
``SyncEngine`` while the good operations before and after it sync (against a real PostgreSQL).
"""

import json
import sqlite3

import pandas as pd
import pytest

import invoicekit as ik
from invoicekit.device import LocalStore
from invoicekit.sync import SyncEngine
from tests._build import device_checksum, dump


def items(q, p="10.00", d="Work"):
    return [{"description": d, "quantity": q, "unit_price": p}]


def _items_text(q, p, d="Work"):
    return json.dumps([{"description": d, "quantity": q, "unit_price": p}])


#: name -> payload fields replaced in an otherwise good ``insert``, as other software queues it
QUEUED_POISONS = {
    "nul_invoice_number": dict(invoice_number="INV\x00-9"),
    "nul_client_escape": dict(client_data=json.dumps({"name": "A\x00B"})),  # jsonb refuses "\u0000"
    "nul_description": dict(line_items=_items_text(1, 25.0, "a\x00b")),
    "nul_currency": dict(currency="EU\x00R"),
    "total_overflow": dict(total_amount=1e13, line_items=_items_text(1, 1e13)),
    "total_50_digits": dict(total_amount="1" + "0" * 50),
    "unit_price_overflow": dict(line_items=_items_text(1, 1e10), total_amount=1e10),
    "quantity_overflow": dict(line_items=_items_text(1e9, 1.0), total_amount=1e9),
    "line_total_overflow": dict(line_items=_items_text(999999999, 9999999999.99), total_amount=9999999999.99),
    "year_0": dict(created_at="0000-01-01T00:00:00"),
    "year_10000": dict(created_at="10000-01-01T00:00:00", modified_at="10000-01-01T00:00:00"),
    "date_zero": dict(created_at="0000-00-00 00:00:00"),
    "version_2_31": dict(version=2**31),
    # JSON that DuckDB reads and jsonb refuses: this one made every drain raise
    "client_nan": dict(client_data='{"name": "A", "x": NaN}'),
    "client_trailing_comma": dict(client_data='{"name": "A",}'),
    "client_number_beyond_numeric": dict(client_data='{"name": "A", "x": 1e131072}'),
}


def poisoned_payload(invoice_id: str, **over) -> dict:
    payload = {
        "id": invoice_id, "invoice_number": "INV-P", "client_data": json.dumps({"name": "Poisoned"}),
        "line_items": _items_text(1, 25.0), "total_amount": 25.0, "created_at": "2026-03-01T10:00:00",
        "modified_at": "2026-03-01T10:00:00", "version": 1, "currency": "EUR", "deleted_at": None,
    }
    payload.update(over)
    payload["checksum"] = device_checksum(payload)  # a genuine checksum: only the values are wrong
    return payload


def queue_poison(path, payload: dict) -> None:
    """Store the row and queue its insert as other software would (no op id, no status)."""
    conn = sqlite3.connect(path)
    cols = ["id", "invoice_number", "client_data", "line_items", "total_amount", "created_at", "modified_at",
            "checksum", "version", "currency"]
    conn.execute(f"INSERT INTO transactions ({', '.join(cols)}, sync_status) VALUES "
                 f"({', '.join('?' * len(cols))}, 'pending')", [payload[c] for c in cols])
    conn.execute("INSERT INTO sync_queue (transaction_id, operation, payload, retry_count, created_at) "
                 "VALUES (?, 'insert', ?, 0, ?)", (payload["id"], json.dumps(payload), payload["modified_at"]))
    conn.commit()
    conn.close()


def sqlite_rows(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def good_ops_around(path, poisons: dict[str, dict]) -> tuple[list[str], list[str]]:
    """Good edits, then each poisoned insert, then more good edits: (good ids, poisoned ids)."""
    store = LocalStore(path)
    new = lambda n: store.create(invoice_number=f"INV-{n}", client={"name": f"C{n}"}, currency="EUR",  # noqa: E731
                                 line_items=items(n))
    good = [new(1), new(2)]
    poisoned = []
    for n, over in enumerate(poisons.values()):
        pid = f"poison-{n:03d}"
        queue_poison(path, poisoned_payload(pid, **over))
        poisoned.append(pid)
        good.append(new(10 + n))
    store.update(good[0], line_items=items(7, "3.50"))
    store.update(good[-1], invoice_number="INV-last")
    return good, poisoned


def assert_quarantined_and_rest_synced(path, url, result, good, poisoned):
    res = result.results
    assert set(res.loc[res["invoice_id"].isin(good), "outcome"]) == {"synced"}
    bad = res[res["invoice_id"].isin(poisoned)]
    assert len(bad) == len(poisoned) and set(bad["outcome"]) == {"quarantined"}
    assert bad["error"].str.startswith("payload fails validation: ").all()  # caught by a rule, not by luck
    central = ik.read_central(url)
    assert set(central.invoices["id"]) == set(good)
    local = ik.read_local(path)
    status = dict(zip(local.invoices["id"], local.invoices["sync_status"]))
    assert {status[i] for i in good} == {"synced"} and {status[i] for i in poisoned} == {"error"}
    assert sqlite_rows(path, "SELECT count(*) FROM sync_queue") == [(0,)]
    held = dict(sqlite_rows(path, "SELECT invoice_id, reason FROM invoicekit_quarantine"))
    assert set(held) == set(poisoned) and all(held.values())
    assert set(ik.reconcile(local, central).status.set_index("id").loc[good, "status"]) == {"same"}
    assert ik.read_central(url).invoices.set_index("id").loc[good[0], "version"] == 2


@pytest.mark.parametrize("name", sorted(QUEUED_POISONS))
def test_a_poisoned_queued_operation_is_quarantined_and_the_rest_syncs(central_pg_url, tmp_path, name):
    ik.init_db(central_pg_url)
    path = tmp_path / "d.sqlite"
    good, poisoned = good_ops_around(path, {name: QUEUED_POISONS[name]})
    result = SyncEngine(path, central_pg_url).drain()  # never raises
    assert_quarantined_and_rest_synced(path, central_pg_url, result, good, poisoned)
    again = SyncEngine(path, central_pg_url).drain()  # nothing left that could block a later drain
    assert again.results.empty or again.ok


def test_every_poison_in_one_queue_across_batches(central_pg_url, tmp_path):
    ik.init_db(central_pg_url)
    path = tmp_path / "d.sqlite"
    good, poisoned = good_ops_around(path, QUEUED_POISONS)
    result = SyncEngine(path, central_pg_url, batch_size=3).drain()
    assert_quarantined_and_rest_synced(path, central_pg_url, result, good, poisoned)


# -- LocalStore refuses them, leaving the store as it was ------------------------------------------
OK = dict(invoice_number="INV-1", client={"name": "Ada"}, currency="EUR", line_items=items(2, "10.50"))

#: name -> (create arguments replaced, (field, rule) refused)
REFUSED = {
    "nul_invoice_number": (dict(invoice_number="INV\x00"), ("invoice_number", "nul_character")),
    "nul_client": (dict(client={"name": "Ada\x00"}), ("client_data", "nul_character")),
    "nul_currency": (dict(currency="EU\x00R"), ("currency", "nul_character")),
    "nul_id": (dict(invoice_id="id-\x00"), ("id", "nul_character")),
    "nul_description": (dict(line_items=items(1, "1.00", "a\x00b")), ("line_items[1].description", "nul_character")),
    "unit_price_overflow": (dict(line_items=items(1, "10000000000")), ("line_items[1].unit_price", "out_of_range")),
    "unit_price_1e400": (dict(line_items=items(1, "1e400")), ("line_items[1].unit_price", "out_of_range")),
    "quantity_overflow": (dict(line_items=items("1000000000", "1")), ("line_items[1].quantity", "out_of_range")),
    "line_total_overflow": (dict(line_items=items("1.001", "9999999999.99")),
                            ("line_items[1].line_total", "out_of_range")),
    "total_overflow": (dict(line_items=items(1, "9999999999.99") * 2), ("total", "out_of_range")),
    "year_0": (dict(created_at="0000-01-01T00:00:00"), ("created_at", "bad_timestamp")),
    "after_9999_in_utc": (dict(created_at="9999-12-31T23:59:59-05:00"), ("created_at", "bad_timestamp")),
    "not_a_timestamp": (dict(created_at="yesterday"), ("created_at", "bad_timestamp")),
    "client_nan": (dict(client={"name": "Ada", "tax_id": float("nan")}), ("client_data", "unparseable_json")),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_local_store_refuses_what_the_central_store_cannot_hold(tmp_path, name):
    over, (field, rule) = REFUSED[name]
    store = LocalStore(tmp_path / "d.sqlite")
    kept = store.create(**OK)
    before = dump(store.path)
    with pytest.raises(ik.ValidationError) as info:
        store.create(**{**OK, **over})
    err = info.value
    assert (field, rule) in set(zip(err.problems["field"], err.problems["rule"]))
    assert err.reason == rule and field in str(err) and rule in str(err)
    assert dump(store.path) == before  # no row, no queue entry
    update = {k: v for k, v in over.items() if k in ("invoice_number", "client", "currency", "line_items")}
    if update:  # the same value in an update is refused the same way
        with pytest.raises(ik.ValidationError, match=rule):
            store.update(kept, **update)
        assert dump(store.path) == before


def test_local_store_refuses_a_version_past_the_central_integer(tmp_path):
    store = LocalStore(tmp_path / "d.sqlite")
    inv = store.create(**OK)
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE transactions SET version = ? WHERE id = ?", (2**31 - 1, inv))  # other software's doing
    conn.commit()
    conn.close()
    before = dump(store.path)
    for change in (lambda: store.update(inv, invoice_number="INV-2"), lambda: store.delete(inv)):
        with pytest.raises(ik.ValidationError, match="bad_version") as info:
            change()
        assert list(info.value.problems["field"]) == ["version"]
        assert dump(store.path) == before


def test_local_store_bad_numbers_are_typed_errors(tmp_path):
    store = LocalStore(tmp_path / "d.sqlite")
    for q in ("NaN", float("inf"), "twelve", "1.0001"):
        with pytest.raises(ik.UsageError) as info:
            store.create(**{**OK, "line_items": items(q)})
        assert info.value.reason == "not_numeric"
    assert store.queue().empty


def test_largest_values_are_stored_synced_and_read_back_exactly(central_pg_url, tmp_path):
    ik.init_db(central_pg_url)
    store = LocalStore(tmp_path / "d.sqlite")
    a = store.create(**{**OK, "line_items": items(1, "9999999999.99"), "created_at": "9999-12-31T23:59:59.999999"})
    b = store.create(**{**OK, "line_items": items("999999999.999", "10.00"), "created_at": "0001-01-01T00:00:00"})
    c = store.create(**{**OK, "client": {"name": "C:\\u0000 is text"}, "line_items": items(1, "1.00", "say \\u0000")})
    result = SyncEngine(store.path, central_pg_url).drain()
    assert result.ok and len(result.results) == 3
    central = ik.read_central(central_pg_url)
    inv = central.invoices.set_index("id")
    assert str(inv.loc[a, "total"]) == str(inv.loc[b, "total"]) == "9999999999.99"
    assert inv.loc[a, "created_at"] == pd.Timestamp("9999-12-31T23:59:59.999999", tz="UTC")
    assert inv.loc[b, "created_at"] == pd.Timestamp("0001-01-01T00:00:00", tz="UTC")
    assert inv.loc[c, "client_name"] == "C:\\u0000 is text"
    assert str(central.lines.set_index("invoice_id").loc[b, "quantity"]) == "999999999.999"
    assert set(ik.reconcile(ik.read_local(store.path), central).status["status"]) == {"same"}
