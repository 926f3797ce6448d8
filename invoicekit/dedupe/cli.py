"""``invoicekit dedupe (--local PATH... | --central URL) [--json] [--html FILE] [--apply]
[--keep RULE] [--decisions FILE]`` and ``invoicekit dedupe --undo CLEANUP_ID (--local PATH | --central URL)``.

Finds duplicate invoices (respecting the review decisions stored in the store) and prints
what a cleanup would do; without ``--apply`` nothing is written (``--decisions`` records
its CSV of ``id_a,id_b,same`` in the store before matching). ``--apply`` writes the
cleanup (tombstones, audited) and prints its cleanup id; ``--undo`` brings a cleanup's
invoices back. Exit codes follow :mod:`invoicekit.cli`: 0 no duplicates (undo: nothing
refused), 1 duplicates found (undo: some refused), 2 bad usage (a
:class:`~invoicekit.errors.UsageError`, mapped by the main CLI).

Wire into :mod:`invoicekit.cli` with ``dedupe_cli.add_parser(sub)`` in ``_parser`` and
``if args.command == "dedupe": return dedupe_cli.run(args)`` in ``_run``.
"""

from __future__ import annotations

import argparse
import json

from ..errors import UsageError, mask_secrets
from ..security.identity import pusher_token
from ._resolve import KEEP

__all__ = ["add_parser", "run"]

EXIT_OK, EXIT_FOUND = 0, 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``dedupe`` command to ``subparsers`` (an argparse sub-parsers action)."""
    p = subparsers.add_parser("dedupe", help="find invoices entered more than once; exit 1 if any are found")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", nargs="+", metavar="PATH", help="offline store files (SQLite)")
    where.add_argument("--central", metavar="URL", help="central store URL")
    p.add_argument("--apply", action="store_true",
                   help="write the cleanup (tombstones, audited); default: write nothing")
    p.add_argument("--keep", default="earliest", choices=KEEP,
                   help="which entry of a cluster survives (default earliest)")
    p.add_argument("--decisions", metavar="FILE",
                   help="CSV id_a,id_b,same of review decisions, recorded before matching")
    p.add_argument("--undo", metavar="CLEANUP_ID", help="bring back the invoices a cleanup removed (one store)")
    p.add_argument("--actor", help="who is named in the audit trail (default user@host)")
    p.add_argument("--token-file", metavar="FILE",
                   help="file holding your signed identity token, for a store with identities on (default: "
                        "$INVOICEKIT_TOKEN, else the file $INVOICEKIT_TOKEN_FILE)")
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
        "actions": {a: int(actions.get(a, 0)) for a in ("skip", "merge", "review", "keep_both")},
    }


def _stores(args: argparse.Namespace) -> list[str]:
    return [args.central] if args.central is not None else list(args.local)


def _one_store(args: argparse.Namespace, option: str) -> str:
    stores = _stores(args)
    if len(stores) != 1:
        raise UsageError(f"{option} writes one store: give one --local PATH or --central URL, not {len(stores)}",
                         reason="one_store")
    return stores[0]


def _decisions(args: argparse.Namespace):
    """Record ``--decisions`` in every store, then the decisions all stores hold (latest wins)."""
    import pandas as pd

    from ._decisions import read_decisions, record_decisions

    if args.decisions:
        try:
            given = pd.read_csv(args.decisions, dtype=str)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--decisions {args.decisions}: cannot read a CSV of id_a,id_b,same ({exc})",
                             reason="bad_decisions") from None
        for store in _stores(args):
            record_decisions(store, given, actor=args.actor, token=pusher_token(args.token_file))
    found = pd.concat([read_decisions(store) for store in _stores(args)], ignore_index=True)
    return found.sort_values("at", kind="stable")


def _undo(args: argparse.Namespace) -> int:
    from ._cleanup import undo_duplicates

    result = undo_duplicates(_one_store(args, "--undo"), args.undo, actor=args.actor,
                             token=pusher_token(args.token_file))
    if args.json:
        print(json.dumps({"cleanup_id": result.cleanup_id, "action": "undo",  # noqa: T201 - the command's output
                          **{o: result.count(o) for o in ("restored", "unchanged", "refused")}}, sort_keys=True))
    else:
        print(f"cleanup {result.cleanup_id} undone: {result.count('restored'):,} restored, "  # noqa: T201
              f"{result.count('unchanged'):,} already restored, {result.count('refused'):,} refused")
    return EXIT_OK if result.ok else EXIT_FOUND


def run(args: argparse.Namespace) -> int:
    """Run ``invoicekit dedupe``; returns the exit code (1 when duplicates are found)."""
    from . import apply_duplicates, cluster_duplicates, find_duplicates, resolve_duplicates

    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UsageError(f"--threshold must be between 0 and 1, not {args.threshold}", reason="bad_threshold")
    if args.undo is not None:
        if args.apply or args.decisions:
            raise UsageError("--undo takes no --apply or --decisions", reason="bad_usage")
        return _undo(args)
    target = _one_store(args, "--apply") if args.apply else None
    invoices = _load(args)
    pairs = find_duplicates(invoices, preset=args.preset, threshold=args.threshold, decisions=_decisions(args))
    clusters = cluster_duplicates(pairs)
    cleanup = None
    if target is not None:
        cleanup = apply_duplicates(resolve_duplicates(invoices, clusters, keep=args.keep), store=target,
                                   actor=args.actor, token=pusher_token(args.token_file))
    if args.html:
        pairs.to_html(args.html)
    written = "nothing written" if cleanup is None else (
        f"cleanup {cleanup.cleanup_id}: {cleanup.count('removed'):,} removed, {cleanup.count('unchanged'):,} "
        f"already removed, {cleanup.count('refused'):,} refused")
    if args.json:
        out = counts(pairs, clusters)
        if cleanup is not None:
            out["cleanup"] = {"cleanup_id": cleanup.cleanup_id,
                              **{o: cleanup.count(o) for o in ("removed", "unchanged", "refused")}}
        print(json.dumps(out, sort_keys=True))  # noqa: T201 - the command's output
    else:
        c = counts(pairs, clusters)
        print(f"{c['invoices']:,} invoices, {c['duplicate_pairs']:,} duplicate pair(s) in "  # noqa: T201
              f"{c['clusters']:,} cluster(s), {c['removable']:,} removable; {written}")
        dup = pairs.duplicates
        if len(dup):
            print()  # noqa: T201
            print(dup[["id_a", "id_b", "score", "action", "reason"]].to_string(index=False))  # noqa: T201
    return EXIT_FOUND if bool(pairs.pairs["is_duplicate"].any()) else EXIT_OK
