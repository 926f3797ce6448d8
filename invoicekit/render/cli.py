"""``invoicekit render``: PDFs of each store's invoices (wired into :mod:`invoicekit.cli`).

``invoicekit render (--local PATH... | --central URL) --out DIR [--template T] [--locale L]
[--where COL=VALUE ...] [--einvoice factur-x] [--seller JSON|FILE] [--json] [--limit N]``. Each
store is rendered on its own, into DIR (one store) or ``DIR/<store file's stem>`` (several).
``--json`` prints one object per line and per store, naming its ``store``, with the counts
and every failure; the printed table of failures stops after ``--limit`` rows. Exit 0 when
every invoice was rendered (or already there), 1 when any failed, 2 on bad usage (raised as
:class:`~invoicekit.errors.UsageError`, mapped by the main CLI).
"""

from __future__ import annotations

import argparse
import json
import os

from .._cli_jobs import add_limit, emit, records, say, show
from ..errors import UsageError, mask_secrets

__all__ = ["add_parser", "run", "parse_where"]

EXIT_OK, EXIT_FOUND = 0, 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``render`` command to ``subparsers`` (the main parser's sub-parsers)."""
    from ._batch import EINVOICE_KINDS
    from ._templates import SHIPPED

    p = subparsers.add_parser("render", help="render invoices to PDF; exit 1 if any invoice failed")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--local", nargs="+", metavar="PATH", help="offline store files (SQLite), each on its own")
    src.add_argument("--central", metavar="URL", help="central store URL")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory (created if missing); DIR/<store> for each of several stores")
    p.add_argument("--template", default="invoice", metavar="T",
                   help=f"one of {', '.join(SHIPPED)} or the path of a .html template (default: invoice)")
    p.add_argument("--locale", default="en_GB", metavar="L", help="formatting locale, e.g. de_DE (default: en_GB)")
    p.add_argument("--where", action="append", default=[], metavar="COL=VALUE",
                   help="only invoices whose COL equals VALUE (repeat: same COL = any of, other COLs = all of)")
    p.add_argument("--einvoice", choices=EINVOICE_KINDS, help="embed an e-invoice (PDF/A-3b with CII XML)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="render invoices whose stored total differs from their lines (recomputed totals shown)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    p.add_argument("--currency", metavar="CODE", help="currency of invoices whose store records none")
    p.add_argument("--seller", metavar="JSON|FILE",
                   help="seller details as JSON (or a JSON file); default: the store's app_settings 'seller'")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per line and per store: counts and every failure")
    add_limit(p)
    return p


def parse_where(items: list[str]) -> dict:
    """``["status=paid", "currency=EUR", "currency=CHF"]`` -> ``{"status": "paid", "currency": [...]}``."""
    where: dict = {}
    for item in items:
        col, sep, value = item.partition("=")
        if not sep or not col.strip():
            raise UsageError(f"--where {item!r}: expected COL=VALUE, e.g. --where currency=EUR", reason="bad_where")
        where.setdefault(col.strip(), []).append(value)
    return where


def _seller(text: str | None):
    if text is None:
        return None
    try:
        if not text.lstrip().startswith("{"):
            with open(text, encoding="utf-8") as fh:
                text = fh.read()
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--seller: expected a JSON object or the path of a JSON file ({exc})",
                         reason="bad_seller") from None


def _stores(args: argparse.Namespace) -> list[str]:
    if args.local is None:
        return [args.central]
    for path in args.local:
        if "://" in path:
            raise UsageError(f"--local takes offline store files (SQLite); got the URL {mask_secrets(path)!r}: "
                             "give it as --central URL", reason="bad_path")
    return list(args.local)


def _load(args: argparse.Namespace, store: str):
    from ..io import read_central, read_local

    return read_central(store) if args.local is None else read_local(store, currency=args.currency)


def _out_dir(args: argparse.Namespace, store: str, several: bool) -> str:
    """``--out`` itself for one store; ``--out/<store file's stem>`` for each of several."""
    return os.path.join(args.out, os.path.splitext(os.path.basename(store))[0]) if several else args.out


def run(args: argparse.Namespace) -> int:
    """Run ``invoicekit render``; returns 0 (all rendered) or 1 (some failed)."""
    from ._batch import render_batch

    where, seller = parse_where(args.where), _seller(args.seller)
    stores = _stores(args)
    ok = True
    for store in stores:
        result = render_batch(_load(args, store), _out_dir(args, store, len(stores) > 1), template=args.template,
                              locale=args.locale, seller=seller, einvoice=args.einvoice, where=where or None,
                              workers=args.workers, allow_mismatch=args.allow_mismatch,
                              progress=None if args.json else True)
        ok &= result.ok
        failures = result.failures
        if args.json:
            emit({"store": mask_secrets(store), **result.counts(), "out": result.out_dir,
                  "failures": records(failures)})
            continue
        say(f"{mask_secrets(store)} -> {result.out_dir}")
        say(result.summary().to_string(index=False))
        if len(failures):
            say()
            show(failures, args.limit, what="failures")
    return EXIT_OK if ok else EXIT_FOUND
