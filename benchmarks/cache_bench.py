"""Cache hit vs miss latency of ``get_invoice`` and ``get_client`` (issue 11).

Run ``.venv/bin/python -m benchmarks.cache_bench [--rows N] [--lookups K] [--pg-url URL]``.

Data: ``make_invoices(N)`` written to an offline store (``write_local``) and to a central
store (PostgreSQL, a fresh schema, or the embedded SQLite one with ``--pg-url sqlite``).
For each store, K lookups of random ids: ``cache=False`` (the store: a whole-store load
for an offline file, an indexed ``WHERE id = ...`` read for a central one), then the same
ids through a cold cache (a miss: the store read plus the fill), then again (a hit).
Latency per lookup: median and 95th percentile (``time.perf_counter``). Redis is the
local server (``INVOICEKIT_REDIS_URL`` or 127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid

import numpy as np

import invoicekit as ik
from invoicekit.samples import make_invoices


def _lat(fn, ids) -> np.ndarray:
    out = []
    for i in ids:
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return np.array(out) * 1000


def _row(name: str, ms: np.ndarray, base: np.ndarray | None = None) -> str:
    speed = f"{np.median(base) / np.median(ms):,.0f}x" if base is not None else "-"
    return f"| {name} | {np.median(ms):,.2f} | {np.percentile(ms, 95):,.2f} | {speed} |"


def _central_url(arg: str, tmp: str) -> tuple[str, callable]:
    if arg == "sqlite":
        return f"sqlite:///{os.path.join(tmp, 'central.sqlite')}", lambda: None
    import psycopg

    schema = f"ik_cache_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(arg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in arg else "?"
    url = f"{arg}{sep}options=-csearch_path%3D{schema}"

    def drop():
        with psycopg.connect(arg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return url, drop


def _measure(label: str, store: str, ids: list, taxes: list) -> None:
    cache = ik.Cache(namespace=f"bench-{uuid.uuid4().hex[:8]}")
    try:
        base = _lat(lambda i: ik.get_invoice(store, i, cache=False), ids)
        miss = _lat(lambda i: ik.get_invoice(store, i, cache=cache), ids)
        hit = _lat(lambda i: ik.get_invoice(store, i, cache=cache), ids)
        print(_row(f"get_invoice, {label}, no cache", base))
        print(_row(f"get_invoice, {label}, miss (read + fill)", miss, base))
        print(_row(f"get_invoice, {label}, hit", hit, base))
        cbase = _lat(lambda t: ik.get_client(store, tax_id=t, cache=False), taxes)
        _lat(lambda t: ik.get_client(store, tax_id=t, cache=cache), taxes)
        chit = _lat(lambda t: ik.get_client(store, tax_id=t, cache=cache), taxes)
        print(_row(f"get_client, {label}, no cache", cbase))
        print(_row(f"get_client, {label}, hit", chit, cbase))
        print(f"|   ({cache.stats}) | | | |")
    finally:
        cache.clear()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--pg-url", default=os.environ.get("INVOICEKIT_BENCH_PG_URL",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = ap.parse_args(argv)
    data = make_invoices(args.rows, seed=20261203)
    rng = np.random.default_rng(1)
    ids = rng.choice(data.invoices["id"].to_numpy(dtype=object), size=args.lookups, replace=False).tolist()
    taxes = data.invoices["client_tax_id"].dropna().unique()[:20].tolist()
    with tempfile.TemporaryDirectory(prefix="ik_cache_bench_") as tmp:
        local = os.path.join(tmp, "device.sqlite")
        ik.write_local(data, local)
        url, drop = _central_url(args.pg_url, tmp)
        try:
            ik.init_db(url)
            ik.write_central(data, url)
            load = open("/proc/loadavg").read().split()[0]
            print(f"cache_bench: {args.rows:,} invoices, {args.lookups} lookups per central row; load {load}")
            print("\n| lookup | median ms | p95 ms | vs the store |\n|---|---:|---:|---:|")
            for label, store in (("offline store", local), (url.split(":")[0] + " central", url)):
                # an offline lookup without the cache loads the whole store: fewer of those
                _measure(label, store, ids[: max(10, args.lookups // 10)] if label == "offline store" else ids, taxes)
        finally:
            drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
