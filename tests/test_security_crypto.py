"""Field encryption (issue 11): encrypt/decrypt round trips, keys never shown, tampering
caught by invoice and column, checksums over the plaintext, key rotation of real SQLite
stores (also killed halfway and resumed) and of the central store."""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import traceback

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import invoicekit as ik
from invoicekit.errors import DecryptionError, InvoicekitError, KeyConfigError, UsageError
from invoicekit.integrity import checksum, verify
from invoicekit.samples import make_invoices
from invoicekit.schema import InvoiceSet
from invoicekit.security import DEFAULT_FIELDS, Keys, decrypt, encrypt, generate_key, rotate_keys

from ._build import device_row, write_device_store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K_OLD, K_NEW, K_OTHER = generate_key(), generate_key(), generate_key()
TEXT_FIELDS = ("client_email", "client_address", "client_tax_id")


@pytest.fixture(autouse=True)
def _no_configured_keys(monkeypatch):
    monkeypatch.delenv("INVOICEKIT_KEYS", raising=False)
    monkeypatch.delenv("INVOICEKIT_KEY_FILE", raising=False)


@pytest.fixture(scope="module")
def small() -> InvoiceSet:
    return make_invoices(300, clients=40)


def _with_values(base: InvoiceSet, values: dict[str, list]) -> InvoiceSet:
    inv = base.invoices.iloc[: len(next(iter(values.values())))].reset_index(drop=True)
    return InvoiceSet(inv.assign(**{c: pd.Series(v, dtype=pd.ArrowDtype(pa.string())) for c, v in values.items()}))


# -- round trips --------------------------------------------------------------------------
plain_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60).filter(
    lambda t: not t.startswith(("fernet:", '{"encrypted":"fernet:')))
column = st.lists(st.one_of(st.none(), plain_text, st.sampled_from(["東京都港区", "🧾💶 ok", "a,b\"c\\d"])),
                  min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_round_trip_of_any_text_and_nulls(small, data):
    n = data.draw(st.integers(1, 12))
    values = {f: data.draw(st.lists(column.map(lambda c: c[0]), min_size=n, max_size=n)) for f in DEFAULT_FIELDS}
    s = _with_values(small, values)
    e = encrypt(s, keys=[K_NEW])
    for f in DEFAULT_FIELDS:
        got = e.invoices[f].astype(object).tolist()
        for before, after in zip(values[f], got):
            if before is None:
                assert after is None or pd.isna(after)  # nulls stay null
            else:
                assert after.startswith(("fernet:gAAAAA", '{"encrypted":"fernet:gAAAAA'))
                assert len(before) < 6 or before not in after.split('"name"')[0]
    back = decrypt(e, keys=[K_OTHER, K_NEW])  # any configured key opens
    pd.testing.assert_frame_equal(back.invoices, s.invoices)


def test_round_trip_in_parallel_keeps_checksums(small):
    s = make_invoices(6_000, clients=6_000)  # > the inline threshold: the worker pool runs
    e = encrypt(s, keys=[K_NEW], workers=2)
    assert e.invoices["client_data"].str.startswith('{"encrypted":"fernet:').all()
    assert (e.invoices["client_name"] == s.invoices["client_name"]).all()  # the name stays readable
    assert json.loads(e.invoices["client_data"].iloc[0])["name"] == s.invoices["client_name"].iloc[0]
    assert not (e.invoices["client_email"] == s.invoices["client_email"]).any()
    back = decrypt(e, keys=[K_NEW], workers=2)
    pd.testing.assert_frame_equal(back.invoices, s.invoices)
    assert checksum(back).equals(checksum(s)) and verify(back).all()
    assert e.invoices["checksum"].equals(s.invoices["checksum"])  # the stored checksum is the plaintext's


def test_input_is_not_mutated_and_nothing_is_encrypted_twice(small):
    before = small.invoices.copy()
    e = encrypt(small, keys=[K_OLD])
    pd.testing.assert_frame_equal(small.invoices, before)
    again = encrypt(e, keys=[K_NEW])  # marked values are left alone
    pd.testing.assert_frame_equal(again.invoices, e.invoices)
    assert decrypt(small).invoices.equals(small.invoices)  # plain values: a no-op that needs no key
    assert len(decrypt(e, keys=[K_OLD]).lines) == len(small.lines)


def test_fields_are_checked(small):
    with pytest.raises(UsageError, match="cannot encrypt \\['total'\\]"):
        encrypt(small, keys=[K_NEW], fields=["total"])
    only = encrypt(small, keys=[K_NEW], fields=["client_email"])
    assert only.invoices["client_data"].equals(small.invoices["client_data"])
    both = encrypt(small, keys=[K_NEW], fields=["client_name", "client_data"])
    assert "name" not in json.loads(both.invoices["client_data"].iloc[0])  # an encrypted name is not repeated


def test_a_loaded_encrypted_store_decrypts_to_the_plaintext_store(tmp_path, small, monkeypatch):
    monkeypatch.setenv("INVOICEKIT_KEYS", K_NEW)
    plain, enc = tmp_path / "plain.sqlite", tmp_path / "enc.sqlite"
    ik.write_local(small, plain)
    ik.write_local(encrypt(small), enc)
    raw = sqlite3.connect(enc).execute("SELECT client_data FROM transactions").fetchall()
    assert all(r[0].startswith('{"encrypted":"fernet:') for r in raw)
    want = ik.read_local(plain).invoices
    cols = [c for c in want.columns if c != "source"]
    # keys configured: the loader decrypts (a store encrypted at rest reads as plaintext)
    pd.testing.assert_frame_equal(ik.read_local(enc).invoices[cols], want[cols])
    monkeypatch.delenv("INVOICEKIT_KEYS")
    loaded = ik.read_local(enc)
    assert loaded.invoices["client_email"].isna().all()  # no keys: the loader sees only the envelope
    back = decrypt(loaded, keys=[K_NEW]).invoices
    pd.testing.assert_frame_equal(back[cols], want[cols])


# -- checksums on an encrypted set ----------------------------------------------------------
def test_checksum_of_an_encrypted_set_needs_a_key_and_is_the_plaintexts(small, monkeypatch):
    e = encrypt(small, keys=[K_NEW])
    with pytest.raises(KeyConfigError, match="encrypted client_data") as info:
        checksum(e)
    assert info.value.reason == "encrypted_without_key" and "INVOICEKIT_KEYS" in str(info.value)
    with pytest.raises(KeyConfigError):
        verify(e)
    monkeypatch.setenv("INVOICEKIT_KEYS", f"{K_OTHER},{K_NEW}")
    assert checksum(e).equals(checksum(small)) and verify(e).all() and ik.tampered(e).empty


# -- keys ------------------------------------------------------------------------------------
def test_no_key_says_how_to_supply_one(small):
    with pytest.raises(KeyConfigError) as info:
        encrypt(small)
    msg = str(info.value)
    assert "no encryption key configured" in msg
    assert all(s in msg for s in ("keys=", "INVOICEKIT_KEYS", "INVOICEKIT_KEY_FILE", "generate_key"))
    assert isinstance(info.value, InvoicekitError) and info.value.reason == "no_key"


def test_keys_from_env_and_key_file(small, tmp_path, monkeypatch):
    path = tmp_path / "keys"
    path.write_text(f"# newest first\n{K_NEW}\n\n{K_OLD}\n")
    monkeypatch.setenv("INVOICEKIT_KEY_FILE", str(path))
    e = encrypt(small)
    assert decrypt(e, keys=[K_NEW]).invoices.equals(small.invoices)  # the file's first key encrypted
    monkeypatch.setenv("INVOICEKIT_KEYS", f"{K_OTHER}, {K_NEW}")  # the variable wins over the file
    assert decrypt(encrypt(small), keys=[K_OTHER]).invoices.equals(small.invoices)


@pytest.mark.parametrize("bad", ["not-a-key", K_NEW[:-4], base64.urlsafe_b64encode(b"x" * 31).decode()])
def test_a_bad_key_is_refused_without_showing_it(small, monkeypatch, bad):
    monkeypatch.setenv("INVOICEKIT_KEYS", f"{K_NEW},{bad}")
    with pytest.raises(KeyConfigError) as info:
        encrypt(small)
    text = "".join(traceback.format_exception(info.value))
    assert "key #2 of INVOICEKIT_KEYS is not a Fernet key" in str(info.value)
    assert bad not in text and K_NEW not in text and info.value.reason == "bad_key"
    with pytest.raises(KeyConfigError) as direct:
        encrypt(small, keys=[bad])
    assert bad not in str(direct.value) and direct.value.__cause__ is None and direct.value.__context__ is None


def test_keys_never_show_themselves():
    keys = Keys([K_NEW, K_OLD])
    assert repr(keys) == str(keys) == "Keys(2 keys, newest first)" and f"{keys}" == str(keys)
    for shown in (repr(keys), str(keys), repr([keys]), repr({"k": keys})):
        assert K_NEW not in shown and K_OLD not in shown
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(keys)
    with pytest.raises(AttributeError):
        keys.x = 1
    assert len(keys.newest_only()) == 1 and keys.multifernet().decrypt(
        Keys([K_OLD]).multifernet().encrypt(b"x")) == b"x"


# -- tampered, truncated and foreign tokens ------------------------------------------------
def _tamper(text: str, how: str) -> str:
    head, rest = text.split("gAAAAA", 1)
    token, quote, tail = rest.partition('"')
    if how == "truncated":
        return head + "gAAAAA" + token[:-10] + quote + tail
    flipped = "A" if token[40] != "A" else "B"
    return head + "gAAAAA" + token[:40] + flipped + token[41:] + quote + tail


@pytest.mark.parametrize("how, reason", [("flipped", "invalid_token"), ("truncated", "truncated_token")])
@pytest.mark.parametrize("field", ["client_email", "client_data"])
def test_a_tampered_token_names_the_invoice_and_column(small, how, reason, field):
    e = encrypt(small, keys=[K_NEW]).invoices
    victim = e["id"].iloc[7]
    bad = e.assign(**{field: e[field].where(e["id"] != victim, _tamper(e[field].iloc[7], how))})
    with pytest.raises(DecryptionError) as info:
        decrypt(InvoiceSet(bad), keys=[K_NEW])
    err = info.value
    assert (err.invoice_id, err.column, err.reason) == (victim, field, reason)
    assert repr(victim) in str(err) and repr(field) in str(err)
    assert K_NEW not in str(err) and "gAAAAA" not in str(err)
    # other invoices sharing the client share the token, so failures may list more; the victim is there
    assert victim in err.failures["id"].tolist()
    back = pickle.loads(pickle.dumps(err))
    assert (back.invoice_id, back.column) == (victim, field)


def test_a_foreign_key_names_every_failing_value(small):
    e = encrypt(small, keys=[K_OTHER], fields=["client_tax_id"])
    with pytest.raises(DecryptionError) as info:
        decrypt(e, keys=[K_NEW, K_OLD])
    assert len(info.value.failures) == len(small) and set(info.value.failures["column"]) == {"client_tax_id"}


def test_no_traceback_frame_holds_key_text(small):
    e = encrypt(small, keys=[K_OLD])
    with pytest.raises(DecryptionError) as info:
        decrypt(e, keys=[K_NEW])
    tb = info.value.__traceback__
    while tb is not None:
        if "invoicekit" in tb.tb_frame.f_code.co_filename:
            for name, value in tb.tb_frame.f_locals.items():
                shown = repr(value)
                assert K_NEW not in shown and K_NEW.encode() not in shown.encode(), name
        tb = tb.tb_next


# -- logs -------------------------------------------------------------------------------------
def test_debug_logs_hold_no_key_and_no_plaintext(tmp_path, caplog):
    s = make_invoices(5_000, clients=5_000)
    store = tmp_path / "s.sqlite"
    with caplog.at_level(logging.DEBUG):
        e = encrypt(s, keys=[K_OLD], workers=2)
        decrypt(e, keys=[K_OLD], workers=2)
        _write_encrypted_store(store, e)
        rotate_keys(store, keys=[K_NEW, K_OLD], batch_rows=1_000, workers=2)
        with pytest.raises(DecryptionError):
            decrypt(e, keys=[K_NEW])
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "batch 5 committed" in text and "encrypt:" in text  # the log is not empty
    for secret in (K_OLD, K_NEW):
        assert secret not in text and secret[:20] not in text
    for f in TEXT_FIELDS:
        for value in s.invoices[f].dropna().unique()[:200]:
            assert value not in text


# -- rotation -----------------------------------------------------------------------------------
def _write_encrypted_store(path, encrypted: InvoiceSet) -> None:
    """A device-schema store holding ``encrypted``'s rows verbatim (checksums: the plaintext's)."""
    inv = encrypted.invoices
    rows = [device_row(i, id=r.id, invoice_number=r.invoice_number, client_data=r.client_data,
                       line_items=r.line_items, total_amount=float(r.total), version=3, checksum=r.checksum)
            for i, r in enumerate(inv.itertuples(index=False))]
    write_device_store(path, rows)


def _table(path) -> pd.DataFrame:
    conn = sqlite3.connect(path)
    try:
        return pd.read_sql("SELECT * FROM transactions ORDER BY id", conn)
    finally:
        conn.close()


def _opens_with(path, keys) -> pd.DataFrame:
    return decrypt(ik.read_local(path, lines=False), keys=keys, fields=["client_data"]).invoices


def test_rotation_keeps_versions_and_checksums_and_drops_the_old_key(tmp_path):
    s = make_invoices(3_000, clients=3_000)
    path = tmp_path / "s.sqlite"
    _write_encrypted_store(path, encrypt(s, keys=[K_OLD]))
    before = _table(path)
    result = rotate_keys(path, keys=[K_NEW, K_OLD], batch_rows=700)
    assert result.ok and int(result.counts["rotated"].sum()) == 3_000 and result.counts["batches"].iloc[0] == 5
    after = _table(path)
    pd.testing.assert_frame_equal(after.drop(columns="client_data"), before.drop(columns="client_data"))
    assert (after["client_data"] != before["client_data"]).all()
    opened = _opens_with(path, [K_NEW])  # the old key is gone
    assert verify(opened).all() and set(opened["client_data"]) == set(s.invoices["client_data"])
    again = rotate_keys(path, keys=[K_NEW, K_OLD])  # idempotent
    assert int(again.counts["rotated"].sum()) == 0 and int(again.counts["skipped"].sum()) == 3_000
    pd.testing.assert_frame_equal(_table(path), after)


def test_a_truncated_token_is_reported_by_id_and_left_alone(tmp_path):
    s = make_invoices(400, clients=400)
    path = tmp_path / "s.sqlite"
    _write_encrypted_store(path, encrypt(s, keys=[K_OLD]))
    conn = sqlite3.connect(path)
    victim, text = conn.execute("SELECT id, client_data FROM transactions ORDER BY id LIMIT 1 OFFSET 9").fetchone()
    conn.execute("UPDATE transactions SET client_data = ? WHERE id = ?", (_tamper(text, "truncated"), victim))
    conn.commit()
    conn.close()
    result = rotate_keys(path, keys=[K_NEW, K_OLD], batch_rows=100)
    assert not result.ok and "keep the old keys" in result.summary()
    assert result.failed[["table", "id", "column", "reason"]].values.tolist() == [
        ["transactions", victim, "client_data", "truncated_token"]]
    assert int(result.counts["rotated"].sum()) == 399


def test_rotation_of_a_central_store(central, small, monkeypatch):
    monkeypatch.setenv("INVOICEKIT_KEYS", K_OLD)
    ik.init_db(central)
    ik.write_central(encrypt(small), central)
    result = rotate_keys(central, keys=[K_NEW, K_OLD], batch_rows=128)
    assert result.ok and int(result.counts["rotated"].sum()) == len(small)
    monkeypatch.setenv("INVOICEKIT_KEYS", K_NEW)
    back = decrypt(ik.read_central(central, lines=False))
    assert verify(back).all()
    assert set(back.invoices["client_email"]) == set(small.invoices["client_email"])


ROTATE_WORKER = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    from invoicekit.security import rotate_keys
    rotate_keys(sys.argv[1], keys=[sys.argv[2], sys.argv[3]], batch_rows=int(sys.argv[4]))
    print("finished", flush=True)
""")


@pytest.mark.slow
def test_rotation_of_100000_rows_killed_halfway_then_resumed_loses_nothing(tmp_path):
    s = make_invoices(100_000, clients=100_000)
    path = tmp_path / "big.sqlite"
    _write_encrypted_store(path, encrypt(s, keys=[K_OLD]))
    before = _table(path)
    # keys reach the child through argv here only because this is a test with throwaway keys
    proc = subprocess.Popen([sys.executable, "-c", ROTATE_WORKER, str(path), K_NEW, K_OLD, "2000"],
                            cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "batch 20 committed" in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    half = _table(path)
    under_new = _opens_count(half, [K_NEW])
    assert 40_000 <= under_new < 100_000  # 20 batches of 2,000 committed, the rest not yet
    assert len(half) == 100_000 and _opens_count(half, [K_NEW, K_OLD]) == 100_000  # nothing lost or torn
    result = rotate_keys(path, keys=[K_NEW, K_OLD], batch_rows=5_000)
    assert result.ok and int(result.counts["skipped"].sum()) >= under_new
    after = _table(path)
    pd.testing.assert_frame_equal(after.drop(columns="client_data"), before.drop(columns="client_data"))
    opened = _opens_with(path, [K_NEW])
    assert len(opened) == 100_000 and verify(opened).all()
    assert opened.set_index("id")["client_data"].sort_index().equals(
        s.invoices.set_index("id")["client_data"].sort_index())


def _opens_count(table: pd.DataFrame, keys) -> int:
    from cryptography.fernet import InvalidToken

    multi = Keys(keys).multifernet()
    n = 0
    for text in table["client_data"]:
        token = json.loads(text)["encrypted"].removeprefix("fernet:")
        try:
            multi.decrypt(token.encode())
            n += 1
        except InvalidToken:
            pass
    return n
