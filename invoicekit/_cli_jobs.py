"""The store commands of :mod:`invoicekit.cli`: validate, verify, reconcile, sync, db load.

Each takes the parsed arguments and returns its exit code (0 ok, 1 differences or failed
items found); errors are raised and mapped to codes by the CLI. With ``--json`` a command
prints one JSON object per line and per store (never merged across stores), each naming
its ``store``; without it, text whose lists stop after ``--limit`` rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date, datetime
from decimal import Decimal

import pandas as pd

from .errors import UsageError, ValidationError, mask_secrets

__all__ = ["emit", "show", "records", "add_limit", "html_path", "validate_cmd", "verify_cmd", "reconcile_cmd",
           "sync_cmd", "load_cmd"]

EXIT_OK, EXIT_FOUND = 0, 1
#: rows of each printed list unless ``--limit`` says otherwise
DEFAULT_LIMIT = 50


# -- output ----------------------------------------------------------------------------
def _limit(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of rows (0: all), not {text!r}")
    return n


def add_limit(parser: argparse.ArgumentParser) -> None:
    """Add the ``--limit N`` option of the commands that print lists (also ``dedupe``, ``render``)."""
    parser.add_argument("--limit", type=_limit, default=DEFAULT_LIMIT, metavar="N",
                        help=f"rows of each printed list (default {DEFAULT_LIMIT}; 0: all)")


def _plain(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def emit(obj: dict) -> None:
    """Print ``obj`` as one line of JSON (Decimals as exact text, times as ISO 8601)."""
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=_plain) + "\n")


def say(text: str = "") -> None:
    """Print a line of the command's text output."""
    sys.stdout.write(text + "\n")


def records(frame: pd.DataFrame) -> list[dict]:
    """``frame`` as a list of dicts, missing values as None."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def show(frame: pd.DataFrame, limit: int, *, what: str = "rows") -> None:
    """Print ``frame`` as a table of at most ``limit`` rows (0: all), saying how many more there are."""
    if frame.empty:
        return
    say(frame.head(limit).to_string(index=False) if limit else frame.to_string(index=False))
    if limit and len(frame) > limit:
        say(f"... {len(frame) - limit:,} more {what} (--limit 0 shows all)")


def html_path(path: str, store: str, several: bool) -> str:
    """``path`` itself for one store; ``<stem>_<store stem><ext>`` for each of several."""
    if not several:
        return path
    stem, ext = os.path.splitext(path)
    return f"{stem}_{os.path.splitext(os.path.basename(store))[0]}{ext or '.html'}"


def token(args: argparse.Namespace) -> str | None:
    """The pusher's token: ``--token-file``, else ``$INVOICEKIT_TOKEN``, else the file named by
    ``$INVOICEKIT_TOKEN_FILE``; None without any."""
    from .security.identity import pusher_token

    return pusher_token(args.token_file)


def check_central(url: str | None, option: str) -> None:
    """Check a central store URL before any work: a bad one is a UsageError saying what works."""
    from .io.central import CentralStore

    if url is None:
        return
    try:
        CentralStore(url)
    except UsageError as exc:
        raise UsageError(f"{option}: {exc}", reason=exc.reason) from None


def local_paths(paths: list[str], option: str) -> None:
    """Offline store paths must be files, not URLs."""
    for path in paths:
        if "://" in path:
            raise UsageError(f"{option} takes offline store files (SQLite); got the URL {mask_secrets(path)!r}: "
                             "give the central store as --central URL", reason="bad_path")


# -- validate ----------------------------------------------------------------------------
def _problems_per_store(args: argparse.Namespace) -> list[tuple[str, int, pd.DataFrame]]:
    """(store, invoices, problems) per path: each store checked on its own, or all as one set
    (duplicate ids across stores found), its problems then told per store by their source."""
    from .io.files import read_any
    from .schema import InvoiceSet
    from .validate import validate

    sets = [(p, read_any(p, currency=args.currency)) for p in args.paths]
    if not args.as_one_set:
        return [(p, len(s), validate(s).problems) for p, s in sets]
    problems = validate(InvoiceSet.concat(s for _, s in sets)).problems
    out = []
    for p, s in sets:
        sources = set(s.invoices["source"].dropna().astype(str)) | set(s.problems["source"].dropna().astype(str))
        out.append((p, len(s), problems[problems["source"].astype(str).isin(sources)].reset_index(drop=True)))
    return out


def validate_cmd(args: argparse.Namespace) -> int:
    """``invoicekit validate STORE...``: exit 1 when any store breaks a rule."""
    found = _problems_per_store(args)
    for path, n, problems in found:
        if args.json:
            emit({"store": mask_secrets(path), "invoices": n, "ok": problems.empty, "as_one_set": args.as_one_set,
                  "problems": records(problems)})
            continue
        say(f"{mask_secrets(path)}: {n:,} invoices, {len(problems):,} problem(s)")
        show(problems[["source_row", "id", "rule", "field", "message"]], args.limit, what="problems")
    return EXIT_FOUND if any(len(p) for _, _, p in found) else EXIT_OK


# -- verify ------------------------------------------------------------------------------
def verify_cmd(args: argparse.Namespace) -> int:
    """``invoicekit verify STORE...``: recompute every checksum; exit 1 when any row fails its own."""
    from .integrity import tampered
    from .io.files import read_any

    bad_anywhere = False
    for path in args.paths:
        s = read_any(path, currency=args.currency, lines=False)
        bad = tampered(s.invoices)[["id", "source_row", "stored", "computed"]]
        bad_anywhere |= len(bad) > 0
        if args.json:
            emit({"store": mask_secrets(path), "invoices": len(s), "ok": bad.empty, "tampered": records(bad)})
            continue
        verdict = "every checksum verifies" if bad.empty else f"{len(bad):,} row(s) fail their checksum"
        say(f"{mask_secrets(path)}: {len(s):,} invoices, {verdict}")
        show(bad, args.limit, what="rows")
    return EXIT_FOUND if bad_anywhere else EXIT_OK


# -- reconcile ---------------------------------------------------------------------------
def reconcile_cmd(args: argparse.Namespace) -> int:
    """``invoicekit reconcile --local PATH... --central URL``: each store against the central one."""
    from .io import read_central, read_local
    from .reconcile import IN_SYNC, reconcile

    check_central(args.central, "--central")
    local_paths(args.local, "--local")
    central = read_central(args.central)
    differs = False
    for path in args.local:
        rec = reconcile(read_local(path, currency=args.currency), central)
        differs |= rec.differs
        if args.html:
            rec.to_html(html_path(args.html, path, len(args.local) > 1))
        if args.json:
            emit({"store": path, "central": mask_secrets(args.central), "differs": rec.differs,
                  "counts": rec.counts()})
            continue
        todo = rec.status[~rec.status["status"].isin(IN_SYNC)]
        say(f"{path}: {len(rec.status):,} invoice ids, {len(todo):,} need action")
        say(rec.summary().to_string(index=False))
        if len(todo):
            say()
            show(todo[["id", "status", "reason"]], args.limit, what="invoices")
    return EXIT_FOUND if differs else EXIT_OK


# -- sync --------------------------------------------------------------------------------
def sync_cmd(args: argparse.Namespace) -> int:
    """``invoicekit sync``: reconcile, resolve (``--decisions``), plan, and apply unless ``--dry-run``."""
    from ._decisions_csv import read_decisions_csv, write_unresolved_csv
    from .io import read_central, read_local
    from .reconcile import reconcile
    from .resolve import resolve
    from .sync import apply_sync, plan_sync
    from .sync.apply import check_sync

    check_central(args.central, "--central")
    local_paths([args.local], "--local")
    rec = reconcile(read_local(args.local, currency=args.currency), read_central(args.central))
    decisions = read_decisions_csv(args.decisions, rec) if args.decisions else None
    res = resolve(rec, strategy=args.strategy, decisions=decisions)
    if args.unresolved_csv:
        write_unresolved_csv(res, args.unresolved_csv)
    plan = plan_sync(res)
    held = plan.ops[plan.ops["kind"].isin(("flag_conflict", "quarantine"))]
    result = None
    who = token(args)
    if args.dry_run:
        check_sync(plan, args.central, identify=True, token=who)  # what the real run checks before it writes
    else:
        result = apply_sync(plan, local=args.local, central=args.central, token=who)
    if args.html:
        (plan if result is None else result).to_html(args.html)
    ok = not len(held) and (result is None or result.ok)
    if args.json:
        emit({"store": args.local, "central": mask_secrets(args.central), "strategy": args.strategy,
              "dry_run": args.dry_run, "decisions": 0 if decisions is None else len(decisions), "ok": ok,
              "plan": dict(zip(plan.summary()["kind"], plan.summary()["operations"])),
              "results": None if result is None else records(result.summary()),
              "held": records(held[["kind", "invoice_id", "note"]]), "unresolved": records(res.unresolved)})
    else:
        _say_sync(args, plan, result, held, res)
    return EXIT_OK if ok else EXIT_FOUND


def _say_sync(args, plan, result, held, res) -> None:
    say(plan.summary().to_string(index=False))
    if result is None and len(plan.ops):
        say()
        show(plan.ops[["kind", "invoice_id", "status", "expected_central_version", "new_version"]], args.limit,
             what="operations")
    if result is not None:
        say()
        say(result.summary().to_string(index=False) if len(result.results) else "nothing to do")
    if len(held):
        say()
        show(held[["kind", "invoice_id", "note"]], args.limit, what="operations")
    if len(res.unresolved):
        say()
        say(f"{len(res.unresolved):,} field(s) need a decision: pass a CSV of id,field,choice (local, central or "
            "base) with --decisions FILE" + ("" if args.unresolved_csv else "; --unresolved-csv FILE writes one "
                                            "to fill in"))
        show(res.unresolved[["id", "field", "base", "local", "central"]], args.limit, what="fields")


# -- db load -----------------------------------------------------------------------------
def load_cmd(args: argparse.Namespace) -> int:
    """``invoicekit db load URL FILE...``: each file checked on its own, then written through
    the compare-and-set ``write_central``; nothing is written when any file breaks a rule."""
    from .io import write_central
    from .io.files import read_any
    from .validate import validate

    check_central(args.url, "db load")
    for path in args.files:
        if "://" in path:
            raise UsageError(f"db load takes files (offline stores, JSON Lines, Parquet); got the URL "
                             f"{mask_secrets(path)!r}", reason="bad_path")
    sets = [(p, read_any(p, currency=args.currency)) for p in args.files]
    problems = [validate(s).problems for _, s in sets]
    if any(len(p) for p in problems):
        raise ValidationError(pd.concat([p for p in problems if len(p)], ignore_index=True),
                              context=f"db load: nothing written to {mask_secrets(args.url)}", reason="bad_input")
    refused = False
    who = token(args)
    for path, s in sets:
        result = write_central(s, args.url, actor=args.actor, token=who)
        refused |= not result.ok
        counts = {o: result.count(o) for o in ("inserted", "updated", "unchanged", "refused")}
        rows = result.refused[["id", "reason", "incoming_version", "central_version", "message"]]
        if args.json:
            emit({"store": path, "central": mask_secrets(args.url), **counts, "ok": result.ok,
                  "refused_rows": records(rows)})
            continue
        say(f"{path} -> {mask_secrets(args.url)}: " + ", ".join(f"{n:,} {o}" for o, n in counts.items()))
        show(rows, args.limit, what="refused")
    return EXIT_FOUND if refused else EXIT_OK
