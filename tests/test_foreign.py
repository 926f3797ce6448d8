"""Tests of the foreign-store generator (invoicekit.foreign) only: each kind has its declared
property, read back with plain sqlite3/json/hashlib (never with invoicekit's readers)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from invoicekit.errors import UsageError
from invoicekit.foreign import ACTIONS, KINDS, ForeignTruth, write_foreign_store, write_foreign_suite

REPO = Path(__file__).resolve().parent.parent
DESIGN_COLUMNS = {
    "transactions": ["id", "invoice_number", "client_data", "line_items", "total_amount", "created_at",
                     "modified_at", "sync_status", "checksum", "version"],
    "sync_queue": ["id", "transaction_id", "operation", "payload", "retry_count", "created_at"],
    "app_settings": ["key", "value", "sync_required"],
}
POISONS = {"poison_nul_text", "poison_nul_json", "poison_total_overflow", "poison_date_year0", "poison_date_zero",
           "poison_date_year10000", "poison_version_2_31", "poison_nan", "poison_infinity"}


def checksum(data: dict) -> str:
    """The design's checksum, restated here independently of the generator."""
    relevant = ["invoice_number", "client_data", "line_items", "total_amount"]
    text = json.dumps({k: data.get(k) for k in relevant}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def rows(path: str, table: str) -> list[dict]:
    conn = connect(path)
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
    finally:
        conn.close()


def types(path: str, table: str, column: str) -> set[str]:
    conn = connect(path)
    try:
        return {r[0] for r in conn.execute(f"SELECT DISTINCT typeof({column}) FROM {table}")}
    finally:
        conn.close()


def parse_ts(value) -> datetime:
    """A plain reading of every timestamp form the generator writes (UTC instants)."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    at = datetime.fromisoformat(value)
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def situation(truth: ForeignTruth) -> dict[str, str]:
    return dict(zip(truth.expected["id"], truth.expected["situation"]))


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> dict[str, ForeignTruth]:
    directory = tmp_path_factory.mktemp("foreign")
    return {kind: write_foreign_store(directory / f"{kind}.sqlite", kind=kind, seed=3) for kind in KINDS}


# -- every kind ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_store_opens_with_plain_sqlite_and_has_the_devices_tables(suite, kind):
    truth = suite[kind]
    conn = connect(truth.path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"transactions", "sync_queue", "app_settings"} <= tables
        assert not any(t.startswith("invoicekit") for t in tables)
        for table, cols in DESIGN_COLUMNS.items():
            have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            assert set(cols) <= have
        queue_ids = [r[0] for r in conn.execute("SELECT id FROM sync_queue ORDER BY id")]
    finally:
        conn.close()
    assert queue_ids == sorted(truth.queue["queue_id"])
    assert len(truth.expected) == 40 and truth.expected["id"].is_unique
    assert set(truth.queue["action"]) <= set(ACTIONS)
    assert set(truth.queue["transaction_id"]) <= set(truth.expected["id"])


@pytest.mark.parametrize("kind", KINDS)
def test_device_checksums_follow_the_design_formula(suite, kind):
    truth = suite[kind]
    sit = situation(truth)
    checked = 0
    for row in rows(truth.path, "transactions"):
        if sit[row["id"]] in POISONS:
            continue
        text = {**row, "total_amount": float(row["total_amount"])}
        nested = {**text, "client_data": json.loads(row["client_data"]), "line_items": json.loads(row["line_items"])}
        want = checksum(nested) if kind == "nested_payload" else checksum(text)
        if kind == "mixed":
            assert row["checksum"] in (checksum(text), checksum(nested))
        else:
            assert row["checksum"] == want, sit[row["id"]]
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("kind", KINDS)
def test_queued_payloads_carry_their_content_checksum(suite, kind):
    truth = suite[kind]
    action = dict(zip(truth.queue["queue_id"], truth.queue["action"]))
    for q in rows(truth.path, "sync_queue"):
        if action[q["id"]] != "sync" or q["operation"] not in ("insert", "update"):
            continue
        payload = json.loads(q["payload"])
        assert payload["checksum"] == checksum({**payload, "total_amount": float(payload["total_amount"])})


@pytest.mark.parametrize("kind", KINDS)
def test_line_items_sum_exactly_to_the_total(suite, kind):
    truth = suite[kind]
    sit = situation(truth)
    for row in rows(truth.path, "transactions"):
        if sit[row["id"]] in POISONS:
            continue
        items = json.loads(row["line_items"])
        assert items and all(set(item) == {"description", "quantity", "unit_price"} for item in items)
        total = sum(Decimal(str(i["quantity"])) * Decimal(str(i["unit_price"])) for i in items)
        assert total == Decimal(str(row["total_amount"])).quantize(Decimal("0.01"))


@pytest.mark.parametrize("kind", KINDS)
def test_expected_state_agrees_with_the_rows_where_every_operation_syncs(suite, kind):
    truth = suite[kind]
    exp = truth.expected.set_index("id")
    quarantined = set(truth.queue.loc[truth.queue["action"] == "quarantine", "transaction_id"])
    q = truth.queue
    kept = set(q.loc[(q["operation"] == "delete") & (q["action"] == "sync"), "transaction_id"])
    for row in rows(truth.path, "transactions"):
        if row["id"] in quarantined:
            continue
        e = exp.loc[row["id"]]
        if row["id"] in kept:  # a kept-row deletion: a tombstone one version up
            assert (bool(e["deleted"]), int(e["version"])) == (True, int(row["version"]) + 1)
        else:
            assert (bool(e["deleted"]), int(e["version"])) == (False, int(row["version"]))
            assert parse_ts(row["modified_at"]) == e["modified_at"].to_pydatetime()
            assert Decimal(str(row["total_amount"])).quantize(Decimal("0.01")) == Decimal(e["total"])


def test_the_same_seed_writes_the_same_store_and_another_seed_another(tmp_path):
    def dump(path):
        conn = sqlite3.connect(path)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()

    for kind in ("mixed", "poisoned", "timestamps"):
        a = write_foreign_store(tmp_path / f"a_{kind}.sqlite", kind=kind, seed=11, n=25)
        b = write_foreign_store(tmp_path / f"b_{kind}.sqlite", kind=kind, seed=11, n=25)
        c = write_foreign_store(tmp_path / f"c_{kind}.sqlite", kind=kind, seed=12, n=25)
        assert dump(a.path) == dump(b.path)
        assert dump(a.path) != dump(c.path)
        for name in ("expected", "queue", "central"):
            pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
        assert a.layout == b.layout


def test_the_store_does_not_depend_on_the_interpreters_hash_seed(tmp_path):
    script = ("import sys; from invoicekit.foreign import write_foreign_store; "
              "write_foreign_store(sys.argv[1], kind='mixed', seed=4, n=30)")
    dumps = []
    for hash_seed in ("1", "2"):
        path = tmp_path / f"h{hash_seed}.sqlite"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env, cwd=REPO)
        conn = sqlite3.connect(path)
        dumps.append(list(conn.iterdump()))
        conn.close()
    assert dumps[0] == dumps[1]


def test_suite_writes_one_store_per_kind(tmp_path):
    paths = write_foreign_suite(tmp_path / "suite", seed=5)
    assert list(paths) == list(KINDS)
    for kind, path in paths.items():
        assert path.endswith(f"{kind}.sqlite")
        assert rows(path, "sync_queue")


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(UsageError, match="unknown kind"):
        write_foreign_store(tmp_path / "x.sqlite", kind="nope")
    with pytest.raises(UsageError, match="n >= 11"):
        write_foreign_store(tmp_path / "x.sqlite", kind="poisoned", n=5)
    with pytest.raises(UsageError, match="records no currency"):
        write_foreign_store(tmp_path / "x.sqlite", kind="no_currency", currency="EUR")
    write_foreign_store(tmp_path / "x.sqlite", kind="resent_ops", n=10)
    with pytest.raises(UsageError, match="never overwrites"):
        write_foreign_store(tmp_path / "x.sqlite", kind="resent_ops", n=10)


def test_storage_classes_and_layouts_vary_across_the_suite(suite):
    totals, versions, statuses, orders, extras = set(), set(), set(), set(), set()
    for truth in suite.values():
        totals |= types(truth.path, "transactions", "total_amount")
        versions |= types(truth.path, "transactions", "version")
        statuses |= {r["sync_status"] for r in rows(truth.path, "transactions")}
        conn = connect(truth.path)
        cols = [r[1] for r in conn.execute("PRAGMA table_info(transactions)")]
        conn.close()
        orders.add(tuple(c for c in cols if c in DESIGN_COLUMNS["transactions"]))
        extras |= set(cols) - set(DESIGN_COLUMNS["transactions"]) - {"currency"}
    assert {"real", "integer", "text"} <= totals
    assert {"integer", "text"} <= versions
    assert {"pending", "PENDING", "Pending"} & statuses and {"synced", "SYNCED", "Synced"} & statuses
    assert len({s.lower() for s in statuses}) < len(statuses)  # the same status in several casings
    assert tuple(DESIGN_COLUMNS["transactions"]) in orders and len(orders) > 1
    assert extras


def test_names_in_many_scripts_escaped_and_not(suite):
    texts = [r["client_data"] for t in suite.values() for r in rows(t.path, "transactions")]
    assert any("\\u" in t for t in texts)
    assert any(not t.isascii() for t in texts)
    names = {json.loads(t)["name"] for t in texts}
    assert any("ü" in n or "ö" in n for n in names)
    assert any("\u4e00" <= ch <= "\u9fff" for n in names for ch in n)
    assert any(ord(ch) > 0xFFFF for n in names for ch in n)  # emoji


def test_central_seed_is_a_plain_synced_store(suite, tmp_path):
    truth = suite["kept_row_delete"]
    seed = truth.write_central_seed(tmp_path / "central.sqlite")
    got = rows(seed, "transactions")
    assert len(got) == len(truth.central) > 0
    assert {r["sync_status"] for r in got} == {"synced"}
    assert rows(seed, "sync_queue") == []
    by_id = truth.central.set_index("id")
    for r in got:
        assert int(r["version"]) == by_id.loc[r["id"], "version"]
        assert r["checksum"] == checksum({**r, "total_amount": float(r["total_amount"])})


# -- each kind's property -------------------------------------------------------------------------


def test_kept_row_delete_keeps_the_row_and_queues_id_and_version(suite):
    truth = suite["kept_row_delete"]
    store = {r["id"]: r for r in rows(truth.path, "transactions")}
    queue = {q["id"]: q for q in rows(truth.path, "sync_queue")}
    exp = truth.expected.set_index("id")
    deletes = [q for q in queue.values() if q["operation"] == "delete"]
    assert len(deletes) >= 3
    for q in deletes:
        row = store[q["transaction_id"]]  # the row is still there
        payload = json.loads(q["payload"])
        assert set(payload) == {"id", "version"} and payload["id"] == row["id"]
        assert int(payload["version"]) == int(row["version"])
        assert row["sync_status"].lower() == "pending"
        assert row["modified_at"] == q["created_at"]  # the time of deletion
        earlier = [p for p in queue.values() if p["transaction_id"] == row["id"] and p["id"] < q["id"]]
        if earlier:  # content unchanged since the last queued version
            last = json.loads(max(earlier, key=lambda p: p["id"])["payload"])
            assert (last["checksum"], int(last["version"])) == (row["checksum"], int(row["version"]))
        else:
            central = truth.central.set_index("id").loc[row["id"]]
            assert (central["checksum"], central["version"]) == (row["checksum"], int(row["version"]))
        assert bool(exp.loc[row["id"], "deleted"]) and exp.loc[row["id"], "version"] == int(row["version"]) + 1
    conn = sqlite3.connect(truth.path)
    try:  # the device honoured the foreign key
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


def test_removed_row_delete_removes_the_row_and_queues_it_whole(suite):
    truth = suite["removed_row_delete"]
    store = {r["id"] for r in rows(truth.path, "transactions")}
    exp = truth.expected.set_index("id")
    deletes = [q for q in rows(truth.path, "sync_queue") if q["operation"] == "delete"]
    assert len(deletes) >= 3
    for q in deletes:
        assert q["transaction_id"] not in store
        payload = json.loads(q["payload"])
        whole = {"id", "invoice_number", "client_data", "line_items", "total_amount", "version", "checksum"}
        assert whole <= set(payload)
        assert payload["checksum"] == checksum({**payload, "total_amount": float(payload["total_amount"])})
        assert bool(exp.loc[q["transaction_id"], "deleted"])
    conn = sqlite3.connect(truth.path)
    try:  # this device ignores sync_queue's foreign key
        assert conn.execute("PRAGMA foreign_key_check(sync_queue)").fetchall()
    finally:
        conn.close()
    # both conventions for the delete payload's version occur; the tombstone is one past the live row either way
    whys = set(truth.queue.loc[truth.queue["operation"] == "delete", "why"])
    assert any("as removed" in w for w in whys) and any("tombstone" in w for w in whys)


def test_nested_payload_nests_and_checksums_the_objects(suite):
    truth = suite["nested_payload"]
    store = {r["id"]: r for r in rows(truth.path, "transactions")}
    action = dict(zip(truth.queue["queue_id"], truth.queue["action"]))
    other_text = 0
    for q in rows(truth.path, "sync_queue"):
        payload = json.loads(q["payload"])
        assert isinstance(payload["client_data"], dict) and isinstance(payload["line_items"], list)
        nested_sum = checksum({**payload, "total_amount": float(payload["total_amount"])})
        assert (payload["checksum"] == nested_sum) == (action[q["id"]] == "sync")
        row = store[q["transaction_id"]]
        if action[q["id"]] == "sync" and int(row["version"]) == int(payload["version"]):
            # the row stores text: same parsed values, checksum over the objects, not over the text
            assert json.loads(row["client_data"]) == payload["client_data"]
            assert json.loads(row["line_items"]) == payload["line_items"]
            over_text = checksum({**row, "total_amount": float(row["total_amount"])})
            assert row["checksum"] == payload["checksum"] != over_text
            other_text += row["client_data"] != json.dumps(payload["client_data"])
    assert other_text >= 1  # some stored text differs from json.dumps of the nested object
    assert (truth.queue["action"] == "quarantine").sum() >= 1  # payloads altered after checksumming


def test_no_currency_records_none_anywhere(suite):
    truth = suite["no_currency"]
    with open(truth.path, "rb") as fh:
        assert b"currency" not in fh.read().lower()
    assert truth.expected["currency"].isna().all()
    assert "currency" not in truth.central.dropna(axis=1, how="all").columns


def test_currency_setting_holds_the_currency_in_app_settings_only(suite, tmp_path):
    truth = suite["currency_setting"]
    settings = {r["key"]: r["value"] for r in rows(truth.path, "app_settings")}
    assert settings["currency"] in ('"CHF"', "CHF")
    conn = connect(truth.path)
    cols = {r[1] for t in DESIGN_COLUMNS for r in conn.execute(f"PRAGMA table_info({t})")}
    conn.close()
    assert "currency" not in cols
    assert all("currency" not in json.loads(q["payload"]) for q in rows(truth.path, "sync_queue"))
    assert set(truth.expected.loc[truth.expected["present"], "currency"]) == {"CHF"}
    other = write_foreign_store(tmp_path / "s.sqlite", kind="currency_setting", seed=1, currency="SEK")
    assert {r["key"]: r["value"] for r in rows(other.path, "app_settings")}["currency"] in ('"SEK"', "SEK")


def test_resent_ops_queue_exact_duplicates_and_requeues(suite):
    truth = suite["resent_ops"]
    action = dict(zip(truth.queue["queue_id"], truth.queue["action"]))
    queue = sorted(rows(truth.path, "sync_queue"), key=lambda q: q["id"])
    seen: dict = {}
    exact = requeued = 0
    for q in queue:
        key = (q["transaction_id"], q["operation"], q["payload"])
        if key in seen:
            first = seen[key]
            assert action[first["id"]] == "sync" and action[q["id"]] == "redelivery"
            if q["created_at"] == first["created_at"]:
                exact += 1
                assert {k: v for k, v in q.items() if k != "id"} == {k: v for k, v in first.items() if k != "id"}
            else:
                requeued += 1
        else:
            seen[key] = q
            assert action[q["id"]] == "sync"
    assert exact >= 2 and requeued >= 2
    assert (truth.queue["action"] == "redelivery").sum() == exact + requeued


def test_unknown_ops_are_plausible_and_quarantined(suite):
    truth = suite["unknown_ops"]
    names = {"remove", "DELETE", "Update", "upsert"}
    queue = rows(truth.path, "sync_queue")
    assert names <= {q["operation"] for q in queue}
    action = dict(zip(truth.queue["queue_id"], truth.queue["action"]))
    for q in queue:
        assert (action[q["id"]] == "quarantine") == (q["operation"] in names)
        payload = json.loads(q["payload"])
        assert payload["id"] == q["transaction_id"] and "version" in payload
    exp = truth.expected.set_index("id")
    for tid in truth.queue.loc[truth.queue["operation"] == "upsert", "transaction_id"]:
        assert not exp.loc[tid, "present"]  # an upserted invoice never reaches central


def test_id_mismatch_points_at_another_existing_invoice(suite):
    truth = suite["id_mismatch"]
    store = {r["id"]: r for r in rows(truth.path, "transactions")}
    action = dict(zip(truth.queue["queue_id"], truth.queue["action"]))
    exp = truth.expected.set_index("id")
    central = truth.central.set_index("id")
    mismatched = 0
    for q in rows(truth.path, "sync_queue"):
        payload = json.loads(q["payload"])
        if payload["id"] == q["transaction_id"]:
            assert action[q["id"]] == "sync"
            continue
        mismatched += 1
        assert action[q["id"]] == "quarantine"
        assert payload["id"] in store and q["transaction_id"] in store
        target = payload["id"]
        own = truth.queue[(truth.queue["transaction_id"] == target) & (truth.queue["action"] == "sync")]
        version = own["payload_version"].max() if len(own) else central.loc[target, "version"]
        assert exp.loc[target, "version"] == version  # the other invoice is left alone
    assert mismatched >= 2


def test_poisoned_values_are_all_there_with_good_operations_around_each(suite):
    truth = suite["poisoned"]
    store = {r["id"]: r for r in rows(truth.path, "transactions")}
    sit = situation(truth)
    by_story = {sit[i]: r for i, r in store.items() if sit[i] in POISONS}
    assert set(by_story) == POISONS
    assert "\x00" in by_story["poison_nul_text"]["invoice_number"]
    assert "\\u0000" in by_story["poison_nul_json"]["client_data"]
    assert "\x00" in json.loads(by_story["poison_nul_json"]["client_data"])["name"]
    assert float(by_story["poison_total_overflow"]["total_amount"]) >= 1e13
    assert by_story["poison_date_zero"]["created_at"] == "0000-00-00 00:00:00"
    assert by_story["poison_date_year0"]["created_at"].startswith("0000-")
    assert by_story["poison_date_year10000"]["created_at"].startswith("10000-")
    assert int(by_story["poison_version_2_31"]["version"]) >= 2**31
    assert by_story["poison_nan"]["total_amount"] is None  # SQLite stores NaN as NULL
    assert by_story["poison_infinity"]["total_amount"] == float("inf")
    constants: dict[str, set] = {}
    for q in rows(truth.path, "sync_queue"):
        json.loads(q["payload"], parse_constant=lambda c, t=q["transaction_id"]: constants.setdefault(c, set()).add(t))
    assert set(constants) == {"NaN", "Infinity"}
    q = truth.queue.sort_values("queue_id").reset_index(drop=True)
    assert set(q.loc[q["transaction_id"].map(sit).isin(POISONS), "action"]) == {"quarantine"}
    for i in q.index[q["action"] == "quarantine"]:
        assert (q.loc[:i, "action"] == "sync").any() and (q.loc[i:, "action"] == "sync").any()


def test_timestamps_are_written_every_way(suite):
    truth = suite["timestamps"]
    values = [r[c] for r in rows(truth.path, "transactions") for c in ("created_at", "modified_at")]
    values += [q["created_at"] for q in rows(truth.path, "sync_queue")]
    texts = [v for v in values if isinstance(v, str)]
    assert any(isinstance(v, int) for v in values) and any(isinstance(v, float) for v in values)
    assert any("T" in t for t in texts) and any(" " in t for t in texts)
    assert any(t.endswith("Z") for t in texts) and any(t.endswith("+02:00") for t in texts)
    assert any(len(t) == 19 for t in texts) and any(len(t) == 26 for t in texts)  # with and without microseconds
    stored = (types(truth.path, "sync_queue", "created_at") | types(truth.path, "transactions", "created_at")
              | types(truth.path, "transactions", "modified_at"))
    assert {"integer", "real", "text"} <= stored  # epoch values stored as INTEGER and REAL, ISO as TEXT
    for v in values:  # every one is a real instant
        assert datetime(2025, 12, 1, tzinfo=timezone.utc) < parse_ts(v) < datetime(2026, 4, 1, tzinfo=timezone.utc)


def test_mixed_mixes_the_kinds(suite):
    truth = suite["mixed"]
    situations = set(truth.expected["situation"])
    assert len(situations) >= 10
    assert {"sync", "redelivery", "quarantine"} <= set(truth.queue["action"])
    payloads = [json.loads(q["payload"], parse_constant=float) for q in rows(truth.path, "sync_queue")]
    nested = [isinstance(p.get("client_data"), dict) for p in payloads if "client_data" in p]
    assert any(nested) and not all(nested)


def test_truth_displays_itself(suite):
    truth = suite["mixed"]
    summary = truth.summary()
    assert summary["invoices"].sum() == len(truth.expected)
    assert summary[list(ACTIONS)].to_numpy().sum() == len(truth.queue)
    assert "ForeignTruth" in truth._repr_html_() and "mixed" in repr(truth)
