"""Benchmark of issue 13 (push the comparison down): a whole-store comparison in PostgreSQL.

Run ``.venv/bin/python -m benchmarks.pushdown_bench`` (``--rows`` central invoices, default
1,000,000; ``--differ`` the share of ids that differ, default 0.05; ``--repeat``; ``--pg-url``;
``--json``). ``--floor-rows N`` instead measures, on a synthetic ``invoices`` table of N rows
built in SQL (see :func:`floor_only`), the server's join to a count and the default
method's two parts (the keys sent, their comparison in Arrow).

``pushdown_reconcile``  ``reconcile(local, url, pushdown=True)``: the central keys (id,
                        version, checksum, currency, times; no line items, no client text)
                        sent by two sessions in one snapshot and compared with the local
                        keys in Arrow, full rows fetched for the ids whose keys differ only
                        (``compare_keys(where="server")``, measured once beside it, stages
                        the local keys and joins them in PostgreSQL instead). Target <= 2 s
                        including every transfer,
                        against the baseline ``reconcile(local, read_central(url))`` (the
                        store read whole, then compared in memory) in the same run; statuses
                        and field differences must be equal for every id (checked).

The central store is ``benchmarks/run.py``'s (``make_invoices(--rows)`` written by
``write_central`` into a uuid-named database, dropped at the end). The local side is the
store as a device fleet (or an export) holds it, with its base snapshots, ``--differ`` of the
ids differing in a realistic mix: local edits, central edits, both, deletions on either side,
ids only local, ids only central (the rest unchanged).

The server's floor is measured with plain SQL in the same run: the same keys staged once into a
table (untimed), then the same join run to a count (no rows travel): what PostgreSQL alone
takes to scan id/version/checksum of ``invoices`` and join them; the floor of the default
method is the transfer of the central keys alone (``CentralStore.central_keys``).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    from benchmarks import central_scale_bench as C
    from benchmarks import run as R
    from benchmarks import sync_bench as S
except ImportError:  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import central_scale_bench as C  # type: ignore[no-redef]
    import run as R  # type: ignore[no-redef]
    import sync_bench as S  # type: ignore[no-redef]

#: shares of the differing ids per situation (of ``--differ``)
MIX = {"local_ahead": 0.2, "central_ahead": 0.2, "conflict": 0.2, "deleted_local": 0.1, "deleted_central": 0.1,
       "local_only": 0.1, "central_only": 0.1}

#: the push-down's join, run to a count by the server alone (the floor)
FLOOR_SQL = """
SELECT count(*) FROM {keys} k FULL JOIN invoices i ON i.id = k.ik_id
WHERE NOT coalesce(i.version = k.ik_version AND i.checksum = k.ik_checksum
                   AND i.currency IS NOT DISTINCT FROM k.ik_currency
                   AND i.modified_at IS NOT DISTINCT FROM k.ik_modified_at
                   AND i.deleted_at IS NOT DISTINCT FROM k.ik_deleted_at, false)
"""
#: the key pull alternative: central keys fetched, joined by DuckDB
def build_local(central, differ: float, seed: int):
    """(local set with its base, central changes to write, expected counts per status)."""
    from invoicekit.samples import make_invoices

    rng = np.random.default_rng(seed)
    n = len(central)
    ids = pa.array(central.invoices["id"].to_numpy()[rng.permutation(n)], pa.string())
    counts = {k: max(1, round(n * differ * v)) for k, v in MIX.items()}
    groups, start = {}, 0
    for name in ("local_ahead", "central_ahead", "conflict", "deleted_local", "deleted_central", "central_only"):
        groups[name] = ids[start:start + counts[name]]
        start += counts[name]
    held = pc.filter(ids, pc.invert(pc.is_in(ids, value_set=groups["central_only"])))
    snapshot = C._take(central, held)  # the last sync: every held invoice as central has it
    edited_local = pa.concat_arrays([groups["local_ahead"], groups["conflict"]])
    local_edits = S.edit_invoices(snapshot.invoices_table(), snapshot.lines_table(), edited_local, days=1.0,
                                  sync_status="pending", source="device")
    local_dead = C._tombstones(snapshot, groups["deleted_local"], sync_status="pending", source="device")
    changed = pa.concat_arrays([edited_local, groups["deleted_local"]])
    untouched = C._take(snapshot, pc.filter(held, pc.invert(pc.is_in(held, value_set=changed))))
    new = make_invoices(counts["local_only"], seed=seed + 7, source="device")
    new_inv = C._put(new.invoices_table(), "sync_status",
                     pa.array(np.full(counts["local_only"], "pending", dtype=object)))
    local = C._concat([untouched, local_edits, local_dead, new.__class__.from_arrow(new_inv, new.lines_table())])
    local = local.with_base(snapshot)
    once = S.edit_invoices(snapshot.invoices_table(), snapshot.lines_table(),
                           pa.concat_arrays([groups["central_ahead"], groups["conflict"]]), days=2.0,
                           sync_status=None, source="central")
    twice = S.edit_invoices(once.invoices_table(), once.lines_table(), groups["conflict"], days=2.0,
                            sync_status=None, source="central")
    once = C._take(once, groups["central_ahead"])
    central_dead = C._tombstones(snapshot, groups["deleted_central"], sync_status=None, source="central")
    changes = C._concat([once, twice, central_dead])
    expected = {"same": n - sum(v for k, v in counts.items() if k != "local_only"), **counts}
    return local, changes, expected


def _stage_floor_keys(url: str, keys: pa.Table, name: str) -> None:
    """The keys in a plain (unlogged) table ``name`` of the store, for the floor query."""
    import adbc_driver_postgresql.dbapi as adbc_pg

    with adbc_pg.connect(R._libpq(url)) as conn:
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        cur.adbc_ingest(name, keys, mode="create")
        cur.execute(f"ANALYZE {name}")
        cur.close()
        conn.commit()


def _floor_query(url: str, name: str) -> int:
    import psycopg

    with psycopg.connect(R._libpq(url)) as conn:
        conn.execute("SET jit = off")
        conn.execute("SET work_mem = '512MB'")
        return conn.execute(FLOOR_SQL.format(keys=name)).fetchone()[0]


def _ingest_only(url: str, keys: pa.Table) -> int:
    import adbc_driver_postgresql.dbapi as adbc_pg

    with adbc_pg.connect(R._libpq(url)) as conn:
        cur = conn.cursor()
        cur.execute("SET temp_buffers = '1GB'")
        cur.adbc_ingest("ik_floor_ingest", keys, mode="create", temporary=True)
        cur.close()
    return keys.num_rows


def _by_id(frame):
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def bench_pushdown(data: R.Data, differ: float, repeat: int) -> R.Result:
    import pandas as pd

    import invoicekit
    from invoicekit.io.pushdown import compare_keys, local_keys

    n = data.rows
    url = data.central_url  # writes the central store (untimed)
    print(f"building the local side ({differ:.0%} of {n:,} ids differing) ...", flush=True)
    t0 = time.perf_counter()
    local, changes, expected = build_local(data.invoice_set, differ, data.seed + 17)
    written = invoicekit.write_central(changes, url, actor="bench", progress=False)
    data.setup_times["local_build_s"] = time.perf_counter() - t0
    print(f"  {local!r}; central changes {written.summary().to_dict('records')} "
          f"in {data.setup_times['local_build_s']:.1f} s", flush=True)
    keys, _ = local_keys(local.invoices_table())
    _stage_floor_keys(url, keys, "ik_floor_keys")

    res = R.Result("pushdown_reconcile", f"reconcile({len(local):,} local invoices, URL of {n:,}, scope='all')", n)
    seen = {}
    from invoicekit.io.central import CentralStore

    store = CentralStore(url)
    res.measures.append(R.measure("invoicekit.reconcile(local, url, pushdown=True)",
                                  lambda: invoicekit.reconcile(local, url, pushdown=True), rows=n, kind="subject",
                                  repeat=repeat, check=lambda rec: seen.__setitem__("push", rec)))
    res.measures.append(R.measure("compare_keys(url, keys): central keys sent (2 sessions), compared in Arrow",
                                  lambda: compare_keys(url, keys), rows=n, kind="info", repeat=repeat,
                                  check=lambda d: seen.__setitem__("client", d.num_rows)))
    res.measures.append(R.measure("floor: the central keys alone (store.central_keys(), 2 sessions)",
                                  lambda: store.central_keys(), rows=n, kind="floor", repeat=repeat))
    # the other method, the local keys staged and joined in the store (slow: measured once)
    res.measures.append(R.measure("compare_keys(url, keys, where='server'): keys staged, server join",
                                  lambda: compare_keys(url, keys, where="server"), rows=n, kind="info", repeat=1,
                                  warmup=0, check=lambda d: seen.__setitem__("server", d.num_rows)))
    res.measures.append(R.measure("floor of where='server': the same join run to a count (plain SQL)",
                                  lambda: _floor_query(url, "ik_floor_keys"), rows=n, kind="floor", repeat=1,
                                  warmup=0, check=lambda k: seen.__setitem__("floor", k)))
    res.measures.append(R.measure("floor of where='server': ADBC bulk ingest of the keys",
                                  lambda: _ingest_only(url, keys), rows=n, kind="floor", repeat=1, warmup=0))
    base_name = "baseline: reconcile(local, read_central(url))"
    res.measures.append(R.measure(base_name, lambda: invoicekit.reconcile(local, invoicekit.read_central(url)),
                                  rows=n, kind="baseline", repeat=repeat,
                                  check=lambda rec: seen.__setitem__("full", rec)))
    res.measures.append(R.measure("read_central(url) (part of the baseline)", lambda: invoicekit.read_central(url),
                                  rows=n, kind="info", repeat=repeat))

    push, full = seen["push"], seen["full"]
    try:
        pd.testing.assert_frame_equal(_by_id(push.status), _by_id(full.status))
        pd.testing.assert_frame_equal(push.fields, full.fields)
        pd.testing.assert_frame_equal(push.summary(), full.summary())
        same = True
    except AssertionError as exc:
        same = False
        res.notes.append(f"MISMATCH push-down vs full read: {str(exc)[:300]}")
    got = {k: v for k, v in push.counts().items() if v}
    res.notes.append(f"statuses {got}; built {expected}; {len(push.fields):,} differing field rows")
    res.notes.append(f"push-down moved: {push.pushdown}; differing ids by the floor query {seen['floor']:,}, "
                     f"by compare_keys here {seen['client']:,} and in the server {seen['server']:,}")
    subj, base = res.measures[0], res.get(base_name)
    res.target("<= 2 s (reconcile(local, url, pushdown=True))", f"{subj.best:.3f} s", subj.best <= 2.0)
    res.target("both comparisons return the same rows", f"{seen['client']:,} / {seen['server']:,}",
               seen["client"] == seen["server"])
    res.target("faster than read_central + reconcile (same run)",
               f"{base.best / subj.best:.1f}x ({base.best:.2f} s vs {subj.best:.2f} s)", base.best > subj.best)
    res.target("same statuses, fields and summary as the full read", "equal" if same else "MISMATCH", same)
    res.target("statuses as built", "equal" if got == expected else f"{got}", got == expected)
    res.target("fetched only differing rows", f"{push.pushdown.fetched:,} of {len(full.central):,}",
               push.pushdown.fetched < len(full.central) * differ * 1.01)
    if not same:
        res.error = "push-down differs from the full read"
    return res


# -- the floor alone at a larger scale (a synthetic table built in SQL) -----------------------------
#: an ``invoices`` table holding what the comparison touches (id, version, checksum, currency,
#: times) and a filler standing in for the rest of a row (about 1 KB a row, as make_invoices'),
#: and the local keys: the same rows, ``differ`` of them with another version
_SYNTH = [
    "DROP TABLE IF EXISTS invoices, ik_floor_keys",
    """CREATE TABLE invoices AS
       SELECT md5(g::text)::uuid::text AS id, 'INV-' || g AS invoice_number, repeat('x', {pad}) AS filler,
              'EUR'::text AS currency, 1 + (g % 3) AS version, encode(sha256(g::text::bytea), 'hex') AS checksum,
              timestamptz '2026-01-01' + g * interval '1 second' AS modified_at, NULL::timestamptz AS deleted_at
       FROM generate_series(1, {rows}) g""",
    "ALTER TABLE invoices ADD PRIMARY KEY (id)",
    "VACUUM (FREEZE, ANALYZE) invoices",
    """CREATE UNLOGGED TABLE ik_floor_keys AS
       SELECT id AS ik_id, (version + CASE WHEN mod(abs(hashtext(id)::int8), 1000) < {permille} THEN 1 ELSE 0 END)::int8
                AS ik_version, checksum AS ik_checksum, currency AS ik_currency, modified_at AS ik_modified_at,
              deleted_at AS ik_deleted_at FROM invoices""",
    "VACUUM (FREEZE, ANALYZE) ik_floor_keys",
]


def floor_only(data: R.Data, rows: int, differ: float, repeat: int) -> R.Result:
    """The server's floor on a synthetic table of ``rows`` (no make_invoices, no write_central:
    only what the comparison touches, built by INSERT ... SELECT from generate_series)."""
    import uuid as _uuid

    import psycopg
    from sqlalchemy.engine import make_url

    name = f"invoicekit_bench_{_uuid.uuid4().hex}"
    with data._pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    data.db_name = name
    url = make_url(data.admin_url).set(database=name).render_as_string(hide_password=False)
    t0 = time.perf_counter()
    with psycopg.connect(R._libpq(url), autocommit=True) as conn:
        for stmt in _SYNTH:
            conn.execute(stmt.format(rows=rows, pad=900, permille=round(differ * 1000)))
        size = conn.execute("SELECT pg_total_relation_size('invoices')").fetchone()[0]
    data.setup_times["synthetic_build_s"] = time.perf_counter() - t0
    print(f"  synthetic invoices: {rows:,} rows, {size / 2**20:,.0f} MiB in "
          f"{data.setup_times['synthetic_build_s']:.0f} s", flush=True)
    res = R.Result("pushdown_floor", f"server floor of the push-down join on a synthetic {rows:,}-row table", rows)
    seen = {}
    res.measures.append(R.measure("floor: the push-down join run to a count by PostgreSQL alone (plain SQL)",
                                  lambda: _floor_query(url, "ik_floor_keys"), rows=rows, kind="floor", repeat=repeat,
                                  check=lambda k: seen.__setitem__("floor", k)))
    # the default method at this size: the central keys sent (two sessions), compared in Arrow
    from invoicekit.io.central import CentralStore
    from invoicekit.io.pushdown import KEY_SCHEMA, diff_keys

    store = CentralStore(url)
    keys = R.adbc_pg_fetch(url, "SELECT * FROM ik_floor_keys").cast(KEY_SCHEMA)
    central: dict = {}
    res.measures.append(R.measure("store.central_keys(): every row's keys sent by two sessions",
                                  lambda: store.central_keys(), rows=rows, kind="info", repeat=repeat,
                                  check=lambda t: central.__setitem__("keys", t)))
    res.measures.append(R.measure("diff_keys(local keys, central keys) in Arrow",
                                  lambda: diff_keys(keys, central["keys"]), rows=rows, kind="info", repeat=repeat,
                                  check=lambda d: seen.__setitem__("client", d.num_rows)))
    res.notes.append(f"differing ids found {seen['floor']:,} by the server's join, {seen['client']:,} in Arrow; "
                     f"invoices table {size / 2**20:,.0f} MiB; keys {keys.nbytes / 2**20:,.0f} MiB a side")
    return res


def main(argv: list[str] | None = None) -> int:
    return R.central_main(
        argv, prog="python -m benchmarks.pushdown_bench", doc=__doc__,
        options=((("--differ",), {"type": float, "default": 0.05, "help": "share of ids that differ (default 0.05)"}),
                 (("--floor-rows",), {"type": int, "default": 0,
                                      "help": "measure only the server floor on N synthetic rows"})),
        run=lambda data, args: (floor_only(data, args.floor_rows, args.differ, args.repeat) if args.floor_rows
                                else bench_pushdown(data, args.differ, args.repeat)))


if __name__ == "__main__":
    sys.exit(main())
