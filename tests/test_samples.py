import filecmp
from pathlib import Path

import pandas as pd
import pytest

import invoicekit as ik
from invoicekit.samples import DUPLICATE_KINDS, SITUATIONS, make_duplicates, make_invoices, make_scenario, write_samples
from tests._build import dump

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def test_committed_samples_regenerate_identically(tmp_path):
    fresh = write_samples(tmp_path)
    for name, path in fresh.items():
        committed = SAMPLES / name
        assert committed.exists(), f"{committed} is missing; run `make samples`"
        if name.endswith(".sqlite"):
            assert dump(path) == dump(committed), f"{name} differs; run `make samples` and commit"
        else:
            assert filecmp.cmp(path, committed, shallow=False), f"{name} differs; run `make samples`"


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = make_invoices(200, seed=1), make_invoices(200, seed=1), make_invoices(200, seed=2)
    pd.testing.assert_frame_equal(a.invoices, b.invoices)
    assert not a.invoices["id"].equals(c.invoices["id"])


def test_invoices_are_valid_and_realistic():
    s = make_invoices(2000, seed=4)
    assert ik.validate(s).ok and ik.verify(s.invoices).all()
    assert s.invoices["id"].is_unique
    assert s.invoices["currency"].nunique() >= 5
    per_invoice = s.lines.groupby("invoice_id").size()
    assert per_invoice.min() == 1 and per_invoice.max() == 5
    assert (s.invoices["modified_at"] >= s.invoices["created_at"]).all()
    assert s.invoices["client_data"].str.contains("\\u00", regex=False).any()  # non-ASCII names, escaped


def test_scenario_covers_every_situation_consistently():
    sc = make_scenario(n_central=300)
    truth = sc.truth
    for device in sc.devices:
        assert set(truth[truth["device"] == device]["situation"]) == set(SITUATIONS)
    central = sc.central.invoices.set_index("id")
    for device, s in sc.devices.items():
        assert ik.validate(s).ok
        local = s.invoices.set_index("id")
        t = truth[truth["device"] == device].set_index("id")["situation"]
        for sit, ids in t.groupby(t).groups.items():
            ids = list(ids)
            if sit == "new_offline":
                assert not set(ids) & set(central.index)
                assert (local.loc[ids, "version"] == 1).all()
                continue
            lv, cv = local.loc[ids, "version"], central.loc[ids, "version"]
            same_content = local.loc[ids, "checksum"] == central.loc[ids, "checksum"]
            if sit == "synced":
                assert same_content.all() and (lv == cv).all()
                assert (local.loc[ids, "sync_status"] == "synced").all()
            elif sit in ("edited_offline", "deleted_local"):
                assert (lv == cv + 1).all() and (local.loc[ids, "sync_status"] == "pending").all()
            elif sit in ("edited_centrally", "deleted_central"):
                assert (cv == lv + 1).all()
            elif sit == "edited_both":
                assert (lv == cv).all() and (~same_content).all()
            if sit == "deleted_local":
                assert local.loc[ids, "deleted_at"].notna().all()
            if sit == "deleted_central":
                assert central.loc[ids, "deleted_at"].notna().all()


def test_duplicates_have_truth_and_differ_realistically():
    base = make_invoices(1000, seed=8)
    out, truth = make_duplicates(base, rate=0.1, seed=8)
    assert len(out) == 1100 and len(truth) == 100
    assert set(truth["kind"]) == set(DUPLICATE_KINDS)
    assert set(truth["duplicate_of"]) <= set(base.invoices["id"])
    assert ik.validate(out).ok and ik.verify(out.invoices).all()
    inv = out.invoices.set_index("id")
    orig = inv.loc[truth["duplicate_of"]].reset_index()
    dup = inv.loc[truth["id"]].reset_index()
    assert (orig["total"].to_numpy() == dup["total"].to_numpy()).all()
    typo = (truth["kind"] == "number_typo").to_numpy()
    assert (orig["invoice_number"][typo].to_numpy() != dup["invoice_number"][typo].to_numpy()).any()


def test_make_scenario_takes_the_mix_it_is_asked_for():

    shares = {"synced": 0.8, "edited_offline": 0.04, "edited_centrally": 0.04, "edited_both": 0.04,
              "deleted_local": 0.04, "deleted_central": 0.04}
    sc = make_scenario(n_central=4000, devices=("d",), new_per_device=100, single_currency=(), held=0.9,
                       shares=shares, seed=3)
    counts = sc.truth["situation"].value_counts()
    assert counts["new_offline"] == 100
    held = counts.drop("new_offline").sum()
    assert abs(held / 4000 - 0.9) < 0.03 and len(sc.central) == 4000
    assert abs(counts["synced"] / held - 0.8) < 0.03 and abs(counts["deleted_central"] / held - 0.04) < 0.015
    with pytest.raises(ik.UsageError, match="shares"):
        make_scenario(shares={"synced": 0.5, "edited_offline": 0.2})
    with pytest.raises(ik.UsageError, match="shares"):
        make_scenario(shares={"synced": 0.9, "new_offline": 0.1})
    with pytest.raises(ik.UsageError, match="held"):
        make_scenario(held=0)
