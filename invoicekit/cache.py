"""A Redis read-through cache for invoices, clients and settings that is never stale after a
toolkit write and never changes a result.

Keys follow the design's policies, under a namespace per tenant::

    <namespace>:txn:<invoice id>     invoices, 1800 s
    <namespace>:set:<setting key>    settings, 3600 s
    <namespace>:cli:<client key>     client lookups, 7200 s

Each key is a Redis hash with one field per store (a fingerprint of the file's real path or
of the URL without its password), so one invoice id read from a device and from the
central store are two entries. Frames are stored as Arrow IPC and settings as JSON, never
pickle, and every value read back is checked (magic, schema, store, id) before it is used:
a value planted under our keys by someone else, or one of the wrong type, is a miss.

Every toolkit write (``write_local``, ``write_central``, ``apply_sync``, ``LocalStore``,
the sync engine, duplicate cleanups, :class:`Settings`) calls :func:`invalidate` with the
invoice ids it changed; that drops those entries in every :class:`Cache` of the process
(and in the one ``INVOICEKIT_REDIS_URL`` names). Client lookups of a store are dropped by
any write to it (a write can move an invoice from one client to another): each store has a
generation number that a write increments and a client entry records.

Redis down, slow (``timeout``) or answering garbage: the result is computed from the store,
exactly as without a cache; one warning is logged per outage and nothing raises. An
invalidation Redis could not take is kept and replayed before this process next uses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pandas as pd
import pyarrow as pa

from .errors import MissingDependencyError, UsageError, mask_secrets

__all__ = ["Cache", "POLICIES", "invalidate", "store_key", "default_cache", "as_cache", "CacheStats"]

log = logging.getLogger(__name__)

#: time to live in seconds, per key prefix (the design's cache policies)
POLICIES = {"txn": 1800, "set": 3600, "cli": 7200}

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MAGIC = b"IKC1"
_LIVE: "weakref.WeakSet[Cache]" = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()
_DEFAULT: dict[tuple[str, str], "Cache"] = {}
_WARNED: set[str] = set()  # Redis URLs whose outage was logged (once per outage, not per cache)


def store_key(store: Any) -> str:
    """A stable name of a store: ``file:<real path>`` for a file, the URL without its
    password for a central store (two URLs naming one database with different passwords
    are one store)."""
    if isinstance(store, (str, os.PathLike)):
        text = os.fsdecode(os.fspath(store))
        if "://" not in text:
            return "file:" + os.path.realpath(text)
        if text.startswith("sqlite:///"):
            return "file:" + os.path.realpath(text[len("sqlite:///"):])
        return "url:" + mask_secrets(text).replace(":***@", "@")
    display = getattr(store, "display", None)  # a CentralStore
    if display is not None:
        return store_key(display)
    url = getattr(store, "url", None)  # a SQLAlchemy engine
    if url is not None:
        return store_key(url.render_as_string(hide_password=True))
    raise UsageError(f"cannot name the store {type(store).__name__}: pass a file path or a URL")


def _fingerprint(store: Any) -> str:
    return hashlib.sha256(store_key(store).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CacheStats:
    """What a :class:`Cache` did since it was made."""

    hits: int
    misses: int
    errors: int
    invalidated: int
    pending: int

    def _repr_html_(self) -> str:
        from ._html import frame_html

        return frame_html(pd.DataFrame([self.__dict__]), caption="cache")


class Cache:
    """The cache of one tenant: ``Cache(redis_url, *, namespace="invoicekit")``.

    ``redis_url`` defaults to ``INVOICEKIT_REDIS_URL``, else ``redis://127.0.0.1:6379/0``.
    ``timeout`` bounds every Redis call (seconds); after a failure Redis is left alone for
    ``retry_after`` seconds, so a loop of lookups does not wait on a dead server each time.
    ``ttl`` overrides :data:`POLICIES` per prefix.
    """

    def __init__(self, redis_url: str | None = None, *, namespace: str = "invoicekit", timeout: float = 0.25,
                 retry_after: float = 5.0, ttl: dict[str, int] | None = None) -> None:
        if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
            raise UsageError(f"Cache namespace must be 1-64 letters, digits, '_', '.' or '-'; got {namespace!r}")
        url = redis_url or os.environ.get("INVOICEKIT_REDIS_URL") or "redis://127.0.0.1:6379/0"
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise UsageError(f"Cache takes a redis:// URL; got {mask_secrets(str(url))!r}")
        unknown = set(ttl or {}) - set(POLICIES)
        if unknown:
            raise UsageError(f"Cache ttl: unknown prefix(es) {sorted(unknown)}; known: {sorted(POLICIES)}")
        self.url = url
        self.namespace = namespace
        self.timeout = float(timeout)
        self.retry_after = float(retry_after)
        self.ttl = {**POLICIES, **(ttl or {})}
        self._client = None
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._pending: list[tuple[str, str, str]] = []  # (prefix, key, store) invalidations Redis missed
        self._pending_gens: set[str] = set()
        self._counts = {"hits": 0, "misses": 0, "errors": 0, "invalidated": 0}
        with _LIVE_LOCK:
            _LIVE.add(self)

    def __repr__(self) -> str:
        url = getattr(self, "url", None)  # a repr during a failed __init__ (a traceback) still works
        return f"Cache({mask_secrets(url) if url else url!r}, namespace={getattr(self, 'namespace', None)!r})"

    # -- keys ---------------------------------------------------------------------------
    def key(self, prefix: str, ident: str) -> str:
        """The Redis key of ``ident`` under ``prefix`` (``txn``, ``set`` or ``cli``)."""
        if prefix not in POLICIES:
            raise UsageError(f"cache prefix {prefix!r} is not one of {sorted(POLICIES)}")
        return f"{self.namespace}:{prefix}:{ident}"

    def _gen_key(self, fp: str) -> str:
        return f"{self.namespace}:cli:~generation:{fp}"

    @property
    def stats(self) -> CacheStats:
        """Hits, misses, Redis errors, entries invalidated, invalidations waiting for Redis."""
        return CacheStats(**self._counts, pending=len(self._pending) + len(self._pending_gens))

    # -- talking to Redis: every failure is a miss, logged once per outage -----------------
    def _redis(self):
        if self._client is None:
            try:
                import redis
            except ImportError as exc:
                raise MissingDependencyError("redis", "redis") from exc
            self._client = redis.Redis.from_url(self.url, socket_timeout=self.timeout,
                                                socket_connect_timeout=self.timeout, retry_on_timeout=False)
        return self._client

    def _run(self, work: Callable[[Any], Any]) -> tuple[bool, Any]:
        """``(True, work(redis))``, or ``(False, None)`` when Redis failed (logged once)."""
        if time.monotonic() < self._down_until:
            return False, None
        try:
            client = self._redis()
            with self._lock:
                self._replay(client)
                out = work(client)
        except MissingDependencyError:
            raise
        except Exception as exc:  # noqa: BLE001 - any Redis failure means: compute it from the store
            self._counts["errors"] += 1
            self._down_until = time.monotonic() + self.retry_after
            if self.url not in _WARNED:
                _WARNED.add(self.url)
                log.warning("redis cache %s unavailable (%s); results come from the stores until it is back",
                            mask_secrets(self.url), mask_secrets(f"{type(exc).__name__}: {exc}")[:200])
            return False, None
        if self.url in _WARNED:
            _WARNED.discard(self.url)
            log.info("redis cache %s is back", mask_secrets(self.url))
        return True, out

    def _replay(self, client) -> None:
        if not (self._pending or self._pending_gens):
            return
        self._invalidate(client, self._pending, self._pending_gens)
        self._pending.clear()
        self._pending_gens.clear()

    # -- values -------------------------------------------------------------------------
    # Every entry carries the stamp of its key at the time the store was read: an
    # invalidation bumps the stamp (``<fp>#n`` in the same hash for invoices and settings,
    # the store's generation for clients), so a value filled from a read that raced a
    # write never matches again.
    def _stamp_ops(self, pipe, prefix: str, key: str, fp: str) -> None:
        if prefix == "cli":
            pipe.get(self._gen_key(fp))
        else:
            pipe.hget(key, fp + "#n")

    def _fetch(self, prefix: str, ident: str, store: Any) -> tuple[bool, Any, int, str, str]:
        fp = _fingerprint(store)
        key = self.key(prefix, ident)

        def work(client):
            pipe = client.pipeline(transaction=False)
            pipe.hget(key, fp)
            self._stamp_ops(pipe, prefix, key, fp)
            got = pipe.execute(raise_on_error=False)
            if any(isinstance(r, Exception) for r in got):  # another type planted under our key
                client.delete(key)
                if prefix == "cli":  # and a fresh generation: nothing filled before can match
                    client.set(self._gen_key(fp), secrets.randbits(62))
                return None, b"garbage"
            return tuple(got)

        ok, got = self._run(work)
        if not ok:
            return False, None, 0, fp, key
        stamp = _int(got[1])
        return stamp is not None, got[0], stamp, fp, key

    def get_frames(self, prefix: str, ident: str, store: Any, *,
                   check: Callable[[list[pa.Table]], bool]) -> tuple[list[pa.Table] | None, int | None]:
        """``(tables, stamp)``: the tables cached for ``store`` under ``prefix:ident`` (None on a
        miss, or for a value that fails ``check`` or is not ours), and the stamp to pass to
        :meth:`put_frames` after reading the store (None: Redis failed, do not fill)."""
        ok, raw, stamp, fp, key = self._fetch(prefix, ident, store)
        if not ok:
            self._counts["misses"] += 1
            return None, None
        tables = None if raw is None else _decode(raw, fp=fp, ident=ident, stamp=stamp)
        if tables is None or not check(tables):
            if raw is not None:
                log.debug("cache value under %s is stale or not ours; ignored", key)
            self._counts["misses"] += 1
            return None, stamp
        self._counts["hits"] += 1
        return tables, stamp

    def put_frames(self, prefix: str, ident: str, store: Any, tables: list[pa.Table], *, stamp: int | None) -> None:
        """Cache ``tables`` for ``store`` under ``prefix:ident``, read from the store after
        :meth:`get_frames` returned ``stamp`` (best effort; nothing when ``stamp`` is None)."""
        if stamp is None:
            return
        fp = _fingerprint(store)
        self._store(prefix, self.key(prefix, ident), fp, _encode(tables, fp=fp, ident=ident, stamp=stamp))

    def _store(self, prefix: str, key: str, fp: str, value: bytes | str) -> None:
        def work(client):
            pipe = client.pipeline(transaction=False)
            if client.type(key) not in (b"hash", b"none"):
                pipe.delete(key)  # someone else's value of another type under our key
            pipe.hset(key, fp, value)
            pipe.expire(key, self.ttl[prefix])
            pipe.execute()

        self._run(work)

    def get_json(self, prefix: str, ident: str, store: Any) -> tuple[Any, int | None]:
        """``(value, stamp)`` like :meth:`get_frames`, for a JSON value; ``MISS`` on a miss."""
        ok, raw, stamp, fp, key = self._fetch(prefix, ident, store)
        if not ok:
            self._counts["misses"] += 1
            return MISS, None
        try:
            envelope = json.loads(raw) if raw is not None else None
            if not (isinstance(envelope, dict) and envelope.get("ik") == 1 and envelope.get("store") == fp
                    and envelope.get("key") == ident and envelope.get("stamp") == stamp and "value" in envelope):
                raise ValueError("not ours")
        except (ValueError, UnicodeDecodeError, TypeError):
            self._counts["misses"] += 1
            return MISS, stamp
        self._counts["hits"] += 1
        return envelope["value"], stamp

    def put_json(self, prefix: str, ident: str, store: Any, value: Any, *, stamp: int | None) -> None:
        """Cache the JSON-able ``value`` like :meth:`put_frames`."""
        if stamp is None:
            return
        fp = _fingerprint(store)
        text = json.dumps({"ik": 1, "store": fp, "key": ident, "stamp": stamp, "value": value}, allow_nan=False)
        self._store(prefix, self.key(prefix, ident), fp, text)

    # -- invalidation -----------------------------------------------------------------------
    def drop(self, store: Any, *, invoices: Iterable[str] = (), settings: Iterable[str] = (),
             clients: bool = True) -> None:
        """Drop ``store``'s entries of these invoice ids and setting keys, and (``clients``)
        its client lookups. What Redis cannot take now is replayed before its next use."""
        fp = _fingerprint(store)
        deletes = [("txn", self.key("txn", str(i)), fp) for i in invoices]
        deletes += [("set", self.key("set", str(k)), fp) for k in settings]
        gens = {self._gen_key(fp)} if clients else set()
        if not deletes and not gens:
            return
        ok, _ = self._run(lambda client: self._invalidate(client, deletes, gens))
        if ok:
            self._counts["invalidated"] += len(deletes)
        else:
            with self._lock:
                self._pending.extend(deletes)
                self._pending_gens.update(gens)

    def _invalidate(self, client, deletes: list[tuple[str, str, str]], gens: Iterable[str]) -> None:
        for start in range(0, len(deletes), 5_000):
            chunk = deletes[start:start + 5_000]
            pipe = client.pipeline(transaction=False)
            for prefix, key, fp in chunk:
                pipe.hdel(key, fp)
                pipe.hincrby(key, fp + "#n", 1)
                pipe.expire(key, self.ttl[prefix])
            results = pipe.execute(raise_on_error=False)
            broken = {chunk[i // 3][1] for i, r in enumerate(results) if isinstance(r, Exception)}
            if broken:  # a value of another type, or garbage in a stamp, planted under our keys
                client.delete(*broken)
        for gen in gens:
            try:
                client.incr(gen)
            except Exception as exc:  # garbage planted in the generation: start a fresh one
                if type(exc).__name__ != "ResponseError":
                    raise
                client.set(gen, secrets.randbits(62))

    def clear(self) -> int:
        """Delete every key of this namespace (all stores); returns how many."""
        def work(client):
            n = 0
            for key in client.scan_iter(match=f"{_glob_escape(self.namespace)}:*", count=1000):
                n += client.delete(key)
            return n

        ok, n = self._run(work)
        return int(n or 0) if ok else 0


MISS = object()


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def _int(raw: Any) -> int | None:
    """A stamp: 0 when none was set, None for garbage (then nothing is read or filled)."""
    try:
        return int(raw) if raw is not None else 0
    except (TypeError, ValueError):
        return None


def _encode(tables: list[pa.Table], *, fp: str, ident: str, stamp: int) -> bytes:
    header = json.dumps({"store": fp, "id": ident, "stamp": stamp, "n": len(tables)}).encode()
    parts = [_MAGIC, len(header).to_bytes(4, "big"), header]
    for table in tables:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        buf = sink.getvalue().to_pybytes()
        parts += [len(buf).to_bytes(8, "big"), buf]
    return b"".join(parts)


def _decode(raw: bytes, *, fp: str, ident: str, stamp: int) -> list[pa.Table] | None:
    """The tables of a value we wrote, or None for anything else (checked, never trusted)."""
    try:
        if not isinstance(raw, bytes) or raw[:4] != _MAGIC:
            return None
        n = int.from_bytes(raw[4:8], "big")
        header = json.loads(raw[8:8 + n])
        if header.get("store") != fp or header.get("id") != ident or header.get("stamp") != stamp:
            return None
        pos, tables = 8 + n, []
        for _ in range(int(header["n"])):
            size = int.from_bytes(raw[pos:pos + 8], "big")
            pos += 8
            tables.append(pa.ipc.open_stream(pa.py_buffer(raw[pos:pos + size])).read_all())
            pos += size
        return tables if pos == len(raw) else None
    except Exception:  # noqa: BLE001 - any malformed value is simply not ours
        return None


def default_cache() -> Cache | None:
    """The cache ``INVOICEKIT_REDIS_URL`` (and ``INVOICEKIT_CACHE_NAMESPACE``) name, or None."""
    url = os.environ.get("INVOICEKIT_REDIS_URL")
    if not url:
        return None
    ns = os.environ.get("INVOICEKIT_CACHE_NAMESPACE", "invoicekit")
    with _LIVE_LOCK:
        if (url, ns) not in _DEFAULT:
            _DEFAULT[(url, ns)] = Cache(url, namespace=ns)
        return _DEFAULT[(url, ns)]


def as_cache(cache: Any, *, func: str) -> Cache | None:
    """A function's ``cache=`` argument: a :class:`Cache`, ``None`` for :func:`default_cache`,
    ``False`` for none; anything else is a UsageError."""
    if cache is None:
        return default_cache()
    if cache is False:
        return None
    if isinstance(cache, Cache):
        return cache
    raise UsageError(f"{func}(): cache takes an invoicekit Cache (Cache(redis_url)), None or False; "
                     f"got {type(cache).__name__}")


def _caches() -> list[Cache]:
    default_cache()
    with _LIVE_LOCK:
        return list(_LIVE)


def invalidate(store: Any, *, invoices: Iterable[str] = (), settings: Iterable[str] = (),
               clients: bool = True) -> None:
    """After a toolkit write to ``store``: drop those entries in every cache of the process
    (none made: nothing to do, at no cost)."""
    caches = _caches()
    if not caches:
        return
    invoices = [str(i) for i in invoices]
    settings = [str(k) for k in settings]
    for cache in caches:
        cache.drop(store, invoices=invoices, settings=settings, clients=clients)


def invalidate_written(store: Any, result) -> None:
    """Invalidate what a :class:`~invoicekit.io.WriteResult` says was written."""
    frame = getattr(result, "results", None)
    if frame is None or len(frame) == 0 or not _caches():
        return
    written = frame[frame["outcome"].isin(["inserted", "updated"])]
    if len(written):
        invalidate(store, invoices=written["id"].astype(str).tolist())
