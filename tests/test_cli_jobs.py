"""The CLI finishing a job: sync --decisions, --json per store, --limit, verify, db load,
validate per file, and a dry run that checks what the real run checks. Real SQLite files and
a real PostgreSQL (the ``central`` fixture runs each test on both)."""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import invoicekit as ik
from invoicekit._decisions_csv import read_decisions_csv
from invoicekit.cli import main
from invoicekit.samples import read_jsonl, write_jsonl

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "invoicekit", *args], capture_output=True, text=True, cwd=cwd)


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def loaded(central, tmp_path):
    """A central store holding the sample central set, and a copy of device_a."""
    ik.write_central(read_jsonl(SAMPLES / "central.jsonl"), central)
    store = tmp_path / "a.sqlite"
    shutil.copy(SAMPLES / "device_a.sqlite", store)
    return central, store


# -- sync --decisions ----------------------------------------------------------------------
def test_three_way_finishes_with_a_decisions_file(loaded, tmp_path, capsys):
    central, store = loaded
    template = tmp_path / "todo.csv"
    argv = ["sync", "--local", str(store), "--central", central, "--strategy", "three_way"]
    assert main([*argv, "--dry-run", "--unresolved-csv", str(template)]) == 1  # conflicts need a decision
    todo = pd.read_csv(template, dtype=str, keep_default_na=False)
    assert list(todo.columns) == ["id", "field", "base", "local", "central", "choice"] and len(todo) == 9
    assert "need a decision" in capsys.readouterr().out
    todo["choice"] = "central"
    todo.loc[0, "choice"] = "local"
    todo.to_csv(template, index=False)
    assert main([*argv, "--decisions", str(template), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["decisions"] == 9 and out["held"] == [] and out["unresolved"] == []
    assert out["plan"]["flag_conflict"] == 0
    assert main(["reconcile", "--local", str(store), "--central", central, "--json"]) == 0
    capsys.readouterr()
    # each decided field holds the side chosen, on both stores
    cen, loc = ik.read_central(central), ik.read_local(store)
    for _, row in todo.iterrows():
        description, part = row["field"][len("lines["):].rsplit("#", 1)[0], row["field"].rsplit(".", 1)[1]
        for side in (cen, loc):
            lines = side.lines[side.lines["invoice_id"] == row["id"]]
            value = lines.loc[lines["description"] == description, part].iloc[0]
            assert str(value) == row[row["choice"]]
    # running it again changes nothing (the decisions name settled invoices: typed error)
    assert main([*argv, "--decisions", str(template)]) == 2
    assert "not_a_conflict" in capsys.readouterr().err


def _rec(loaded):
    central, store = loaded
    return ik.reconcile(ik.read_local(store), ik.read_central(central))


def test_a_bad_decisions_file_names_file_row_and_rule(loaded, tmp_path):
    rec = _rec(loaded)
    unresolved = ik.resolve(rec, strategy="three_way").unresolved
    conflict, field = unresolved["id"].iloc[0], unresolved["field"].iloc[0]
    settled = rec.of("same")["id"].iloc[0]
    path = tmp_path / "d.csv"
    path.write_text("id,field,choice\n"
                    f"{conflict},{field},central\n"            # row 2: fine
                    f"{conflict},{field},local\n"              # row 3: twice
                    f"{conflict},total,local\n"                # row 4: total cannot be decided
                    f"{conflict},invoice_number,local\n"       # row 5: does not differ
                    f"{settled},*,local\n"                     # row 6: not a conflict
                    "no-such-id,*,central\n"                   # row 7
                    f"{conflict},{field},theirs\n"             # row 8: bad choice (and a duplicate)
                    f"{conflict},{field},\n")                  # row 9: not decided yet: skipped
    with pytest.raises(ik.ValidationError) as err:
        read_decisions_csv(path, rec)
    problems = err.value.problems
    assert set(problems["source"]) == {str(path)}
    got = set(zip(problems["source_row"], problems["rule"]))
    assert got == {(3, "duplicate_decision"), (4, "bad_field"), (5, "no_difference"), (6, "not_a_conflict"),
                   (7, "unknown_invoice"), (8, "bad_choice"), (8, "duplicate_decision")}
    assert err.value.reason == "bad_decisions"


def test_a_bad_decisions_file_is_one_line_exit_2_nothing_written(loaded, tmp_path):
    central, store = loaded
    path = tmp_path / "d.csv"
    path.write_text("id;field;choice\nx;y;z\n")
    before = store.read_bytes()
    r = run("sync", "--local", str(store), "--central", central, "--strategy", "three_way", "--decisions", str(path))
    assert r.returncode == 2 and r.stdout == ""
    line = r.stderr.strip()
    assert "\n" not in line and f"{path} row 1" in line and "missing_column" in line
    r = run("sync", "--local", str(store), "--central", central, "--strategy", "three_way",
            "--decisions", str(tmp_path / "missing.csv"))
    assert r.returncode == 2 and "missing.csv: no such file" in r.stderr
    assert store.read_bytes() == before


def test_decisions_with_base_and_whole_invoice(loaded, tmp_path, capsys):
    central, store = loaded
    unresolved = ik.resolve(_rec(loaded), strategy="three_way").unresolved
    ids = unresolved["id"].drop_duplicates().tolist()
    path = tmp_path / "d.csv"
    pd.DataFrame({"id": ids, "field": "*", "choice": ["base"] + ["central"] * (len(ids) - 1)}).to_csv(path,
                                                                                                      index=False)
    assert main(["sync", "--local", str(store), "--central", central, "--strategy", "three_way",
                 "--decisions", str(path)]) == 0
    capsys.readouterr()
    first = unresolved[unresolved["id"] == ids[0]].iloc[0]
    cen = ik.read_central(central)
    part = first["field"].rsplit(".", 1)[1]
    description = first["field"][len("lines["):].rsplit("#", 1)[0]
    lines = cen.lines[(cen.lines["invoice_id"] == ids[0]) & (cen.lines["description"] == description)]
    assert str(lines[part].iloc[0]) == first["base"]


# -- dry run checks what the real run checks ---------------------------------------------------
def test_dry_run_refuses_what_the_real_run_refuses(tmp_path, capsys):
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    url = f"sqlite:///{tmp_path / 'central.sqlite'}"
    assert main(["db", "init", url, "--token-secret-file", str(secret)]) == 0
    token = ik.issue_token("loader", secret="s" * 40)
    ik.write_central(read_jsonl(SAMPLES / "central.jsonl"), url, token=token)
    store = tmp_path / "a.sqlite"
    shutil.copy(SAMPLES / "device_a.sqlite", store)
    capsys.readouterr()
    argv = ["sync", "--local", str(store), "--central", url, "--strategy", "merge_fields"]
    before = store.read_bytes()
    assert main([*argv, "--dry-run"]) == 2  # no token: the real run would be refused
    dry = capsys.readouterr().err
    assert main(argv) == 2
    real = capsys.readouterr().err
    assert "token" in dry and dry.split(": ", 2)[-1] == real.split(": ", 2)[-1]
    assert store.read_bytes() == before
    tok = tmp_path / "token"
    tok.write_text(token)
    assert main([*argv, "--dry-run", "--token-file", str(tok)]) == 0
    assert store.read_bytes() == before
    assert main([*argv, "--token-file", str(tok)]) == 0


# -- --json per store, --limit ---------------------------------------------------------------
def test_reconcile_json_is_per_store(loaded, tmp_path, capsys):
    central, store = loaded
    other = tmp_path / "b.sqlite"
    shutil.copy(SAMPLES / "device_b.sqlite", other)
    html = tmp_path / "r.html"
    assert main(["reconcile", "--local", str(store), str(other), "--central", central, "--json",
                 "--html", str(html)]) == 1
    objs = json_lines(capsys.readouterr().out)
    assert [o["store"] for o in objs] == [str(store), str(other)]
    truth = pd.read_csv(SAMPLES / "situations.csv")
    for o, device in zip(objs, ("device_a", "device_b")):
        expected = truth[truth["device"] == device]["situation"].value_counts()
        assert o["counts"]["local_only"] == expected["new_offline"]
    assert (tmp_path / "r_a.html").exists() and (tmp_path / "r_b.html").exists()


def test_limit_cuts_printed_lists_only(loaded, capsys):
    central, store = loaded
    argv = ["reconcile", "--local", str(store), "--central", central]
    assert main([*argv, "--limit", "3"]) == 1
    out = capsys.readouterr().out
    todo = _rec(loaded).status.query("status not in ('same', 'central_only')")
    assert f"... {len(todo) - 3:,} more invoices (--limit 0 shows all)" in out
    assert sum(i in out for i in todo["id"]) == 3
    assert main([*argv, "--limit", "0"]) == 1
    out = capsys.readouterr().out
    assert all(i in out for i in todo["id"]) and "more invoices" not in out
    r = run(*argv, "--limit", "-1")
    assert r.returncode == 2 and "--limit" in r.stderr


def test_every_command_takes_json(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    assert main(["db", "init", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"store": url, "schema_version": ik.init_db(url),
                                                   "signed_identities": False, "push_role": None}
    secret = tmp_path / "s"
    secret.write_text("k" * 40)
    assert main(["db", "token", "ann", "--secret-file", str(secret), "--json"]) == 0
    tok = json.loads(capsys.readouterr().out)
    assert tok["subject"] == "ann" and ik.verify_token(tok["token"], secret="k" * 40).subject == "ann"
    assert main(["samples", "--out", str(tmp_path / "s2"), "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert Path(files["device_a.sqlite"]).exists()
    for command in ("validate", "verify", "reconcile", "sync", "dedupe", "render", "demo"):
        r = run(command, "--help")
        assert "--json" in r.stdout, command
    for command in ("validate", "verify", "reconcile", "sync", "dedupe", "render"):
        assert "--limit" in run(command, "--help").stdout, command
    assert "--json" in run("db", "load", "--help").stdout


# -- validate ------------------------------------------------------------------------------
def test_validate_checks_each_file_on_its_own(tmp_path, capsys):
    a = str(SAMPLES / "device_a.sqlite")
    assert main(["validate", a, a]) == 0  # the same file twice: each on its own is fine
    capsys.readouterr()
    assert main(["validate", "--as-one-set", "--json", a, a]) == 1  # as one set, every id is there twice
    objs = json_lines(capsys.readouterr().out)
    assert len(objs) == 2 and all(o["as_one_set"] for o in objs)
    assert {r["rule"] for r in objs[0]["problems"]} == {"duplicate_id"}


def test_validate_reads_json_lines_and_parquet_naming_the_row(tmp_path, capsys):
    s = read_jsonl(SAMPLES / "central.jsonl")
    good = tmp_path / "good.parquet"
    s.invoices.to_parquet(good)
    bad = tmp_path / "bad.jsonl"
    write_jsonl(s, bad)
    rows = bad.read_text().splitlines()
    row = json.loads(rows[6])
    row["total_amount"] = "twelve"
    rows[6] = json.dumps(row)
    bad.write_text("\n".join(rows) + "\n")
    assert main(["validate", "--json", str(good), str(bad)]) == 1
    g, b = json_lines(capsys.readouterr().out)
    assert g["ok"] and g["invoices"] == len(s)
    assert [(p["source"], p["source_row"], p["id"], p["rule"]) for p in b["problems"]] == [
        (str(bad), 7, row["id"], "not_numeric")]


# -- verify --------------------------------------------------------------------------------
def test_verify_names_tampered_rows_by_id(central, tmp_path, capsys):
    store = tmp_path / "a.sqlite"
    shutil.copy(SAMPLES / "device_a.sqlite", store)
    with sqlite3.connect(store) as conn:
        victim = conn.execute("SELECT id FROM transactions ORDER BY id LIMIT 1 OFFSET 5").fetchone()[0]
        conn.execute("UPDATE transactions SET total_amount = total_amount + 1 WHERE id = ?", (victim,))
    conn.close()
    ik.write_central(read_jsonl(SAMPLES / "central.jsonl"), central)
    assert main(["verify", "--json", str(store), str(SAMPLES / "device_b.sqlite"), central]) == 1
    a, b, c = json_lines(capsys.readouterr().out)
    assert [t["id"] for t in a["tampered"]] == [victim] and not a["ok"]
    assert {t["id"] for t in b["tampered"]} == set(ik.tampered(ik.read_local(SAMPLES / "device_b.sqlite"))["id"])
    assert len(b["tampered"]) == 2
    assert c["ok"] and c["tampered"] == [] and c["invoices"] == len(ik.read_central(central))
    assert main(["verify", str(SAMPLES / "device_a.sqlite")]) == 0
    assert "every checksum verifies" in capsys.readouterr().out


def test_verify_a_tampered_central_row(central, capsys):
    ik.write_central(read_jsonl(SAMPLES / "central.jsonl"), central)
    store = ik.io.central.CentralStore(central)
    victim = store.fetch("SELECT id FROM invoices ORDER BY id LIMIT 1")[0][0]
    store.execute(f"UPDATE invoices SET invoice_number = 'FORGED' WHERE id = {store.mark}", [(victim,)])
    assert main(["verify", central]) == 1
    out = capsys.readouterr().out
    assert victim in out and "1 row(s) fail their checksum" in out


# -- db load -------------------------------------------------------------------------------
def test_db_load_jsonl_parquet_and_stores_compare_and_set(central, tmp_path, capsys):
    s = read_jsonl(SAMPLES / "central.jsonl")
    half = tmp_path / "half.parquet"
    s.invoices.iloc[: len(s) // 2].to_parquet(half)
    assert main(["db", "load", central, str(half), str(SAMPLES / "central.jsonl"), "--json"]) == 0
    first, second = json_lines(capsys.readouterr().out)
    assert first["store"] == str(half) and first["inserted"] == len(s) // 2
    assert second["inserted"] == len(s) - len(s) // 2 and second["unchanged"] == len(s) // 2
    assert len(ik.read_central(central)) == len(s)
    assert main(["db", "load", central, str(SAMPLES / "central.jsonl")]) == 0  # again: all unchanged
    assert f"{len(s):,} unchanged" in capsys.readouterr().out
    # an offline store holding older versions: those are refused, exit 1
    store = tmp_path / "a.sqlite"
    shutil.copy(SAMPLES / "device_a.sqlite", store)
    assert main(["db", "load", central, str(store), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["refused"] > 0 and len(out["refused_rows"]) == out["refused"]
    assert {r["reason"] for r in out["refused_rows"]} <= {"lower_version", "same_version_other_content",
                                                         "tombstone"}


def test_db_load_writes_nothing_when_a_file_breaks_a_rule(central, tmp_path):
    good = tmp_path / "good.jsonl"
    shutil.copy(SAMPLES / "central.jsonl", good)
    r = run("db", "load", central, str(good), str(SAMPLES / "device_b.sqlite"))
    assert r.returncode == 2
    assert "nothing written" in r.stderr and "device_b.sqlite row 4" in r.stderr and "total_mismatch" in r.stderr
    assert len(ik.read_central(central)) == 0


def test_db_load_bad_files(central, tmp_path):
    partial = tmp_path / "partial.parquet"
    read_jsonl(SAMPLES / "central.jsonl").invoices[["id", "invoice_number"]].to_parquet(partial)
    r = run("db", "load", central, str(partial))
    assert r.returncode == 2 and "lacks column(s) client_data, line_items, created_at, total_amount" in r.stderr
    r = run("db", "load", central, "postgresql://me:hunter2@db/x")
    assert r.returncode == 2 and "takes files" in r.stderr and "hunter2" not in r.stderr
    r = run("db", "load", central, str(tmp_path / "nope.jsonl"))
    assert r.returncode == 2 and "nope.jsonl" in r.stderr and "Traceback" not in r.stderr


# -- dedupe and render: --json per store, --limit ----------------------------------------------
def _device(path, rows):
    from tests._build import device_row, write_device_store

    write_device_store(str(path), [device_row(i, **r) for i, r in rows])
    return str(path)


@pytest.fixture
def two_devices(tmp_path):
    """Device a: INV-7 entered twice, plus two others; device b: a copy of a's INV-00003 (new
    id, same content: the invoice entered on both devices), plus one other."""
    copy = {"invoice_number": "INV-00003", "client_data": json.dumps(
        {"name": "Client 3", "email": "c3@example.com", "address": "1 Main St", "tax_id": "DE123"})}
    a = _device(tmp_path / "a.sqlite", [(1, {"invoice_number": "INV-7"}),
                                        (2, {"invoice_number": "INV-7", "created_at": "2026-03-02T09:00:00"}),
                                        (3, {}), (4, {})])
    b = _device(tmp_path / "b.sqlite", [(30, copy), (31, {})])
    return a, b


def test_dedupe_json_is_per_store(two_devices, capsys):
    a, b = two_devices
    assert main(["dedupe", "--local", a, b, "--json"]) == 1
    objs = json_lines(capsys.readouterr().out)
    assert [(o["store"], o["as_one_set"], o["invoices"], o["duplicate_pairs"]) for o in objs] == [
        (a, False, 4, 1), (b, False, 2, 0)]
    first = objs[0]["duplicates"]
    assert len(first) == 1 and {first[0]["id_a"][-2:], first[0]["id_b"][-2:]} == {"01", "02"}
    assert main(["dedupe", "--local", b, "--json"]) == 0  # each store on its own: b has no duplicates
    assert json_lines(capsys.readouterr().out)[0]["duplicates"] == []


def test_dedupe_as_one_set_tells_each_store_its_pairs(two_devices, capsys, tmp_path):
    a, b = two_devices
    html = tmp_path / "d.html"
    assert main(["dedupe", "--local", a, b, "--as-one-set", "--json", "--html", str(html)]) == 1
    objs = json_lines(capsys.readouterr().out)
    assert [o["store"] for o in objs] == [a, b] and all(o["as_one_set"] for o in objs)
    pairs = {o["store"]: {frozenset((p["id_a"][-2:], p["id_b"][-2:])) for p in o["duplicates"]} for o in objs}
    assert pairs == {a: {frozenset(("01", "02")), frozenset(("03", "30"))}, b: {frozenset(("03", "30"))}}
    assert [o["removable"] for o in objs] == [1, 1] and html.exists()  # a's earlier INV-7 and b's copy go


def test_dedupe_limit_cuts_the_printed_pairs_only(two_devices, capsys):
    a, b = two_devices
    argv = ["dedupe", "--local", a, b, "--as-one-set"]
    assert main([*argv, "--limit", "1"]) == 1
    out = capsys.readouterr().out
    assert out.count("duplicate pair(s)") == 2 and "... 1 more pairs (--limit 0 shows all)" in out
    assert main([*argv, "--limit", "0"]) == 1
    assert "more pairs" not in capsys.readouterr().out
    r = run("dedupe", "--local", a, "--limit", "x")
    assert r.returncode == 2 and "--limit" in r.stderr


def test_render_json_is_per_store_and_limit_cuts_the_failures(tmp_path, capsys):
    from invoicekit.samples import SAMPLE_SELLER

    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    shutil.copy(SAMPLES / "device_a.sqlite", a)
    shutil.copy(SAMPLES / "device_b.sqlite", b)
    damaged = ["INV-2026-000009", "INV-2026-000026"]  # device_b's two rotten rows: both fail, nothing rendered
    argv = ["render", "--local", str(b), str(a), "--out", str(tmp_path / "out"), "--seller", json.dumps(SAMPLE_SELLER),
            "--workers", "1", *(f"--where=invoice_number={n}" for n in damaged)]
    assert main([*argv, "--json"]) == 1
    objs = json_lines(capsys.readouterr().out)
    assert [(o["store"], o["out"], o["failed"]) for o in objs] == [
        (str(b), str(tmp_path / "out" / "b"), 2), (str(a), str(tmp_path / "out" / "a"), 0)]
    assert sorted(f["invoice_number"] for f in objs[0]["failures"]) == damaged
    assert main([*argv, "--limit", "1"]) == 1
    out = capsys.readouterr().out
    assert f"{b} -> " in out and f"{a} -> " in out and "... 1 more failures (--limit 0 shows all)" in out
    assert sum(n in out for n in damaged) == 1
