"""Tests of the real-service test harness itself (tests/conftest.py)."""

from __future__ import annotations

import re

import adbc_driver_postgresql.dbapi as adbc_pg
import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from tests.conftest import (
    delete_prefixed,
    free_port,
    pg_error,
    redis_error,
    throwaway_postgres,
    throwaway_redis,
)

# Schemas handed out by ``central_pg_url`` in this module, to check earlier ones were dropped.
_seen_schemas: list[str] = []


def _schema_tables(conn: psycopg.Connection, schema: str) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (schema,)
    )
    return [r[0] for r in rows]


def test_session_database_exists_and_is_named_ik_test(pg_url):
    name = make_url(pg_url).database
    assert re.fullmatch(r"ik_test_[0-9a-f]{32}", name)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == name


def test_central_pg_url_selects_a_fresh_empty_schema(central_pg_url):
    schema = make_url(central_pg_url).query["options"].removeprefix("-csearch_path=")
    assert re.fullmatch(r"t_[0-9a-f]{32}", schema)
    assert f"?options=-csearch_path%3D{schema}" in central_pg_url
    with psycopg.connect(central_pg_url) as conn:
        assert conn.execute("SELECT current_schema()").fetchone()[0] == schema
        assert _schema_tables(conn, schema) == []


def test_psycopg_and_adbc_both_honour_the_search_path(central_pg_url, pg_url):
    schema = make_url(central_pg_url).query["options"].removeprefix("-csearch_path=")
    with psycopg.connect(central_pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE made_by_psycopg (n int)")
        conn.execute("INSERT INTO made_by_psycopg VALUES (1)")
    with adbc_pg.connect(central_pg_url) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT n FROM made_by_psycopg")
            assert cur.fetchall() == [(1,)]
            cur.execute("CREATE TABLE made_by_adbc (n int)")
            cur.execute("INSERT INTO made_by_adbc VALUES (2)")
        conn.commit()
    with psycopg.connect(central_pg_url) as conn:
        assert conn.execute("SELECT n FROM made_by_adbc").fetchall() == [(2,)]
    # Both tables live in the test schema and nowhere else.
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_name IN ('made_by_psycopg', 'made_by_adbc') ORDER BY 2"
        ).fetchall()
        assert rows == [(schema, "made_by_adbc"), (schema, "made_by_psycopg")]
        assert conn.execute("SELECT to_regclass('made_by_psycopg')").fetchone()[0] is None


@pytest.mark.parametrize("run", [1, 2])
def test_central_pg_url_schemas_are_isolated(central_pg_url, pg_url, run):
    schema = make_url(central_pg_url).query["options"].removeprefix("-csearch_path=")
    with psycopg.connect(central_pg_url, autocommit=True) as conn:
        # Whichever run comes second would see (or collide with) the first run's table
        # if schemas leaked; its earlier schema must also be gone by now.
        assert conn.execute("SELECT to_regclass('leak_probe')").fetchone()[0] is None
        conn.execute("CREATE TABLE leak_probe (run int)")
        dropped = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = ANY(%s)", (_seen_schemas,)
        ).fetchone()[0]
        assert dropped == 0
    _seen_schemas.append(schema)


def test_redis_keys_under_the_prefix_round_trip(redis_client, redis_prefix):
    assert re.fullmatch(r"ik_test:[0-9a-f]{32}:", redis_prefix)
    redis_client.set(f"{redis_prefix}greeting", "hello")
    assert redis_client.get(f"{redis_prefix}greeting") == b"hello"


def test_delete_prefixed_removes_only_keys_under_the_prefix(redis_client, redis_prefix):
    doomed = f"{redis_prefix}doomed:"
    with redis_client.pipeline() as pipe:
        for i in range(1200):
            pipe.set(f"{doomed}{i}", i)
        pipe.set(f"{redis_prefix}kept", 1)
        pipe.execute()
    assert delete_prefixed(redis_client, doomed, batch=100) == 1200
    assert list(redis_client.scan_iter(match=f"{doomed}*")) == []
    assert redis_client.get(f"{redis_prefix}kept") == b"1"


def test_throwaway_postgres_starts_serves_and_stops():
    port = free_port()
    with throwaway_postgres(port) as url:
        assert make_url(url).port == port
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert pg_error(url) is not None


def test_throwaway_redis_starts_serves_and_stops():
    port = free_port()
    with throwaway_redis(port) as url:
        client = redis.Redis.from_url(url)
        try:
            assert client.ping()
            assert client.config_get("save") == {"save": ""}
        finally:
            client.close()
    assert redis_error(url) is not None
