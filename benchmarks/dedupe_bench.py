"""Duplicate detection (issue 9): ``find_duplicates`` beside splink 5, same data, same run.

Run ``.venv/bin/python -m benchmarks.dedupe_bench [--rows N] [--no-splink] [--incremental-rows M]``.

Data: :func:`invoicekit.dedupe._synth.make_dedupe_data` (``--rows`` originals plus 5%
re-entries), in both variants: ``keep_tax`` (re-entries keep the tax id) and ``hard``
(a third lose it, a sixth mistype it, most lose the e-mail). Generated data is cached as
Parquet in ``benchmarks/.data/`` (keyed by rows, variant, seed and the generator's source).

Figures per variant: pairwise precision, recall and F1 against the truth (all pairs of
entries of one invoice), wall time (``time.perf_counter``, one run) and CPU time of the
process, peak RSS of the process during the step (high-water mark reset through
``/proc/self/clear_refs``; it includes the data already loaded), and the machine's
1-minute load average before and after the step.

* ``invoicekit``: ``find_duplicates(invoices)`` with the ``invoice`` preset at its fixed
  threshold; also the design's weighted similarity (``preset="seed"``).
* ``splink``: splink 5, DuckDB backend, on the same rows with the same normalised columns
  invoicekit compares (number with OCR folding and zero stripping, name without legal form,
  tax id, e-mail, address, amount in cents, date, line multiset string). Blocking rules:
  (tax id, cents), (name, cents), (number), (cents, ISO week). Comparisons: number and
  tax id Damerau-Levenshtein, name/address/lines Jaro-Winkler, e-mail exact, cents exact
  / within 1 / within 2, created within 1/10/30 days. Training: lambda from deterministic
  rules (number+tax, number+name), u by random sampling (1e6 pairs), then EM twice
  (blocked on number, and on cents + ISO week). Decisions: match probability >= 0.5 (fixed,
  like ours) and, for reference, the best threshold with hindsight (the highest F1 over
  0.01..0.99 on the truth) - an upper bound that a user without truth cannot reach.
* ``incremental``: ``find_duplicates(new, against=existing)`` with the last
  ``--incremental-new`` rows as new and the rest existing; F1 on the pairs that touch a
  new row.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import logging
import os
import sys
import time

import numpy as np
import pandas as pd

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".data")
SEED = 20261202


@contextlib.contextmanager
def measured(out: dict):
    """Time, CPU time, peak RSS (MB) and the 1-minute load average before and after the block
    into ``out`` (other work on the machine inflates wall time: the load says how much)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    yield
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - c0
    out["peak_rss_mb"] = _hwm_mb()
    out["load"] = (load0, os.getloadavg()[0])


def _hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def data(rows: int, variant: str):
    """(invoices frame, truth) from the cache or freshly generated."""
    from invoicekit.dedupe import _synth

    key = hashlib.sha256(inspect.getsource(_synth).encode()).hexdigest()[:10]
    base = os.path.join(DATA_DIR, f"dedupe-{rows}-{variant}-{SEED}-{key}")
    if os.path.exists(base + ".truth.parquet"):
        return (pd.read_parquet(base + ".invoices.parquet", dtype_backend="pyarrow"),
                pd.read_parquet(base + ".truth.parquet"))
    t0 = time.perf_counter()
    s, truth = _synth.make_dedupe_data(rows, variant=variant, seed=SEED)
    os.makedirs(DATA_DIR, exist_ok=True)
    s.invoices.to_parquet(base + ".invoices.parquet")
    truth.to_parquet(base + ".truth.parquet")
    print(f"  generated {len(s):,} invoices ({variant}) in {time.perf_counter() - t0:.1f} s", flush=True)
    return s.invoices, truth


def prf(found: pd.DataFrame, truth: pd.DataFrame) -> dict:
    tp = len(found[["id_a", "id_b"]].drop_duplicates().merge(truth, on=["id_a", "id_b"]))
    p = tp / max(len(found), 1)
    r = tp / max(len(truth), 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-12), "found": len(found)}


def run_ours(inv: pd.DataFrame, truth: pd.DataFrame, preset: str = "invoice") -> dict:
    from invoicekit.dedupe import find_duplicates

    out: dict = {}
    with measured(out):
        result = find_duplicates(inv, preset=preset, progress=False)
    out.update(prf(result.duplicates, truth))
    out["candidates"] = result.stats["candidates"]
    return out


def run_incremental(inv: pd.DataFrame, truth: pd.DataFrame, n_new: int) -> dict:
    from invoicekit.dedupe import find_duplicates

    new, old = inv.iloc[-n_new:], inv.iloc[:-n_new]
    ids = set(new["id"])
    sub = truth[truth["id_a"].isin(ids) | truth["id_b"].isin(ids)]
    out: dict = {"new": len(new), "existing": len(old)}
    with measured(out):
        result = find_duplicates(new, against=old, progress=False)
    out.update(prf(result.duplicates, sub))
    return out


def _splink_frame(inv: pd.DataFrame) -> pd.DataFrame:
    """The columns splink compares: invoicekit's own normalised forms (the fair choice)."""
    from invoicekit.dedupe import _compare

    p = _compare.prepare(inv.reset_index(drop=True))
    _compare.add_lines(p, inv.reset_index(drop=True), np.arange(len(inv)))
    created = pd.to_datetime(p["created"], unit="us", utc=True)
    return pd.DataFrame({
        "id": inv["id"].astype(str).to_numpy(), "number": p["number_fixed"], "tax": p["tax"], "name": p["name"],
        "email": p["email"], "address": p["address"], "lines": p["lines"],
        "cents": np.where(p["has_cents"], p["cents"], -1 - np.arange(len(inv))),
        "created_at": created, "week": created.strftime("%G-%V"),
    })


def _splink_comparisons() -> list:
    """Four comparisons, so that correlated evidence is not counted twice: the client fields
    (tax id, name, e-mail, address) form one comparison and the basket (amount, lines)
    another; a naive one-comparison-per-field model adds up "same client, same basket"
    and flags every monthly subscription (F1 about 0.2 in a trial run)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    client = cl.CustomComparison(output_column_name="client", comparison_levels=[
        cll.And(cll.NullLevel("tax"), cll.NullLevel("name")),
        cll.And(cll.ExactMatchLevel("tax"), cll.JaroWinklerLevel("name", 0.88)),
        cll.ExactMatchLevel("tax"),
        cll.And(cll.JaroWinklerLevel("name", 0.95), cll.Or(cll.ExactMatchLevel("email"),
                                                           cll.JaroWinklerLevel("address", 0.9))),
        cll.JaroWinklerLevel("name", 0.95), cll.JaroWinklerLevel("name", 0.88),
        cll.DamerauLevenshteinLevel("tax", 1), cll.ElseLevel()])
    basket = cl.CustomComparison(output_column_name="basket", comparison_levels=[
        cll.NullLevel("cents"),
        cll.And(cll.ExactMatchLevel("cents"), cll.JaroWinklerLevel("lines", 0.97)),
        cll.And(cll.AbsoluteDifferenceLevel("cents", 2), cll.JaroWinklerLevel("lines", 0.9)),
        cll.AbsoluteDifferenceLevel("cents", 2), cll.ElseLevel()])
    return [cl.DamerauLevenshteinAtThresholds("number", [1, 2]), client, basket,
            cl.AbsoluteTimeDifferenceAtThresholds("created_at", input_is_string=False,
                                                  metrics=["day", "day", "day"], thresholds=[1, 11, 30])]


def run_splink(inv: pd.DataFrame, truth: pd.DataFrame) -> dict:
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    out: dict = {}
    with measured(out):
        df = _splink_frame(inv)
        settings = SettingsCreator(
            link_type="dedupe_only", unique_id_column_name="id",
            blocking_rules_to_generate_predictions=[block_on("tax", "cents"), block_on("name", "cents"),
                                                    block_on("number"), block_on("cents", "week")],
            comparisons=_splink_comparisons(),
            retain_intermediate_calculation_columns=False,
        )
        db = DuckDBAPI()
        linker = Linker(db.register(df), settings, log_level=logging.WARNING)
        linker.training.estimate_probability_two_random_records_match(
            [block_on("number", "tax"), block_on("number", "name")], recall=0.8)
        linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("number"))
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("cents", "week"))
        pred = linker.inference.predict(threshold_match_probability=0.01).as_pandas_dataframe()
    a, b = pred["id_l"].astype(str), pred["id_r"].astype(str)
    pairs = pd.DataFrame({"id_a": np.minimum(a, b), "id_b": np.maximum(a, b), "p": pred["match_probability"]})
    fixed = prf(pairs[pairs["p"] >= 0.5], truth)
    grid = np.r_[np.round(np.arange(0.01, 1, 0.01), 2), 1 - 10.0 ** -np.arange(3, 10)]
    best = max((prf(pairs[pairs["p"] >= t], truth) | {"threshold": t} for t in grid), key=lambda r: r["f1"])
    out.update(fixed)
    out["best_threshold"], out["best_f1"] = best["threshold"], best["f1"]
    return out


def _line(name: str, r: dict) -> str:
    extra = f"  (hindsight: F1 {r['best_f1']:.4f} at p >= {r['best_threshold']:.9g})" if "best_f1" in r else ""
    return (f"  {name:<22} P {r['precision']:.4f}  R {r['recall']:.4f}  F1 {r['f1']:.4f}  "
            f"{r['seconds']:7.2f} s (CPU {r['cpu_seconds']:.1f} s)  peak RSS {r['peak_rss_mb']:7.0f} MB  "
            f"load {r['load'][0]:.1f}-{r['load'][1]:.1f}{extra}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000, help="original invoices per data set (default 100,000)")
    ap.add_argument("--no-splink", action="store_true", help="skip the splink baseline")
    ap.add_argument("--no-seed", action="store_true", help="skip the design's weighted similarity")
    ap.add_argument("--incremental-new", type=int, default=10_000, help="new invoices in the incremental run")
    ap.add_argument("--variants", default="keep_tax,hard")
    args = ap.parse_args(argv)
    print(f"dedupe benchmark: {args.rows:,} originals (+5% re-entries), {os.cpu_count()} cores", flush=True)
    for variant in args.variants.split(","):
        inv, truth = data(args.rows, variant)
        print(f"{variant}: {len(inv):,} invoices, {len(truth):,} true duplicate pairs", flush=True)
        print(_line("invoicekit (invoice)", run_ours(inv, truth)), flush=True)
        if not args.no_seed:
            print(_line("design weighted (seed)", run_ours(inv, truth, "seed")), flush=True)
        if not args.no_splink:
            print(_line("splink 5 (p >= 0.5)", run_splink(inv, truth)), flush=True)
        if variant == "keep_tax" and args.incremental_new < len(inv):
            r = run_incremental(inv, truth, args.incremental_new)
            print(_line(f"incremental {r['new']:,} vs {r['existing']:,}", r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
