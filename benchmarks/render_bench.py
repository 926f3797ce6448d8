"""Benchmark of issue 10 (render): ``render_batch`` vs a plain per-invoice WeasyPrint loop.

    .venv/bin/python -m benchmarks.render_bench [--n 1000] [--big] [--big-n 10000] [--baseline-n 100] [--workers W]

``ours``      ``render_batch(invoices, out_dir, seller=..., workers=W)`` of ``--n`` one-page
              invoices (default template) into an empty folder. Target >= 40 invoices/s on
              2 cores and >= 3x the baseline.
``held``      (``--big``) the parent's RSS just before ``render_batch``: the invoices the
              caller holds (here made by ``invoicekit.samples``), which grow with ``n``;
              peak minus held is what the batch itself adds. Fork workers start as a copy
              of the parent, so their peak includes the pages of that data they map.
``baseline``  the same invoices, same template and data, rendered the plain way in one
              process: Jinja -> ``weasyprint.HTML(string=...).write_pdf(stylesheets=[...])``
              per invoice (stylesheets parsed and fonts configured for every document),
              over the first ``--baseline-n`` invoices.
``--big``     also ``ours`` over ``--big-n`` (default 10,000) invoices, to compare peak RSS
              with ``--n`` (target: within 10%), like with like: the ``--n`` batch is rendered
              (``where=``) from a caller holding the same ``--big-n`` invoices, as the caller's
              data is not the batch's; the ratio against a caller holding only ``--n`` is
              printed beside it.

Each measurement runs in a fresh child process, so its peak RSS is its own: ``parent`` is
the calling process's high-water mark (it holds the data), ``worker`` the largest worker's.
``CPU ms/inv`` (user + system, the process and its workers) is printed beside the wall
clock because a shared machine's load moves the wall-clock rates between runs; the
1-minute load average before and after each measurement is printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

SELLER = {"name": "Benchmark Seller GmbH", "address": "Hauptstraße 1, 10115 Berlin", "country": "DE",
          "vat_id": "DE123456789", "iban": "DE89370400440532013000", "email": "billing@seller.example"}


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: kilobytes


def _rss_mb() -> float:
    """This process's resident set now (Linux)."""
    with open("/proc/self/status") as fh:
        return int(fh.read().split("VmRSS:")[1].split()[0]) / 1024


def _cpu_s() -> float:
    """CPU seconds used by this process and its (finished) children so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _ours(n: int, workers: int | None, hold: int | None = None) -> dict:
    from invoicekit.render import render_batch
    from invoicekit.samples import make_invoices

    invoices = make_invoices(max(n, hold or 0), source="bench")
    # ``hold``: the caller holds that many invoices and renders the first n (where=), so two
    # batch sizes are compared with the same data in the caller (and in forked workers' pages)
    where = {"id": invoices.invoices["id"].head(n).tolist()} if hold and hold > n else None
    held = _rss_mb()  # the caller's data, before render_batch
    with tempfile.TemporaryDirectory() as out:
        t0, c0 = time.perf_counter(), _cpu_s()
        result = render_batch(invoices, out, seller=SELLER, workers=workers, where=where)
        seconds, cpu = time.perf_counter() - t0, _cpu_s() - c0
    c = result.counts()
    assert c["rendered"] == n and c["failed"] == 0, c
    return {"n": n, "seconds": seconds, "per_s": n / seconds, "pages": c["pages"], "cpu_ms": cpu / n * 1000,
            "parent_mb": _peak_mb(resource.RUSAGE_SELF), "worker_mb": _peak_mb(resource.RUSAGE_CHILDREN),
            "held_mb": held}


def _baseline(n: int) -> dict:
    import weasyprint

    from invoicekit.render import _batch, _context, _format, _templates
    from invoicekit.samples import make_invoices

    invoices = make_invoices(n, source="bench")
    opts = _batch._options(invoices, template="invoice", locale="en_GB", seller=SELLER, einvoice=None,
                           allow_urls=())
    plan = _batch._plan(invoices, opts, where=None, out_dir=None, allow_mismatch=False)
    rows = _batch._job(plan, opts, list(range(n)), None)["rows"]
    spec, fmt, seller = opts["spec"], _format.Formatter("en_GB"), opts["sellers"]["bench"]
    t0, c0 = time.perf_counter(), _cpu_s()
    for row in rows:
        ctx = _context.invoice_context(row, seller, fmt, "inv")
        html = _templates.render_html(spec, [ctx], seller, "en-GB")
        weasyprint.HTML(string=html, base_url=_templates.SHIPPED_DIR + os.sep).write_pdf(
            stylesheets=list(spec.stylesheets))
    seconds, cpu = time.perf_counter() - t0, _cpu_s() - c0
    return {"n": n, "seconds": seconds, "per_s": n / seconds, "cpu_ms": cpu / n * 1000,
            "parent_mb": _peak_mb(resource.RUSAGE_SELF),
            "worker_mb": 0.0}


def _child(kind: str, n: int, workers: int | None, hold: int | None = None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.render_bench", "--child", kind, "--n", str(n)]
    if workers:
        cmd += ["--workers", str(workers)]
    if hold:
        cmd += ["--hold", str(hold)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--baseline-n", type=int, default=100)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--big", action="store_true", help="also render --big-n invoices (peak RSS comparison)")
    p.add_argument("--big-n", type=int, default=10_000)
    p.add_argument("--child", choices=("ours", "baseline"), help=argparse.SUPPRESS)
    p.add_argument("--hold", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        res = _ours(args.n, args.workers, args.hold) if args.child == "ours" else _baseline(args.n)
        print(json.dumps(res))
        return 0
    print(f"render benchmark: {os.cpu_count()} CPUs, workers={args.workers or os.cpu_count()}", flush=True)
    print(f"{'':24} {'invoices':>9} {'seconds':>8} {'inv/s':>7} {'CPU ms/inv':>10} {'parent MB':>10} "
          f"{'worker MB':>10}  load before-after", flush=True)

    def show(label: str, kind: str, n: int, workers, hold: int | None = None) -> dict:
        before = os.getloadavg()[0]
        r = _child(kind, n, workers, hold)
        print(f"{label:24} {r['n']:>9,} {r['seconds']:>8.1f} {r['per_s']:>7.1f} {r['cpu_ms']:>10.0f} "
              f"{r['parent_mb']:>10.0f} {r['worker_mb']:>10.0f}  {before:.1f}-{os.getloadavg()[0]:.1f}", flush=True)
        return r

    base = show("baseline (plain loop)", "baseline", args.baseline_n, None)
    ours = show(f"ours ({args.n:,})", "ours", args.n, args.workers)
    print(f"speed-up over the plain loop: {ours['per_s'] / base['per_s']:.1f}x wall clock (target >= 3x; "
          f">= 40 inv/s); {base['cpu_ms'] / ours['cpu_ms']:.1f}x less CPU per invoice; on {os.cpu_count()} "
          f"otherwise idle cores: ~{(os.cpu_count() or 1) * 1000 / ours['cpu_ms']:.0f} inv/s", flush=True)
    if args.big:
        # like with like: both batches run in a caller holding the same --big-n invoices, so the
        # peaks differ only by what the batch itself does with 10x the invoices
        small = show(f"ours ({args.n:,} of {args.big_n:,})", "ours", args.n, args.workers, hold=args.big_n)
        big = show(f"ours ({args.big_n:,})", "ours", args.big_n, args.workers)
        for key in ("parent_mb", "worker_mb"):
            print(f"peak RSS {key[:-3]} {args.big_n:,} vs {args.n:,}, the caller holding {args.big_n:,} in both: "
                  f"{big[key] / small[key]:.2f}x (target <= 1.10x)")
        print(f"caller holding only what it renders ({args.n:,} vs {args.big_n:,}): parent "
              f"{big['parent_mb'] / ours['parent_mb']:.2f}x, worker {big['worker_mb'] / ours['worker_mb']:.2f}x; "
              f"parent RSS before render_batch (the data held): {ours['held_mb']:.0f} MB at {args.n:,}, "
              f"{big['held_mb']:.0f} MB at {args.big_n:,}; added by the batch: "
              f"{ours['parent_mb'] - ours['held_mb']:.0f} MB and {big['parent_mb'] - big['held_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
