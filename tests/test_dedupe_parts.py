"""The parts of dedupe with known truth: each blocking rule, each comparison, the executor, the CLI."""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from invoicekit.dedupe import _blocking, _compare, cli, find_duplicates
from invoicekit.dedupe import _normalize as N
from invoicekit.dedupe._synth import make_dedupe_data
from invoicekit.errors import UsageError

from .test_dedupe import T0, frame, inv

DAY = 86_400_000_000


# -- blocking: every rule finds its pair and nothing else -----------------------------------------
def _keys(n: int, **over) -> _blocking.Keys:
    """Keys where no two rows agree on anything (dates 100 days apart, amounts far apart)."""
    base = dict(tax=np.arange(n) + 100, name=np.arange(n) + 100, number=np.arange(n) + 100,
                anagram=np.arange(n) + 100, tail=np.arange(n) + 100, cents=np.arange(n) * 1000 + 5,
                has_cents=np.ones(n, bool), currency=np.zeros(n, np.int64), created=np.arange(n) * 100 * DAY,
                rank=np.arange(n))
    base.update(over)
    return _blocking.Keys(**base)


def _set(arr, value, rows=(0, 1)):
    arr = np.array(arr)
    arr[list(rows)] = value
    return arr


@pytest.mark.parametrize("rules, changes", [
    (["tax_id"], lambda k: dict(tax=_set(k.tax, 7), cents=_set(k.cents, 500), created=_set(k.created, [0, 13 * DAY]),
                                name=_set(k.name, [0, 10_000]))),
    (["client_name", "neighbourhood"], lambda k: dict(name=_set(k.name, 7), cents=_set(k.cents, 500),
                                                      created=_set(k.created, [0, 13 * DAY]))),
    (["invoice_number"], lambda k: dict(number=_set(k.number, 7), created=_set(k.created, [0, 20 * DAY]))),
    (["number_anagram"], lambda k: dict(anagram=_set(k.anagram, 7), cents=_set(k.cents, [500, 501]),
                                        created=_set(k.created, [0, 20 * DAY]))),
    (["amount_date"], lambda k: dict(cents=_set(k.cents, [500, 501]), created=_set(k.created, [0, 5 * DAY]),
                                     name=_set(k.name, [0, 10_000]))),
    (["neighbourhood"], lambda k: dict(cents=_set(k.cents, [500, 501]), name=_set(k.name, [1, 2]),
                                       created=_set(k.created, [0, 13 * DAY]))),
])
def test_each_blocking_rule(rules, changes):
    k = _keys(40)
    k = _blocking.Keys(**{**k.__dict__, **changes(k)})
    a, b, mask = _blocking.candidate_pairs(k)
    assert list(zip(a, b)) == [(0, 1)], (a, b)
    assert [n for n, bit in _blocking.RULES.items() if mask[0] & bit] == rules


def test_blocking_nulls_never_group_and_pairs_are_bounded():
    n = 50_000
    k = _keys(n, tax=np.full(n, -1), cents=np.full(n, 500), created=np.zeros(n, np.int64))
    a, b, mask = _blocking.candidate_pairs(k)
    assert not (mask & _blocking.RULES["tax_id"]).any()
    assert len(a) <= n * 8 * 2 + n * 4
    assert (a < b).all() and len(np.unique(a * n + b)) == len(a)


def test_blocking_incremental_only_touches_new_rows():
    n = 100
    k = _keys(n, tax=np.zeros(n, np.int64), cents=np.full(n, 500), created=np.zeros(n, np.int64))
    is_new = np.zeros(n, bool)
    is_new[:3] = True
    a, b, _ = _blocking.candidate_pairs(k, is_new=is_new)
    assert len(a) and (is_new[a] | is_new[b]).all()


# -- normalisation and comparisons ----------------------------------------------------------------
def _forms(**cols) -> pd.DataFrame:
    base = {c: [None] * len(next(iter(cols.values()))) for c in ("invoice_number", "client_tax_id", "client_name",
                                                                  "client_email", "client_address")}
    base.update(cols)
    return N.normalised({k: pa.array(v, pa.string()) for k, v in base.items()}).to_pandas()


def test_number_forms():
    f = _forms(invoice_number=["INV-2O26-000I23", "inv 2026 000123", "INV2026000123", "2026/123", "", None])
    assert f["number_fixed"].iloc[0] == f["number_fixed"].iloc[1] == "1NV2026123"
    assert f["number_folded"].iloc[1] == f["number_folded"].iloc[2]
    assert f["number_tail"].iloc[3] == "123"
    assert f["number_plain"].isna().tolist()[-2:] == [True, True]


def test_name_email_address_forms():
    f = _forms(client_name=["Müller & Söhne G.m.b.H.", "MÜLLER AND SÖHNE GmbH", "Acme Ltd", "ACME Limited",
                            "Acme, Inc.", "Bâtir SARL", "Bâtir S.A.R.L.", "Holland BV", "  ", "株式会社さくら商事"],
               client_email=["A@B.example"] * 10,
               client_address=["1 Main Street", "1 main st.", "Hauptstraße 5", "Hauptstr. 5", None, None, None,
                               None, None, None])
    name = f["name"].tolist()
    assert name[0] == name[1] == "müller and söhne"
    assert name[2] == name[3] == name[4] == "acme"
    assert name[5] == name[6] == "bâtir" and name[7] == "holland"
    assert pd.isna(name[8]) and name[9] == "株式会社さくら商事"
    assert f["email"].iloc[0] == "a@b.example"
    assert f["address"].iloc[0] == f["address"].iloc[1] and f["address"].iloc[2] == f["address"].iloc[3]


def _compare_rows(left: dict, right: dict) -> dict:
    df = frame(left, right)
    p = _compare.prepare(df)
    _compare.add_lines(p, df, np.array([0, 1]))
    sa = {k: v[[0]] for k, v in p.items()}
    sb = {k: v[[1]] for k, v in p.items()}
    return {k: v[0] for k, v in _compare.compare(sa, sb).items()}


@pytest.mark.parametrize("a, b, level", [
    ("INV-2026-000015", "INV-2026-000015", 5), ("INV-2026-000015", "inv2026 000015", 5),
    ("INV-2026-000015", "INV-2O26-0000I5", 4), ("INV-2026-000015", "INV-2026-15", 4),
    ("INV-2026-000015", "INV-2026-000051", 3), ("INV-2026-000015", "15", 2),
    ("INV-2026-000015", "INV-2026-000016", 1), ("INV-2026-000015", None, 0), ("SUB-0001", "W-0001", 1),
])
def test_number_levels(a, b, level):
    c = _compare_rows(inv(1, invoice_number=a), inv(2, invoice_number=b))
    assert c["number_level"] == level


def test_field_similarities():
    lines = [{"description": "A", "quantity": 1, "unit_price": 2.0},
             {"description": "B", "quantity": 2, "unit_price": 1.5}]
    c = _compare_rows(inv(1, lines=lines, client_tax_id="DE123456789"),
                      inv(2, lines=lines[::-1], client_tax_id="DE 123 456 789", client_email="BILLING@mueller.example",
                          client_address="12 Main St, Berlin", client_name="Müller Bakery G.m.b.H."))
    assert c["sim_line_items"] == 1.0  # a multiset: order does not matter
    assert c["tax_level"] == 3 and c["sim_client_email"] == 1.0
    assert c["sim_client_name"] == 1.0 and c["sim_client_address"] == 1.0
    typo = _compare_rows(inv(1, client_tax_id="DE123456789"), inv(2, client_tax_id="DE123456798",
                                                                   lines=[{"description": "Consulting hors",
                                                                           "quantity": 3, "unit_price": 95.0}]))
    assert typo["tax_level"] == 2
    assert 0.3 < typo["sim_line_items"] < 0.97
    other = _compare_rows(inv(1, client_tax_id="DE123456789"), inv(2, client_tax_id="FR999999999"))
    assert other["tax_level"] == 1


def test_amount_and_date_similarities():
    from decimal import Decimal

    c = _compare_rows(inv(1, total=Decimal("100.00")), inv(2, total=Decimal("100.01"),
                                                          created_at=T0 + pd.Timedelta(days=3)))
    assert c["cents_diff"] == 1 and c["sim_total"] == 0.99
    assert abs(c["days"] - 3) < 1e-9 and abs(c["sim_created_at"] - 0.9) < 1e-9
    far = _compare_rows(inv(1, total=Decimal("100.00")), inv(2, total=Decimal("150.00"), currency="USD"))
    assert far["cents_diff"] == 5000 and far["sim_total"] < 0.9 and not far["same_currency"]
    none = _compare_rows(inv(1, total=None), inv(2))
    assert none["cents_diff"] == -1 and np.isnan(none["sim_total"])


# -- executors ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return make_dedupe_data(4_000, variant="hard", seed=9)


def test_thread_executor_gives_the_same_pairs(data, monkeypatch):
    from invoicekit.dedupe import _find

    base = find_duplicates(data[0], progress=False)
    monkeypatch.setattr(_find, "CHUNK", 700)  # several chunks
    with ThreadPoolExecutor(2) as pool:
        other = find_duplicates(data[0], executor=pool, workers=1, progress=False)
    pd.testing.assert_frame_equal(base.pairs, other.pairs)


def test_dask_executor_gives_the_same_pairs(data, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from invoicekit.dedupe import _find

    base = find_duplicates(data[0], progress=False)
    monkeypatch.setattr(_find, "CHUNK", 2_000)
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        other = find_duplicates(data[0], executor=client.get_executor(), progress=False)
    pd.testing.assert_frame_equal(base.pairs, other.pairs)
    assert base.pairs["is_duplicate"].sum() > 100


# -- CLI ------------------------------------------------------------------------------------------
def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["dedupe", *argv])


def _store(tmp_path, rows):
    from tests._build import device_row, write_device_store

    path = tmp_path / "device.sqlite"
    write_device_store(str(path), [device_row(i, **r) for i, r in enumerate(rows)])
    return str(path)


def test_cli_finds_duplicates(tmp_path, capsys):
    same = {"invoice_number": "INV-7"}
    path = _store(tmp_path, [same, {**same, "created_at": "2026-03-02T09:00:00"}, {}])
    html = tmp_path / "d.html"
    assert cli.run(_args("--local", path, "--json", "--html", str(html))) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["duplicate_pairs"] == 1 and out["clusters"] == 1 and out["removable"] == 1
    assert out["actions"]["skip"] + out["actions"]["merge"] == 1
    assert html.exists()
    assert cli.run(_args("--local", path)) == 1
    assert "nothing written" in capsys.readouterr().out


def test_cli_clean_store_and_bad_usage(tmp_path, capsys):
    path = _store(tmp_path, [{}, {}, {}])
    assert cli.run(_args("--local", path, "--json")) == 0
    assert json.loads(capsys.readouterr().out)["duplicate_pairs"] == 0
    with pytest.raises(UsageError, match="--local takes offline store files"):
        cli.run(_args("--local", "postgresql://u:secret@h/db"))
    with pytest.raises(UsageError, match="--threshold"):
        cli.run(_args("--local", path, "--threshold", "3"))
    with pytest.raises(SystemExit) as exc:
        _args("--local", path, "--central", "sqlite:///x")
    assert exc.value.code == 2
