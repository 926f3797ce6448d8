"""Benchmark of issue 13 (incremental snapshots): ``read_central(url, snapshot=PATH)``.

Run ``.venv/bin/python -m benchmarks.snapshot_bench`` (``--rows`` central invoices, default
1,000,000; ``--changed`` share changed after the snapshot, default 0.01; ``--push`` invoices
per push of the HOT check, default 100,000; ``--repeat``; ``--pg-url``; ``--json``).

``snapshot_reload``  ``read_central(url, snapshot=p)`` where ``p`` was taken before 1% of the
                     invoices were written again (edits and tombstones, through
                     ``write_central``): the changed rows are fetched and merged, the file
                     replaced. Before every timed run the file is put back as it was (untimed),
                     so each run really fetches the 1%. Target <= 0.5 s and >= 5x a full
                     ``read_central(url)`` in the same run; the result must equal the full read
                     (checked, sorted by id, every column).
``floors``           the reload's two parts alone: the one copy it makes (the mapped base
                     without the changed rows, into fresh memory, on two threads) and the
                     store's part (``read_central(url, ids=changed)``).
``cold read``        the full ``read_central(url)`` with the change-marker triggers in place
                     (reads never fire them; compare with the ``load_central`` figure).
``HOT check``        the central side of a push (``CentralStore.apply_batch``: what
                     ``apply_sync`` runs per batch) of ``--push`` edited invoices into the store,
                     alternately with the marker triggers disabled and enabled (disjoint ids each
                     time, each after a ``VACUUM invoices``, so each starts with the same free
                     space in the pages): wall time, and ``n_tup_upd`` / ``n_tup_hot_upd`` of
                     ``invoices`` from ``pg_stat_user_tables`` before and after.

``--sqlite-rows N``   instead: ``write_central`` of N new invoices and then of the same
                     edited, into a SQLite central store with the marker's row triggers and
                     into one without them (dropped), alternating, ``--repeat`` times.

The central store is ``benchmarks/run.py``'s (``make_invoices(--rows)`` written by
``write_central`` into a uuid-named database, dropped at the end); snapshot files live in
``benchmarks/.data`` and are removed at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    from benchmarks import central_scale_bench as C
    from benchmarks import run as R
    from benchmarks import sync_bench as S
except ImportError:  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import central_scale_bench as C  # type: ignore[no-redef]
    import run as R  # type: ignore[no-redef]
    import sync_bench as S  # type: ignore[no-redef]

_TRIGGERS = ("invoicekit_mark_insert", "invoicekit_mark_update", "invoicekit_mark_delete")


def _same(a, b) -> str | None:
    """None when the two sets hold the same invoices, lines and problems (sorted), else why not."""
    import pandas as pd

    cols = [c for c in a.invoices.columns if c not in ("source", "source_row")]
    try:
        pd.testing.assert_frame_equal(a.invoices[cols].sort_values("id").reset_index(drop=True),
                                      b.invoices[cols].sort_values("id").reset_index(drop=True))
        pd.testing.assert_frame_equal(a.lines.sort_values(["invoice_id", "line_no"]).reset_index(drop=True),
                                      b.lines.sort_values(["invoice_id", "line_no"]).reset_index(drop=True))
    except AssertionError as exc:
        return str(exc)[:300]
    return None


def _changes(data: R.Data, ids: pa.Array):
    """The invoices ``ids`` written again: most edited (version + 1), every 20th tombstoned."""
    s = data.invoice_set
    inv, lines = s.invoices_table(), s.lines_table()
    dead, edited = ids.filter(pa.array(np.arange(len(ids)) % 20 == 0)), ids.filter(
        pa.array(np.arange(len(ids)) % 20 != 0))
    return C._concat([S.edit_invoices(inv, lines, edited, days=1.0, sync_status=None, source="central"),
                      C._tombstones(C._take(s, dead), dead, sync_status=None, source="central")])


def _push_rows(store, data: R.Data, ids: pa.Array):
    """``apply_batch`` rows editing ``ids`` (version + 1), as a push stages them."""
    s = data.invoice_set
    edited = S.edit_invoices(s.invoices_table(), s.lines_table(), ids, days=3.0, sync_status=None, source="push")
    inv, lines = store.central_rows(edited)
    n = inv.num_rows
    inv = inv.append_column("op_id", pa.array([uuid.uuid4().hex for _ in range(n)], pa.string()))
    inv = inv.append_column("expected", pc.subtract(inv["version"], 1).cast(pa.int32()))
    inv = inv.append_column("content_sha", pa.array(np.full(n, "bench", dtype=object), pa.string()))
    return inv, lines


def _hot_check(data: R.Data, ids_sets: list[pa.Array], res: R.Result) -> list[dict]:
    import psycopg

    from invoicekit.io.central import CentralStore

    store = CentralStore(data.central_url)
    rows = []
    for k, ids in enumerate(ids_sets):
        marker = k % 2 == 1
        inv, lines = _push_rows(store, data, ids)
        with psycopg.connect(store.libpq, autocommit=True) as conn:
            for t in _TRIGGERS:
                conn.execute(f"ALTER TABLE invoices {'ENABLE' if marker else 'DISABLE'} TRIGGER {t}")
            conn.execute("VACUUM invoices")  # every push starts with the same room in the pages
            conn.execute("CHECKPOINT")
            before = _stats(conn)
        t0 = time.perf_counter()
        applied, _ = store.apply_batch(inv, lines, actor="bench", strategy="bench")
        took = time.perf_counter() - t0
        with psycopg.connect(store.libpq, autocommit=True) as conn:
            time.sleep(0.7)  # the statistics collector flushes at most every 0.5 s (PG 15: at commit, idle)
            after = _stats(conn)
            for t in _TRIGGERS:
                conn.execute(f"ALTER TABLE invoices ENABLE TRIGGER {t}")
        upd, hot = after[0] - before[0], after[1] - before[1]
        row = {"push": k + 1, "marker": "on" if marker else "off", "applied": len(applied), "seconds": took,
               "n_tup_upd": upd, "n_tup_hot_upd": hot, "hot_share": hot / upd if upd else 0.0,
               "changes_rows": after[2]}
        rows.append(row)
        print(f"  push {k + 1} (marker triggers {row['marker']}): {len(applied):,} applied in {took:.2f} s; "
              f"updates {upd:,}, HOT {hot:,} ({row['hot_share']:.1%})", flush=True)
        res.measures.append(R.Measure(f"push {len(ids):,} (apply_batch), marker triggers {row['marker']}",
                                      "info", len(ids), [took]))
    return rows


def _stats(conn) -> tuple[int, int, int]:
    upd, hot = conn.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                            "WHERE relname = 'invoices' AND schemaname = current_schema()").fetchone()
    changes = conn.execute("SELECT count(*) FROM invoicekit_changes").fetchone()[0]
    return int(upd), int(hot), int(changes)


def bench_snapshot(data: R.Data, changed: float, push: int, repeat: int, hot: bool = True) -> R.Result:
    import invoicekit
    from invoicekit.io.snapshot import snapshot_info

    n = data.rows
    url = data.central_url
    res = R.Result("snapshot_reload", f"read_central(url, snapshot=p) after {changed:.0%} of {n:,} changed", n)
    os.makedirs(data.data_dir, exist_ok=True)
    path = os.path.join(data.data_dir, f"snapshot-{os.getpid()}.arrow")
    before = path + ".before"
    rng = np.random.default_rng(data.seed + 31)
    n_changed = max(1, round(n * changed))
    pick = rng.choice(n, n_changed + 4 * push, replace=False)
    all_ids = data.invoice_set.invoices_table()["id"].combine_chunks()
    change_ids = all_ids.take(pa.array(np.sort(pick[:n_changed])))
    push_ids = [all_ids.take(pa.array(np.sort(pick[n_changed + k * push:n_changed + (k + 1) * push])))
                for k in range(4)]
    try:
        t0 = time.perf_counter()
        invoicekit.read_central(url, snapshot=path)
        build = time.perf_counter() - t0
        size = os.path.getsize(path)
        res.measures.append(R.Measure("read_central(url, snapshot=p): first call, builds the file", "info", n,
                                      [build], note=f"file {size / 2**20:,.0f} MiB"))
        shutil.copyfile(path, before)  # (a new file: the snapshot is not rewritten in place)
        print(f"  snapshot built in {build:.2f} s ({size / 2**20:,.0f} MiB); writing {n_changed:,} changes ...",
              flush=True)
        written = invoicekit.write_central(_changes(data, change_ids), url, actor="bench")
        res.notes.append(f"changes after the snapshot (write_central): {written.summary().to_dict('records')}")
        seen = {}

        def restore() -> None:  # the snapshot as taken before the changes (a base, no delta)
            shutil.copyfile(before, path + ".restore")
            os.replace(path + ".restore", path)  # never in place: earlier results map the old file
            if os.path.exists(path + ".delta"):
                os.remove(path + ".delta")

        def check(s) -> None:
            seen["snap"] = s
            seen["info"] = snapshot_info(path)

        res.measures.append(R.measure(f"read_central(url, snapshot=p), {n_changed:,} changed since p",
                                      lambda: invoicekit.read_central(url, snapshot=path), rows=n, kind="subject",
                                      repeat=repeat, setup=restore, check=check))
        res.measures.append(R.measure("baseline: read_central(url) (full read, marker triggers in place)",
                                      lambda: invoicekit.read_central(url), rows=n, kind="baseline",
                                      repeat=repeat, check=lambda s: seen.__setitem__("full", s)))
        # the floors of a reload, each alone: the one copy it makes (the base without the
        # changed rows, into fresh memory) and the store's part (the changed rows by id)
        from invoicekit.io import snapshot as snap

        mapped, _, _ = snap._read(before)
        keep = pc.invert(pc.is_in(mapped.column("id"), value_set=change_ids))
        res.measures.append(R.measure("floor: the base without the changed rows, copied (no store)",
                                      lambda: snap._filter(mapped, keep), rows=n, kind="floor", repeat=repeat))
        res.measures.append(R.measure(f"floor: read_central(url, ids=the {n_changed:,} changed), lines=False",
                                      lambda: invoicekit.read_central(url, ids=change_ids, lines=False),
                                      rows=n_changed, kind="floor", repeat=repeat))
        del mapped, keep
        res.measures.append(R.measure("read_central(url, snapshot=p), nothing changed since p",
                                      lambda: invoicekit.read_central(url, snapshot=path), rows=n, kind="info",
                                      repeat=repeat))
        diff = _same(seen["snap"], seen["full"])
        info = seen["info"]
        res.notes.append(f"reload info: mode={info.mode}, fetched={info.fetched:,}, removed={info.removed:,}, "
                         f"rows={info.rows:,}")
        subj, base = res.measures[1], res.get("baseline: read_central(url) (full read, marker triggers in place)")
        ratio = base.best / subj.best
        res.target("<= 0.5 s (snapshot reload, 1% changed)", f"{subj.best:.3f} s", subj.best <= 0.5)
        res.target(">= 5x a full read_central (same run)", f"{ratio:.1f}x ({base.best:.2f} s vs {subj.best:.3f} s)",
                   ratio >= 5)
        res.target("snapshot read equals the full read", "equal" if diff is None else "MISMATCH", diff is None)
        res.target("fetched exactly the changed rows", f"{info.fetched:,} of {n_changed:,}",
                   info.fetched == n_changed)
        if diff is not None:
            res.error = f"snapshot read differs from the full read: {diff}"
        seen.clear()
        if not hot:
            return res
        print("HOT check: pushes with the marker triggers off / on ...", flush=True)
        rows = _hot_check(data, push_ids, res)
        for r in rows:
            res.notes.append("HOT check push {push} (triggers {marker}): {applied:,} applied in {seconds:.2f} s, "
                             "n_tup_upd {n_tup_upd:,}, n_tup_hot_upd {n_tup_hot_upd:,} ({hot_share:.1%}); "
                             "invoicekit_changes {changes_rows:,} rows".format(**r))
        res.measures.append(R.measure("read_central(url) after the pushes (full read)",
                                      lambda: invoicekit.read_central(url), rows=n, kind="info", repeat=repeat))
        res.hot = rows  # type: ignore[attr-defined]
    finally:
        for p in (path, before, path + ".delta"):
            if os.path.exists(p):
                os.remove(p)
    return res


def sqlite_marker_cost(rows: int, repeat: int) -> R.Result:
    """What the change marker costs a SQLite central store's writes: ``write_central`` of
    ``rows`` new invoices, then of the same invoices edited (version + 1), into a fresh file
    with the marker's row triggers in place and into one with them dropped (alternating)."""
    import sqlite3
    import tempfile

    import invoicekit
    from invoicekit.samples import make_invoices

    fresh = make_invoices(rows, seed=R.SEED)
    s = fresh
    inv, lines = s.invoices_table(), s.lines_table()
    edited = S.edit_invoices(inv, lines, inv["id"].combine_chunks(), days=1.0, sync_status=None, source="edit")
    res = R.Result("sqlite_marker_cost", f"write_central of {rows:,} invoices into SQLite, marker triggers on/off",
                   rows)
    with tempfile.TemporaryDirectory(prefix="ik_marker_") as tmp:
        for k in range(repeat):
            for marker in (True, False):
                url = f"sqlite:///{tmp}/c-{k}-{int(marker)}.sqlite"
                invoicekit.init_db(url)
                if not marker:
                    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
                    for event in ("insert", "update", "delete"):
                        conn.execute(f"DROP TRIGGER invoicekit_mark_{event}")
                    conn.commit()
                    conn.close()
                t0 = time.perf_counter()
                invoicekit.write_central(fresh, url, progress=False)
                t1 = time.perf_counter()
                invoicekit.write_central(edited, url, progress=False)
                t2 = time.perf_counter()
                label = "on" if marker else "off"
                res.measures.append(R.Measure(f"insert {rows:,}, marker triggers {label} (run {k + 1})", "info",
                                              rows, [t1 - t0]))
                res.measures.append(R.Measure(f"update {rows:,}, marker triggers {label} (run {k + 1})", "info",
                                              rows, [t2 - t1]))
                print(f"  run {k + 1}, triggers {label}: insert {t1 - t0:.2f} s, update {t2 - t1:.2f} s", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    return R.central_main(
        argv, prog="python -m benchmarks.snapshot_bench", doc=__doc__,
        options=((("--changed",), {"type": float, "default": 0.01}),
                 (("--push",), {"type": int, "default": 100_000}),
                 (("--skip-hot",), {"action": "store_true", "help": "leave out the HOT check (four pushes)"}),
                 (("--sqlite-rows",), {"type": int, "default": 0, "help": "instead: what the marker costs writes "
                                       "to a SQLite central store of this many invoices"})),
        instead=lambda args: sqlite_marker_cost(args.sqlite_rows, args.repeat) if args.sqlite_rows else None,
        run=lambda data, args: bench_snapshot(data, args.changed, min(args.push, args.rows // 5), args.repeat,
                                              hot=not args.skip_hot))


if __name__ == "__main__":
    sys.exit(main())
