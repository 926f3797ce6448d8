import json
import subprocess
import sys
from pathlib import Path

import pytest

import invoicekit as ik
from invoicekit.cli import main

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "invoicekit", *args], capture_output=True, text=True, cwd=cwd)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"invoicekit {ik.__version__}"


def test_bad_usage_exits_2():
    r = run("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_validate_exit_codes(capsys, tmp_path):
    assert main(["validate", str(SAMPLES / "device_a.sqlite")]) == 0
    assert main(["validate", str(SAMPLES / "device_b.sqlite")]) == 1
    out = capsys.readouterr().out
    assert "total_mismatch" in out and "unparseable_json" in out
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database at all, really not" * 5)
    assert main(["validate", str(junk)]) == 2
    assert str(junk) in capsys.readouterr().err


def test_validate_json_one_object_per_store(capsys):
    a, b = str(SAMPLES / "device_a.sqlite"), str(SAMPLES / "device_b.sqlite")
    assert main(["validate", "--json", a, b]) == 1
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["store"] for o in objs] == [a, b] and [o["ok"] for o in objs] == [True, False]
    assert {r["rule"] for r in objs[1]["problems"]} == {"total_mismatch", "unparseable_json"}
    assert all(r["source"] == b and isinstance(r["source_row"], int) for r in objs[1]["problems"])


def test_db_init_sqlite_twice(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    assert main(["db", "init", url]) == 0
    assert main(["db", "init", url]) == 0
    assert f"schema version {ik.init_db(url)}" in capsys.readouterr().out  # the current one, both times


def test_db_init_postgres(central_pg_url):
    r = run("db", "init", central_pg_url)
    assert r.returncode == 0, r.stderr
    assert len(ik.read_central(central_pg_url)) == 0


def test_db_init_unreachable_is_a_clear_error():
    r = run("db", "init", "postgresql://nobody@127.0.0.1:1/none")
    assert r.returncode == 2 and "cannot connect to central store" in r.stderr


@pytest.mark.parametrize("central", [None, "pg"])
def test_demo_end_to_end(tmp_path, central, request):
    args = ["demo", "--out", str(tmp_path / "out")]
    if central == "pg":
        args += ["--central", request.getfixturevalue("central_pg_url")]
    r = run(*args, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert result["devices"]["device_b"]["problems"] == 2
    assert len(result["devices"]["device_b"]["tampered"]) == 2
    assert result["central"]["invoices"] == sum(1 for _ in open(SAMPLES / "central.jsonl"))
    assert result["central"]["hard_delete_refused"] and "never deleted" in r.stdout
    assert (tmp_path / "out" / "validation_device_b.html").exists()
    assert "checksums all verify" in r.stdout
    assert result["sync"]["device_a"]["after"] == {"same": 166, "central_only": 268}
    assert result["sync"]["device_b"]["after"]["conflict"] == 2  # the quarantined rows
    assert (tmp_path / "out" / "reconcile_device_a.html").exists()
    # the device side: three offline edits drained once, the redelivered one changes nothing
    assert result["device"] == {"drain": {"synced": 3}, "redelivered": {"already_synced": 1}}
    assert "those 3 invoices now: " in r.stdout and r.stdout.count(" same") >= 3
    # duplicates in the central sample set (make_duplicates planted 19 re-entries), and PDFs
    assert result["duplicates"] == {"pairs": 19, "removed": 19, "cleanup_removed": 17, "cleanup_restored": 17,
                                    "live_during_cleanup": 483}  # the synced central: 2 pairs fewer
    assert "content checksums all as before" in r.stdout
    assert (tmp_path / "out" / "duplicates.html").exists()
    assert result["render"] == {"ok": 4, "failed": 0}
    # a snapshot of central: a refresh after 3 central edits fetches those 3 and equals a full read
    assert result["snapshot"]["fetched"] == 3 and result["snapshot"]["same"] is True
    assert result["snapshot"]["built"] >= 500
    pdfs = sorted((tmp_path / "out" / "pdf").rglob("*.pdf"))
    assert len(pdfs) == 4 and all(p.read_bytes().startswith(b"%PDF-") for p in pdfs)


def test_demo_runs_outside_the_repository(tmp_path):
    r = run("demo", "--out", "o", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "samples" / "device_a.sqlite").exists()


@pytest.fixture
def central_with_samples(tmp_path):
    url = f"sqlite:///{tmp_path / 'central.sqlite'}"
    ik.init_db(url)
    from invoicekit.samples import read_jsonl
    ik.write_central(read_jsonl(SAMPLES / "central.jsonl"), url)
    import shutil
    shutil.copy(SAMPLES / "device_a.sqlite", tmp_path / "a.sqlite")
    return url, tmp_path / "a.sqlite"


def test_reconcile_json_and_exit_codes(central_with_samples, tmp_path, capsys):
    url, store = central_with_samples
    html = tmp_path / "r.html"
    assert main(["reconcile", "--local", str(store), "--central", url, "--json", "--html", str(html)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["store"] == str(store) and out["differs"] is True
    counts = out["counts"]
    truth = __import__("pandas").read_csv(SAMPLES / "situations.csv")
    expected = truth[truth["device"] == "device_a"]["situation"].value_counts()
    assert counts["conflict"] == expected["edited_both"] and counts["local_only"] == expected["new_offline"]
    assert set(counts) == {"same", "local_only", "central_only", "local_ahead", "central_ahead", "conflict",
                           "deleted_local", "deleted_central"}
    assert "conflict" in html.read_text()


def test_sync_dry_run_writes_nothing_then_sync_converges(central_with_samples, capsys):
    url, store = central_with_samples
    before = store.read_bytes()
    assert main(["sync", "--local", str(store), "--central", url, "--strategy", "three_way", "--dry-run"]) == 1
    assert store.read_bytes() == before
    assert "flag_conflict" in capsys.readouterr().out
    assert main(["sync", "--local", str(store), "--central", url, "--strategy", "merge_fields"]) == 0
    assert main(["reconcile", "--local", str(store), "--central", url, "--json"]) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["counts"]
    assert {k for k, v in counts.items() if v} == {"same", "central_only"}


def test_sync_bad_strategy_is_usage_error():
    r = run("sync", "--local", "x.sqlite", "--central", "sqlite:///y.sqlite", "--strategy", "coin_flip")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_demo_runs_again_with_the_same_result(tmp_path, capsys):
    """`make demo` twice in a row: each run starts from the same state and prints the same."""
    from invoicekit.cli import main

    out = tmp_path / "out"
    assert main(["demo", "--out", str(out)]) == 0
    first, first_json = capsys.readouterr().out, (out / "demo.json").read_text()
    assert main(["demo", "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert second == first and (out / "demo.json").read_text() == first_json
    assert "CHECKSUM MISMATCH" not in second


# -- errors: one line on stderr, exit 2, a traceback only with --debug ---------------------
def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_reconcile_with_a_path_as_central_is_one_line(tmp_path):
    store = tmp_path / "a.sqlite"
    store.write_bytes((SAMPLES / "device_a.sqlite").read_bytes())
    r = run("reconcile", "--local", str(store), "--central", "out/central.sqlite")
    assert r.returncode == 2 and r.stdout == ""
    line = one_error_line(r.stderr)
    assert line == ("invoicekit: error: --central: central store 'out/central.sqlite' is not a URL; "
                    "use sqlite:///out/central.sqlite or postgresql://user@host/db")


@pytest.mark.parametrize("kind", ["missing", "not_sqlite", "url"])
def test_bad_local_is_one_line_exit_2(tmp_path, capsys, kind):
    central = f"sqlite:///{tmp_path / 'c.sqlite'}"
    ik.init_db(central)
    local = {"missing": str(tmp_path / "nope.sqlite"), "not_sqlite": str(tmp_path / "junk.sqlite"),
             "url": "postgresql://me:hunter2@db/books"}[kind]
    (tmp_path / "junk.sqlite").write_text("certainly not a database " * 10)
    for argv in (["reconcile", "--local", local, "--central", central],
                 ["sync", "--local", local, "--central", central, "--strategy", "three_way"]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        line = one_error_line(captured.err)
        expected = {"missing": "no such file", "not_sqlite": "not a SQLite database",
                    "url": "--local takes offline store files"}[kind]
        assert expected in line and "hunter2" not in line


def test_bad_db_init_url_is_one_line(capsys):
    assert main(["db", "init", "central.sqlite"]) == 2
    assert "use sqlite:///central.sqlite" in one_error_line(capsys.readouterr().err)
    assert main(["db", "init", "postgresql://me:hunter2@127.0.0.1:1/books"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "cannot connect to central store postgresql://me:***@127.0.0.1:1/books" in line
    assert "transient" in line and "hunter2" not in line


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path, where):
    args = ["reconcile", "--local", str(tmp_path / "a.sqlite"), "--central", "out/central.sqlite"]
    r = run("--debug", *args) if where == "before" else run(*args, "--debug")
    assert r.returncode == 2
    assert "Traceback (most recent call last)" in r.stderr and "UsageError" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("invoicekit: error: --central: ")


def test_unexpected_errors_are_one_line_and_never_exit_1(capsys):
    from invoicekit.cli import EXIT_FOUND, _report, exit_code

    try:
        {}["missing key"]
    except KeyError as exc:
        error = exc
    assert _report(error, debug=False) == 2 != EXIT_FOUND
    line = one_error_line(capsys.readouterr().err)
    assert line == ("invoicekit: internal error: KeyError: 'missing key' "
                    "(rerun with --debug for the traceback)")
    assert _report(error, debug=True) == 2
    assert "Traceback" in capsys.readouterr().err
    assert exit_code(ik.StoreUnavailableError("down", store="x")) == 2
    assert exit_code(KeyboardInterrupt()) == 130


def test_driver_errors_reaching_the_cli_are_translated(tmp_path, capsys):
    import sqlite3

    from invoicekit.cli import _report

    conn = sqlite3.connect(tmp_path / "x.sqlite")
    try:
        conn.execute("SELECT * FROM nope")
    except sqlite3.OperationalError as exc:
        error = exc
    conn.close()
    assert _report(error, debug=False) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("invoicekit: error: no such table: nope")
