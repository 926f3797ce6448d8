"""Encryption at rest (issue 11): with keys configured every writer stores the client JSON
encrypted (write_central, write_local, apply_sync, LocalStore and its queue, the sync
engine) and every reader decrypts it; compare-and-set still recognises the same content
although Fernet tokens are random; a full device sync logged at DEBUG shows no key and no
plaintext of an encrypted field."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3

import pandas as pd
import psycopg
import pytest

import invoicekit as ik
from invoicekit.errors import KeyConfigError
from invoicekit.integrity import verify
from invoicekit.samples import make_invoices
from invoicekit.security import generate_key
from invoicekit.sync import SyncEngine

ENVELOPE = '{"encrypted":"fernet:'
KEY, OTHER = generate_key(), generate_key()
CLIENT_TEXT = ("client_email", "client_address", "client_tax_id")


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.delenv("INVOICEKIT_KEY_FILE", raising=False)
    monkeypatch.setenv("INVOICEKIT_KEYS", KEY)
    return monkeypatch


@pytest.fixture(scope="module")
def small():
    return make_invoices(120, clients=30, seed=11)


def _central_client_texts(url: str) -> list[str]:
    if url.startswith("postgresql"):
        with psycopg.connect(url) as conn:
            return [r[0] for r in conn.execute("SELECT client_data_text FROM invoices")]
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        return [r[0] for r in conn.execute("SELECT client_data_text FROM invoices")]
    finally:
        conn.close()


def _local_texts(path, sql: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute(sql)]
    finally:
        conn.close()


def _same_frames(got: pd.DataFrame, want: pd.DataFrame) -> None:
    cols = [c for c in want.columns if c not in ("source", "source_row")]
    pd.testing.assert_frame_equal(got.sort_values("id")[cols].reset_index(drop=True),
                                  want.sort_values("id")[cols].reset_index(drop=True))


def test_write_central_stores_encrypted_and_rewrites_are_unchanged(central, small, keys):
    ik.init_db(central)
    first = ik.write_central(small, central)
    assert first.inserted == len(small)
    stored = _central_client_texts(central)
    assert len(stored) == len(small) and all(t.startswith(ENVELOPE) for t in stored)
    for value in small.invoices["client_email"].dropna().unique():
        assert not any(value in t for t in stored)
    back = ik.read_central(central)
    _same_frames(back.invoices, small.invoices)
    assert verify(back).all()
    # the same set again: new random tokens, but the same plaintext: nothing written
    again = ik.write_central(small, central)
    assert again.unchanged == len(small) and again.written == 0
    assert _central_client_texts(central) == stored
    # without keys the same plaintext is still recognised (checksums are the plaintext's)
    keys.delenv("INVOICEKIT_KEYS")
    assert ik.write_central(small, central).unchanged == len(small)
    assert _central_client_texts(central) == stored
    # other content at the same version is still refused, encrypted or not
    keys.setenv("INVOICEKIT_KEYS", KEY)
    other = small.invoices.copy()
    other.loc[0, "client_email"] = "changed@example.org"
    client = json.loads(other.loc[0, "client_data"])
    other.loc[0, "client_data"] = json.dumps({**client, "email": "changed@example.org"})
    other["checksum"] = ik.checksum(other)
    refused = ik.write_central(small.with_invoices(other), central)
    assert refused.count("refused") == 1 and refused.refused["reason"].tolist() == ["same_version_other_content"]
    # a newer version is written, encrypted
    other.loc[0, "version"] += 1
    newer = ik.write_central(small.with_invoices(other), central)
    assert newer.updated == 1
    assert all(t.startswith(ENVELOPE) for t in _central_client_texts(central))
    assert ik.read_central(central, where={"id": other.loc[0, "id"]}).invoices["client_email"].tolist() == [
        "changed@example.org"]


def test_write_local_stores_encrypted_rows_and_snapshots(tmp_path, small, keys):
    path = tmp_path / "dev.sqlite"
    status = small.invoices["sync_status"]
    synced = small.invoices.assign(sync_status=pd.Series("synced", index=status.index, dtype=status.dtype))
    s = small.with_invoices(synced)
    assert ik.write_local(s, path).inserted == len(small)
    rows = _local_texts(path, "SELECT client_data FROM transactions")
    base = _local_texts(path, "SELECT client_data FROM invoicekit_base")
    assert len(base) == len(small) and all(t.startswith(ENVELOPE) for t in rows + base)
    _same_frames(ik.read_local(path).invoices, s.invoices)
    again = ik.write_local(s, path)
    assert again.unchanged == len(small) and again.written == 0
    assert _local_texts(path, "SELECT client_data FROM transactions") == rows
    # without a key the store still loads (client name readable, the rest sealed) and says nothing
    keys.delenv("INVOICEKIT_KEYS")
    sealed = ik.read_local(path).invoices
    assert sealed["client_email"].isna().all() and sealed["client_name"].tolist() == synced["client_name"].tolist()


def _device(path):
    store = ik.LocalStore(path)
    ids = []
    for n in range(6):
        ids.append(store.create(invoice_number=f"INV-{n}", currency="EUR",
                                client={"name": f"Client {n}", "email": f"secret{n}@example.org",
                                        "address": f"Hidden street {n}", "tax_id": f"DE99900{n}"},
                                line_items=[{"description": "Work", "quantity": 2, "unit_price": "10.50"}]))
    store.update(ids[1], client={"email": "moved1@example.org"})
    store.delete(ids[2])
    return store, ids


def test_local_store_encrypts_rows_and_queue_and_the_engine_syncs_them(central_pg_url, tmp_path, keys, caplog):
    path = tmp_path / "device.sqlite"
    ik.init_db(central_pg_url)
    with caplog.at_level(logging.DEBUG):
        store, ids = _device(path)
        assert store.get(ids[1])["client_data"].startswith('{"name": "Client 1"')  # read decrypted
        assert json.loads(store.get(ids[1])["client_data"])["address"] == "Hidden street 1"  # the update merged
        stored = _local_texts(path, "SELECT client_data FROM transactions")
        payloads = _local_texts(path, "SELECT payload FROM sync_queue")
        assert all(t.startswith(ENVELOPE) for t in stored) and len(payloads) == 8
        for text in stored + payloads:
            assert "secret" not in text and "Hidden" not in text and "DE999" not in text
        result = SyncEngine(path, central_pg_url).drain()
        assert result.ok and (result.results["outcome"] == "synced").sum() == 8
        again = SyncEngine(path, central_pg_url).drain()
        assert len(again.results) == 0
        central_texts = _central_client_texts(central_pg_url)
        assert len(central_texts) == 6 and all(t.startswith(ENVELOPE) for t in central_texts)
        local, cen = ik.read_local(path), ik.read_central(central_pg_url)
        _same_frames(cen.invoices.drop(columns=["sync_status"]), local.invoices.drop(columns=["sync_status"]))
        assert set(cen.invoices["client_email"]) == {f"secret{n}@example.org" for n in (0, 2, 3, 4, 5)} | {
            "moved1@example.org"}
        assert {k: v for k, v in ik.reconcile(local, cen).counts().items() if v} == {"same": 6}
        base = _local_texts(path, "SELECT client_data FROM invoicekit_base")
        assert len(base) == 6 and all(t.startswith(ENVELOPE) for t in base)
    text = caplog.text + "".join(str(r.args) + str(r.msg) for r in caplog.records)
    assert "invoicekit" in " ".join(r.name for r in caplog.records)  # something was logged
    assert KEY not in text and KEY[:16] not in text
    for secret in ("secret0@example.org", "Hidden street", "DE9990", "moved1@example.org"):
        assert secret not in text


def test_the_engine_without_the_key_stops_and_keeps_the_queue(central_pg_url, tmp_path, keys):
    path = tmp_path / "device.sqlite"
    ik.init_db(central_pg_url)
    _device(path)
    before = _local_texts(path, "SELECT op_id FROM sync_queue ORDER BY id")
    keys.delenv("INVOICEKIT_KEYS")
    with pytest.raises(KeyConfigError, match="INVOICEKIT_KEYS"):
        SyncEngine(path, central_pg_url).drain()
    assert _local_texts(path, "SELECT op_id FROM sync_queue ORDER BY id") == before
    assert _local_texts(path, "SELECT count(*) FROM invoicekit_quarantine") == [0]
    keys.setenv("INVOICEKIT_KEYS", f"{OTHER},{KEY}")  # a new key in front: the old one still opens
    assert SyncEngine(path, central_pg_url).drain().ok
    assert _local_texts(path, "SELECT count(*) FROM sync_queue") == [0]


def test_apply_sync_pushes_encrypted_and_pulls_encrypted(central_pg_url, tmp_path, small, keys):
    path = tmp_path / "dev.sqlite"
    ik.init_db(central_pg_url)
    ik.write_central(small, central_pg_url)
    local = small.invoices.iloc[:40].copy()
    local.loc[local.index[:5], "version"] += 1
    local.loc[local.index[:5], "sync_status"] = "pending"
    local.loc[local.index[5:], "sync_status"] = "synced"
    ik.write_local(small.with_invoices(local), path)
    rec = ik.reconcile(ik.read_local(path), ik.read_central(central_pg_url))
    plan = ik.plan_sync(ik.resolve(rec, strategy="three_way"))
    result = ik.apply_sync(plan, local=path, central=central_pg_url)
    assert result.ok
    assert all(t.startswith(ENVELOPE) for t in _central_client_texts(central_pg_url))
    assert all(t.startswith(ENVELOPE) for t in _local_texts(path, "SELECT client_data FROM transactions"))
    after = ik.reconcile(ik.read_local(path), ik.read_central(central_pg_url))
    assert {k for k, v in after.counts().items() if v} == {"same", "central_only"}
    pushed = ik.read_central(central_pg_url, where={"id": local["id"].iloc[:5].tolist()}).invoices
    assert sorted(pushed["version"].tolist()) == sorted(local["version"].iloc[:5].tolist())


def test_rotation_reaches_queued_payloads_so_the_old_key_can_go(central_pg_url, tmp_path, keys):
    from invoicekit.security import rotate_keys

    ik.init_db(central_pg_url)
    path = tmp_path / "device.sqlite"
    _device(path)
    before = _local_texts(path, "SELECT payload FROM sync_queue ORDER BY id")
    result = rotate_keys(path, keys=[OTHER, KEY], batch_rows=3)
    counts = result.counts.set_index("table")
    assert result.ok and counts.loc["transactions", "rotated"] == 6 and counts.loc["sync_queue", "rotated"] == 8
    after = _local_texts(path, "SELECT payload FROM sync_queue ORDER BY id")
    assert all(a != b for a, b in zip(after, before))
    assert [json.loads(a)["checksum"] for a in after] == [json.loads(b)["checksum"] for b in before]
    keys.setenv("INVOICEKIT_KEYS", OTHER)  # the old key is gone
    drained = SyncEngine(path, central_pg_url).drain()
    assert drained.ok and (drained.results["outcome"] == "synced").sum() == 8
    assert {k: v for k, v in ik.reconcile(ik.read_local(path), ik.read_central(central_pg_url)).counts().items()
            if v} == {"same": 6}
    again = rotate_keys(path, keys=[OTHER, KEY])
    assert int(again.counts["rotated"].sum()) == 0


def test_plaintext_rotation_encrypts_an_existing_store(central, tmp_path, small, keys):
    from invoicekit.security import rotate_keys

    keys.delenv("INVOICEKIT_KEYS")
    path = tmp_path / "plain.sqlite"
    ik.write_local(small, path)
    ik.init_db(central)
    ik.write_central(small, central)
    for store, texts in ((path, lambda: _local_texts(path, "SELECT client_data FROM transactions")),
                         (central, lambda: _central_client_texts(central))):
        assert not any(t.startswith(ENVELOPE) for t in texts())
        plain = rotate_keys(store, keys=[KEY])  # without plaintext=True nothing is touched
        assert int(plain.counts["rotated"].sum()) == 0
        done = rotate_keys(store, keys=[KEY], plaintext=True, batch_rows=50)
        first = done.counts.set_index("table")["rotated"].iloc[0]  # transactions / invoices
        assert done.ok and first == len(small)
        assert all(t.startswith(ENVELOPE) for t in texts())
        assert int(rotate_keys(store, keys=[KEY], plaintext=True).counts["rotated"].sum()) == 0
    keys.setenv("INVOICEKIT_KEYS", KEY)
    _same_frames(ik.read_local(path).invoices, small.invoices)
    _same_frames(ik.read_central(central).invoices, small.invoices)
    assert ik.write_central(small, central).unchanged == len(small)


def test_the_cache_holds_client_fields_sealed_when_keys_are_configured(tmp_path, small, keys, redis_url):
    import uuid

    import redis

    path = tmp_path / "dev.sqlite"
    ik.write_local(small, path)
    cache = ik.Cache(redis_url, namespace=f"iktest-{uuid.uuid4().hex}")
    try:
        row = small.invoices.iloc[3]
        first = ik.get_invoice(path, row["id"], cache=cache)
        hit = ik.get_invoice(path, row["id"], cache=cache)
        client = ik.get_client(path, email=row["client_email"], cache=cache)
        client_hit = ik.get_client(path, email=row["client_email"], cache=cache)
        assert first.invoices["client_email"].tolist() == hit.invoices["client_email"].tolist() == [row["client_email"]]
        pd.testing.assert_frame_equal(client.invoices, client_hit.invoices)
        raw = redis.Redis.from_url(redis_url)
        blobs = b"".join(v for k in raw.scan_iter(f"{cache.namespace}:*") if raw.type(k) == b"hash"
                         for v in raw.hgetall(k).values())
        assert blobs and b"fernet:" in blobs  # something is cached, sealed
        for secret in (row["client_email"], row["client_address"], row["client_tax_id"]):
            assert secret.encode() not in blobs
        # the key naming the client lookup is keyed: a guessed email's plain SHA-256 is not in it
        names = b" ".join(raw.scan_iter(f"{cache.namespace}:*"))
        guess = hashlib.sha256(row["client_email"].strip().casefold().encode()).hexdigest()[:32].encode()
        assert b"email-" in names and guess not in names
        # no key here: a sealed hit is a miss, the answer is what the store gives without a key
        keys.delenv("INVOICEKIT_KEYS")
        pd.testing.assert_frame_equal(ik.get_invoice(path, row["id"], cache=cache).invoices,
                                      ik.get_invoice(path, row["id"], cache=False).invoices)
    finally:
        cache.clear()


# -- stores written by other software, with keys configured -------------------------------------------
#: rows kept and removed on delete, and "mixed" (every layout the generator knows, resent operations included)
FOREIGN_KINDS = ["kept_row_delete", "removed_row_delete", "mixed"]


@pytest.mark.parametrize("kind", FOREIGN_KINDS)
def test_a_foreign_store_drains_encrypted_to_the_same_truth(kind, tmp_path, monkeypatch):
    """A store written by other software (plain sqlite3, the devices' schema only), drained by
    the engine once without keys and once, from an identical copy, with keys: the central store
    ends the same (versions, tombstones, checksums, client fields once decrypted), and with keys
    no client JSON is stored in the clear."""
    from invoicekit.foreign import write_foreign_store

    monkeypatch.delenv("INVOICEKIT_KEY_FILE", raising=False)
    monkeypatch.delenv("INVOICEKIT_KEYS", raising=False)
    currency = "EUR" if kind == "mixed" else None
    ends = {}
    for mode in ("plain", "keys"):
        if mode == "keys":
            monkeypatch.setenv("INVOICEKIT_KEYS", KEY)
        truth = write_foreign_store(tmp_path / f"{mode}.sqlite", kind=kind, seed=3)
        central = f"sqlite:///{tmp_path / f'central_{mode}.sqlite'}"
        ik.init_db(central)
        seed_store = truth.write_central_seed(tmp_path / f"seed_{mode}.sqlite")
        ik.write_central(ik.read_local(seed_store, currency=currency), central)
        SyncEngine(truth.path, central, currency=currency).drain()
        texts = [t for t in _central_client_texts(central) if t is not None]
        assert texts
        if mode == "keys":
            assert all(t.startswith(ENVELOPE) for t in texts), "client JSON stored in the clear"
        else:
            assert not any(t.startswith(ENVELOPE) for t in texts)
        ends[mode] = ik.read_central(central).invoices  # decrypted where keys are set
    cols = ["id", "version", "checksum", "invoice_number", "client_name", *CLIENT_TEXT, "currency", "total"]
    plain, sealed = (ends[m].sort_values("id")[cols].reset_index(drop=True) for m in ("plain", "keys"))
    pd.testing.assert_frame_equal(sealed, plain)
    assert (ends["keys"].sort_values("id")["deleted_at"].isna().to_numpy()
            == ends["plain"].sort_values("id")["deleted_at"].isna().to_numpy()).all()
    assert not ik.tampered(ends["keys"]).shape[0]
