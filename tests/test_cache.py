"""Issue 11: the Redis cache (invoices, clients, settings) is never stale after a toolkit
write and never changes a result, with Redis up, paused, stopped or full of garbage.

Real Redis (the session's, and a throwaway ``redis-server`` where a test stops one), real
SQLite files, the embedded and the PostgreSQL central store. No mocks.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import time
import uuid
from contextlib import ExitStack

import pandas as pd
import pytest
import redis

import invoicekit as ik
from invoicekit import cache as cache_mod
from invoicekit.cache import Cache

from .conftest import free_port, throwaway_redis


@pytest.fixture
def cache(redis_url):
    c = Cache(redis_url, namespace=f"iktest-{uuid.uuid4().hex}")
    yield c
    c.clear()


@pytest.fixture
def device(tmp_path, samples_dir):
    path = tmp_path / "device_a.sqlite"
    shutil.copy(samples_dir / "device_a.sqlite", path)
    return str(path)


def direct(store, invoice_id):
    return ik.get_invoice(store, invoice_id, cache=False)


def same_set(a: ik.InvoiceSet, b: ik.InvoiceSet) -> None:
    pd.testing.assert_frame_equal(a.invoices.reset_index(drop=True), b.invoices.reset_index(drop=True))
    pd.testing.assert_frame_equal(a.lines.reset_index(drop=True), b.lines.reset_index(drop=True))
    pd.testing.assert_frame_equal(a.problems.reset_index(drop=True), b.problems.reset_index(drop=True))


def live_ids(path, n=3):
    inv = ik.read_local(path, lines=False).invoices
    return inv[inv["deleted_at"].isna()]["id"].head(n).tolist()


# -- read-through ---------------------------------------------------------------------------

def test_hit_and_miss_give_what_loading_the_store_gives(cache, device):
    loaded = ik.read_local(device)
    for invoice_id in loaded.invoices["id"].sample(8, random_state=1):
        miss = ik.get_invoice(device, invoice_id, cache=cache)
        hits_before = cache.stats.hits
        hit = ik.get_invoice(device, invoice_id, cache=cache)
        assert cache.stats.hits == hits_before + 1
        same_set(miss, hit)
        expected = loaded.invoices[loaded.invoices["id"] == invoice_id]
        assert len(hit) == 1
        pd.testing.assert_frame_equal(hit.invoices.reset_index(drop=True), expected.reset_index(drop=True))
        want_lines = loaded.lines[loaded.lines["invoice_id"] == invoice_id].reset_index(drop=True)
        pd.testing.assert_frame_equal(hit.lines.reset_index(drop=True), want_lines)


def test_values_are_arrow_ipc_under_the_design_keys_with_ttls(cache, device, redis_client):
    invoice_id = live_ids(device, 1)[0]
    ik.get_invoice(device, invoice_id, cache=cache)
    key = f"{cache.namespace}:txn:{invoice_id}"
    assert redis_client.type(key) == b"hash"
    (field, value), = [(f, v) for f, v in redis_client.hgetall(key).items() if not f.endswith(b"#n")]
    assert value[:4] == b"IKC1" and b"pickle" not in value and not value.startswith(b"\x80")
    assert 1700 < redis_client.ttl(key) <= 1800
    tax = ik.read_local(device).invoices.set_index("id").loc[invoice_id, "client_tax_id"]
    ik.get_client(device, tax_id=tax, cache=cache)
    (cli_key,) = [k for k in redis_client.keys(f"{cache.namespace}:cli:*") if b"~generation" not in k]
    assert 7100 < redis_client.ttl(cli_key) <= 7200


def test_one_invoice_id_in_two_stores_is_two_entries(cache, device, tmp_path):
    other = tmp_path / "copy.sqlite"
    shutil.copy(device, other)
    invoice_id = live_ids(device, 1)[0]
    ik.get_invoice(device, invoice_id, cache=cache)
    ik.LocalStore(other).update(invoice_id, invoice_number="OTHER-STORE-1")
    assert ik.get_invoice(device, invoice_id, cache=cache).invoices["invoice_number"].iloc[0] != "OTHER-STORE-1"
    assert ik.get_invoice(other, invoice_id, cache=cache).invoices["invoice_number"].iloc[0] == "OTHER-STORE-1"


def test_unknown_id_is_a_typed_error_and_bad_arguments_say_what_works(cache, device):
    with pytest.raises(ik.InvoiceNotFoundError, match="no invoice 'nope'") as info:
        ik.get_invoice(device, "nope", cache=cache)
    assert info.value.invoice_id == "nope" and isinstance(info.value, KeyError)
    with pytest.raises(ik.UsageError, match="file path or URL"):
        ik.get_invoice(ik.read_local(device), "x")
    with pytest.raises(ik.UsageError, match="exactly one of"):
        ik.get_client(device, tax_id="a", email="b")
    with pytest.raises(ik.UsageError, match="namespace"):
        Cache(namespace="has space")
    with pytest.raises(ik.UsageError, match="redis://"):
        Cache("postgresql://x/y")


# -- never stale after a toolkit write ---------------------------------------------------------

def test_local_store_edits_invalidate_the_invoice_and_its_clients(cache, device):
    invoice_id = live_ids(device, 1)[0]
    before = ik.get_invoice(device, invoice_id, cache=cache).invoices.iloc[0]
    tax = before["client_tax_id"]
    old_client = ik.get_client(device, tax_id=tax, cache=cache)
    assert invoice_id in set(old_client.invoices["id"])
    store = ik.LocalStore(device)
    client = json.loads(before["client_data"])
    client["tax_id"] = "ZZ999999999"
    store.update(invoice_id, client=client)
    after = ik.get_invoice(device, invoice_id, cache=cache)
    same_set(after, direct(device, invoice_id))
    assert after.invoices["version"].iloc[0] == before["version"] + 1
    assert invoice_id not in set(ik.get_client(device, tax_id=tax, cache=cache).invoices["id"])
    assert invoice_id in set(ik.get_client(device, tax_id="zz 999-999-999", cache=cache).invoices["id"])
    store.delete(invoice_id)
    assert ik.get_invoice(device, invoice_id, cache=cache).invoices["deleted_at"].notna().iloc[0]


def test_write_local_and_write_central_invalidate_what_they_wrote(cache, device, central):
    loaded = ik.read_local(device)
    ik.write_central(loaded, central)
    ids = live_ids(device, 3)
    for store in (device, central):
        for invoice_id in ids:
            ik.get_invoice(store, invoice_id, cache=cache)
    inv = loaded.invoices.copy()
    edited = inv["id"].isin(ids[:2])
    inv.loc[edited, "invoice_number"] = inv.loc[edited, "invoice_number"] + "-R"
    inv.loc[edited, "version"] = inv.loc[edited, "version"] + 1
    from invoicekit.integrity import checksum

    changed = ik.InvoiceSet(inv, loaded.lines).invoices
    changed = changed.assign(checksum=checksum(ik.InvoiceSet(changed, loaded.lines)))
    new = ik.InvoiceSet(changed, loaded.lines)
    assert ik.write_local(new, device).updated == 2
    assert ik.write_central(new, central).updated == 2
    for store in (device, central):
        for invoice_id in ids:
            got = ik.get_invoice(store, invoice_id, cache=cache)
            same_set(got, direct(store, invoice_id))
        assert ik.get_invoice(store, ids[0], cache=cache).invoices["invoice_number"].iloc[0].endswith("-R")
        assert not ik.get_invoice(store, ids[2], cache=cache).invoices["invoice_number"].iloc[0].endswith("-R")


def test_a_sync_invalidates_both_stores(cache, device, central):
    ids = live_ids(device, 2)
    ik.LocalStore(device).update(ids[0], invoice_number="SYNCED-EDIT")
    for store in (device, central):
        for invoice_id in ids:
            try:
                ik.get_invoice(store, invoice_id, cache=cache)
            except ik.InvoiceNotFoundError:
                pass  # not in central yet: nothing cached
    plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(device), ik.read_central(central)),
                                   strategy="prefer_local"))
    ik.apply_sync(plan, local=device, central=central)
    for store in (device, central):
        got = ik.get_invoice(store, ids[0], cache=cache)
        same_set(got, direct(store, ids[0]))
        assert got.invoices["invoice_number"].iloc[0] == "SYNCED-EDIT"
    assert ik.get_invoice(device, ids[0], cache=cache).invoices["sync_status"].iloc[0] == "synced"


def test_a_fill_that_raced_a_write_is_never_a_hit(cache, device):
    """get -> (store read) -> a write and its invalidation -> put of the old read: the old
    value carries the stamp from before the write, so it never matches again."""
    from invoicekit.lookups import _check

    invoice_id = live_ids(device, 1)[0]
    old = direct(device, invoice_id)
    hit, stamp = cache.get_frames("txn", invoice_id, device, check=lambda t: True)
    assert hit is None and stamp is not None
    ik.LocalStore(device).update(invoice_id, invoice_number="RACED")
    cache.put_frames("txn", invoice_id, device, [old.invoices_table(), ik.InvoiceSet(
        old.invoices).problems.pipe(pa_table)], stamp=stamp)
    hit, _ = cache.get_frames("txn", invoice_id, device, check=_check(lambda t: True))
    assert hit is None
    assert ik.get_invoice(device, invoice_id, cache=cache).invoices["invoice_number"].iloc[0] == "RACED"


def pa_table(frame):
    from invoicekit.schema import PROBLEM_SCHEMA, to_table

    return to_table(frame, PROBLEM_SCHEMA)


# -- Redis misbehaving changes nothing ----------------------------------------------------------

GARBAGE = [b"not json at all", b"\x80\x04\x95pickled?", b"IKC1\x00\x00\x00\x05{bad}", json.dumps({"ik": 1}).encode(),
           b"IKC1" + b"\xff" * 40]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_planted_under_our_keys_is_ignored(cache, device, redis_client, garbage):
    invoice_id = live_ids(device, 1)[0]
    want = direct(device, invoice_id)
    key = f"{cache.namespace}:txn:{invoice_id}"
    ik.get_invoice(device, invoice_id, cache=cache)
    for field in redis_client.hkeys(key):
        redis_client.hset(key, field, garbage)  # the value and the stamp alike
    same_set(ik.get_invoice(device, invoice_id, cache=cache), want)
    redis_client.delete(key)
    redis_client.set(key, garbage)  # another type under our key
    same_set(ik.get_invoice(device, invoice_id, cache=cache), want)
    same_set(ik.get_invoice(device, invoice_id, cache=cache), want)
    assert cache.stats.errors == 0  # garbage is a miss, not an outage
    ik.LocalStore(device).update(invoice_id, invoice_number="AFTER-GARBAGE")
    assert ik.get_invoice(device, invoice_id, cache=cache).invoices["invoice_number"].iloc[0] == "AFTER-GARBAGE"


def test_garbage_in_a_client_generation_or_a_foreign_store_value(cache, device, redis_client, tmp_path):
    tax = ik.read_local(device).invoices["client_tax_id"].dropna().iloc[0]
    want = ik.get_client(device, tax_id=tax, cache=False)
    ik.get_client(device, tax_id=tax, cache=cache)
    for gen in redis_client.keys(f"{cache.namespace}:cli:~generation:*"):
        redis_client.set(gen, b"garbage")
    same_set(ik.get_client(device, tax_id=tax, cache=cache), want)
    ik.LocalStore(device).delete(want.invoices["id"].iloc[0])  # the invalidation repairs the generation
    after = ik.get_client(device, tax_id=tax, cache=cache)
    same_set(after, ik.get_client(device, tax_id=tax, cache=False))
    assert after.invoices["deleted_at"].notna().sum() == want.invoices["deleted_at"].notna().sum() + 1
    # another store's value copied under this store's field is not taken
    other = tmp_path / "other.sqlite"
    shutil.copy(device, other)
    invoice_id = live_ids(device, 1)[0]
    ik.LocalStore(other).update(invoice_id, invoice_number="FOREIGN")
    ik.get_invoice(other, invoice_id, cache=cache)
    key = f"{cache.namespace}:txn:{invoice_id}"
    fields = redis_client.hgetall(key)
    foreign = fields[cache_mod._fingerprint(str(other)).encode()]
    redis_client.hset(key, cache_mod._fingerprint(device), foreign)
    assert ik.get_invoice(device, invoice_id, cache=cache).invoices["invoice_number"].iloc[0] != "FOREIGN"


def test_paused_redis_times_out_to_the_store_and_replays_missed_invalidations(cache, device, redis_url, caplog):
    invoice_id = live_ids(device, 1)[0]
    ik.get_invoice(device, invoice_id, cache=cache)
    admin = redis.Redis.from_url(redis_url)
    other = Cache(redis_url, namespace=cache.namespace)  # another process's view of the same cache
    try:
        caplog.set_level(logging.WARNING, logger="invoicekit.cache")
        admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        t0 = time.monotonic()
        ik.LocalStore(device).update(invoice_id, invoice_number="WHILE-PAUSED")  # its invalidation times out
        same_set(ik.get_invoice(device, invoice_id, cache=cache), direct(device, invoice_id))
        assert time.monotonic() - t0 < 1.4  # one timeout, then Redis is left alone
        assert cache.stats.pending >= 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
    finally:
        time.sleep(1.6)
        admin.close()
    # Redis back: the other process could serve the old entry unless the invalidation is replayed
    cache._down_until = 0.0
    assert ik.get_invoice(device, invoice_id, cache=cache).invoices["invoice_number"].iloc[0] == "WHILE-PAUSED"
    assert cache.stats.pending == 0
    assert other.get_frames("txn", invoice_id, device, check=lambda t: True)[0] is None or \
        ik.get_invoice(device, invoice_id, cache=other).invoices["invoice_number"].iloc[0] == "WHILE-PAUSED"


def test_redis_stopped_mid_run_gives_identical_results(device, caplog):
    loaded = ik.read_local(device)
    ids = loaded.invoices["id"].head(12).tolist()
    want = {i: direct(device, i) for i in ids}
    caplog.set_level(logging.WARNING, logger="invoicekit.cache")
    with ExitStack() as stack:
        url = stack.enter_context(throwaway_redis(free_port()))
        c = Cache(url, namespace="stopped", retry_after=0.0)
        for i in ids[:6]:
            same_set(ik.get_invoice(device, i, cache=c), want[i])
        stack.close()  # the server stops
        for i in ids:
            same_set(ik.get_invoice(device, i, cache=c), want[i])
        s = ik.Settings(device, cache=c)
        s.set("theme", {"dark": True})
        assert s.get("theme") == {"dark": True}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "invoicekit.cache"]
    assert len(warnings) == 1
    assert c.stats.errors >= 1


def test_reader_processes_never_see_an_old_version_after_the_write(cache, device, redis_url, tmp_path):
    """Three processes read one invoice through the shared cache while this one edits it:
    once the edit is written (and its invalidation done), no reader is served the old version.
    Processes, not threads: ADBC's SQLite and Python's are two copies of the library, which
    must not share a file inside one process (see invoicekit.io._sqlite)."""
    import subprocess
    import sys

    invoice_id = live_ids(device, 1)[0]
    ik.get_invoice(device, invoice_id, cache=cache)  # cached before the readers start
    marker = tmp_path / "written"
    readers = [subprocess.Popen([sys.executable, "-m", "tests._cache_reader", device, invoice_id, redis_url,
                                 cache.namespace, str(marker), "30"], stdout=subprocess.PIPE, text=True)
               for _ in range(3)]
    time.sleep(0.5)
    version = ik.LocalStore(device).update(invoice_id, invoice_number="CONCURRENT")
    marker.write_text("done")
    seen = []
    for proc in readers:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        seen += json.loads(out)
    assert seen and set(seen) == {version}


# -- settings -------------------------------------------------------------------------------------

INJECTION = "x'); DROP TABLE transactions; --"


def test_settings_round_trip_json_plain_text_and_flags(cache, device):
    conn = sqlite3.connect(device)
    conn.execute("INSERT OR REPLACE INTO app_settings (key, value, sync_required) VALUES ('plain', 'EUR', 1)")
    conn.commit()
    conn.close()
    s = ik.Settings(device, cache=cache)
    assert s.get("plain") == "EUR" and s.sync_required("plain")
    assert s.get("missing", 7) == 7 and "missing" not in s
    s.set("printer", {"name": "P1", "dpi": 300, "tags": ["a", "ü"]}, sync_required=True)
    assert s.get("printer") == {"name": "P1", "dpi": 300, "tags": ["a", "ü"]} and s.sync_required("printer")
    s.set("printer", {"name": "P2"})  # the flag is kept
    assert s.get("printer") == {"name": "P2"} and s.sync_required("printer")
    s.set(INJECTION, INJECTION)
    assert s.get(INJECTION) == INJECTION
    assert ik.read_local(device, lines=False).invoices.shape[0] > 0
    frame = s.frame()
    assert set(frame["key"]) >= {"plain", "printer", INJECTION}
    assert s.delete("printer") and s.get("printer") is None and not s.delete("printer")
    for bad in (float("nan"), {"x": float("inf")}, object()):
        with pytest.raises(ik.UsageError, match="JSON"):
            s.set("bad", bad)
    with pytest.raises(ik.UsageError):
        s.set("", 1)


def test_settings_cache_is_invalidated_by_set_but_not_fooled_by_garbage(cache, device, redis_client):
    s = ik.Settings(device, cache=cache)
    s.set("rate", 1)
    assert s.get("rate") == 1 and s.get("rate") == 1
    hits = cache.stats.hits
    assert s.get("rate") == 1 and cache.stats.hits == hits + 1
    other = ik.Settings(device, cache=cache)
    other.set("rate", 2)
    assert s.get("rate") == 2
    key = f"{cache.namespace}:set:rate"
    for field in redis_client.hkeys(key):
        if not field.endswith(b"#n"):
            redis_client.hset(key, field, json.dumps({"ik": 1, "value": 99}))
    assert s.get("rate") == 2
