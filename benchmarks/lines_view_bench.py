"""What the ``invoice_lines`` view (PostgreSQL schema version 11) costs SQL users.

Run ``.venv/bin/python -m benchmarks.lines_view_bench`` (``--rows`` central invoices,
default 1,000,000; ``--repeat``; ``--pg-url``; ``--json``).

Version 11 replaced the lines table by a view deriving the lines from ``line_items_text``:
pushes and writes no longer write lines (see the ``push`` benchmark), and every query of the
lines parses JSON instead. Measured on the same store, in the same run, against the same
rows as a table (``CREATE TABLE ... AS SELECT * FROM invoice_lines``, with the version-10
table's primary key), both after ``VACUUM ANALYZE``:

``aggregate``  ``SELECT count(*), sum(line_total) FROM invoice_lines``: every line.
``one invoice`` the lines of one invoice by id (1,000 ids, one statement each, one session).
``join``       lines of the invoices created in one month, joined to their invoices.
"""

from __future__ import annotations

import os
import sys
import time

try:
    from benchmarks import run as R
except ImportError:  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import run as R  # type: ignore[no-redef]

_AGG = "SELECT count(*), sum(line_total) FROM {rel}"
_ONE = "SELECT * FROM {rel} WHERE invoice_id = %s"
_JOIN = ("SELECT count(*), sum(l.line_total) FROM {rel} l JOIN invoices i ON i.id = l.invoice_id "
         "WHERE i.created_at >= (SELECT min(created_at) FROM invoices) "
         "AND i.created_at < (SELECT min(created_at) FROM invoices) + interval '30 days'")


def bench_lines_view(data, repeat: int):
    import psycopg

    url = R._libpq(data.central_url)
    res = R.Result("lines_view", "SQL reads of invoice_lines: the version-11 view against the same rows as a table",
                   data.rows)
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        conn.execute("DROP TABLE IF EXISTS ik_bench_lines")
        conn.execute("CREATE TABLE ik_bench_lines AS SELECT * FROM invoice_lines")
        conn.execute("ALTER TABLE ik_bench_lines ADD PRIMARY KEY (invoice_id, line_no)")
        conn.execute("VACUUM ANALYZE ik_bench_lines")
        conn.execute("VACUUM ANALYZE invoices")
        n_lines = conn.execute("SELECT count(*) FROM ik_bench_lines").fetchone()[0]
        ids = [r[0] for r in conn.execute("SELECT id FROM invoices ORDER BY md5(id) LIMIT 1000")]
        res.notes.append(f"{n_lines:,} lines; the table copy took {time.perf_counter() - t0:.1f} s (untimed)")
    try:
        answers: dict[str, tuple] = {}
        for label, sql in (("aggregate", _AGG), ("join, one month", _JOIN)):
            for rel, kind in (("invoice_lines", "subject"), ("ik_bench_lines", "baseline")):
                def query(sql=sql, rel=rel):
                    with psycopg.connect(url) as conn:
                        return tuple(conn.execute(sql.format(rel=rel)).fetchone())

                def check(got, label=label, rel=rel):
                    want = answers.setdefault(label, got)
                    if got != want:
                        res.error = f"{label}: the view gives {want}, the table {got}"

                res.measures.append(R.measure(f"{label}: {'view' if rel == 'invoice_lines' else 'table'}",
                                              query, rows=n_lines, kind=kind, repeat=repeat, check=check))
        for rel, kind in (("invoice_lines", "subject"), ("ik_bench_lines", "baseline")):
            def lookups(rel=rel):
                with psycopg.connect(url) as conn:
                    return sum(len(conn.execute(_ONE.format(rel=rel), (i,)).fetchall()) for i in ids)

            res.measures.append(R.measure(f"1,000 one-invoice lookups: {'view' if rel == 'invoice_lines' else 'table'}",
                                          lookups, rows=1000, kind=kind, repeat=repeat))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS ik_bench_lines")
    for label in ("aggregate", "join, one month", "1,000 one-invoice lookups"):
        view = next(m for m in res.measures if m.name.startswith(label) and m.name.endswith("view"))
        table = next(m for m in res.measures if m.name.startswith(label) and m.name.endswith("table"))
        res.target(f"(info) {label}: view / table", f"{view.best / table.best:.2f}x "
                   f"({view.best:.3f} s vs {table.best:.3f} s)", True)
    return res


def main(argv: list[str] | None = None) -> int:
    return R.central_main(argv, prog="python -m benchmarks.lines_view_bench", doc=__doc__,
                          run=lambda data, args: bench_lines_view(data, args.repeat))


if __name__ == "__main__":
    sys.exit(main())
