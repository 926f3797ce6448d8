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


def test_validate_json_lines(capsys):
    assert main(["validate", "--json", str(SAMPLES / "device_b.sqlite")]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["rule"] for r in rows} == {"total_mismatch", "unparseable_json"}


def test_db_init_sqlite_twice(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    assert main(["db", "init", url]) == 0
    assert main(["db", "init", url]) == 0
    assert "schema version 2" in capsys.readouterr().out


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
    assert (tmp_path / "out" / "validation_device_b.html").exists()
    assert "checksums all verify" in r.stdout


def test_demo_runs_outside_the_repository(tmp_path):
    r = run("demo", "--out", "o", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "samples" / "device_a.sqlite").exists()
