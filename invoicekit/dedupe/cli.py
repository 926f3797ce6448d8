"""``invoicekit dedupe (--local PATH... | --central URL) [--json] [--html FILE]``.

Finds duplicate invoices and prints what a cleanup would do; nothing is written. Exit
codes follow :mod:`invoicekit.cli`: 0 no duplicates, 1 duplicates found, 2 bad usage
(a :class:`~invoicekit.errors.UsageError`, mapped by the main CLI).

Wire into :mod:`invoicekit.cli` with ``dedupe_cli.add_parser(sub)`` in ``_parser`` and
``if args.command == "dedupe": return dedupe_cli.run(args)`` in ``_run``.
"""

from __future__ import annotations

import argparse
import json

from ..errors import UsageError, mask_secrets

__all__ = ["add_parser", "run"]

EXIT_OK, EXIT_FOUND = 0, 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``dedupe`` command to ``subparsers`` (an argparse sub-parsers action)."""
    p = subparsers.add_parser("dedupe", help="find invoices entered more than once; exit 1 if any are found")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", nargs="+", metavar="PATH", help="offline store files (SQLite)")
    where.add_argument("--central", metavar="URL", help="central store URL")
    p.add_argument("--json", action="store_true", help="print pair, cluster and action counts as a JSON object")
    p.add_argument("--html", metavar="FILE", help="also write the pairs as a standalone HTML report")
    p.add_argument("--preset", default="invoice", choices=("invoice", "seed"), help="scoring model (default invoice)")
    p.add_argument("--threshold", type=float, default=None, help="override the preset's decision threshold (0-1)")
    p.add_argument("--currency", metavar="CODE", help="currency of invoices whose store records none")
    return p


def _load(args: argparse.Namespace):
    from ..io import read_central, read_local
    from ..schema import InvoiceSet

    if args.central is not None:
        if "://" not in args.central:
            raise UsageError(f"--central takes a store URL (postgresql://... or sqlite:///...); got {args.central!r}",
                             reason="bad_url")
        return read_central(args.central, lines=False)
    for path in args.local:
        if "://" in path:
            raise UsageError(f"--local takes offline store files (SQLite); got the URL {mask_secrets(path)!r}: "
                             "give the central store as --central URL", reason="bad_path")
    return InvoiceSet.concat(read_local(p, lines=False, currency=args.currency) for p in args.local)


def counts(pairs, clusters) -> dict:
    """The counts ``--json`` prints."""
    actions = pairs.pairs["action"].value_counts()
    return {
        "invoices": int(pairs.stats.get("invoices", 0)),
        "candidates": int(pairs.stats.get("candidates", 0)),
        "pairs": int(len(pairs.pairs)),
        "duplicate_pairs": int(pairs.pairs["is_duplicate"].sum()),
        "clusters": int(clusters.clusters["cluster_id"].nunique()),
        "removable": int((~clusters.clusters["is_survivor"]).sum()),
        "actions": {a: int(actions.get(a, 0)) for a in ("skip", "merge", "review")},
    }


def run(args: argparse.Namespace) -> int:
    """Run ``invoicekit dedupe``; returns the exit code (1 when duplicates are found)."""
    from . import cluster_duplicates, find_duplicates

    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UsageError(f"--threshold must be between 0 and 1, not {args.threshold}", reason="bad_threshold")
    invoices = _load(args)
    pairs = find_duplicates(invoices, preset=args.preset, threshold=args.threshold)
    clusters = cluster_duplicates(pairs)
    if args.html:
        pairs.to_html(args.html)
    if args.json:
        print(json.dumps(counts(pairs, clusters), sort_keys=True))  # noqa: T201 - the command's output
    else:
        c = counts(pairs, clusters)
        print(f"{c['invoices']:,} invoices, {c['duplicate_pairs']:,} duplicate pair(s) in "  # noqa: T201
              f"{c['clusters']:,} cluster(s), {c['removable']:,} removable; nothing written")
        dup = pairs.duplicates
        if len(dup):
            print()  # noqa: T201
            print(dup[["id_a", "id_b", "score", "action", "reason"]].to_string(index=False))  # noqa: T201
    return EXIT_FOUND if bool(pairs.pairs["is_duplicate"].any()) else EXIT_OK
