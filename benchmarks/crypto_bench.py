"""Field encryption: ``encrypt``/``decrypt`` of three client columns against a plain
per-value Fernet loop over the same values, in the same run (goal >= 1.8x on 2 cores).

    .venv/bin/python -m benchmarks.crypto_bench [--rows 1000000] [--clients 20000]
                                                [--distinct-rows 200000] [--workers N]

Two data sets:

``realistic``  ``--rows`` invoices from a pool of ``--clients`` clients (what a store
               holds: many invoices per client), columns client_email, client_address,
               client_tax_id. ``encrypt`` encrypts each distinct value once.
``distinct``   ``--distinct-rows`` invoices, every client different (the worst case: no
               repeated value, only the parallel chunks help), also with threads instead
               of processes (``executor="thread"``) to show why processes are used.

The baseline is what a caller would write: ``[fernet.encrypt(v.encode()) for v in col]``
per column (and ``decrypt`` of those tokens), nulls skipped. One timed run each; the
load average is printed before and after (the figures are only comparable on an idle box).
"""

from __future__ import annotations

import argparse
import time

COLUMNS = ["client_email", "client_address", "client_tax_id"]


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().strip()
    except OSError:
        return "n/a"


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _loop(frame, multi):
    cols = {c: [v for v in frame[c].tolist() if v is not None and v == v] for c in COLUMNS}
    enc_s, tokens = _timed(lambda: {c: [multi.encrypt(v.encode()) for v in vals] for c, vals in cols.items()})
    dec_s, _ = _timed(lambda: {c: [multi.decrypt(t).decode() for t in toks] for c, toks in tokens.items()})
    return enc_s, dec_s


def _ours(s, keys, workers, executor="process"):
    from invoicekit.security import _pool, decrypt, encrypt

    if executor == "thread":  # the same chunks through a thread pool
        original = _pool.run
        _pool.run = lambda *a, **k: original(*a, **{**k, "executor": "thread"})
    try:
        enc_s, e = _timed(lambda: encrypt(s, keys=keys, fields=COLUMNS, workers=workers))
        dec_s, back = _timed(lambda: decrypt(e, keys=keys, fields=COLUMNS, workers=workers))
    finally:
        if executor == "thread":
            _pool.run = original
    assert back.invoices[COLUMNS].equals(s.invoices[COLUMNS])
    return enc_s, dec_s


def _row(name, rows, values, loop, ours):
    print(f"{name:<28} {rows:>10,} rows {values:>10,} values | loop enc {loop[0]:7.2f} s dec {loop[1]:7.2f} s | "
          f"ours enc {ours[0]:7.2f} s dec {ours[1]:7.2f} s | speed-up enc {loop[0] / ours[0]:6.1f}x "
          f"dec {loop[1] / ours[1]:6.1f}x")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=20_000)
    parser.add_argument("--distinct-rows", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)

    from invoicekit.samples import make_invoices
    from invoicekit.security import Keys, generate_key
    from invoicekit.security._pool import cpu_count

    keys = Keys([generate_key(), generate_key()])
    multi = keys.multifernet()
    print(f"cores: {cpu_count()}  workers: {args.workers or cpu_count()}  loadavg before: {_loadavg()}")
    real = make_invoices(args.rows, clients=args.clients)
    n_values = sum(int(real.invoices[c].notna().sum()) for c in COLUMNS)
    _ours(make_invoices(10_000, clients=10_000), keys, args.workers)  # start the worker pool (untimed)
    _row(f"realistic ({args.clients:,} clients)", args.rows, n_values, _loop(real.invoices, multi),
         _ours(real, keys, args.workers))
    if args.distinct_rows:
        dist = make_invoices(args.distinct_rows, clients=args.distinct_rows)
        n_values = sum(int(dist.invoices[c].notna().sum()) for c in COLUMNS)
        loop = _loop(dist.invoices, multi)
        _row("clients = rows, processes", args.distinct_rows, n_values, loop, _ours(dist, keys, args.workers))
        _row("clients = rows, threads", args.distinct_rows, n_values, loop, _ours(dist, keys, args.workers, "thread"))
    print(f"loadavg after: {_loadavg()}")


if __name__ == "__main__":
    main()
