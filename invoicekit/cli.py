"""Command line: ``invoicekit --version | demo | db init | validate | reconcile | sync | dedupe | render | samples``.

Exit codes, mapped here and nowhere else (:func:`exit_code`): 0 ok; 1 differences or failed
items found; 2 bad usage or bad input (every :class:`~invoicekit.errors.InvoicekitError`,
and any driver or OS error, translated to one), and also any unexpected error, which
must never look like "differences found"; 130 interrupted (Ctrl-C).

An error is one line on stderr; ``--debug`` (anywhere on the command line) adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from ._version import __version__
from .errors import InvoicekitError, UsageError, driver_errors, mask_secrets, translate
from .resolve import STRATEGIES

EXIT_OK, EXIT_FOUND, EXIT_BAD, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 on bad usage, as we want; keep its message
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD, f"invoicekit: error: {message}\n")


_CURRENCY_HELP = "currency of invoices whose store records none (else the store's app_settings 'currency')"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="invoicekit", description="Invoices from offline stores and a central database.")
    p.add_argument("--version", action="version", version=f"invoicekit {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="run the main job end to end on the sample data")
    demo.add_argument("--out", default="out", help="output directory (default: out)")
    demo.add_argument("--central", default=None, help="central store URL (default: embedded SQLite in OUT)")

    db = sub.add_parser("db", help="central store administration")
    dbsub = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    init = dbsub.add_parser("init", help="create or upgrade the central store (idempotent)")
    init.add_argument("url", help="SQLAlchemy URL, e.g. postgresql://user@host/db or sqlite:///central.sqlite")
    init.add_argument("--token-secret-file", metavar="FILE",
                      help="turn signed identities on: every push then needs a token signed with the secret "
                           "in FILE (at least 32 bytes)")
    init.add_argument("--push-role", metavar="ROLE", help="PostgreSQL role pushes connect with "
                      "(default <database>_ik_push; needs --token-secret-file)")
    init.add_argument("--issuer", default=None, help="issuer tokens must name (default invoicekit)")
    tok = dbsub.add_parser("token", help="issue a signed identity token (printed on stdout)")
    tok.add_argument("subject", help="the user or device the token names")
    tok.add_argument("--secret-file", required=True, metavar="FILE", help="file holding the token secret")
    tok.add_argument("--ttl", type=float, default=3600, help="seconds the token is valid (default 3600)")
    tok.add_argument("--kind", choices=("user", "device"), default="user")
    tok.add_argument("--issuer", default=None, help="issuer (default invoicekit)")

    val = sub.add_parser("validate", help="validate offline stores; exit 1 when any rule is broken")
    val.add_argument("paths", nargs="+", help="offline store files (SQLite)")
    val.add_argument("--json", action="store_true", help="print problems as JSON lines")
    val.add_argument("--currency", metavar="CODE", help=_CURRENCY_HELP)

    rec = sub.add_parser("reconcile", help="compare offline stores with the central store; exit 1 if anything differs")
    rec.add_argument("--local", nargs="+", required=True, metavar="PATH", help="offline store files (SQLite)")
    rec.add_argument("--central", required=True, metavar="URL", help="central store URL")
    rec.add_argument("--json", action="store_true", help="print the counts by status as a JSON object")
    rec.add_argument("--html", metavar="FILE", help="also write a standalone HTML report")
    rec.add_argument("--currency", metavar="CODE", help=_CURRENCY_HELP)

    syn = sub.add_parser("sync", help="reconcile, resolve and apply (or only plan, with --dry-run)")
    syn.add_argument("--local", required=True, metavar="PATH", help="offline store file (SQLite)")
    syn.add_argument("--central", required=True, metavar="URL", help="central store URL")
    syn.add_argument("--strategy", required=True, choices=STRATEGIES, help="how conflicts are resolved")
    syn.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    syn.add_argument("--html", metavar="FILE", help="also write the plan (or result) as HTML")
    syn.add_argument("--currency", metavar="CODE", help=_CURRENCY_HELP)
    syn.add_argument("--token-file", metavar="FILE", help="file holding this pusher's signed identity token "
                     "(default: $INVOICEKIT_TOKEN, or the file named by $INVOICEKIT_TOKEN_FILE)")

    from .dedupe import cli as dedupe_cli
    from .render import cli as render_cli

    dedupe_cli.add_parser(sub)
    render_cli.add_parser(sub)

    smp = sub.add_parser("samples", help="(re)generate the sample files")
    smp.add_argument("--out", default="data/samples")
    smp.add_argument("--seed", type=int, default=None)
    return p


def _central(url: str | None, option: str) -> None:
    """Check a central store URL before any work: a bad one is a UsageError saying what works."""
    from .io.central import CentralStore

    if url is None:
        return
    try:
        CentralStore(url)
    except UsageError as exc:
        raise UsageError(f"{option}: {exc}", reason=exc.reason) from None


def _local(paths: list[str], option: str) -> None:
    """Offline store paths must be files, not URLs."""
    for path in paths:
        if "://" in path:
            raise UsageError(f"{option} takes offline store files (SQLite); got the URL {mask_secrets(path)!r}: "
                             "give the central store as --central URL", reason="bad_path")


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        _central(args.central, "--central")
        run_demo(out=args.out, central=args.central)
        return EXIT_OK
    if args.command == "db":
        return _db(args)
    if args.command == "validate":
        from .io import read_local
        from .schema import InvoiceSet
        from .validate import validate

        _local(args.paths, "validate")
        report = validate(InvoiceSet.concat(read_local(p, currency=args.currency) for p in args.paths))
        if args.json:
            for row in report.problems.astype(object).where(report.problems.notna(), None).to_dict("records"):
                print(json.dumps(row, default=str))
        else:
            print(f"{report.n_invoices:,} invoices, {len(report.problems):,} problem(s)")
            if not report.ok:
                shown = report.problems[["source", "source_row", "id", "rule", "field", "message"]]
                print(shown.to_string(index=False))
        return EXIT_OK if report.ok else EXIT_FOUND
    if args.command == "reconcile":
        return _reconcile(args)
    if args.command == "sync":
        return _sync(args)
    if args.command == "dedupe":
        from .dedupe import cli as dedupe_cli

        return dedupe_cli.run(args)
    if args.command == "render":
        from .render import cli as render_cli

        return render_cli.run(args)
    if args.command == "samples":
        from .samples import SAMPLE_SEED, write_samples

        paths = write_samples(args.out, seed=SAMPLE_SEED if args.seed is None else args.seed)
        print("\n".join(paths.values()))
        return EXIT_OK
    raise AssertionError(args.command)  # pragma: no cover - argparse rejects unknown commands


def _db(args: argparse.Namespace) -> int:
    from .security.identity import DEFAULT_ISSUER, issue_token, read_secret_file

    if args.db_command == "token":
        print(issue_token(args.subject, secret=read_secret_file(args.secret_file), ttl=args.ttl, kind=args.kind,
                          issuer=args.issuer or DEFAULT_ISSUER))
        return EXIT_OK
    from .io import init_db
    from .io.central import CentralStore

    if (args.push_role or args.issuer) and not args.token_secret_file:
        raise UsageError("db init: --push-role and --issuer need --token-secret-file")
    secret = read_secret_file(args.token_secret_file) if args.token_secret_file else None
    version = init_db(args.url, token_secret=secret, issuer=args.issuer or DEFAULT_ISSUER, push_role=args.push_role)
    print(f"central store ready (schema version {version})")
    if secret is not None:
        role = CentralStore(args.url).fetch("SELECT push_role FROM invoicekit_identity")[0][0]
        print("signed identities on: every push needs a token (invoicekit db token NAME --secret-file FILE)"
              + (f"; grant the push role {role} to the login roles that push" if role else ""))
    return EXIT_OK


def _token(args: argparse.Namespace) -> str | None:
    """The pusher's token: ``--token-file``, else ``$INVOICEKIT_TOKEN``, else the file named by
    ``$INVOICEKIT_TOKEN_FILE``; None without any."""
    import os

    from .security.identity import TOKEN_ENV, TOKEN_FILE_ENV

    path = args.token_file or os.environ.get(TOKEN_FILE_ENV)
    if args.token_file is None and os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the token file {path!r}: {exc.strerror}", reason="bad_path") from None


def _reconcile(args: argparse.Namespace) -> int:
    from .io import read_central, read_local
    from .reconcile import reconcile
    from .schema import InvoiceSet

    _central(args.central, "--central")
    _local(args.local, "--local")
    local = InvoiceSet.concat(read_local(p, currency=args.currency) for p in args.local)
    rec = reconcile(local, read_central(args.central))
    if args.html:
        rec.to_html(args.html)
    if args.json:
        print(json.dumps(rec.counts(), sort_keys=True))
    else:
        print(rec.summary().to_string(index=False))
        todo = rec.status[~rec.status["status"].isin(("same", "central_only"))]
        if len(todo):
            print()
            print(todo[["id", "status", "reason"]].to_string(index=False))
    return EXIT_FOUND if rec.differs else EXIT_OK


def _sync(args: argparse.Namespace) -> int:
    from .io import read_central, read_local
    from .reconcile import reconcile
    from .resolve import resolve
    from .sync import apply_sync, plan_sync

    _central(args.central, "--central")
    _local([args.local], "--local")
    local = read_local(args.local, currency=args.currency)
    res = resolve(reconcile(local, read_central(args.central)), strategy=args.strategy)
    plan = plan_sync(res)
    print(plan.summary().to_string(index=False))
    held = plan.ops[plan.ops["kind"].isin(("flag_conflict", "quarantine"))]
    if args.dry_run:
        if args.html:
            plan.to_html(args.html)
        if len(plan.ops):
            print()
            print(plan.ops[["kind", "invoice_id", "status", "expected_central_version", "new_version"]]
                  .to_string(index=False))
        return EXIT_FOUND if len(held) else EXIT_OK
    result = apply_sync(plan, local=args.local, central=args.central, token=_token(args))
    if args.html:
        result.to_html(args.html)
    print()
    print(result.summary().to_string(index=False) if len(result.results) else "nothing to do")
    if len(held):
        print()
        print(held[["kind", "invoice_id", "note"]].to_string(index=False))
    return EXIT_OK if result.ok and not len(held) else EXIT_FOUND


def _one_line(exc: BaseException) -> str:
    return mask_secrets(" ".join(str(exc).split()))


def exit_code(exc: BaseException) -> int:
    """The exit code for an error that stopped a command (the only place errors map to codes)."""
    if isinstance(exc, InvoicekitError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_BAD  # never EXIT_FOUND: an error must not read as "differences found"


def _report(exc: BaseException, *, debug: bool) -> int:
    """Print ``exc`` as one line on stderr (plus its traceback with ``--debug``); return its exit code."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, (*driver_errors(), OSError)) and not isinstance(exc, InvoicekitError):
        exc = translate(exc, store="")
    if isinstance(exc, InvoicekitError):
        line = f"invoicekit: error: {_one_line(exc)}"
    elif isinstance(exc, KeyboardInterrupt):
        line = "invoicekit: interrupted"
    else:
        line = f"invoicekit: internal error: {type(exc).__name__}: {_one_line(exc)}"
        if not debug:
            line += " (rerun with --debug for the traceback)"
    print(line, file=sys.stderr)
    return exit_code(exc)


def _take_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug`` (accepted anywhere before a ``--``), and whether it was there."""
    end = argv.index("--") if "--" in argv else len(argv)
    rest = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    return rest, len(rest) != len(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (see module doc)."""
    argv, debug = _take_debug(list(sys.argv[1:] if argv is None else argv))
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every error becomes one line and a code
        return _report(exc, debug=debug)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
