"""Stores written by other software (invoicekit.foreign) drained by the SyncEngine: every
queue row gets the outcome a correct engine gives it, and the central store ends exactly
as the generator's truth says. The generator writes the files with plain sqlite3, not
with the toolkit, and varies what the devices' schema leaves open."""

import pandas as pd
import pytest

import invoicekit as ik
from invoicekit.foreign import write_foreign_store
from invoicekit.sync import SyncEngine

OUTCOME = {"sync": {"synced"}, "redelivery": {"already_synced", "synced"}, "quarantine": {"quarantined"}}

#: every kind of :mod:`invoicekit.foreign`
HANDLED = ["kept_row_delete", "removed_row_delete", "nested_payload", "no_currency", "currency_setting",
           "resent_ops", "unknown_ops", "id_mismatch", "poisoned", "timestamps", "mixed"]


def central_matches_truth(central, truth):
    """Central holds exactly the truth's invoices, at its versions and tombstones; returns both,
    aligned by id, for further checks."""
    state = ik.read_central(central, lines=False).invoices.set_index("id")
    want = truth.expected[truth.expected["present"]].set_index("id")
    assert set(state.index) == set(want.index)
    have = state.loc[want.index]
    assert (have["version"].astype(int).to_numpy() == want["version"].astype(int).to_numpy()).all()
    assert (have["deleted_at"].notna().to_numpy() == want["deleted"].astype(bool).to_numpy()).all()
    return have, want


CASES = [(kind, seed, "sqlite") for kind in HANDLED for seed in (0, 1)] + [
    (kind, 2, "postgresql") for kind in ("kept_row_delete", "removed_row_delete", "resent_ops", "poisoned")]


@pytest.mark.parametrize(("kind", "seed", "dialect"), CASES)
def test_a_foreign_store_drains_to_its_truth(kind, seed, dialect, tmp_path, request):
    truth = write_foreign_store(tmp_path / f"{kind}.sqlite", kind=kind, seed=seed)
    central = (request.getfixturevalue("central_pg_url") if dialect == "postgresql"
               else f"sqlite:///{tmp_path / 'central.sqlite'}")
    ik.init_db(central)
    currency = "EUR" if kind in ("no_currency", "mixed") else None  # mixed: some layouts record none
    seed_store = truth.write_central_seed(tmp_path / "seed.sqlite")
    ik.write_central(ik.read_local(seed_store, currency=currency), central)

    result = SyncEngine(truth.path, central, currency=currency).drain()

    got = result.results.set_index("queue_id")["outcome"]
    for row in truth.queue.itertuples():
        assert got.get(row.queue_id) in OUTCOME[row.action], (row.queue_id, row.why, row.action, got.get(row.queue_id),
                                                               result.results.set_index("queue_id").loc[row.queue_id,
                                                                                                      "error"])
    have, want = central_matches_truth(central, truth)
    known = want["currency"].notna().to_numpy()
    assert (have["currency"].astype(str).to_numpy()[known] == want["currency"].astype(str).to_numpy()[known]).all()
    if currency is not None:
        assert (have["currency"].astype(str).to_numpy()[~known] == currency).all()
    assert not ik.tampered(ik.read_central(central).invoices).shape[0]
    assert pd.Series(got).isin(["synced", "already_synced", "quarantined"]).all()


#: kinds whose rows say what their queue says (in the others the queue alone is wrong: an
#: unknown operation, a payload for another id, a payload altered after checksumming), so
#: reconcile -> resolve -> plan -> apply_sync, which reads rows, reaches the same truth
ROW_KINDS = ["kept_row_delete", "removed_row_delete", "no_currency", "currency_setting", "resent_ops",
             "timestamps", "poisoned"]


@pytest.mark.parametrize(("kind", "seed"), [(kind, seed) for kind in ROW_KINDS for seed in (0, 1)])
def test_a_foreign_store_reconciled_and_applied_reaches_its_truth(kind, seed, tmp_path):
    """The analyst's path: deletions the device queued with the row as it was (kept or removed)
    are deletions one version up, never conflicts; a device's own version is never lowered;
    rows the central store cannot hold are quarantined and the rest applied."""
    truth = write_foreign_store(tmp_path / f"{kind}.sqlite", kind=kind, seed=seed)
    central = f"sqlite:///{tmp_path / 'central.sqlite'}"
    ik.init_db(central)
    currency = "EUR" if kind == "no_currency" else None
    ik.write_central(ik.read_local(truth.write_central_seed(tmp_path / "seed.sqlite"), currency=currency), central)

    rec = ik.reconcile(ik.read_local(truth.path, currency=currency), central)
    assert rec.counts()["conflict"] == 0, rec.status[rec.status["status"] == "conflict"]
    res = ik.resolve(rec)
    result = ik.apply_sync(ik.plan_sync(res), local=truth.path, central=central)
    assert result.ok

    central_matches_truth(central, truth)
    held = res.actions[res.actions["action"] == "quarantine"]
    assert (kind == "poisoned") == (len(held) > 0)
    assert held["quarantine_reason"].str.contains("^local row |fails validation: ").all()


@pytest.mark.parametrize("kind", HANDLED)
def test_a_foreign_store_compared_pushed_down_equals_the_full_read(kind, tmp_path, pg_schemas):
    """A store written by other software, compared with a PostgreSQL central store whose keys
    are compared in bulk (reconcile(..., pushdown=True)): statuses, field differences and
    summary equal the full read's, and only rows whose keys differ are fetched; the device
    scope (reconcile(path, url)) gives the full read's statuses for every id the device holds."""
    from tests.test_pushdown import _by_id, assert_pushdown_matches_full

    truth = write_foreign_store(tmp_path / f"{kind}.sqlite", kind=kind, seed=3)
    central = pg_schemas()
    ik.init_db(central)
    currency = "EUR" if kind in ("no_currency", "mixed") else None
    ik.write_central(ik.read_local(truth.write_central_seed(tmp_path / "seed.sqlite"), currency=currency), central)
    local = ik.read_local(truth.path, currency=currency)
    _, full = assert_pushdown_matches_full(local, central)
    device = ik.reconcile(local, central)  # a URL: the device's ids only
    assert device.scope == "device"
    held = full.status[full.status["status"] != "central_only"]
    pd.testing.assert_frame_equal(_by_id(device.status)[["id", "status", "reason"]],
                                  _by_id(held)[["id", "status", "reason"]])
