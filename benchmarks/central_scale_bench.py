"""Benchmark of issue 13 (central scale): reconcile one device against a large PostgreSQL central.

Run ``.venv/bin/python -m benchmarks.central_scale_bench`` (options as ``benchmarks/run.py``:
``--rows`` central invoices, default 1,000,000; ``--device`` invoices the device holds,
default 20,000; ``--repeat``; ``--pg-url``; ``--json``).

``device_reconcile``  ``reconcile(path, url)``, starting from the device's offline store file
                      and the central store's URL: the device is read (``read_local``), the
                      central store only for the device's ids (``read_central(url, ids=...)``,
                      ids staged by COPY into a temporary table and joined), then compared.
                      Target <= 0.5 s and >= 10x the baseline ``reconcile(read_local(path),
                      read_central(url))`` (the whole central store read, then compared), in
                      the same run; the statuses and field differences of both must be equal
                      for every id the device holds (checked).

The central store is ``benchmarks/run.py``'s (``make_invoices(--rows)`` written by
``write_central`` into a uuid-named database, dropped at the end). The device holds
``--device`` of its invoices in a realistic mix, about 80% unchanged, the rest spread over
every situation: local edits (``local_ahead``), central edits (``central_ahead``), both
(``conflict``), deletions on either side, and invoices only on the device (``local_only``);
the central edits are written to the central store after the load, and the device file
(the toolkit's own offline store, with its base snapshots) is cached in ``benchmarks/.data``.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    from benchmarks import run as R
    from benchmarks import sync_bench as S
except ImportError:  # run as a script: python benchmarks/central_scale_bench.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import run as R  # type: ignore[no-redef]
    import sync_bench as S  # type: ignore[no-redef]

#: shares of the device's invoices per situation (the rest: unchanged)
MIX = {"local_ahead": 0.04, "central_ahead": 0.04, "conflict": 0.04, "deleted_local": 0.03,
       "deleted_central": 0.03, "local_only": 0.02}


def _put(t: pa.Table, name: str, values) -> pa.Table:
    return t.set_column(t.schema.get_field_index(name), name, values)


def _tombstones(s, ids: pa.Array, *, sync_status: str | None, source: str):
    """Invoices ``ids`` of ``s`` deleted one version up (a day later)."""
    from invoicekit._payload import rebuild

    inv = s.invoices_table().filter(pc.is_in(s.invoices_table()["id"], value_set=ids))
    lines = s.lines_table().filter(pc.is_in(s.lines_table()["invoice_id"], value_set=ids))
    ts = inv.schema.field("modified_at").type
    later = pc.add(inv["modified_at"], pa.scalar(int(86400e6), pa.duration("us"))).cast(ts)
    inv = _put(_put(inv, "version", pc.add(inv["version"], 1)), "modified_at", later)
    inv = _put(inv, "deleted_at", later)
    if sync_status is not None:
        inv = _put(inv, "sync_status", pa.array(np.full(inv.num_rows, sync_status, dtype=object), pa.string()))
    inv = _put(inv, "source", pa.array(np.full(inv.num_rows, source, dtype=object), pa.string()))
    return rebuild(inv, lines)


def _take(s, ids: pa.Array):
    from invoicekit.schema import InvoiceSet

    inv = s.invoices_table().filter(pc.is_in(s.invoices_table()["id"], value_set=ids))
    lines = s.lines_table().filter(pc.is_in(s.lines_table()["invoice_id"], value_set=ids))
    return InvoiceSet.from_arrow(inv, lines)


def _concat(parts):
    from invoicekit.schema import InvoiceSet

    return InvoiceSet.from_arrow(pa.concat_tables([p.invoices_table() for p in parts]),
                                 pa.concat_tables([p.lines_table() for p in parts]))


def build_device(central, n_device: int, seed: int):
    """(device set with its base, central changes to write, expected counts per status)."""
    from invoicekit.samples import make_invoices

    rng = np.random.default_rng(seed)
    held = pa.array(central.invoices["id"].to_numpy()[rng.choice(len(central), n_device, replace=False)],
                    pa.string())
    counts = {k: max(1, round(n_device * v)) for k, v in MIX.items()}
    n_new = counts.pop("local_only")
    start = 0
    groups = {}
    for name, k in counts.items():
        groups[name] = held[start:start + k]
        start += k
    snapshot = _take(central, held)  # the device's last sync: every held invoice as central has it
    edited_local = pa.concat_arrays([groups["local_ahead"], groups["conflict"]])
    local_edits = S.edit_invoices(snapshot.invoices_table(), snapshot.lines_table(), edited_local, days=1.0,
                                  sync_status="pending", source="device")
    local_dead = _tombstones(snapshot, groups["deleted_local"], sync_status="pending", source="device")
    changed = pa.concat_arrays([edited_local, groups["deleted_local"]])
    untouched = _take(snapshot, pc.filter(held, pc.invert(pc.is_in(held, value_set=changed))))
    new = make_invoices(n_new, seed=seed + 7, source="device")
    new_inv = _put(new.invoices_table(), "sync_status", pa.array(np.full(n_new, "pending", dtype=object)))
    device = _concat([untouched, local_edits, local_dead, new.__class__.from_arrow(new_inv, new.lines_table())])
    device = device.with_base(snapshot)
    # central side: edits (conflicts edited twice, so the two sides differ), tombstones
    once = S.edit_invoices(snapshot.invoices_table(), snapshot.lines_table(),
                           pa.concat_arrays([groups["central_ahead"], groups["conflict"]]), days=2.0,
                           sync_status=None, source="central")
    twice = S.edit_invoices(once.invoices_table(), once.lines_table(), groups["conflict"], days=2.0,
                            sync_status=None, source="central")
    once = _take(once, groups["central_ahead"])
    central_dead = _tombstones(snapshot, groups["deleted_central"], sync_status=None, source="central")
    central_changes = _concat([once, twice, central_dead])
    expected = {"same": n_device - sum(counts.values()), **counts, "local_only": n_new}
    return device, central_changes, expected


def bench_device_reconcile(data: R.Data, n_device: int, repeat: int) -> R.Result:
    import pandas as pd

    import invoicekit

    n = data.rows
    url = data.central_url  # writes the central store (untimed)
    print(f"building a {n_device:,}-invoice device (every situation) ...", flush=True)
    t0 = time.perf_counter()
    device, central_changes, expected = build_device(data.invoice_set, n_device, data.seed + 13)
    written = invoicekit.write_central(central_changes, url, actor="bench")
    path = os.path.join(data.data_dir, f"device-{n_device}-of-{n}-{data.seed}.sqlite")
    os.makedirs(data.data_dir, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)  # the central store is new every run: so is the device built on it
    invoicekit.write_local(device, path)
    data.setup_times["device_build_s"] = time.perf_counter() - t0
    print(f"  {device!r} -> {path}; central changes {written.summary().to_dict('records')} "
          f"in {data.setup_times['device_build_s']:.1f} s", flush=True)

    res = R.Result("device_reconcile", f"reconcile({n_device:,}-invoice device path, central URL of {n:,})",
                   n_device)
    seen = {}

    def check(rec) -> None:
        seen["device"] = rec

    def check_full(rec) -> None:
        seen["full"] = rec

    res.measures.append(R.measure("invoicekit.reconcile(path, url)  [scope='device': read_central(url, ids=...)]",
                                  lambda: invoicekit.reconcile(path, url), rows=n_device, kind="subject",
                                  repeat=repeat, check=check))
    res.measures.append(R.measure("read_local(path) (part of the subject)", lambda: invoicekit.read_local(path),
                                  rows=n_device, kind="info", repeat=repeat))
    ids = invoicekit.read_local(path).invoices["id"]
    res.measures.append(R.measure(f"read_central(url, ids={n_device:,} ids) (part of the subject)",
                                  lambda: invoicekit.read_central(url, ids=ids), rows=n_device, kind="info",
                                  repeat=repeat))
    res.measures.append(R.measure("baseline: reconcile(read_local(path), read_central(url))",
                                  lambda: invoicekit.reconcile(invoicekit.read_local(path),
                                                               invoicekit.read_central(url)),
                                  rows=n, kind="baseline", repeat=repeat, check=check_full))
    res.measures.append(R.measure("read_central(url) (part of the baseline)", lambda: invoicekit.read_central(url),
                                  rows=n, kind="info", repeat=repeat))

    part, full = seen["device"], seen["full"]
    restricted = full.status[full.status["status"] != "central_only"].reset_index(drop=True)
    same = part.status.equals(restricted) and part.fields.equals(full.fields)
    try:
        pd.testing.assert_frame_equal(part.status, restricted)
        pd.testing.assert_frame_equal(part.fields, full.fields)
        same = True
    except AssertionError as exc:
        same = False
        res.notes.append(f"MISMATCH device scope vs full read: {str(exc)[:300]}")
    got = {k: v for k, v in part.counts().items() if v}
    res.notes.append(f"device statuses {got}; built {expected}; {len(part.fields):,} differing field rows; "
                     f"full read: {full.counts()['central_only']:,} central_only")
    res.notes.append(f"central {n:,} invoices; device {n_device:,} ({len(device.lines):,} lines)")
    subj, base = res.measures[0], res.get("baseline: reconcile(read_local(path), read_central(url))")
    ratio = base.best / subj.best
    res.target("<= 0.5 s (reconcile(path, url), device scope)", f"{subj.best:.3f} s", subj.best <= 0.5)
    res.target(">= 10x read_central + reconcile (same run)", f"{ratio:.1f}x ({base.best:.2f} s vs {subj.best:.3f} s)",
               ratio >= 10)
    res.target("same statuses and fields as the full read (device ids)", "equal" if same else "MISMATCH", same)
    res.target("statuses as built", "equal" if got == expected else f"{got}", got == expected)
    if not same:
        res.error = "device scope differs from the full read"
    return res


def main(argv: list[str] | None = None) -> int:
    return R.central_main(
        argv, prog="python -m benchmarks.central_scale_bench", doc=__doc__, repeat=5,
        options=((("--device",), {"type": int, "default": 20_000,
                                  "help": "invoices the device holds (default 20,000)"}),),
        run=lambda data, args: bench_device_reconcile(data, args.device, args.repeat))


if __name__ == "__main__":
    sys.exit(main())
