"""Command line: ``invoicekit --version | demo | db init URL | validate PATH... | samples``.

Exit codes, mapped here and nowhere else: 0 ok; 1 differences or failed items found;
2 bad usage or bad input (every :class:`~invoicekit.errors.InvoicekitError`).
"""

from __future__ import annotations

import argparse
import json
import sys

from ._version import __version__
from .errors import InvoicekitError

EXIT_OK, EXIT_FOUND, EXIT_BAD = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 on bad usage, as we want; keep its message
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD, f"invoicekit: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="invoicekit", description="Invoices from offline stores and a central database.")
    p.add_argument("--version", action="version", version=f"invoicekit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="run the main job end to end on the sample data")
    demo.add_argument("--out", default="out", help="output directory (default: out)")
    demo.add_argument("--central", default=None, help="central store URL (default: embedded SQLite in OUT)")

    db = sub.add_parser("db", help="central store administration")
    dbsub = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    init = dbsub.add_parser("init", help="create or upgrade the central store (idempotent)")
    init.add_argument("url", help="SQLAlchemy URL, e.g. postgresql://user@host/db or sqlite:///central.sqlite")

    val = sub.add_parser("validate", help="validate offline stores; exit 1 when any rule is broken")
    val.add_argument("paths", nargs="+", help="offline store files (SQLite)")
    val.add_argument("--json", action="store_true", help="print problems as JSON lines")

    smp = sub.add_parser("samples", help="(re)generate the sample files")
    smp.add_argument("--out", default="data/samples")
    smp.add_argument("--seed", type=int, default=None)
    return p


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        run_demo(out=args.out, central=args.central)
        return EXIT_OK
    if args.command == "db":
        from .io import init_db

        version = init_db(args.url)
        print(f"central store ready (schema version {version})")
        return EXIT_OK
    if args.command == "validate":
        from .io import read_local
        from .schema import InvoiceSet
        from .validate import validate

        report = validate(InvoiceSet.concat(read_local(p) for p in args.paths))
        if args.json:
            for row in report.problems.astype(object).where(report.problems.notna(), None).to_dict("records"):
                print(json.dumps(row, default=str))
        else:
            print(f"{report.n_invoices:,} invoices, {len(report.problems):,} problem(s)")
            if not report.ok:
                print(report.problems[["source", "source_row", "id", "rule", "field", "message"]].to_string(index=False))
        return EXIT_OK if report.ok else EXIT_FOUND
    if args.command == "samples":
        from .samples import SAMPLE_SEED, write_samples

        paths = write_samples(args.out, seed=SAMPLE_SEED if args.seed is None else args.seed)
        print("\n".join(paths.values()))
        return EXIT_OK
    raise AssertionError(args.command)  # pragma: no cover - argparse rejects unknown commands


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (see module doc)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except InvoicekitError as exc:
        print(f"invoicekit: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
