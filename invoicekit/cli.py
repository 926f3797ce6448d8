"""Command line: ``invoicekit --version | demo | db init | db token | db load | validate | verify |
reconcile | sync | dedupe | render | samples``.

Exit codes, mapped here and nowhere else (:func:`exit_code`): 0 ok; 1 differences or failed
items found; 2 bad usage or bad input (every :class:`~invoicekit.errors.InvoicekitError`,
and any driver or OS error, translated to one), and also any unexpected error, which
must never look like "differences found"; 130 interrupted (Ctrl-C).

Every command takes ``--json``: one JSON object per line and per store (stores are never
merged; each object names its ``store``). Commands that print lists take ``--limit N``
(default 50 rows a list, 0 for all); JSON output is always complete.

An error is one line on stderr; ``--debug`` (anywhere on the command line) adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from ._cli_jobs import add_limit
from ._version import __version__
from .errors import InvoicekitError, UsageError, driver_errors, mask_secrets, translate
from .resolve import STRATEGIES

EXIT_OK, EXIT_FOUND, EXIT_BAD, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 on bad usage, as we want; keep its message
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD, f"invoicekit: error: {message}\n")


_CURRENCY_HELP = "currency of invoices whose store records none (else the store's app_settings 'currency')"
_TOKEN_HELP = ("file holding this pusher's signed identity token "
               "(default: $INVOICEKIT_TOKEN, or the file named by $INVOICEKIT_TOKEN_FILE)")


def _parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``--json`` and ``--limit`` options every command shares."""
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print one JSON object per line and per store")
    limit = argparse.ArgumentParser(add_help=False)
    add_limit(limit)
    return as_json, limit


def _db_parser(sub, as_json, limit) -> None:
    db = sub.add_parser("db", help="central store administration")
    dbsub = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    init = dbsub.add_parser("init", parents=[as_json], help="create or upgrade the central store (idempotent)")
    init.add_argument("url", help="SQLAlchemy URL, e.g. postgresql://user@host/db or sqlite:///central.sqlite")
    init.add_argument("--token-secret-file", metavar="FILE",
                      help="turn signed identities on: every push then needs a token signed with the secret "
                           "in FILE (at least 32 bytes)")
    init.add_argument("--push-role", metavar="ROLE", help="PostgreSQL role pushes connect with "
                      "(default <database>_ik_push; needs --token-secret-file)")
    init.add_argument("--issuer", default=None, help="issuer tokens must name (default invoicekit)")
    tok = dbsub.add_parser("token", parents=[as_json], help="issue a signed identity token (printed on stdout)")
    tok.add_argument("subject", help="the user or device the token names")
    tok.add_argument("--secret-file", required=True, metavar="FILE", help="file holding the token secret")
    tok.add_argument("--ttl", type=float, default=3600, help="seconds the token is valid (default 3600)")
    tok.add_argument("--kind", choices=("user", "device"), default="user")
    tok.add_argument("--issuer", default=None, help="issuer (default invoicekit)")
    load = dbsub.add_parser("load", parents=[as_json, limit],
                            help="write files of invoices into the central store (compare-and-set); exit 1 if "
                                 "any invoice was refused")
    load.add_argument("url", help="central store URL")
    load.add_argument("files", nargs="+", metavar="FILE",
                      help="offline stores (SQLite), JSON Lines or Parquet files of invoices")
    load.add_argument("--currency", metavar="CODE", help=_CURRENCY_HELP)
    load.add_argument("--actor", help="who is named in the audit trail (default user@host)")
    load.add_argument("--token-file", metavar="FILE", help=_TOKEN_HELP)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="invoicekit", description="Invoices from offline stores and a central database.")
    p.add_argument("--version", action="version", version=f"invoicekit {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    as_json, limit = _parents()

    demo = sub.add_parser("demo", parents=[as_json], help="run the main job end to end on the sample data")
    demo.add_argument("--out", default="out", help="output directory (default: out)")
    demo.add_argument("--central", default=None, help="central store URL (default: embedded SQLite in OUT)")

    _db_parser(sub, as_json, limit)

    val = sub.add_parser("validate", parents=[as_json, limit],
                         help="validate each store on its own; exit 1 when any rule is broken")
    val.add_argument("paths", nargs="+", metavar="STORE",
                     help="offline stores (SQLite), JSON Lines or Parquet files, central store URLs")
    val.add_argument("--as-one-set", action="store_true",
                     help="check the stores together as one set (finds ids duplicated across them)")
    val.add_argument("--currency", metavar="CODE", help=_CURRENCY_HELP)

    ver = sub.add_parser("verify", parents=[as_json, limit],
                         help="recompute every row's SHA-256 checksum; exit 1 when any row fails it")
    ver.add_argument("paths", nargs="+", metavar="STORE",
                     help="offline stores (SQLite), JSON Lines or Parquet files, central store URLs")
    ver.add_argument("--currency", metavar="CODE", help=_CURRENCY_HELP)

    rec = sub.add_parser("reconcile", parents=[as_json, limit],
                         help="compare each offline store with the central store; exit 1 if anything differs")
    rec.add_argument("--local", nargs="+", required=True, metavar="PATH", help="offline store files (SQLite)")
    rec.add_argument("--central", required=True, metavar="URL", help="central store URL")
    rec.add_argument("--html", metavar="FILE", help="also write a standalone HTML report (one per store: "
                     "FILE_<store>.html when there are several)")
    rec.add_argument("--currency", metavar="CODE", help=_CURRENCY_HELP)

    syn = sub.add_parser("sync", parents=[as_json, limit],
                         help="reconcile, resolve and apply (or only plan, with --dry-run)")
    syn.add_argument("--local", required=True, metavar="PATH", help="offline store file (SQLite)")
    syn.add_argument("--central", required=True, metavar="URL", help="central store URL")
    syn.add_argument("--strategy", required=True, choices=STRATEGIES, help="how conflicts are resolved")
    syn.add_argument("--decisions", metavar="FILE.csv",
                     help="CSV of id,field,choice (local, central or base; field * takes the whole invoice) "
                          "settling conflicts; rows with an empty choice are skipped")
    syn.add_argument("--unresolved-csv", metavar="FILE",
                     help="write the fields still needing a decision as a CSV to fill in for --decisions")
    syn.add_argument("--dry-run", action="store_true",
                     help="print the plan and check it as the real run would, write nothing")
    syn.add_argument("--html", metavar="FILE", help="also write the plan (or result) as HTML")
    syn.add_argument("--currency", metavar="CODE", help=_CURRENCY_HELP)
    syn.add_argument("--token-file", metavar="FILE", help=_TOKEN_HELP)

    from .dedupe import cli as dedupe_cli
    from .render import cli as render_cli

    dedupe_cli.add_parser(sub)
    render_cli.add_parser(sub)

    smp = sub.add_parser("samples", parents=[as_json], help="(re)generate the sample files")
    smp.add_argument("--out", default="data/samples")
    smp.add_argument("--seed", type=int, default=None)
    return p


def _run(args: argparse.Namespace) -> int:
    from . import _cli_jobs as jobs

    if args.command == "demo":
        return _demo(args)
    if args.command == "db":
        return jobs.load_cmd(args) if args.db_command == "load" else _db(args)
    if args.command in ("validate", "verify", "reconcile", "sync"):
        return getattr(jobs, f"{args.command}_cmd")(args)
    if args.command == "dedupe":
        from .dedupe import cli as dedupe_cli

        return dedupe_cli.run(args)
    if args.command == "render":
        from .render import cli as render_cli

        return render_cli.run(args)
    if args.command == "samples":
        from .samples import SAMPLE_SEED, write_samples

        paths = write_samples(args.out, seed=SAMPLE_SEED if args.seed is None else args.seed)
        if args.json:
            jobs.emit({"store": args.out, "files": paths})
        else:
            print("\n".join(paths.values()))
        return EXIT_OK
    raise AssertionError(args.command)  # pragma: no cover - argparse rejects unknown commands


def _demo(args: argparse.Namespace) -> int:
    """The demo; with ``--json`` its narration goes to stderr and its result (demo.json) to stdout."""
    import contextlib

    from ._cli_jobs import check_central, emit
    from .demo import run_demo

    check_central(args.central, "--central")
    if not args.json:
        run_demo(out=args.out, central=args.central)
        return EXIT_OK
    with contextlib.redirect_stdout(sys.stderr):
        result = run_demo(out=args.out, central=args.central)
    emit({"store": args.central or "embedded", **result})
    return EXIT_OK


def _db(args: argparse.Namespace) -> int:
    from ._cli_jobs import emit
    from .security.identity import DEFAULT_ISSUER, issue_token, read_secret_file

    if args.db_command == "token":
        text = issue_token(args.subject, secret=read_secret_file(args.secret_file), ttl=args.ttl, kind=args.kind,
                           issuer=args.issuer or DEFAULT_ISSUER)
        if args.json:
            emit({"subject": args.subject, "kind": args.kind, "ttl": args.ttl, "token": text})
        else:
            print(text)
        return EXIT_OK
    from .io import init_db
    from .io.central import CentralStore

    if (args.push_role or args.issuer) and not args.token_secret_file:
        raise UsageError("db init: --push-role and --issuer need --token-secret-file")
    secret = read_secret_file(args.token_secret_file) if args.token_secret_file else None
    version = init_db(args.url, token_secret=secret, issuer=args.issuer or DEFAULT_ISSUER, push_role=args.push_role)
    role = CentralStore(args.url).fetch("SELECT push_role FROM invoicekit_identity")[0][0] if secret else None
    if args.json:
        emit({"store": mask_secrets(args.url), "schema_version": version, "signed_identities": secret is not None,
              "push_role": role})
        return EXIT_OK
    print(f"central store ready (schema version {version})")
    if secret is not None:
        print("signed identities on: every push needs a token (invoicekit db token NAME --secret-file FILE)"
              + (f"; grant the push role {role} to the login roles that push" if role else ""))
    return EXIT_OK


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
