"""Issue 11: settings marked ``sync_required`` reach the central ``settings`` table per
device, three-way, and conflicting edits are reported like invoice conflicts.

Real SQLite device stores written as other software writes them, the embedded and the
PostgreSQL central store. No mocks.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

import invoicekit as ik
from invoicekit.io.central import CentralStore
from invoicekit.sync import SyncEngine

from ._build import device_row, write_device_store

INJECTION = "k'); DELETE FROM settings; --"


def central_settings(url):
    store = CentralStore(url)
    rows = store.fetch("SELECT device, key, value, version FROM settings ORDER BY device, key")
    return {(d, k): (v, n) for d, k, v, n in rows}


def central_edit(url, device, key, value):
    store = CentralStore(url)
    m = store.mark
    store.execute(f"UPDATE settings SET value = {m}, version = version + 1, updated_by = 'admin' "
                  f"WHERE device = {m} AND key = {m}", [(value, device, key)])


def device_store(tmp_path, name, settings):
    path = tmp_path / f"{name}.sqlite"
    write_device_store(path, [device_row(1)])
    conn = sqlite3.connect(path)
    conn.executemany("INSERT INTO app_settings (key, value, sync_required) VALUES (?, ?, ?)", settings)
    conn.commit()
    conn.close()
    return str(path)


def outcomes(result):
    return dict(zip(result.settings["key"], result.settings["outcome"]))


def test_first_sync_inserts_only_flagged_settings_and_a_second_changes_nothing(central, tmp_path):
    path = device_store(tmp_path, "dev", [("currency", "EUR", 1), ("printer", '{"dpi": 300}', 1),
                                          ("local_only", '"x"', 0), (INJECTION, '"y"', 1)])
    first = ik.sync_settings(path, central)
    assert outcomes(first) == {"currency": "inserted", "printer": "inserted", INJECTION: "inserted"}
    device = first.device
    assert central_settings(central) == {(device, "currency"): ("EUR", 1), (device, "printer"): ('{"dpi": 300}', 1),
                                         (device, INJECTION): ('"y"', 1)}
    assert not any(k == "invoicekit_store_id" for _, k in central_settings(central))
    second = ik.sync_settings(path, central)
    assert set(outcomes(second).values()) == {"same"} and second.ok
    assert central_settings(central)[(device, "currency")] == ("EUR", 1)


def test_device_edit_is_pushed_and_central_edit_is_pulled(central, tmp_path, redis_url):
    path = device_store(tmp_path, "dev", [("rate", "1", 1), ("mode", '"a"', 1)])
    device = ik.sync_settings(path, central).device
    cache = ik.Cache(redis_url, namespace=f"iktest-settings-{device[:8]}")
    try:
        settings = ik.Settings(path, cache=cache)
        assert settings.get("mode") == "a"  # now cached
        settings.set("rate", 2)
        central_edit(central, device, "mode", '"b"')
        result = ik.sync_settings(path, central)
        assert outcomes(result) == {"rate": "pushed", "mode": "pulled"}
        assert central_settings(central)[(device, "rate")] == ("2", 2)
        assert settings.get("mode") == "b"  # the pull invalidated the cached value
        assert set(outcomes(ik.sync_settings(path, central)).values()) == {"same"}
    finally:
        cache.clear()


def test_both_sides_changed_is_a_conflict_written_nowhere_until_settled(central, tmp_path):
    path = device_store(tmp_path, "dev", [("theme", '"light"', 1)])
    device = ik.sync_settings(path, central).device
    ik.Settings(path, cache=False).set("theme", "dark")
    central_edit(central, device, "theme", '"blue"')
    result = ik.sync_settings(path, central)
    assert not result.ok and result.conflicts["key"].tolist() == ["theme"]
    assert json.loads(result.conflicts["local_value"].iloc[0]) == "dark"
    assert central_settings(central)[(device, "theme")] == ('"blue"', 2)
    assert ik.Settings(path, cache=False).get("theme") == "dark"
    assert not ik.sync_settings(path, central).ok  # still reported, still nothing written
    settled = ik.sync_settings(path, central, prefer="local")
    assert outcomes(settled) == {"theme": "pushed"}
    assert central_settings(central)[(device, "theme")] == ('"dark"', 3)
    assert ik.sync_settings(path, central).ok
    with pytest.raises(ik.UsageError, match="prefer"):
        ik.sync_settings(path, central, prefer="newest")


def test_two_devices_keep_their_own_rows_and_json_compares_by_value(central, tmp_path):
    a = device_store(tmp_path, "a", [("printer", '{"dpi": 300, "name": "P"}', 1)])
    b = device_store(tmp_path, "b", [("printer", '{"name":"Q"}', 1)])
    da, db = ik.sync_settings(a, central).device, ik.sync_settings(b, central).device
    assert da != db
    rows = central_settings(central)
    assert json.loads(rows[(da, "printer")][0])["name"] == "P" and json.loads(rows[(db, "printer")][0]) == {"name": "Q"}
    conn = sqlite3.connect(a)  # the device rewrites the same value with other spacing and key order
    conn.execute("UPDATE app_settings SET value = ? WHERE key = 'printer'", ('{ "name": "P", "dpi": 300 }',))
    conn.commit()
    conn.close()
    assert outcomes(ik.sync_settings(a, central)) == {"printer": "same"}


def test_the_engine_syncs_settings_after_the_queue(central, tmp_path):
    path = device_store(tmp_path, "dev", [("currency", '"EUR"', 1)])
    store = ik.LocalStore(path)
    store.create(invoice_number="S-1", client={"name": "A"}, line_items=[{"description": "x", "quantity": 1,
                                                                         "unit_price": 2}], currency="EUR")
    result = SyncEngine(path, central).drain()
    assert result.ok and result.settings is not None
    assert outcomes(result.settings) == {"currency": "inserted"}
    assert (result.settings.device, "currency") in central_settings(central)
