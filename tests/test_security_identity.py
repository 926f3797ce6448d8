"""Issue 11, identities: every push to the central store carries a signed token.

Real PostgreSQL (a schema per test, roles created and dropped here) and real SQLite files.
Bad tokens are crafted by hand (``alg: none``, expired, wrongly signed, wrong issuer,
truncated) and must be refused before anything is written: by ``verify_token``, by the
toolkit's pushes on both dialects, and on PostgreSQL by the store itself for a raw
connection of a login role that holds only the push role.
"""

import base64
import json
import logging
import pickle
import shutil
import sqlite3
import time
import uuid
import warnings

import jwt
import pandas as pd
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

import invoicekit as ik
from invoicekit.cli import main
from invoicekit.errors import IdentityError
from invoicekit.io.central import CentralStore
from invoicekit.samples import make_invoices, read_jsonl
from invoicekit.security.identity import TokenSecret

SECRET = "correct horse battery staple, and 32+ bytes of it"
OTHER_SECRET = "another secret entirely, also long enough to use"


# -- tokens crafted by hand ------------------------------------------------------------------
def b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(**over):
    now = int(time.time())
    return {"sub": "alice", "iss": "invoicekit", "iat": now, "exp": now + 600, "kind": "user", **over}


def signed(payload: dict, secret: str = SECRET, alg: str = "HS256") -> str:
    with warnings.catch_warnings():  # HS512 with a 49-byte key: PyJWT warns it is short for SHA-512
        warnings.simplefilter("ignore")
        return jwt.encode(payload, secret.encode(), algorithm=alg)


def unsigned(payload: dict) -> str:
    """An ``alg: none`` token, as an attacker writes it (empty signature)."""
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."


def none_with_forged_signature(payload: dict) -> str:
    """``alg: none`` header carrying a signature made with another secret."""
    head, body = b64({"alg": "none", "typ": "JWT"}), b64(payload)
    return f"{head}.{body}.{signed(payload, OTHER_SECRET).rsplit('.', 1)[1]}"


def bad_tokens() -> dict[str, tuple[str, set[str]]]:
    """name -> (token, reasons it may be refused with)."""
    good = signed(claims())
    return {
        "expired": (signed(claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)), {"token_expired"}),
        "alg_none": (unsigned(claims()), {"bad_algorithm"}),
        "alg_none_forged_signature": (none_with_forged_signature(claims()), {"bad_algorithm"}),
        "wrong_secret": (signed(claims(), OTHER_SECRET), {"bad_signature"}),
        "hs512_same_secret": (signed(claims(), alg="HS512"), {"bad_algorithm"}),
        "wrong_issuer": (signed(claims(iss="mallory")), {"wrong_issuer"}),
        "no_expiry": (signed({k: v for k, v in claims().items() if k != "exp"}), {"missing_claim"}),
        "no_subject": (signed({k: v for k, v in claims().items() if k != "sub"}), {"missing_claim"}),
        "truncated": (good[:-6], {"bad_signature", "malformed_token"}),
        "body_swapped": (f"{good.split('.')[0]}.{b64(claims(sub='root'))}.{good.split('.')[2]}", {"bad_signature"}),
        "garbage": ("not.a.token", {"malformed_token"}),
        "two_parts": ("abc.def", {"malformed_token"}),
    }


BAD = list(bad_tokens())


# -- verify_token ----------------------------------------------------------------------------
def test_issue_and_verify_round_trip():
    token = ik.issue_token("tablet-7", secret=SECRET, ttl=120, kind="device")
    who = ik.verify_token(token, secret=SECRET)
    assert (who.subject, who.kind, who.issuer) == ("tablet-7", "device", "invoicekit")
    assert 115 <= (who.expires_at - who.issued_at).total_seconds() <= 121
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    assert ik.verify_token(ik.issue_token("bob", secret=SECRET.encode(), issuer="acme"), secret=SECRET,
                           issuer="acme").subject == "bob"


@pytest.mark.parametrize("name", BAD)
def test_verify_token_refuses(name):
    token, reasons = bad_tokens()[name]
    with pytest.raises(IdentityError) as info:
        ik.verify_token(token, secret=SECRET)
    err = info.value
    assert err.reason in reasons, (name, err.reason, str(err))
    assert token not in str(err) and SECRET not in str(err) and SECRET not in repr(err.__dict__)
    assert type(pickle.loads(pickle.dumps(err))) is IdentityError


def test_the_secret_never_shows():
    secret = TokenSecret(SECRET)
    assert SECRET not in repr(secret) and SECRET not in str(secret) and repr(secret) == "TokenSecret(49 bytes)"
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(IdentityError) as info:
        ik.issue_token("alice", secret="too short")
    assert info.value.reason == "weak_secret" and "too short" not in str(info.value)
    with pytest.raises(IdentityError):
        ik.issue_token("", secret=SECRET)
    with pytest.raises(IdentityError):
        ik.issue_token("alice", secret=SECRET, kind="robot")


# -- central stores with identities on --------------------------------------------------------
def admin_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=False)


def drop_roles(url: str, *roles: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for role in roles:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def pg_tokens(central_pg_url):
    """A PostgreSQL central store with identities on; yields (owner URL, login URL of a role
    holding only the push role, push role). Both roles are dropped afterwards."""
    tag = uuid.uuid4().hex[:10]
    push, login = f"ik_push_{tag}", f"ik_login_{tag}"
    base = make_url(central_pg_url)
    try:
        assert ik.init_db(central_pg_url, token_secret=SECRET, push_role=push) == ik.io.central.SCHEMA_VERSION
        with psycopg.connect(central_pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(login), sql.Identifier(push)))
        yield central_pg_url, base.set(username=login).render_as_string(hide_password=False), push
    finally:
        drop_roles(central_pg_url, login, push)


@pytest.fixture(params=["postgresql", "sqlite"])
def token_central(request, tmp_path):
    """A central store with identities on, on each dialect (PostgreSQL: the owner's URL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'central.sqlite'}"
        ik.init_db(url, token_secret=SECRET)
        return url
    return request.getfixturevalue("pg_tokens")[0]


def audit(url):
    store = CentralStore(url)
    return pd.DataFrame(store.fetch("SELECT seq, actor, op_id, kind FROM invoicekit_audit ORDER BY seq"),
                        columns=["seq", "actor", "op_id", "kind"])


def snapshot(url):
    inv = ik.read_central(url).invoices
    return inv.sort_values("id").reset_index(drop=True), audit(url)


def assert_unchanged(url, before):
    inv, aud = snapshot(url)
    pd.testing.assert_frame_equal(inv, before[0])
    pd.testing.assert_frame_equal(aud, before[1])


@pytest.mark.parametrize("name", BAD)
def test_write_central_refuses_bad_tokens_before_writing(token_central, name):
    ik.write_central(make_invoices(5, seed=1), token_central, token=ik.issue_token("seed", secret=SECRET))
    before = snapshot(token_central)
    token, reasons = bad_tokens()[name]
    with pytest.raises(IdentityError) as info:
        ik.write_central(make_invoices(20, seed=2), token_central, token=token)
    assert info.value.reason in reasons, (name, info.value.reason, str(info.value))
    assert token not in str(info.value) and SECRET not in str(info.value)
    assert_unchanged(token_central, before)


def test_a_push_without_a_token_says_what_to_pass(token_central):
    before = snapshot(token_central)
    with pytest.raises(IdentityError) as info:
        ik.write_central(make_invoices(3), token_central)
    assert info.value.reason == "token_required" and "token=ik.issue_token(" in str(info.value)
    assert_unchanged(token_central, before)


def test_a_token_for_a_store_without_identities_is_refused(central):
    before = snapshot(central)
    with pytest.raises(IdentityError) as info:
        ik.write_central(make_invoices(3), central, token=ik.issue_token("alice", secret=SECRET))
    assert info.value.reason == "tokens_not_enabled" and "token_secret" in str(info.value)
    assert_unchanged(central, before)
    assert ik.write_central(make_invoices(3), central).inserted == 3  # no secret: as before, no token needed


def test_the_audit_names_the_verified_subject_not_the_claimed_actor(token_central):
    token = ik.issue_token("alice", secret=SECRET)
    done = ik.write_central(make_invoices(4), token_central, token=token, actor="someone else")
    assert done.inserted == 4
    assert set(audit(token_central)["actor"]) == {"alice"}
    # a callable token (a long-running pusher refreshing it) works the same
    again = ik.write_central(make_invoices(6), token_central, actor="mallory",
                             token=lambda: ik.issue_token("tablet-7", secret=SECRET, kind="device"))
    assert again.inserted == 6
    assert audit(token_central)["actor"].tolist() == ["alice"] * 4 + ["tablet-7"] * 6


def _device(tmp_path, samples_dir):
    path = tmp_path / "device_a.sqlite"
    shutil.copy(samples_dir / "device_a.sqlite", path)
    return path


def _plan(path, url):
    return ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(path), ik.read_central(url)), strategy="three_way"))


@pytest.mark.parametrize("name", ["expired", "alg_none", "wrong_secret", "truncated"])
def test_apply_sync_refuses_bad_tokens_before_writing(token_central, tmp_path, samples_dir, name):
    ik.write_central(read_jsonl(samples_dir / "central.jsonl"), token_central,
                     token=ik.issue_token("admin", secret=SECRET))
    path = _device(tmp_path, samples_dir)
    plan = _plan(path, token_central)
    assert (plan.ops["kind"] == "push").any()
    before, local_before = snapshot(token_central), ik.read_local(path).invoices
    token, reasons = bad_tokens()[name]
    with pytest.raises(IdentityError) as info:
        ik.apply_sync(plan, local=path, central=token_central, token=token)
    assert info.value.reason in reasons
    assert_unchanged(token_central, before)
    pd.testing.assert_frame_equal(ik.read_local(path).invoices, local_before)
    with pytest.raises(IdentityError) as info:
        ik.apply_sync(plan, local=path, central=token_central)
    assert info.value.reason == "token_required"
    assert_unchanged(token_central, before)


def test_apply_sync_with_a_valid_token_records_its_subject(token_central, tmp_path, samples_dir):
    ik.write_central(read_jsonl(samples_dir / "central.jsonl"), token_central,
                     token=ik.issue_token("admin", secret=SECRET))
    path = _device(tmp_path, samples_dir)
    result = ik.apply_sync(_plan(path, token_central), local=path, central=token_central, actor="someone else",
                           token=ik.issue_token("device_a", secret=SECRET, kind="device"))
    assert (result.results["central"] == "applied").any()
    rows = audit(token_central)
    assert set(rows.loc[rows["op_id"].str.startswith("write_central:") == False, "actor"]) == {"device_a"}  # noqa: E712


def test_sqlite_central_keeps_the_secret_and_refuses_a_rotated_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    ik.init_db(url, token_secret=SECRET)
    old = ik.issue_token("alice", secret=SECRET)
    ik.write_central(make_invoices(2), url, token=old)
    ik.init_db(url, token_secret=OTHER_SECRET)  # a new secret: tokens signed with the old one are refused
    with pytest.raises(IdentityError) as info:
        ik.write_central(make_invoices(3), url, token=old)
    assert info.value.reason == "bad_signature"
    assert ik.write_central(make_invoices(3), url, token=ik.issue_token("bob", secret=OTHER_SECRET)).inserted == 3
    ik.init_db(url)  # without a secret: identities stay on
    with pytest.raises(IdentityError):
        ik.write_central(make_invoices(4), url)


# -- PostgreSQL: the store itself verifies (a raw connection of the push role) ------------------
INSERT = ("INSERT INTO invoices (id, invoice_number, client_data_text, line_items_text, currency, total, created_at) "
          "VALUES (%s, 'N-1', '{\"name\": \"x\"}', '[]', 'EUR', 1.00, now())")


def raw_attempt(login_url, stmt, params=(), token=None):
    """Run ``stmt`` as the login role (with ``invoicekit.token`` set to ``token``); the error, or None."""
    with psycopg.connect(login_url) as conn:
        try:
            if token is not None:
                conn.execute("SELECT set_config('invoicekit.token', %s, true)", (token,))
            conn.execute(stmt, params)
        except psycopg.Error as exc:
            conn.rollback()
            return exc
        conn.commit()
    return None


def test_a_push_role_connection_cannot_write_without_a_valid_token(pg_tokens):
    owner, login, _ = pg_tokens
    ik.write_central(make_invoices(2, seed=3), owner, token=ik.issue_token("seed", secret=SECRET))
    before = snapshot(owner)
    victim = before[0]["id"].iloc[0]
    update = "UPDATE invoices SET total = 0.01, version = version + 1 WHERE id = %s"

    for stmt, params in ((INSERT, ("raw-1",)), (update, (victim,)),
                         ("INSERT INTO invoicekit_audit (actor, op_id, invoice_id, kind) VALUES "
                          "('mallory', 'x', 'y', 'insert')", ())):
        exc = raw_attempt(login, stmt, params)  # no token at all
        assert exc is not None and exc.sqlstate == "IK401" and exc.diag.message_detail == "token_required", exc
        for name, (token, reasons) in bad_tokens().items():
            exc = raw_attempt(login, stmt, params, token=token)
            assert exc is not None and exc.sqlstate == "IK401", (name, exc)
            assert exc.diag.message_detail in reasons, (name, exc.diag.message_detail)
        # a forged "verified" flag in another setting changes nothing
        exc = raw_attempt(login, f"SELECT set_config('invoicekit.verified', 'true', true); {stmt}", params)
        assert exc is not None
    assert_unchanged(owner, before)

    good = ik.issue_token("carol", secret=SECRET)
    assert raw_attempt(login, INSERT, ("raw-1",), token=good) is None
    assert raw_attempt(login, update, (victim,), token=good) is None
    inv = ik.read_central(owner).invoices.set_index("id")
    assert "raw-1" in inv.index and str(inv.loc[victim, "total"]) == "0.01"


def test_a_push_role_connection_cannot_read_the_secret_nor_forge_the_actor(pg_tokens):
    owner, login, _ = pg_tokens
    exc = raw_attempt(login, "SELECT secret FROM invoicekit_token_secret")
    assert exc is not None and exc.sqlstate == "42501"  # permission denied
    good = ik.issue_token("carol", secret=SECRET)
    forged = raw_attempt(login, "INSERT INTO invoicekit_audit (actor, op_id, invoice_id, kind) "
                                "VALUES ('someone else', 'x', 'y', 'insert')", token=good)
    assert forged is not None and forged.sqlstate == "42501"  # row-level security: actor must be the subject
    assert raw_attempt(login, "INSERT INTO invoicekit_audit (actor, op_id, invoice_id, kind) "
                              "VALUES ('carol', 'x', 'y', 'insert')", token=good) is None
    assert raw_attempt(login, "DELETE FROM invoices", token=good) is not None  # never granted
    assert raw_attempt(login, "ALTER TABLE invoices DISABLE ROW LEVEL SECURITY", token=good) is not None


def test_the_store_verifies_once_per_statement_not_per_row(pg_tokens):
    owner, login, push = pg_tokens
    with psycopg.connect(owner) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(push)))
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN UPDATE invoices SET total = total").fetchall())
    assert "InitPlan" in plan and "invoicekit_token_subject" not in plan.split("InitPlan", 1)[0]


def test_the_toolkit_pushes_through_the_push_role(pg_tokens, tmp_path, samples_dir):
    owner, login, _ = pg_tokens
    token = ik.issue_token("device_a", secret=SECRET, kind="device")
    done = ik.write_central(read_jsonl(samples_dir / "central.jsonl"), login, token=token, actor="x")
    assert done.inserted > 0
    path = _device(tmp_path, samples_dir)
    result = ik.apply_sync(_plan(path, login), local=path, central=login, token=token)
    assert (result.results["central"] == "applied").any()
    assert set(audit(owner)["actor"]) == {"device_a"}
    before = snapshot(owner)
    with pytest.raises(IdentityError) as info:
        ik.write_central(make_invoices(3, seed=9), login, token=bad_tokens()["wrong_secret"][0])
    assert info.value.reason == "bad_signature"
    assert_unchanged(owner, before)


def test_default_push_role_is_per_store(central_pg_url):
    from invoicekit.io.backends.postgres import default_push_role

    database = make_url(central_pg_url).database
    schema = dict(o.split("=", 1) for o in [make_url(central_pg_url).query["options"][2:]])["search_path"]
    role = default_push_role(database, schema)
    assert len(role) <= 63 and role != default_push_role(database, "public") == f"{database}_ik_push"
    try:
        ik.init_db(central_pg_url, token_secret=SECRET)
        assert CentralStore(central_pg_url).fetch("SELECT push_role FROM invoicekit_identity") == [(role,)]
    finally:
        drop_roles(central_pg_url, role)


# -- CLI, logs ------------------------------------------------------------------------------------
def test_cli_db_init_with_a_token_secret_file(tmp_path, capsys):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    assert main(["db", "init", url, "--token-secret-file", str(secret_file)]) == 0
    out = capsys.readouterr().out
    assert "signed identities on" in out and SECRET not in out
    with pytest.raises(IdentityError):
        ik.write_central(make_invoices(2), url)
    assert main(["db", "token", "ops-laptop", "--secret-file", str(secret_file), "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip()
    assert ik.verify_token(token, secret=SECRET).subject == "ops-laptop"
    assert ik.write_central(make_invoices(2), url, token=token).inserted == 2
    short = tmp_path / "short"
    short.write_text("short")
    assert main(["db", "init", url, "--token-secret-file", str(short)]) == 2
    assert "at least 32 bytes" in capsys.readouterr().err


def test_cli_db_init_postgres_and_sync_with_a_token_file(central_pg_url, tmp_path, samples_dir, capsys):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    role = f"ik_push_{uuid.uuid4().hex[:10]}"
    try:
        assert main(["db", "init", central_pg_url, "--token-secret-file", str(secret_file), "--push-role", role]) == 0
        assert role in capsys.readouterr().out
        ik.write_central(read_jsonl(samples_dir / "central.jsonl"), central_pg_url,
                         token=ik.issue_token("admin", secret=SECRET))
        path = _device(tmp_path, samples_dir)
        args = ["sync", "--local", str(path), "--central", central_pg_url, "--strategy", "three_way"]
        assert main(args) == 2
        assert "requires a signed identity token" in capsys.readouterr().err
        token_file = tmp_path / "token"
        token_file.write_text(ik.issue_token("device_a", secret=SECRET, kind="device"))
        assert main([*args, "--token-file", str(token_file)]) in (0, 1)
        assert "device_a" in set(audit(central_pg_url)["actor"])
    finally:
        drop_roles(central_pg_url, role)


def test_no_secret_nor_token_in_logs_or_errors(token_central, caplog):
    caplog.set_level(logging.DEBUG)
    token = ik.issue_token("alice", secret=SECRET)
    ik.write_central(make_invoices(3), token_central, token=token)
    bad, errors = bad_tokens(), []
    for bad_token, _ in bad.values():
        with pytest.raises(IdentityError) as info:
            ik.write_central(make_invoices(3), token_central, token=bad_token)
        errors.append(info.value)
    text = caplog.text + " ".join(f"{e!s} {e!r} {vars(e)}" for e in errors)
    assert SECRET not in text and token not in text and SECRET.encode().hex() not in text
    assert all(t not in text for t, _ in bad.values() if len(t) > 12)


# -- the other pushes: SyncEngine (and its settings), cleanups, review decisions ----------------------
def test_sync_engine_pushes_with_its_token_and_refuses_without(token_central, tmp_path):
    from tests._build import device_row, write_device_store

    path = tmp_path / "dev.sqlite"
    write_device_store(path, [device_row(1)])
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO app_settings (key, value, sync_required) VALUES ('currency', '\"EUR\"', 1)")
    conn.commit()
    conn.close()
    store = ik.LocalStore(path)
    store.create(invoice_number="S-1", client={"name": "A"}, currency="EUR",
                 line_items=[{"description": "x", "quantity": 1, "unit_price": 2}])
    before = snapshot(token_central)
    with pytest.raises(IdentityError) as info:
        ik.SyncEngine(path, token_central).drain()
    assert info.value.reason == "token_required"
    with pytest.raises(IdentityError) as info:
        ik.SyncEngine(path, token_central, token=bad_tokens()["alg_none"][0]).drain()
    assert info.value.reason == "bad_algorithm"
    assert_unchanged(token_central, before)
    result = ik.SyncEngine(path, token_central, actor="someone else",
                           token=lambda: ik.issue_token("tablet-7", secret=SECRET, kind="device")).drain()
    assert result.ok and len(result.results) and result.settings is not None
    assert set(audit(token_central)["actor"]) == {"tablet-7"}
    assert CentralStore(token_central).fetch("SELECT DISTINCT updated_by FROM settings") == [("tablet-7",)]


def test_sync_engine_and_settings_through_the_push_role(pg_tokens, tmp_path):
    from tests._build import device_row, write_device_store

    owner, login, _ = pg_tokens
    path = tmp_path / "dev.sqlite"
    write_device_store(path, [device_row(1)])
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO app_settings (key, value, sync_required) VALUES ('currency', '\"EUR\"', 1)")
    conn.commit()
    conn.close()
    ik.LocalStore(path).create(invoice_number="S-1", client={"name": "A"}, currency="EUR",
                               line_items=[{"description": "x", "quantity": 1, "unit_price": 2}])
    token = ik.issue_token("tablet-8", secret=SECRET, kind="device")
    result = ik.SyncEngine(path, login, token=token).drain()
    assert result.ok and result.settings is not None and result.settings.ok
    assert set(audit(owner)["actor"]) == {"tablet-8"}
    assert CentralStore(owner).fetch("SELECT updated_by FROM settings") == [("tablet-8",)]
    # a settings row naming another writer is refused by the store itself
    exc = raw_attempt(login, "UPDATE settings SET updated_by = 'admin'", token=token)
    assert exc is not None and exc.sqlstate == "42501"


def test_cleanups_and_decisions_carry_the_token(token_central, samples_dir):
    from invoicekit.dedupe import apply_duplicates, cluster_duplicates, find_duplicates, resolve_duplicates

    ik.write_central(read_jsonl(samples_dir / "central.jsonl"), token_central,
                     token=ik.issue_token("loader", secret=SECRET))
    current = ik.read_central(token_central)
    resolution = resolve_duplicates(current, cluster_duplicates(find_duplicates(current)))
    assert len(resolution.removed)
    before = snapshot(token_central)
    with pytest.raises(IdentityError):
        apply_duplicates(resolution, store=token_central)
    with pytest.raises(IdentityError):
        apply_duplicates(resolution, store=token_central, token=bad_tokens()["expired"][0])
    assert_unchanged(token_central, before)
    done = apply_duplicates(resolution, store=token_central, actor="x", token=ik.issue_token("dora", secret=SECRET))
    assert done.written > 0
    rows = audit(token_central)
    assert set(rows.loc[rows["op_id"] == done.cleanup_id, "actor"]) == {"dora"}
    undone = ik.undo_duplicates(token_central, done.cleanup_id, token=ik.issue_token("erin", secret=SECRET))
    assert undone.written == done.written
    pair = sorted(current.invoices["id"].astype(str).head(2))
    with pytest.raises(IdentityError):
        ik.record_decisions(token_central, [(pair[0], pair[1], False)], actor="mallory")
    stored = ik.record_decisions(token_central, [(pair[0], pair[1], False)], actor="mallory",
                                 token=ik.issue_token("frank", secret=SECRET))
    assert stored["actor"].tolist() == ["frank"]
    assert ik.read_decisions(token_central)["actor"].tolist() == ["frank"]


# -- key rotation is a write like any other --------------------------------------------------------
def test_rotate_keys_needs_a_token_on_a_store_with_identities(token_central, monkeypatch):
    from invoicekit.security import generate_key, rotate_keys

    old, new = generate_key(), generate_key()
    monkeypatch.setenv("INVOICEKIT_KEYS", old)
    s = make_invoices(30, seed=5)
    ik.write_central(s, token_central, token=ik.issue_token("loader", secret=SECRET))
    before = snapshot(token_central)
    with pytest.raises(IdentityError) as info:
        rotate_keys(token_central, keys=[new, old])
    assert info.value.reason == "token_required"
    with pytest.raises(IdentityError):
        rotate_keys(token_central, keys=[new, old], token=ik.issue_token("x", secret=OTHER_SECRET))
    assert_unchanged(token_central, before)
    done = rotate_keys(token_central, keys=[new, old], token=ik.issue_token("ops", secret=SECRET), batch_rows=7)
    assert done.ok and int(done.counts["rotated"].sum()) == 30
    monkeypatch.setenv("INVOICEKIT_KEYS", new)  # the old key is gone: everything still opens
    assert set(ik.read_central(token_central).invoices["client_email"]) == set(s.invoices["client_email"])


def test_rotate_keys_as_the_push_role_is_verified_by_postgresql(pg_tokens, monkeypatch):
    from invoicekit.security import generate_key, rotate_keys

    owner, login, _ = pg_tokens
    old, new = generate_key(), generate_key()
    monkeypatch.setenv("INVOICEKIT_KEYS", old)
    ik.write_central(make_invoices(12, seed=6), owner, token=ik.issue_token("loader", secret=SECRET))
    with pytest.raises(IdentityError):
        rotate_keys(login, keys=[new, old])
    done = rotate_keys(login, keys=[new, old], token=ik.issue_token("ops", secret=SECRET), batch_rows=5)
    assert done.ok and int(done.counts["rotated"].sum()) == 12 and int(done.counts["batches"].sum()) == 3


# -- schema version 11: lines kept as stored, through the push role ----------------------------
def _hand_built(seed: int) -> ik.InvoiceSet:
    """Invoices whose first one carries lines its text does not give (so they are stored)."""
    s = make_invoices(3, seed=seed)
    lines = s.lines.copy()
    lines.loc[lines["invoice_id"] == s.invoices["id"].iloc[0], "description"] = "stored as given"
    return ik.InvoiceSet(s.invoices, lines)


def _view(url: str) -> list[tuple]:
    return CentralStore(url).fetch("SELECT invoice_id, line_no, description FROM invoice_lines "
                                   "ORDER BY invoice_id, line_no")


def test_kept_lines_go_through_the_push_role_and_need_a_token(pg_tokens):
    owner, login, _ = pg_tokens
    token = ik.issue_token("dora", secret=SECRET)
    s = _hand_built(31)
    ik.write_central(s, login, token=token, validate=False)
    assert ("stored as given",) in {(r[2],) for r in _view(owner)}
    assert len(_view(owner)) == len(s.lines)
    exc = raw_attempt(login, "INSERT INTO invoicekit_kept (invoice_id, reason) VALUES ('x', 'y')")
    assert exc is not None and exc.sqlstate == "IK401"
    exc = raw_attempt(login, "DELETE FROM invoicekit_kept_lines")
    assert exc is not None and exc.sqlstate == "IK401"


def test_upgrade_of_a_store_with_identities_grants_the_push_role_the_kept_lines(central_pg_url):
    """A version-10 store with identities on: after the upgrade its push role reads the view
    and writes kept lines under the same row-level security."""
    from invoicekit.io import _central_sql as ddl
    from invoicekit.io.backends.postgres import _IDENTITY_UPSERT, _SECRET_UPSERT
    from tests._pg_versions import central_at_version_10

    tag = uuid.uuid4().hex[:10]
    push, login = f"ik_push_{tag}", f"ik_login_{tag}"
    store = central_at_version_10(central_pg_url, make_invoices(2, seed=32))
    try:
        with store.pg() as conn:  # identities turned on by version-10 code (its tables only)
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
            database, schema, ext = conn.execute(ddl.PG_IDENTITY_NAMES).fetchone()
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(push)))
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(login), sql.Identifier(push)))
            conn.execute(_SECRET_UPSERT, (SECRET.encode(),))
            conn.execute(_IDENTITY_UPSERT, ("invoicekit", push, "2026-12-01T00:00:00Z"))
            names = {"schema": sql.Identifier(schema), "ext": sql.Identifier(ext), "role": sql.Identifier(push)}
            for stmt in ddl.PG_IDENTITY_ON:
                stmt = stmt.replace(", {schema}.invoice_lines", "")  # (version 11 reads the view)
                if "invoicekit_kept" not in stmt and "invoice_lines" not in stmt:
                    conn.execute(sql.SQL(stmt).format(**names))
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON invoice_lines TO {}").format(
                sql.Identifier(push)))
        assert ik.init_db(central_pg_url) == ik.io.central.SCHEMA_VERSION
        login_url = make_url(central_pg_url).set(username=login).render_as_string(hide_password=False)
        token = ik.issue_token("erin", secret=SECRET)
        s = _hand_built(33)
        ik.write_central(s, login_url, token=token, validate=False)
        assert ("stored as given",) in {(r[2],) for r in _view(login_url)}  # the push role reads the view
        exc = raw_attempt(login_url, "DELETE FROM invoicekit_kept")
        assert exc is not None and exc.sqlstate == "IK401"
    finally:
        drop_roles(central_pg_url, login, push)
