"""Spread the per-value Fernet work of a whole column over the machine's cores.

Fernet has no batch call, so somebody loops over values; it is done here, in chunks, in a
persistent process pool. Its workers are forked (``forkserver`` and ``spawn`` re-import
the caller's ``__main__``, which breaks every script without a ``__main__`` guard); they
run only this package's per-value loops over ``cryptography``.
Threads (``executor="thread"``) are measured beside processes by
``benchmarks/crypto_bench.py``; on a busy 2-core box neither won clearly (the per-token work,
padding, HMAC object, base64, is partly Python holding the GIL), so processes stay the
default until an idle-machine measurement says otherwise. Inputs too small to pay for the
round trip to the workers run inline.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from . import _tokens

__all__ = ["run", "cpu_count", "shutdown", "INLINE_BELOW"]

log = logging.getLogger("invoicekit.security")

#: below this many values the work runs inline (a worker round trip costs more)
INLINE_BELOW = 4_000
_CHUNKS_PER_WORKER = 4

_lock = threading.Lock()
_pool: tuple[int, str, Executor] | None = None

_KINDS: dict[str, Callable] = {"encrypt": _tokens.encrypt_chunk, "decrypt": _tokens.decrypt_chunk,
                               "rotate": _tokens.rotate_chunk, "seal": _tokens.seal_chunk,
                               "rotate_embedded": _tokens.rotate_embedded_chunk}


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _executor(workers: int, kind: str) -> Executor:
    global _pool
    with _lock:
        if _pool is not None and _pool[:2] == (workers, kind):
            return _pool[2]
        if _pool is not None:
            _pool[2].shutdown(wait=False, cancel_futures=True)
        if kind == "thread":
            ex: Executor = ThreadPoolExecutor(workers, thread_name_prefix="invoicekit-crypto")
        else:
            import multiprocessing

            methods = multiprocessing.get_all_start_methods()
            ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(
                "fork" if "fork" in methods else "spawn"))
        _pool = (workers, kind, ex)
        return ex


def shutdown() -> None:
    """Stop the worker pool (it restarts on the next large call)."""
    global _pool
    with _lock:
        if _pool is not None:
            _pool[2].shutdown(wait=True, cancel_futures=True)
            _pool = None


atexit.register(shutdown)


def _merge(kind: str, parts: list, offsets: list[int]):
    if kind == "encrypt":
        return [v for part in parts for v in part]
    values = [v for part, _ in parts for v in part]
    if kind == "decrypt":
        return values, [off + i for (_, bad), off in zip(parts, offsets) for i in bad]
    return values, [(off + i, why) for (_, bad), off in zip(parts, offsets) for i, why in bad]


def run(kind: str, material: tuple[bytes, ...], values: list[str], *, workers: int | None = None,
        executor: str = "process"):
    """``_tokens.<kind>_chunk`` over ``values`` in parallel chunks; results as one chunk's."""
    fn = _KINDS[kind]
    workers = cpu_count() if workers is None else max(1, int(workers))
    if workers == 1 or len(values) < INLINE_BELOW:
        return fn(material, values)
    step = -(-len(values) // (workers * _CHUNKS_PER_WORKER))
    offsets = list(range(0, len(values), step))
    log.debug("%s: %d value(s) in %d chunk(s) on %d %s worker(s)", kind, len(values), len(offsets), workers,
              executor)
    for attempt in (1, 2):
        ex = _executor(workers, executor)
        try:
            parts = list(ex.map(fn, [material] * len(offsets), [values[o:o + step] for o in offsets]))
            break
        except BrokenProcessPool:  # a worker died (OOM killer, ...): one fresh pool, then inline
            shutdown()
            if attempt == 2:
                log.warning("%s: the worker pool broke twice; running on one core", kind)
                return fn(material, values)
    return _merge(kind, parts, offsets)
