"""apply_duplicates / undo_duplicates / review decisions against real stores: PostgreSQL, the
embedded SQLite central store and offline SQLite files (devices)."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import invoicekit as ik
from invoicekit.cli import main
from invoicekit.dedupe import (
    CleanupResult,
    apply_duplicates,
    cluster_duplicates,
    find_duplicates,
    read_decisions,
    record_decisions,
    resolve_duplicates,
    undo_duplicates,
)
from invoicekit.dedupe._synth import make_dedupe_data
from invoicekit.errors import UsageError
from invoicekit.io.records import read_audit
from invoicekit.samples import read_jsonl
from invoicekit.sync import SyncEngine

ROOT = Path(__file__).resolve().parents[1]


# -- helpers --------------------------------------------------------------------------------------
def samples(samples_dir: Path) -> ik.InvoiceSet:
    return read_jsonl(samples_dir / "central.jsonl")


def read(store) -> ik.InvoiceSet:
    return ik.read_central(store) if "://" in str(store) else ik.read_local(store)


def state(store) -> pd.DataFrame:
    """Per invoice: version, content checksum, tombstone flag, the line items as stored."""
    s = read(store)
    inv = s.invoices.set_index("id").sort_index()
    lines = s.lines.sort_values(["invoice_id", "line_no"]).groupby("invoice_id").apply(
        lambda g: tuple(map(str, g[["description", "quantity", "unit_price", "line_total"]].itertuples(index=False))),
        include_groups=False)
    return pd.DataFrame({"version": inv["version"].astype(int), "checksum": inv["checksum"].astype(str),
                         "deleted": inv["deleted_at"].notna(), "line_items": inv["line_items"].astype(str),
                         "lines": lines.reindex(inv.index)})


def resolution_of(store, keep: str = "earliest"):
    s = read(store)
    return resolve_duplicates(s, cluster_duplicates(find_duplicates(s)), keep=keep)


def valid_synthetic(n: int, seed: int) -> ik.InvoiceSet:
    """Generated invoices with re-entries, the few rows failing validation left out."""
    s, _ = make_dedupe_data(n, seed=seed)
    bad = set(ik.validate(s).problems["id"])
    keep = ~s.invoices["id"].isin(bad)
    return ik.InvoiceSet(s.invoices[keep].reset_index(drop=True), s.lines[~s.lines["invoice_id"].isin(bad)])


@pytest.fixture(params=["postgresql", "sqlite", "offline"])
def store(request, tmp_path, samples_dir):
    """A store holding the sample central set: PostgreSQL, embedded SQLite, or an offline file."""
    if request.param == "offline":
        path = str(tmp_path / "device.sqlite")
        ik.write_local(samples(samples_dir), path)
        return path
    url = (request.getfixturevalue("central_pg_url") if request.param == "postgresql"
           else f"sqlite:///{tmp_path / 'central.sqlite'}")
    ik.init_db(url)
    ik.write_central(samples(samples_dir), url)
    return url


# -- apply and undo -------------------------------------------------------------------------------
def test_apply_then_undo_restores_content_and_only_raises_versions(store):
    before = state(store)
    res = resolution_of(store)
    gone = set(res.removed_ids)
    assert len(gone) >= 10  # the samples hold re-entered invoices

    applied = apply_duplicates(res, store=store, actor="alice")
    assert isinstance(applied, CleanupResult) and applied.ok
    assert applied.count("removed") == len(gone) and set(applied.removed["id"]) == gone
    assert applied.removed.set_index("id")["survivor_id"].to_dict() == res.removed.set_index("id")[
        "survivor_id"].to_dict()
    during = state(store)
    ids = sorted(gone)
    assert during.loc[ids, "deleted"].all() and not before.loc[ids, "deleted"].any()
    assert (during.loc[ids, "version"] == before.loc[ids, "version"] + 1).all()
    pd.testing.assert_frame_equal(during.drop(index=ids), before.drop(index=ids))
    for col in ("checksum", "line_items", "lines"):  # a tombstone keeps its content
        assert during.loc[ids, col].equals(before.loc[ids, col])

    undone = undo_duplicates(store, applied.cleanup_id, actor="bob")
    assert undone.count("restored") == len(gone) and undone.ok
    after = state(store)
    assert (after["version"] >= before["version"]).all()
    assert (after.loc[ids, "version"] == before.loc[ids, "version"] + 2).all()
    pd.testing.assert_frame_equal(after.drop(columns="version"), before.drop(columns="version"))

    audit = read_audit(store, op_id=applied.cleanup_id)
    assert sorted(audit["kind"].value_counts().items()) == [("delete", len(gone)), ("undelete", len(gone))]
    deletes = audit[audit["kind"] == "delete"].set_index("invoice_id")
    assert set(deletes.loc[ids, "actor"]) == {"alice"} and set(audit[audit["kind"] == "undelete"]["actor"]) == {"bob"}
    detail = deletes["detail"].map(json.loads)
    scores = res.removed.set_index("id")["score"]
    for i in ids:
        assert detail[i]["cleanup_id"] == applied.cleanup_id
        assert detail[i]["survivor_id"] == res.removed.set_index("id").at[i, "survivor_id"]
        assert detail[i]["score"] == pytest.approx(scores[i])
    assert audit["at"].notna().all()


def test_apply_twice_and_undo_twice_change_nothing_the_second_time(store):
    res = resolution_of(store)
    first = apply_duplicates(res, store=store)
    once = state(store)
    second = apply_duplicates(res, store=store)
    assert second.cleanup_id == first.cleanup_id  # the same resolution is the same cleanup
    assert second.count("unchanged") == len(res.removed) and second.written == 0
    pd.testing.assert_frame_equal(state(store), once)
    assert len(read_audit(store, op_id=first.cleanup_id)) == len(res.removed)

    undo_duplicates(store, first.cleanup_id)
    restored = state(store)
    again = undo_duplicates(store, first.cleanup_id)
    assert again.count("unchanged") == len(res.removed) and again.written == 0
    pd.testing.assert_frame_equal(state(store), restored)
    assert len(read_audit(store, op_id=first.cleanup_id)) == 2 * len(res.removed)
    # an undone cleanup is not applied again over its undo: the entries moved on since they were found
    third = apply_duplicates(res, store=store)
    assert third.count("refused") == len(res.removed)
    assert third.refused["reason"].str.startswith("changed in the store since: version").all()
    pd.testing.assert_frame_equal(state(store), restored)


def test_undo_of_an_unknown_cleanup_is_a_usage_error(store):
    with pytest.raises(UsageError) as info:
        undo_duplicates(store, "dedupe-doesnotexist")
    assert info.value.reason == "unknown_cleanup" and "dedupe-doesnotexist" in str(info.value)


def test_an_invoice_edited_after_matching_is_refused_not_overwritten(store):
    res = resolution_of(store)
    victim = res.removed_ids[0]
    s = read(store)
    row = s.invoices[s.invoices["id"] == victim].copy()
    row["version"] = row["version"] + 1
    row["invoice_number"] = row["invoice_number"] + "-EDITED"
    from invoicekit.integrity import checksum

    row["checksum"] = checksum(row).to_numpy()
    edited = ik.InvoiceSet(row.reset_index(drop=True), s.lines[s.lines["invoice_id"] == victim])
    written = ik.write_central(edited, store) if "://" in store else ik.write_local(edited, store)
    assert written.updated == 1
    before = state(store)

    result = apply_duplicates(res, store=store)
    refused = result.refused.set_index("id")
    assert list(refused.index) == [victim] and "changed in the store since" in refused.at[victim, "reason"]
    assert result.count("removed") == len(res.removed) - 1
    after = state(store)
    assert not after.at[victim, "deleted"] and after.loc[victim].equals(before.loc[victim])
    assert read(store).invoices.set_index("id").at[victim, "invoice_number"].endswith("-EDITED")


def test_a_stale_version_in_the_resolution_is_refused(store):
    res = resolution_of(store)
    stale = res.removed.assign(version=res.removed["version"] - 1)
    before = state(store)
    result = apply_duplicates(dataclasses.replace(res, removed=stale), store=store)
    assert result.count("refused") == len(res.removed) and result.count("removed") == 0
    pd.testing.assert_frame_equal(state(store), before)


def test_cleanup_result_displays_itself(store):
    result = apply_duplicates(resolution_of(store), store=store, cleanup_id="cleanup-1")
    assert result.cleanup_id == "cleanup-1"
    assert "cleanup-1" in repr(result) and "removed=" in repr(result)
    assert "CleanupResult" in result._repr_html_() and "survivor_id" in result._repr_html_()
    assert list(result.summary()["outcome"]) == ["removed", "restored", "unchanged", "refused"]
    assert list(result.removed.columns[:4]) == ["id", "survivor_id", "score", "outcome"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.cleanup_id = "x"


# -- devices: the cleanup is queued and synced ----------------------------------------------------
def _device_with_duplicates(path: Path) -> tuple[ik.LocalStore, list[str]]:
    store = ik.LocalStore(path)
    ids = []
    for n in range(6):
        lines = [{"description": f"Service {n}", "quantity": 2, "unit_price": f"{40 + n}.50"}]
        client = {"name": f"Client {n} GmbH", "email": f"c{n}@example.com", "tax_id": f"DE{100000000 + n}"}
        first = store.create(invoice_number=f"INV-{n:04d}", client=client, line_items=lines, currency="EUR",
                             created_at=f"2026-03-0{n + 1}T10:00:00.000000")
        ids.append(first)
        if n % 2 == 0:  # re-keyed on the device a day later: a duplicate entry of the same invoice
            store.create(invoice_number=f"INV-{n:04d}", client=client, line_items=lines, currency="EUR",
                         created_at=f"2026-03-0{n + 2}T09:00:00.000000")
    return store, ids


def test_offline_cleanup_is_queued_like_localstore_delete_and_syncs_to_central(central, tmp_path):
    path = tmp_path / "device.sqlite"
    device, _ = _device_with_duplicates(path)
    assert SyncEngine(path, central).drain().ok
    assert device.queue().empty
    res = resolution_of(str(path))
    gone = sorted(res.removed_ids)
    assert len(gone) == 3

    applied = apply_duplicates(res, store=str(path), actor="carol")
    assert applied.count("removed") == 3
    queue = device.queue()
    assert list(queue["operation"]) == ["delete"] * 3 and sorted(queue["transaction_id"]) == gone
    assert queue["op_id"].notna().all() and set(queue["status"]) == {"pending"}
    for _, q in queue.iterrows():  # the payload LocalStore.delete queues: the tombstone as stored
        row = device.get(q["transaction_id"])
        assert row["sync_status"] == "pending" and row["deleted_at"]
        want = {k: v for k, v in row.items() if k != "sync_status"}
        want["total_amount"] = float(want["total_amount"])
        assert json.loads(q["payload"]) == want
        assert q["created_at"] == row["modified_at"]

    assert SyncEngine(path, central).drain().ok
    at_central = ik.read_central(central).invoices.set_index("id")
    assert at_central.loc[gone, "deleted_at"].notna().all()
    assert at_central.drop(index=gone)["deleted_at"].isna().all()
    assert (at_central.loc[gone, "version"] == 2).all()

    undone = undo_duplicates(str(path), applied.cleanup_id)
    assert undone.count("restored") == 3
    assert list(device.queue()["operation"]) == ["update"] * 3
    assert SyncEngine(path, central).drain().ok
    at_central = ik.read_central(central).invoices.set_index("id")
    assert at_central.loc[gone, "deleted_at"].isna().all() and (at_central.loc[gone, "version"] == 3).all()


# -- review decisions -----------------------------------------------------------------------------
def test_decisions_are_stored_and_respected_by_a_later_run(store):
    s = read(store)
    pairs = find_duplicates(s)
    dup = pairs.duplicates.iloc[0]
    live = s.invoices[s.invoices["deleted_at"].isna()]
    known = set(pairs.pairs["id_a"]) | set(pairs.pairs["id_b"])
    loners = sorted(set(live["id"]) - known)[:2]
    record_decisions(store, [(dup["id_b"], dup["id_a"], False)], actor="alice")  # order of the ids is free
    record_decisions(store, pd.DataFrame({"id_a": [loners[0]], "id_b": [loners[1]], "same": ["true"]}),
                     actor="bob", at="2026-05-01T12:00:00Z")
    stored = read_decisions(store)
    assert len(stored) == 2 and (stored["id_a"] < stored["id_b"]).all()
    assert dict(zip(stored["actor"], stored["same"])) == {"alice": False, "bob": True}
    assert stored.set_index("actor").at["bob", "at"] == pd.Timestamp("2026-05-01T12:00:00Z")

    later = find_duplicates(s, decisions=store)
    hit = later.pairs[(later.pairs["id_a"] == dup["id_a"]) & (later.pairs["id_b"] == dup["id_b"])].iloc[0]
    assert not hit["is_duplicate"] and hit["action"] == "keep_both"
    assert later.summary().set_index("action").loc["keep_both", "pairs"] >= 1
    assert hit["reason"].startswith("marked not the same by alice")
    a, b = sorted(loners)
    added = later.pairs[(later.pairs["id_a"] == a) & (later.pairs["id_b"] == b)].iloc[0]
    assert added["is_duplicate"] and added["action"] == "merge" and "marked the same by bob" in added["reason"]
    assert int(later.pairs["is_duplicate"].sum()) == int(pairs.pairs["is_duplicate"].sum())  # -1 +1
    # the latest decision on a pair replaces the earlier one
    record_decisions(store, [(dup["id_a"], dup["id_b"], True)], actor="dave")
    assert len(read_decisions(store)) == 2
    again = find_duplicates(s, decisions=store)
    hit = again.pairs[(again.pairs["id_a"] == dup["id_a"]) & (again.pairs["id_b"] == dup["id_b"])].iloc[0]
    assert hit["is_duplicate"] and hit["action"] == "merge" and "dave" in hit["reason"]
    # a resolution from the decided pairs no longer removes the pair marked not the same
    record_decisions(store, [(dup["id_a"], dup["id_b"], False)], actor="alice")
    clusters = cluster_duplicates(find_duplicates(s, decisions=store))
    together = clusters.clusters.groupby("cluster_id")["id"].apply(set)
    assert not any({dup["id_a"], dup["id_b"]} <= members for members in together)


def test_bad_decisions_are_usage_errors(tmp_path):
    path = tmp_path / "d.sqlite"
    ik.LocalStore(path)
    with pytest.raises(UsageError, match="same"):
        record_decisions(str(path), [("a", "b", "perhaps")])
    with pytest.raises(UsageError, match="itself"):
        record_decisions(str(path), [("a", "a", True)])
    with pytest.raises(UsageError, match="lack"):
        record_decisions(str(path), pd.DataFrame({"id_a": ["a"]}))
    assert read_decisions(str(path)).empty


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_writes_only_with_apply_and_undoes(store, capsys, tmp_path):
    where = ["--central", store] if "://" in store else ["--local", store]
    before = state(store)
    assert main(["dedupe", *where]) == 1
    assert "nothing written" in capsys.readouterr().out
    pd.testing.assert_frame_equal(state(store), before)

    res = resolution_of(store, keep="latest")
    assert main(["dedupe", *where, "--apply", "--keep", "latest", "--json", "--actor", "cli-user"]) == 1
    out = json.loads(capsys.readouterr().out)
    cleanup = out["cleanup"]["cleanup_id"]
    assert out["cleanup"]["removed"] == len(res.removed) and cleanup == apply_duplicates(res, store=store).cleanup_id
    assert state(store).loc[sorted(res.removed_ids), "deleted"].all()
    assert set(read_audit(store, op_id=cleanup)["actor"]) == {"cli-user"}

    assert main(["dedupe", "--undo", cleanup, *where]) == 0
    assert f"cleanup {cleanup} undone: {len(res.removed)} restored" in capsys.readouterr().out
    pd.testing.assert_frame_equal(state(store).drop(columns="version"), before.drop(columns="version"))
    assert main(["dedupe", "--undo", "no-such-cleanup", *where]) == 2
    assert "no-such-cleanup" in capsys.readouterr().err


def test_cli_decisions_file_is_recorded_before_matching(tmp_path, samples_dir, capsys):
    path = str(tmp_path / "device.sqlite")
    ik.write_local(samples(samples_dir), path)
    dup = find_duplicates(read(path)).duplicates
    decided = tmp_path / "decisions.csv"
    pd.DataFrame({"id_a": dup["id_a"], "id_b": dup["id_b"], "same": "false"}).to_csv(decided, index=False)
    assert main(["dedupe", "--local", path, "--decisions", str(decided), "--actor", "eve"]) == 0  # none left
    assert "0 duplicate pair(s)" in capsys.readouterr().out
    assert len(read_decisions(path)) == len(dup) and set(read_decisions(path)["actor"]) == {"eve"}
    assert main(["dedupe", "--local", path]) == 0  # a later run without the file respects them
    capsys.readouterr()


def test_cli_bad_usage_exits_2(tmp_path, samples_dir, capsys):
    a, b = str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite")
    for p in (a, b):
        ik.write_local(samples(samples_dir), p)
    assert main(["dedupe", "--local", a, b, "--apply"]) == 2
    assert "one store" in capsys.readouterr().err
    missing = tmp_path / "nope.csv"
    assert main(["dedupe", "--local", a, "--decisions", str(missing)]) == 2
    capsys.readouterr()


# -- a process killed mid-apply -------------------------------------------------------------------
_CHILD = """
import pickle, sys
from invoicekit.dedupe import apply_duplicates
res = pickle.load(open(sys.argv[1], "rb"))
print("start", flush=True)
apply_duplicates(res, store=sys.argv[2], actor="killed")
print("done", flush=True)
"""


@pytest.mark.parametrize("kind", ["postgresql", "sqlite", "offline"])
def test_a_process_killed_mid_apply_leaves_before_or_after_and_a_rerun_completes(kind, tmp_path, request):
    data = valid_synthetic(3000, seed=11)
    if kind == "offline":
        target = str(tmp_path / "device.sqlite")
        ik.write_local(data, target)
    else:
        target = (request.getfixturevalue("central_pg_url") if kind == "postgresql"
                  else f"sqlite:///{tmp_path / 'central.sqlite'}")
        ik.init_db(target)
        ik.write_central(data, target)
    res = resolution_of(target)
    gone = sorted(res.removed_ids)
    assert len(gone) > 50
    pickled = tmp_path / "res.pickle"
    pickled.write_bytes(pickle.dumps(res))
    before = state(target)
    rng = random.Random(kind)
    seen = set()
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(pickled), target], stdout=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout.readline().strip() == "start"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = state(target)
        removed = int(now.loc[gone, "deleted"].sum())
        audited = len(read_audit(target, op_id=_cleanup_id(res)))
        assert (removed, audited) in {(0, 0), (len(gone), len(gone))}, (removed, audited)
        if removed == 0:
            pd.testing.assert_frame_equal(now, before)
        seen.add(removed)
        if removed:
            break
    rerun = apply_duplicates(res, store=target)
    assert rerun.count("removed") + rerun.count("unchanged") == len(gone) and rerun.ok
    assert rerun.count("removed") == (len(gone) if seen == {0} else 0)
    after = state(target)
    assert after.loc[gone, "deleted"].all() and (after.loc[gone, "version"] == before.loc[gone, "version"] + 1).all()
    assert len(read_audit(target, op_id=rerun.cleanup_id)) == len(gone)


def _cleanup_id(res) -> str:
    from invoicekit.dedupe._cleanup import default_cleanup_id

    return default_cleanup_id(res.removed)


# -- the write path's one door out of a tombstone -------------------------------------------------
def test_undelete_lets_exactly_the_named_ids_leave_a_tombstone(store):
    s = read(store)
    live = s.invoices[s.invoices["deleted_at"].isna()].head(2).reset_index(drop=True)
    ids = live["id"].tolist()
    write = ik.write_central if "://" in store else ik.write_local

    def as_set(frame):
        return ik.InvoiceSet(frame, s.lines[s.lines["invoice_id"].isin(frame["id"])])

    dead = live.assign(version=live["version"] + 1, deleted_at=pd.Timestamp("2026-06-01", tz="UTC"))
    assert write(as_set(dead), store, validate=False).updated == 2
    back = live.assign(version=live["version"] + 2)
    plain = write(as_set(back), store, validate=False)
    assert plain.count("refused") == 2 and set(plain.refused["reason"]) == {"tombstone"}
    other = write(as_set(back), store, validate=False, undelete=frozenset({"not-" + ids[0]}))
    assert other.count("refused") == 2
    same_version = write(as_set(back.assign(version=back["version"] - 1)), store, validate=False,
                         undelete=frozenset(ids))
    assert same_version.count("refused") == 2  # the version must still go up
    one = write(as_set(back), store, validate=False, undelete=frozenset(ids[:1]), op_id="undo-1", actor="zoe")
    assert one.results.set_index("id")["outcome"].to_dict() == {ids[0]: "updated", ids[1]: "refused"}
    now = state(store)
    assert not now.at[ids[0], "deleted"] and now.at[ids[1], "deleted"]
    audit = read_audit(store, op_id="undo-1")
    assert list(zip(audit["invoice_id"], audit["kind"], audit["actor"])) == [(ids[0], "undelete", "zoe")]


def test_a_pair_marked_not_the_same_never_shares_a_cluster_through_a_third_invoice(samples_dir):
    sample = samples(samples_dir)
    inv = sample.invoices
    row = inv[inv["deleted_at"].isna()].iloc[[0]]
    copies = pd.concat([row.assign(id=f"{row['id'].iloc[0][:-1]}{c}") for c in "xyz"], ignore_index=True)
    three = ik.InvoiceSet(copies.astype(inv.dtypes), sample.lines.iloc[:0])
    a, b, c = sorted(copies["id"])
    plain = cluster_duplicates(find_duplicates(three))
    assert plain.clusters["cluster_id"].nunique() == 1 and len(plain.clusters) == 3  # all three re-entries
    marked = find_duplicates(three, decisions=[(a, c, False)])
    clusters = cluster_duplicates(marked)
    where = clusters.clusters.set_index("id")["cluster_id"]
    assert a not in where.index or c not in where.index or where[a] != where[c]
    assert len(clusters.clusters) == 2  # the other two still a cluster


def test_cli_cleanup_on_a_store_with_identities_needs_a_token_file(tmp_path, samples_dir, capsys, monkeypatch):
    monkeypatch.delenv("INVOICEKIT_TOKEN", raising=False)
    monkeypatch.delenv("INVOICEKIT_TOKEN_FILE", raising=False)
    secret = "s" * 40
    url = f"sqlite:///{tmp_path / 'central.sqlite'}"
    ik.init_db(url, token_secret=secret)
    ik.write_central(samples(samples_dir), url, token=ik.issue_token("loader", secret=secret))
    before = state(url)
    assert main(["dedupe", "--central", url, "--apply"]) == 2  # refused before anything is written
    assert "signed identity token" in capsys.readouterr().err
    pd.testing.assert_frame_equal(state(url), before)
    token_file = tmp_path / "token"
    token_file.write_text(ik.issue_token("analyst-kim", secret=secret) + "\n")
    assert main(["dedupe", "--central", url, "--apply", "--json", "--token-file", str(token_file)]) == 1
    cleanup = json.loads(capsys.readouterr().out)["cleanup"]
    assert cleanup["removed"] > 0
    assert set(read_audit(url, op_id=cleanup["cleanup_id"])["actor"]) == {"analyst-kim"}
    monkeypatch.setenv("INVOICEKIT_TOKEN_FILE", str(token_file))  # the environment names the file
    assert main(["dedupe", "--undo", cleanup["cleanup_id"], "--central", url]) == 0
    pd.testing.assert_frame_equal(state(url).drop(columns="version"), before.drop(columns="version"))
    assert main(["dedupe", "--central", url, "--apply", "--token-file", str(tmp_path / "missing")]) == 2
    assert "cannot read the token file" in capsys.readouterr().err
