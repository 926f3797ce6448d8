"""``invoicekit render``: PDFs of a store's invoices (wired into :mod:`invoicekit.cli`).

``invoicekit render (--local PATH | --central URL) --out DIR [--template T] [--locale L]
[--where COL=VALUE ...] [--einvoice factur-x] [--seller JSON|FILE] [--json]``. Exit 0 when every invoice was
rendered (or already there), 1 when any failed (with a table of failures, or JSON), 2 on
bad usage (raised as :class:`~invoicekit.errors.UsageError`, mapped by the main CLI).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import UsageError

__all__ = ["add_parser", "run", "parse_where"]

EXIT_OK, EXIT_FOUND = 0, 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``render`` command to ``subparsers`` (the main parser's sub-parsers)."""
    from ._batch import EINVOICE_KINDS
    from ._templates import SHIPPED

    p = subparsers.add_parser("render", help="render invoices to PDF; exit 1 if any invoice failed")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--local", metavar="PATH", help="offline store file (SQLite)")
    src.add_argument("--central", metavar="URL", help="central store URL")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
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
    p.add_argument("--json", action="store_true", help="print counts and failures as one JSON object")
    return p


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")


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


def _load(args: argparse.Namespace):
    if args.local is not None:
        if "://" in args.local:
            raise UsageError("--local takes an offline store file (SQLite); got a URL: give it as --central URL",
                             reason="bad_path")
        from ..io import read_local

        return read_local(args.local, currency=args.currency)
    from ..io import read_central

    return read_central(args.central)


def run(args: argparse.Namespace) -> int:
    """Run ``invoicekit render``; returns 0 (all rendered) or 1 (some failed)."""
    from ._batch import render_batch

    where, seller = parse_where(args.where), _seller(args.seller)
    result = render_batch(_load(args), args.out, template=args.template, locale=args.locale, seller=seller,
                          einvoice=args.einvoice, where=where or None, workers=args.workers,
                          allow_mismatch=args.allow_mismatch, progress=None if args.json else True)
    failures = result.failures
    if args.json:
        rows = failures.astype(object).where(failures.notna(), None).to_dict("records")
        _say(json.dumps({**result.counts(), "out": result.out_dir, "failures": rows}, sort_keys=True))
    else:
        _say(result.summary().to_string(index=False))
        if len(failures):
            _say()
            _say(failures.to_string(index=False))
    return EXIT_OK if result.ok else EXIT_FOUND
