"""The cheaper paths of read_local and checksum give exactly what the eager ones gave:
a deferred base snapshot (read with the store's rows, parsed on first use), stacked stores
whose line items stay deferred, and the one-pass checksum encoding of 2-decimal totals."""

from __future__ import annotations

import copy
import json
import pickle
import sqlite3
import threading
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import invoicekit as ik
from invoicekit.samples import make_scenario
from invoicekit.schema import MONEY
from tests._build import device_checksum, device_row, write_device_store


@pytest.fixture(scope="module")
def toolkit_store(tmp_path_factory):
    """A toolkit-written store with its last-synced snapshots, and the set written."""
    sc = make_scenario(seed=11, n_central=150, devices=("d",), new_per_device=5, single_currency=())
    dev = sc.devices["d"]
    assert dev.base is not None and len(dev.base)
    path = tmp_path_factory.mktemp("tk") / "d.sqlite"
    ik.write_local(dev, path, progress=False)
    return path


def _base_rows(path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {i: int(v) for i, v in conn.execute("SELECT id, version FROM invoicekit_base")}


def test_base_is_parsed_on_first_use_as_it_was_when_read(toolkit_store, tmp_path):
    path = tmp_path / "d.sqlite"
    path.write_bytes(toolkit_store.read_bytes())
    s = ik.read_local(path)
    assert s.base_deferred
    before = _base_rows(path)
    # the store moves on after the read: the set keeps the snapshot of the state it read
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE invoicekit_base SET version = version + 10")
        conn.execute("DELETE FROM invoicekit_base WHERE rowid % 2 = 0")
    base = s.base
    assert not s.base_deferred
    assert dict(zip(base.invoices["id"], base.invoices["version"].astype(int))) == before
    assert (base.invoices["source"] == f"{path}#base").all()
    assert base.lines_deferred and len(base.lines) > 0  # its line items are deferred as well
    # the same as a fresh read of the original file, parsed at once
    fresh = ik.read_local(toolkit_store).base
    pd.testing.assert_frame_equal(base.invoices.drop(columns="source"), fresh.invoices.drop(columns="source"))
    pd.testing.assert_frame_equal(base.lines, fresh.lines)


def test_deferred_base_is_made_once_and_shared_by_derived_sets(toolkit_store):
    s = ik.read_local(toolkit_store)
    derived = [s.with_invoices(s.invoices.copy()), s.live(), copy.copy(s)]
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(s.base)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(b is got[0] for b in got)  # made once, under the lock
    assert all(d.base is got[0] and not d.base_deferred for d in derived)
    twin = pickle.loads(pickle.dumps(ik.read_local(toolkit_store)))  # a pickle carries the base made
    assert not twin.base_deferred
    pd.testing.assert_frame_equal(twin.base.invoices, got[0].invoices)
    assert s.with_base(None).base is None


def test_reconcile_against_a_deferred_base_equals_an_eager_one(toolkit_store):
    sc = make_scenario(seed=11, n_central=150, devices=("d",), new_per_device=5, single_currency=())
    lazy = ik.read_local(toolkit_store)
    eager = lazy.with_base(ik.read_local(toolkit_store).base)
    assert lazy.base_deferred and not eager.base_deferred
    a, b = ik.reconcile(lazy, sc.central), ik.reconcile(eager, sc.central)
    pd.testing.assert_frame_equal(a.status, b.status)
    pd.testing.assert_frame_equal(a.fields, b.fields)
    assert a.status["has_base"].any()


def _problem_store(path, offset: int) -> None:
    rows = [device_row(offset + i) for i in range(8)]
    rows[1]["line_items"] = "not json"
    rows[3]["line_items"] = json.dumps([{"description": "x", "quantity": "lots", "unit_price": 1}])
    rows[5]["total_amount"] = "12,50"
    rows[6]["created_at"] = "yesterday"
    write_device_store(path, rows, settings={"currency": json.dumps("EUR")})


@pytest.mark.parametrize("order", ["ab", "ba", "aa", "bab"])
def test_stacked_stores_keep_lines_deferred_and_equal_the_eager_stack(tmp_path, order):
    paths = {"a": tmp_path / "a.sqlite", "b": tmp_path / "b.sqlite"}
    _problem_store(paths["a"], 0)
    _problem_store(paths["b"], 100)
    chosen = [paths[k] for k in order]
    stacked = ik.read_local(chosen)
    # one store twice is stacked eagerly (its rows would interleave), any other order stays deferred
    assert stacked.lines_deferred == (len(set(order)) == len(order))
    parts = [ik.read_local(p) for p in chosen]
    for part in parts:
        part.lines  # noqa: B018 - parse each store on its own: the eager stack
    eager = ik.InvoiceSet.concat(parts)
    assert not eager.lines_deferred
    pd.testing.assert_frame_equal(stacked.invoices, eager.invoices)
    pd.testing.assert_frame_equal(stacked.problems, eager.problems)
    pd.testing.assert_frame_equal(stacked.lines, eager.lines)
    # the problems are in the stores' order, each store's by row
    assert list(dict.fromkeys(stacked.problems["source"])) == list(dict.fromkeys(map(str, chosen)))


def test_stacked_toolkit_stores_stack_their_deferred_bases(toolkit_store, tmp_path):
    other = tmp_path / "other.sqlite"
    other.write_bytes(toolkit_store.read_bytes())
    stacked = ik.read_local([toolkit_store, other])
    assert stacked.base_deferred and stacked.lines_deferred
    single = ik.read_local(toolkit_store).base
    assert len(stacked.base) == 2 * len(single)
    assert list(dict.fromkeys(stacked.base.invoices["source"])) == [f"{toolkit_store}#base", f"{other}#base"]


# -- checksum: the one-pass encoding of a 2-decimal total ------------------------------


def _frame(totals: list) -> pd.DataFrame:
    n = len(totals)
    df = pd.DataFrame({"invoice_number": [f"N{i}" for i in range(n)],
                       "client_data": ['{"name": "M\\u00fcller \\"Q\\""}'] * n, "line_items": ["[]"] * n})
    for c in ("invoice_number", "client_data", "line_items"):
        df[c] = df[c].astype("string[pyarrow]")
    df["total"] = pd.Series(pa.array(totals, MONEY), dtype=pd.ArrowDtype(MONEY))
    return df


def _expected(df: pd.DataFrame) -> list[str]:
    return [device_checksum({"invoice_number": n, "client_data": c, "line_items": li,
                             "total_amount": None if pd.isna(t) else float(t)})
            for n, c, li, t in zip(df["invoice_number"], df["client_data"], df["line_items"], df["total"])]


def test_two_decimal_totals_hash_as_python_floats_across_the_whole_range():
    """Every cent from -2000.00 to 2000.00, random amounts up to NUMERIC(12,2)'s largest, and
    its edges: the float text is Python's repr (a multiplication by 0.01 would be off)."""
    rng = np.random.default_rng(7)
    cents = np.concatenate([np.arange(-200_000, 200_001), rng.integers(-10**12 + 1, 10**12, 100_000),
                            [10**12 - 1, -(10**12 - 1), 10**11, 10**10 + 1, 639, 1, -1, 0]])
    totals = [Decimal(int(c)).scaleb(-2) for c in cents] + [None]
    df = _frame(totals)
    assert ik.checksum(df).tolist() == _expected(df)


def test_checksum_of_sliced_and_chunked_totals():
    df = _frame([Decimal("6.39"), None, Decimal("-0.10"), Decimal("12345678.90"), Decimal("3.00")] * 3)
    stacked = pd.concat([df.iloc[2:], df.iloc[:7]], ignore_index=True)  # offsets and several chunks
    for frame in (df.iloc[3:], df.iloc[1:9], stacked):
        assert ik.checksum(frame).tolist() == _expected(frame)
