"""``invoicekit dedupe (--local PATH... | --central URL) [--as-one-set] [--json] [--limit N] [--html FILE]
[--apply] [--keep RULE] [--decisions FILE]`` and ``invoicekit dedupe --undo CLEANUP_ID (--local PATH | --central URL)``.

Finds duplicate invoices in each store on its own (respecting the review decisions stored in
it) and prints what a cleanup would do; without ``--apply`` nothing is written
(``--decisions`` records its CSV of ``id_a,id_b,same`` in every store before matching).
``--as-one-set`` matches the stores together (an invoice entered on two devices) and reports,
per store, the pairs touching its invoices. ``--apply`` writes the cleanup (tombstones,
audited; one store) and prints its cleanup id; ``--undo`` brings a cleanup's invoices back.
``--json`` prints one object per line and per store, naming its ``store``, with the counts
and every duplicate pair; the printed list of pairs stops after ``--limit`` rows.
Exit codes follow :mod:`invoicekit.cli`: 0 no duplicates (undo: nothing refused), 1
duplicates found (undo: some refused), 2 bad usage (a
:class:`~invoicekit.errors.UsageError`, mapped by the main CLI).

Wire into :mod:`invoicekit.cli` with ``dedupe_cli.add_parser(sub)`` in ``_parser`` and
``if args.command == "dedupe": return dedupe_cli.run(args)`` in ``_run``.
"""

from __future__ import annotations

import argparse

from .._cli_jobs import add_limit, emit, html_path, records, say, show
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
    p.add_argument("--as-one-set", action="store_true",
                   help="match the --local stores together (finds an invoice entered on two devices); each "
                        "store's report lists the pairs touching its invoices")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per line and per store: counts and every duplicate pair")
    add_limit(p)
    p.add_argument("--html", metavar="FILE", help="also write the pairs as a standalone HTML report (one per "
                   "store: FILE_<store>.html when there are several; one report of all with --as-one-set)")
    p.add_argument("--preset", default="invoice", choices=("invoice", "seed"), help="scoring model (default invoice)")
    p.add_argument("--threshold", type=float, default=None, help="override the preset's decision threshold (0-1)")
    p.add_argument("--currency", metavar="CODE", help="currency of invoices whose store records none")
    return p


def _check_stores(args: argparse.Namespace) -> None:
    if args.central is not None:
        if "://" not in args.central:
            raise UsageError(f"--central takes a store URL (postgresql://... or sqlite:///...); got {args.central!r}",
                             reason="bad_url")
        return
    for path in args.local:
        if "://" in path:
            raise UsageError(f"--local takes offline store files (SQLite); got the URL {mask_secrets(path)!r}: "
                             "give the central store as --central URL", reason="bad_path")


def _load(args: argparse.Namespace, store: str):
    from ..io import read_central, read_local

    if args.central is not None:
        return read_central(store, lines=False)
    return read_local(store, lines=False, currency=args.currency)


def counts(pairs, clusters) -> dict:
    """The counts ``--json`` prints for one store."""
    return _counts(pairs.pairs, clusters.clusters, invoices=int(pairs.stats.get("invoices", 0)),
                   candidates=int(pairs.stats.get("candidates", 0)))


def _counts(pairs, clusters, *, invoices: int, candidates: int | None) -> dict:
    actions = pairs["action"].value_counts()
    return {
        "invoices": invoices,
        "candidates": candidates,
        "pairs": int(len(pairs)),
        "duplicate_pairs": int(pairs["is_duplicate"].sum()),
        "clusters": int(clusters["cluster_id"].nunique()),
        "removable": int((~clusters["is_survivor"]).sum()),
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


def _given_decisions(args: argparse.Namespace):
    """The ``--decisions`` CSV (None without one), read before anything is matched."""
    import pandas as pd

    if not args.decisions:
        return None
    try:
        return pd.read_csv(args.decisions, dtype=str)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--decisions {args.decisions}: cannot read a CSV of id_a,id_b,same ({exc})",
                         reason="bad_decisions") from None


def _decisions(args: argparse.Namespace, stores: list[str], given):
    """Record ``given`` (the ``--decisions`` CSV) in each of ``stores``, then the decisions
    they hold (latest wins)."""
    import pandas as pd

    from ._decisions import read_decisions, record_decisions

    for store in stores if given is not None else ():
        record_decisions(store, given, actor=args.actor, token=pusher_token(args.token_file))
    found = pd.concat([read_decisions(store) for store in stores], ignore_index=True)
    return found.sort_values("at", kind="stable")


def _undo(args: argparse.Namespace) -> int:
    from ._cleanup import undo_duplicates

    result = undo_duplicates(_one_store(args, "--undo"), args.undo, actor=args.actor,
                             token=pusher_token(args.token_file))
    if args.json:
        emit({"store": mask_secrets(_one_store(args, "--undo")), "cleanup_id": result.cleanup_id, "action": "undo",
              **{o: result.count(o) for o in ("restored", "unchanged", "refused")}})
    else:
        say(f"cleanup {result.cleanup_id} undone: {result.count('restored'):,} restored, "
            f"{result.count('unchanged'):,} already restored, {result.count('refused'):,} refused")
    return EXIT_OK if result.ok else EXIT_FOUND


def _matched(args: argparse.Namespace):
    """(store, invoices, pairs, clusters, its pair rows, its counts) per store: each store
    matched on its own, or all together (``--as-one-set``) and then told apart by the ids."""
    from . import cluster_duplicates, find_duplicates

    given = _given_decisions(args)

    def match(invoices, stores):
        pairs = find_duplicates(invoices, preset=args.preset, threshold=args.threshold,
                                decisions=_decisions(args, stores, given))
        return pairs, cluster_duplicates(pairs)

    stores = _stores(args)
    if not args.as_one_set or len(stores) == 1:
        for store in stores:
            invoices = _load(args, store)
            pairs, clusters = match(invoices, [store])
            yield store, invoices, pairs, clusters, pairs.pairs, counts(pairs, clusters)
        return
    from ..schema import InvoiceSet

    sets = [(store, _load(args, store)) for store in stores]
    pairs, clusters = match(InvoiceSet.concat(s for _, s in sets), stores)
    for store, invoices in sets:
        yield (store, invoices, pairs, clusters, *_of_store(pairs.pairs, clusters.clusters, invoices.invoices))


def _of_store(pairs, clusters, invoices) -> tuple:
    """The pair rows touching ``invoices`` (one store's, matched with others) and their counts:
    the clusters touching them, and how many of them a cleanup would remove."""
    ids = set(invoices["id"].astype(str))
    mine = pairs[pairs["id_a"].astype(str).isin(ids) | pairs["id_b"].astype(str).isin(ids)].reset_index(drop=True)
    member = clusters["id"].astype(str).isin(ids)
    touched = clusters[clusters["cluster_id"].isin(set(clusters.loc[member, "cluster_id"]))]
    kept = touched[touched["id"].astype(str).isin(ids) | touched["is_survivor"]]  # removable: this store's only
    return mine, _counts(mine, kept, invoices=int(invoices["deleted_at"].isna().sum()), candidates=None)


def run(args: argparse.Namespace) -> int:
    """Run ``invoicekit dedupe``; returns the exit code (1 when duplicates are found)."""
    from . import apply_duplicates, resolve_duplicates

    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UsageError(f"--threshold must be between 0 and 1, not {args.threshold}", reason="bad_threshold")
    if args.undo is not None:
        if args.apply or args.decisions or args.as_one_set:
            raise UsageError("--undo takes no --apply, --decisions or --as-one-set", reason="bad_usage")
        return _undo(args)
    target = _one_store(args, "--apply") if args.apply else None
    _check_stores(args)
    together = args.as_one_set and len(_stores(args)) > 1
    found, pairs = False, None
    for store, invoices, pairs, clusters, rows, c in _matched(args):
        cleanup = None
        if target is not None:
            cleanup = apply_duplicates(resolve_duplicates(invoices, clusters, keep=args.keep), store=target,
                                       actor=args.actor, token=pusher_token(args.token_file))
        if args.html and not together:
            pairs.to_html(html_path(args.html, store, len(_stores(args)) > 1))
        found |= bool(rows["is_duplicate"].any())
        _tell(args, store, rows, c, cleanup)
    if args.html and together:
        pairs.to_html(args.html)  # one report: the stores were matched together
    return EXIT_FOUND if found else EXIT_OK


#: the columns of the duplicate pairs in the printed list and in ``--json``
PAIR_COLUMNS = ["id_a", "id_b", "score", "action", "reason"]


def _tell(args: argparse.Namespace, store: str, pairs, c: dict, cleanup) -> None:
    """One store's report: a JSON line, or a line of counts and the duplicate pairs."""
    dup = pairs.loc[pairs["is_duplicate"].astype(bool), PAIR_COLUMNS].sort_values(
        ["score", "id_a", "id_b"], ascending=[False, True, True], kind="stable")
    if args.json:
        out = {"store": mask_secrets(store), "as_one_set": bool(args.as_one_set), **c,
               "duplicates": records(dup)}
        if cleanup is not None:
            out["cleanup"] = {"cleanup_id": cleanup.cleanup_id,
                              **{o: cleanup.count(o) for o in ("removed", "unchanged", "refused")}}
        emit(out)
        return
    written = "nothing written" if cleanup is None else (
        f"cleanup {cleanup.cleanup_id}: {cleanup.count('removed'):,} removed, {cleanup.count('unchanged'):,} "
        f"already removed, {cleanup.count('refused'):,} refused")
    say(f"{mask_secrets(store)}: {c['invoices']:,} invoices, {c['duplicate_pairs']:,} duplicate pair(s) in "
        f"{c['clusters']:,} cluster(s), {c['removable']:,} removable; {written}")
    if len(dup):
        say()
        show(dup, args.limit, what="pairs")
