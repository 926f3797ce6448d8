"""Shared fixtures: real PostgreSQL and Redis services, resolved lazily, never skipped.

A service is resolved only when a test requests a fixture that needs it, in this order:

PostgreSQL
    1. ``$INVOICEKIT_TEST_PG_URL`` when set (a role that may ``CREATE DATABASE``);
    2. ``postgresql://postgres@127.0.0.1:5432/postgres`` when it accepts a connection;
    3. a throwaway server started from the ``initdb``/``pg_ctl`` binaries (on ``PATH`` or
       in ``/usr/lib/postgresql/*/bin``), stopped and deleted at the end of the session.

Redis
    1. ``$INVOICEKIT_TEST_REDIS_URL`` when set;
    2. ``redis://127.0.0.1:6379/0`` when it answers ``PING``;
    3. a throwaway ``redis-server`` from ``PATH``, stopped at the end of the session.

When no service can be had, the requesting tests fail (never skip) with instructions.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

PG_ENV = "INVOICEKIT_TEST_PG_URL"
REDIS_ENV = "INVOICEKIT_TEST_REDIS_URL"
LOCAL_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
REPO = Path(__file__).resolve().parent.parent

PG_HELP = (
    "No PostgreSQL server for the tests: {reason}\n"
    f"To get one, either set {PG_ENV} to the URL of a server whose role may CREATE DATABASE "
    "(e.g. postgresql://user:password@host:5432/postgres), or install the Debian package "
    "`postgresql` (apt-get install postgresql) so the tests can start a throwaway server "
    "from its binaries; `make test` installs it for you."
)
REDIS_HELP = (
    "No Redis server for the tests: {reason}\n"
    f"To get one, either set {REDIS_ENV} to a Redis URL (e.g. redis://host:6379/0), or install "
    "the Debian package `redis-server` (apt-get install redis-server) so the tests can start "
    "a throwaway server; `make test` installs it for you."
)


class ServiceUnavailable(RuntimeError):
    """A throwaway service could not be started; the message says why."""


def pytest_report_header(config: pytest.Config) -> str:
    """Say where services will come from, without touching them."""
    state = {env: "set" if os.environ.get(env) else "unset" for env in (PG_ENV, REDIS_ENV)}
    return "invoicekit test services (resolved lazily): " + ", ".join(f"{k}={v}" for k, v in state.items())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _display(url: str) -> str:
    """``url`` with its password masked, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{host}"))


def _tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, or a note that there is none."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _start_or_fail(
    stack: ExitStack, throwaway: Callable[[int], ContextManager[str]], help_text: str, tried: str
) -> str:
    """Start ``throwaway(free_port())`` inside ``stack`` and return its URL, or fail the test.

    ``tried`` says which other sources were tried and why they did not work.
    """
    try:
        return stack.enter_context(throwaway(free_port()))
    except ServiceUnavailable as exc:
        reason = f"{tried}; throwaway server: {exc}"
    pytest.fail(help_text.format(reason=reason), pytrace=False)  # outside `except`: no chained traceback


# -- PostgreSQL ---------------------------------------------------------------------------
def libpq_url(url: str) -> str:
    """A libpq URL for a (possibly SQLAlchemy ``postgresql+driver://``) URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections use ``search_path = schema`` (libpq ``options``, URL-encoded)."""
    parsed = make_url(url)
    option = f"-csearch_path={schema}"
    existing = parsed.query.get("options")
    options = f"{existing} {option}" if existing else option
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


def pg_error(url: str) -> str | None:
    """``None`` when PostgreSQL at ``url`` accepts a connection, else the reason it does not."""
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def _pg_bindir() -> Path | None:
    """A directory holding both ``initdb`` and ``pg_ctl`` (PATH first, then the newest Debian one)."""
    candidates = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    candidates += sorted(debian, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
                         reverse=True)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return bindir
    return None


def _as_postgres(args: list[str]) -> list[str]:
    """``args`` run as the ``postgres`` OS user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return args
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *args]
    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(args)]


def _run_pg_tool(args: list[str], cwd: Path, log: Path | None = None) -> None:
    """Run a PostgreSQL tool (as ``postgres`` when root); raise ServiceUnavailable on failure."""
    cmd = _as_postgres([str(arg) for arg in args])
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceUnavailable(f"{shlex.join(cmd)}: {exc}") from exc
    if proc.returncode:
        detail = (proc.stderr or proc.stdout).strip()
        if log is not None:
            detail += f"\nserver log:\n{_tail(log)}"
        raise ServiceUnavailable(f"{shlex.join(cmd)} exited with {proc.returncode}: {detail}")


def _conf_string(value: str) -> str:
    """``value`` as a quoted postgresql.conf string."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


@contextmanager
def throwaway_postgres(port: int) -> Iterator[str]:
    """Start a scratch PostgreSQL on 127.0.0.1:``port``; yield its URL; stop and delete it.

    The cluster lives in a temporary directory (owned by ``postgres`` when we are root),
    trusts every local connection, has the superuser ``postgres``, keeps its unix socket
    in that directory and trades durability for speed (``fsync = off``).
    """
    bindir = _pg_bindir()
    if bindir is None:
        raise ServiceUnavailable("no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin")
    base = Path(tempfile.mkdtemp(prefix="ik_pg_"))
    try:
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceUnavailable("running as root and no 'postgres' OS user to run initdb") from None
            os.chown(base, owner.pw_uid, owner.pw_gid)
        data, log = base / "data", base / "server.log"
        initdb = [bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"]
        _run_pg_tool([*initdb, "--no-sync"], cwd=base)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# invoicekit throwaway test server\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {port}\n"
                f"unix_socket_directories = {_conf_string(str(base))}\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        try:
            start = [bindir / "pg_ctl", "start", "-w", "-t", "60", "-D", data, "-l", log]
            _run_pg_tool(start, cwd=base, log=log)
            url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            error = pg_error(url)
            if error:
                raise ServiceUnavailable(f"throwaway PostgreSQL started but refuses connections: {error}")
            yield url
        finally:
            # Also after a failed start: pg_ctl -w may time out with the server still coming up.
            subprocess.run(
                _as_postgres([str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w"]),
                cwd=base, capture_output=True, timeout=60,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def _pg_server() -> Iterator[str]:
    """Libpq URL of a PostgreSQL server (an admin database) where tests may create databases."""
    env = os.environ.get(PG_ENV)
    if env:
        url = libpq_url(env)
        error = pg_error(url)
        if error:
            pytest.fail(PG_HELP.format(reason=f"{PG_ENV}={_display(url)} does not answer: {error}"),
                        pytrace=False)
        yield url
        return
    local_error = pg_error(LOCAL_PG_URL)
    if local_error is None:
        yield LOCAL_PG_URL
        return
    with ExitStack() as stack:
        tried = f"{PG_ENV} unset; {LOCAL_PG_URL}: {local_error}"
        yield _start_or_fail(stack, throwaway_postgres, PG_HELP, tried)


@pytest.fixture(scope="session")
def pg_url(_pg_server: str) -> Iterator[str]:
    """Libpq URL of this session's own database ``ik_test_<uuid hex>``, dropped (FORCE) at the end."""
    name = f"ik_test_{uuid.uuid4().hex}"
    try:
        with psycopg.connect(_pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        pytest.fail(f"cannot create the test database on {_display(_pg_server)}: {exc}", pytrace=False)
    yield with_database(_pg_server, name)
    with psycopg.connect(_pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def central_pg_url(pg_url: str) -> Iterator[str]:
    """URL of a fresh empty schema ``t_<uuid hex>`` (via ``?options=-csearch_path%3D...``), dropped after."""
    name = f"t_{uuid.uuid4().hex}"
    schema = sql.Identifier(name)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    yield with_search_path(pg_url, name)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # A connection the test leaked inside a transaction would block the drop forever.
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))


# -- Redis --------------------------------------------------------------------------------
def redis_error(url: str) -> str | None:
    """``None`` when Redis at ``url`` answers PING, else the reason it does not."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    except ValueError as exc:
        return f"not a Redis URL: {exc}"
    try:
        client.ping()
    except redis.RedisError as exc:
        return str(exc).strip() or type(exc).__name__
    finally:
        client.close()
    return None


def stop_process(proc: subprocess.Popen, *, timeout: float) -> None:
    """Terminate ``proc``, killing it when it has not exited after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def throwaway_redis(port: int) -> Iterator[str]:
    """Start a scratch, non-persistent ``redis-server`` on 127.0.0.1:``port``; yield its URL; stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable("no redis-server on PATH")
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory(prefix="ik_redis_") as base:
        log = Path(base) / "redis.log"
        args = [binary, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1",
                "--dir", base]
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 15
            while (error := redis_error(url)) is not None:
                if proc.poll() is not None:
                    raise ServiceUnavailable(f"redis-server exited with {proc.returncode}:\n{_tail(log)}")
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(f"redis-server did not answer in 15 s ({error}):\n{_tail(log)}")
                time.sleep(0.05)
            yield url
        finally:
            stop_process(proc, timeout=10)


def delete_prefixed(client: redis.Redis, prefix: str, batch: int = 500) -> int:
    """Delete every key starting with ``prefix`` (SCAN + UNLINK, never FLUSHDB); return how many.

    ``prefix`` must not contain glob characters (``*?[]\\``); the test prefixes do not.
    """
    deleted = 0
    pending: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=batch):
        pending.append(key)
        if len(pending) >= batch:
            deleted += client.unlink(*pending)
            pending.clear()
    if pending:
        deleted += client.unlink(*pending)
    return deleted


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server for this session."""
    env = os.environ.get(REDIS_ENV)
    if env:
        error = redis_error(env)
        if error:
            reason = f"{REDIS_ENV}={_display(env)} does not answer: {error}"
            pytest.fail(REDIS_HELP.format(reason=reason), pytrace=False)
        yield env
        return
    local_error = redis_error(LOCAL_REDIS_URL)
    if local_error is None:
        yield LOCAL_REDIS_URL
        return
    with ExitStack() as stack:
        tried = f"{REDIS_ENV} unset; {LOCAL_REDIS_URL}: {local_error}"
        yield _start_or_fail(stack, throwaway_redis, REDIS_HELP, tried)


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    """Key prefix ``ik_test:<uuid hex>:`` for this session; its keys are deleted at the end."""
    prefix = f"ik_test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        delete_prefixed(client, prefix)
    finally:
        client.close()


@pytest.fixture
def redis_client(redis_url: str, redis_prefix: str) -> Iterator[redis.Redis]:
    """A ``redis.Redis`` client (bytes replies); write only under ``redis_prefix``."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(params=["postgresql", "sqlite"])
def central(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An initialised central store, once on PostgreSQL (a schema of the run's database) and
    once as an embedded SQLite file (test modules may override it)."""
    import invoicekit as ik

    url = (request.getfixturevalue("central_pg_url") if request.param == "postgresql"
           else f"sqlite:///{tmp_path / 'central.sqlite'}")
    ik.init_db(url)
    return url


# -- Files --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """Absolute path of the repository's ``data/samples``."""
    return REPO / "data" / "samples"


@pytest.fixture
def tmp_store(tmp_path: Path) -> Path:
    """A fresh, not yet created, SQLite store path ``tmp_path / "store.sqlite"``."""
    return tmp_path / "store.sqlite"


@pytest.fixture(scope="module")
def pg_schemas(pg_url):
    """Fresh schemas of the run's database on demand, all dropped at the end."""
    made: list[str] = []

    def new() -> str:
        name = f"t_{uuid.uuid4().hex}"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        made.append(name)
        return with_search_path(pg_url, name)

    yield new
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        for name in made:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
