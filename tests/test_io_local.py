import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

import invoicekit as ik
from invoicekit.samples import make_invoices
from tests._build import COLUMNS, device_row, dump, write_device_store


def test_legacy_store_loads_unchanged(tmp_path):
    rows = [device_row(i) for i in range(20)]
    rows[3]["total_amount"] = 100.0  # SQLite stores it as INTEGER 100 (numeric affinity)
    rows[3]["line_items"] = json.dumps([{"description": "x", "quantity": 4, "unit_price": 25.0}])
    rows[3]["checksum"] = None
    from tests._build import device_checksum
    rows[3]["checksum"] = device_checksum({**rows[3], "total_amount": 100.0})
    path = tmp_path / "legacy.sqlite"
    write_device_store(path, rows, settings={"default_currency": json.dumps("SEK")})
    before = dump(path)
    s = ik.read_local(path)
    assert dump(path) == before  # reading never writes
    inv = s.invoices.set_index("id")
    for r in rows:
        got = inv.loc[r["id"]]
        assert got["invoice_number"] == r["invoice_number"]
        assert got["client_data"] == r["client_data"] and got["line_items"] == r["line_items"]
        assert str(got["total"]) == f"{r['total_amount']:.2f}"
        assert got["checksum"] == r["checksum"] and got["version"] == r["version"]
        assert got["currency"] == "SEK"
        assert got["created_at"] == pd.Timestamp(r["created_at"], tz="UTC")
    assert ik.verify(s.invoices).all()
    assert len(s.lines) == 39 and str(s.lines["quantity"].dtype).startswith("decimal128")
    assert ik.validate(s).ok


@pytest.mark.parametrize("content,exc", [
    (b"", ik.StoreSchemaError),  # an empty file is an empty SQLite db: no tables
    (b"just some text, definitely not a database" * 10, ik.NotAStoreError),
])
def test_bad_files_get_typed_errors_naming_the_file(tmp_path, content, exc):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(content)
    with pytest.raises(exc) as info:
        ik.read_local(path)
    assert str(path) in str(info.value) and info.value.store == str(path)


def test_missing_file_and_missing_tables(tmp_path):
    with pytest.raises(ik.NotAStoreError, match="no such file"):
        ik.read_local(tmp_path / "nope.sqlite")
    path = tmp_path / "partial.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE transactions (id TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(ik.StoreSchemaError) as info:
        ik.read_local(path)
    assert info.value.missing == ["sync_queue", "app_settings"]


def test_corrupt_file_gets_typed_error(tmp_path):
    path = tmp_path / "c.sqlite"
    ik.write_local(make_invoices(300, seed=3), path)
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)  # keep the header and schema page, smash the rest
    path.write_bytes(bytes(data))
    with pytest.raises(ik.NotAStoreError) as info:
        ik.read_local(path)
    assert str(path) in str(info.value)
    with pytest.raises(ik.NotAStoreError, match="corrupt"):
        ik.write_local(make_invoices(3, seed=1), path)


def test_write_read_round_trip_is_exact(tmp_path):
    s = make_invoices(250, seed=11)
    path = tmp_path / "rt.sqlite"
    assert ik.write_local(s, path).inserted == 250
    back = ik.read_local(path)
    cols = [c for c in s.invoices.columns if c not in ("source", "source_row")]
    pd.testing.assert_frame_equal(s.invoices[cols].sort_values("id").reset_index(drop=True),
                                  back.invoices[cols].sort_values("id").reset_index(drop=True))
    pd.testing.assert_frame_equal(s.lines.sort_values(["invoice_id", "line_no"]).reset_index(drop=True),
                                  back.lines.sort_values(["invoice_id", "line_no"]).reset_index(drop=True))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r[1] for r in conn.execute("PRAGMA table_info(transactions)")][: len(COLUMNS)] == [
        "id", "invoice_number", "client_data", "line_items", "total_amount", "created_at", "modified_at",
        "sync_status", "checksum", "version"]
    conn.close()


def test_write_is_idempotent(tmp_path):
    s = make_invoices(50, seed=12)
    path = tmp_path / "i.sqlite"
    ik.write_local(s, path)
    first = dump(path)
    ik.write_local(s, path)
    assert dump(path) == first


def test_invalid_set_is_refused_and_store_left_as_it_was(tmp_path):
    path = tmp_path / "v.sqlite"
    ik.write_local(make_invoices(20, seed=13), path)
    before = dump(path)
    bad = make_invoices(5, seed=14)
    bad.invoices.loc[2, "currency"] = "ZZZ"
    with pytest.raises(ik.ValidationError) as info:
        ik.write_local(bad, path)
    assert info.value.problems["rule"].tolist() == ["unknown_currency"]
    assert dump(path) == before


def test_write_to_a_non_store_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello " * 100)
    with pytest.raises(ik.NotAStoreError):
        ik.write_local(make_invoices(3, seed=1), path)
    assert path.read_text() == "hello " * 100


_WRITER = """
import sys
from invoicekit.samples import make_invoices
import invoicekit as ik
s = make_invoices(int(sys.argv[2]), seed=int(sys.argv[3]))
print("ready", flush=True)
ik.write_local(s, sys.argv[1])
print("done", flush=True)
"""


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3, 0.6, 1.0])
def test_sigkill_mid_write_leaves_old_or_new_content(tmp_path, delay):
    path = tmp_path / "k.sqlite"
    old = make_invoices(100, seed=21)
    ik.write_local(old, path)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), "40000", "22"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    back = ik.read_local(path)
    assert len(back) in (100, 40100)  # all or nothing
    assert ik.verify(back.invoices).all()
    assert set(old.invoices["id"]) <= set(back.invoices["id"])


def test_line_items_are_parsed_on_first_use_with_the_same_result(tmp_path):
    rows = [device_row(i) for i in range(12)]
    rows[4]["line_items"] = json.dumps([{"description": "x", "quantity": "lots", "unit_price": 2.0}])
    rows[7]["line_items"] = "[not json"
    path = tmp_path / "d.sqlite"
    write_device_store(path, rows, settings={"default_currency": json.dumps("EUR")})
    s = ik.read_local(path)
    assert s.lines_deferred
    ids = [rows[1]["id"], rows[4]["id"]]
    subset = s.lines_of(ids).to_pandas(types_mapper=pd.ArrowDtype)
    assert s.lines_deferred  # parsing a subset leaves the rest deferred
    assert sorted(subset["invoice_id"].unique()) == sorted(ids)
    # first access parses everything once, and load problems of the lines appear with the others
    assert len(s.lines) == 2 * 10 + 1 and not s.lines_deferred
    assert set(zip(s.problems["id"], s.problems["rule"], s.problems["field"])) == {
        (rows[4]["id"], "not_numeric", "line_items[1].quantity"),
        (rows[7]["id"], "unparseable_json", "line_items"),
    }
    whole = s.lines[s.lines["invoice_id"].isin(ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(subset.sort_values(["invoice_id", "line_no"]).reset_index(drop=True),
                                  whole.sort_values(["invoice_id", "line_no"]).reset_index(drop=True))
    with pytest.raises(AttributeError):
        s.lines = whole  # immutable


def test_deferred_sets_pickle_copy_and_report_bad_line_items_without_lines(tmp_path):
    import copy
    import pickle

    rows = [device_row(i) for i in range(6)]
    rows[2]["line_items"] = "not json"
    path = tmp_path / "d.sqlite"
    write_device_store(path, rows, settings={"default_currency": json.dumps("EUR")})
    s = ik.read_local(path)
    for twin in (pickle.loads(pickle.dumps(s)), copy.copy(s), copy.deepcopy(s), s.with_base(None)):
        assert twin.lines_deferred
        pd.testing.assert_frame_equal(twin.lines, s.lines)
        pd.testing.assert_frame_equal(twin.problems, s.problems)
    assert len(s.lines_of({rows[0]["id"], rows[1]["id"]})) == 4  # any collection of ids, sets included
    # without lines, line_items that is not a JSON array is still a load problem
    bare = ik.read_local(path, lines=False)
    assert len(bare.lines) == 0
    assert list(zip(bare.problems["id"], bare.problems["field"])) == [(rows[2]["id"], "line_items")]


TIMESTAMP_TEXTS = [
    "2026-01-01T00:00:09.091385", "2026-01-01T00:00:09", "2026-01-01 00:00:09.5", "2026-01-01",
    "2026-01-01T00:00:09Z", "2026-01-01T00:00:09+02:00", "2026-01-01T00:00:09.091385+00:00",
    "2026-01-01T24:00:00", " 2026-01-01T00:00:09", "2026-01-01T00:00:09.1234567", "2026-02-30T00:00:00",
    "yesterday", "2026-03-01T10", "2026-03-01 10", "2026-03-01T10Z", "2026-03-01 10+02:00", "2026-03-01T10:30",
]


@pytest.mark.parametrize("column", ["created_at", "modified_at"])
def test_timestamp_fast_path_reads_what_duckdb_reads(tmp_path, column):
    """Columns Arrow's ISO cast takes whole (naive only, zoned only) and columns it rejects
    (mixed, or any value it is stricter about) load to the same instants DuckDB's cast gives,
    and what parses nowhere is reported."""
    import pyarrow as pa

    from invoicekit import _duck
    from invoicekit._normalize import _fast_timestamps

    con = _duck.connect(t=pa.table({"t": pa.array(TIMESTAMP_TEXTS, pa.string())}))
    expect = dict(zip(TIMESTAMP_TEXTS, (r[0] for r in con.execute(
        "SELECT TRY_CAST(t AS TIMESTAMPTZ) FROM t").fetchall())))
    con.close()
    naive = TIMESTAMP_TEXTS[:4] + ["2026-03-01T10:30"]
    zoned = TIMESTAMP_TEXTS[4:7]
    cases = [(naive, True), (zoned, True), (TIMESTAMP_TEXTS, False),
             # an hour without minutes: Arrow would take it, DuckDB rejects it
             (naive + ["2026-03-01T10"], False), (naive + ["2026-03-01 10"], False),
             (zoned + ["2026-03-01T10Z"], False), (zoned + ["2026-03-01 10+02:00"], False)]
    for n, (texts, takes_fast_path) in enumerate(cases):
        raw = pa.table({c: pa.array(texts if c == column else [None] * len(texts), pa.string())
                        for c in ("created_at", "modified_at", "deleted_at")})
        fast = _fast_timestamps(raw).column(column)
        assert pa.types.is_timestamp(fast.type) == takes_fast_path, texts
        rows = [device_row(i, **{column: t}) for i, t in enumerate(texts)]
        path = tmp_path / f"ts{n}.sqlite"
        write_device_store(path, rows, settings={"default_currency": json.dumps("EUR")})
        s = ik.read_local(path)
        got = s.invoices[column].tolist()
        for text, value in zip(texts, got):
            want = expect[text]
            assert (pd.isna(value) and want is None) or value == pd.Timestamp(want), (text, value, want)
        bad = set(s.problems.loc[s.problems["field"] == column, "value"])
        assert bad == {t for t in texts if expect[t] is None}


def test_write_local_progress_bar_counts_every_row_and_stays_quiet_for_small_writes(tmp_path, capsys):
    """A bar on request (or for large writes) counts each row written, base snapshots included;
    small writes print nothing by default; batching keeps the write one transaction."""
    s = make_invoices(30, seed=21)
    path = tmp_path / "p.sqlite"
    ik.write_local(s, path)
    assert capsys.readouterr().err == ""
    import invoicekit.io.local as local_mod

    old = local_mod.WRITE_BATCH_ROWS
    local_mod.WRITE_BATCH_ROWS = 7  # several executemany calls, still one transaction
    try:
        ik.write_local(s, tmp_path / "q.sqlite", progress=True)
    finally:
        local_mod.WRITE_BATCH_ROWS = old
    err = capsys.readouterr().err
    synced = int((s.invoices["sync_status"] == "synced").sum())
    assert "write_local q.sqlite" in err and "100%" in err
    assert f"{len(s) + synced:.1f}/{len(s) + synced:.1f}" in err  # tqdm's scaled units: 60.0/60.0
    assert dump(path) == dump(tmp_path / "q.sqlite")


def test_values_the_central_store_cannot_hold_load_with_their_rows_kept(tmp_path):
    """NULs, amounts beyond NUMERIC(12,2)/(12,3) (a line total too: DuckDB's 64-bit decimal
    multiply used to raise OutOfRangeException), years outside 1..9999 and versions >= 2**31
    never stop the loader: every row loads, the unholdable value is null (or kept, for text and
    versions) and the problem is listed."""
    items = lambda q, p, d="x": json.dumps([{"description": d, "quantity": q, "unit_price": p}])  # noqa: E731
    rows = [
        device_row(1),
        device_row(2, invoice_number="N\x00", client_data=json.dumps({"name": "A\x00"})),
        device_row(3, total_amount=1e13),
        device_row(4, line_items=items(999999999, 9999999999.99), total_amount=9999999999.99),
        device_row(5, line_items=items(1e12, 1e12), total_amount=1.0),
        device_row(6, created_at="0000-01-01T00:00:00", modified_at="10000-01-01T00:00:00"),
        device_row(7, version=2**31),
        device_row(8, line_items=items(1, 25.0, "a\x00b")),
    ]
    path = tmp_path / "poisoned.sqlite"
    write_device_store(path, rows, settings={"default_currency": json.dumps("EUR")})
    s = ik.read_local(path)
    assert list(s.invoices["source_row"]) == list(range(1, 9))
    inv = s.invoices.set_index("source_row")
    assert inv.loc[2, "invoice_number"] == "N\x00" and inv.loc[7, "version"] == 2**31  # kept as they are
    assert pd.isna(inv.loc[3, "total"]) and str(inv.loc[4, "total"]) == "9999999999.99"
    assert pd.isna(inv.loc[6, "created_at"]) and pd.isna(inv.loc[6, "modified_at"])
    lines = s.lines.set_index("invoice_id")
    assert pd.isna(lines.loc[device_row(4)["id"], "line_total"])
    assert str(lines.loc[device_row(4)["id"], "quantity"]) == "999999999.000"
    loaded = set(zip(s.problems["source_row"], s.problems["rule"], s.problems["field"]))
    assert loaded == {(3, "out_of_range", "total"), (4, "out_of_range", "line_items[1].line_total"),
                      (5, "out_of_range", "line_items[1].quantity"), (5, "out_of_range", "line_items[1].unit_price"),
                      (6, "bad_timestamp", "created_at"), (6, "bad_timestamp", "modified_at")}
    report = ik.validate(s)
    found = set(zip(report.problems["source_row"], report.problems["rule"], report.problems["field"]))
    assert found - loaded == {(2, "nul_character", "invoice_number"), (2, "nul_character", "client_data"),
                              (7, "bad_version", "version"), (8, "nul_character", "line_items[1].description")}
    assert ik.read_local(path, lines=False).problems["rule"].isin(["out_of_range", "bad_timestamp"]).all()


def test_epoch_numbers_load_as_the_instants_they_count(tmp_path):
    """Other software stores timestamps as INTEGER or REAL seconds (and milliseconds): they load
    as those instants, mixed with ISO text in one column, and the LocalStore check takes them."""
    from invoicekit._normalize import timestamp_problem

    at = pd.Timestamp("2026-03-01T10:00:00.25", tz="UTC")
    seconds = int(at.timestamp())
    values = [seconds, at.timestamp(), seconds * 1000, f" {seconds} ", "2026-03-01T10:00:00", -86400, "1.5.2026"]
    want = [at.floor("s"), at, at.floor("s"), at.floor("s"), at.floor("s"), pd.Timestamp("1969-12-31", tz="UTC"), None]
    rows = [device_row(i, created_at=v) for i, v in enumerate(values)]
    path = tmp_path / "epoch.sqlite"
    write_device_store(path, rows, settings={"currency": "EUR"})
    s = ik.read_local(path)
    got = s.invoices.set_index("source_row")["created_at"]
    for i, w in enumerate(want):
        v = got.loc[i + 1]
        assert (pd.isna(v) and w is None) or v == w, (values[i], v, w)
    assert s.problems.loc[s.problems["field"] == "created_at", "source_row"].tolist() == [7]
    assert timestamp_problem(str(seconds)) is None
    assert timestamp_problem("1.5.2026") is not None


def test_a_store_setting_names_the_currency_before_the_callers_default(tmp_path):
    rows = [device_row(i) for i in range(2)]
    with_setting, without = tmp_path / "chf.sqlite", tmp_path / "none.sqlite"
    write_device_store(with_setting, rows, settings={"currency": json.dumps("CHF")})
    write_device_store(without, rows)
    assert set(ik.read_local(with_setting, currency="EUR").invoices["currency"]) == {"CHF"}
    assert set(ik.read_local(without, currency="EUR").invoices["currency"]) == {"EUR"}


def test_read_local_takes_a_list_of_stores_and_refuses_other_types(samples_dir):
    a, b = samples_dir / "device_a.sqlite", samples_dir / "device_b.sqlite"
    both = ik.read_local([a, str(b)])
    one, two = ik.read_local(a), ik.read_local(b)
    assert len(both) == len(one) + len(two)
    assert set(both.invoices["source"]) == set(one.invoices["source"]) | set(two.invoices["source"])
    assert len(both.lines) == len(one.lines) + len(two.lines)
    for bad in (3, None, {"path": str(a)}):
        with pytest.raises(ik.UsageError, match="read_local"):
            ik.read_local(bad)
    with pytest.raises(ik.UsageError, match="empty list"):
        ik.read_local([])
