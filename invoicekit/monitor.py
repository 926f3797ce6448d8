"""``ConnectionMonitor``: is the central store (and Redis, and a health URL) reachable right now?

Each configured service is probed with a timeout, one round every ``interval`` seconds in a
background thread (``start()``/``stop()``, or ``with monitor:``), or once with ``check()``:

* ``central``: the central store's own round trip (:meth:`CentralStore.ping`: PostgreSQL
  connect + ``SELECT 1``, SQLite opens its existing file);
* ``redis``: ``PING`` through redis-py (the ``redis`` extra), without redis-py's retries;
* ``http``: ``GET`` of a health URL (http or https only); a 2xx answer is up, anything else
  (4xx, 5xx, a timeout, a redirect to another host or scheme) is down.

A service's state is ``unknown`` until its first probe, then ``online`` or ``offline``; the
monitor is :attr:`~ConnectionMonitor.online` when every service is. Each change of a
service's state (including the first observation, whose ``previous`` is ``None``) is
reported once to every callback registered with :meth:`~ConnectionMonitor.on_change`,
however often the probes repeat it. Callbacks run in the thread that made the observation
(the monitor's, or the caller of ``check()``), in order; coroutine functions run on the
monitor's private event loop thread. A callback that raises is logged (logger
``invoicekit.monitor``) and the others still run. Error texts never show a password.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import pandas as pd

from ._html import frame_html
from .errors import MissingDependencyError, UsageError, _passwords, mask_secrets

__all__ = ["ConnectionMonitor", "MonitorStatus", "ServiceState", "ConnectionChange", "SERVICES"]

log = logging.getLogger(__name__)

#: the services a monitor can check, in the order they are probed and shown
SERVICES = ("central", "redis", "http")
_COLUMNS = ["service", "target", "state", "online", "since", "checked_at", "error"]


@dataclass(frozen=True)
class ServiceState:
    """One service as last seen: ``online`` is None until its first probe; ``since`` is the
    time of its last change, ``checked_at`` of its last probe, ``error`` the last failure
    (password masked; None while online)."""

    service: str
    target: str
    online: bool | None = None
    since: datetime | None = None
    checked_at: datetime | None = None
    error: str | None = None

    @property
    def state(self) -> str:
        """``"online"``, ``"offline"`` or ``"unknown"``."""
        return "unknown" if self.online is None else "online" if self.online else "offline"


@dataclass(frozen=True)
class MonitorStatus:
    """A snapshot of every service's state; ``services`` has one row per service
    (service, target, state, online, since, checked_at, error)."""

    services: pd.DataFrame

    @property
    def online(self) -> bool:
        """True when every service was online at its last probe."""
        return bool(len(self.services)) and bool((self.services["state"] == "online").all())

    def __getitem__(self, service: str) -> ServiceState:
        """The state of one service (``status["central"]``)."""
        rows = self.services[self.services["service"] == service]
        if rows.empty:
            raise KeyError(f"{service!r}: this monitor checks {', '.join(self.services['service'])}")
        row = rows.iloc[0]

        def when(value: Any) -> datetime | None:
            return None if pd.isna(value) else value.to_pydatetime()

        return ServiceState(service, row["target"], None if row["online"] is None else bool(row["online"]),
                            when(row["since"]), when(row["checked_at"]), row["error"])

    def summary(self) -> pd.DataFrame:
        """Service, state and last error, one row per service."""
        return self.services[["service", "state", "since", "error"]]

    def _repr_html_(self) -> str:
        head = "online" if self.online else "not online"
        return f"<b>MonitorStatus</b>: {head}" + frame_html(self.services, caption="services")

    def __repr__(self) -> str:
        return "MonitorStatus(" + ", ".join(f"{s}={st}" for s, st in
                                            zip(self.services["service"], self.services["state"])) + ")"


@dataclass(frozen=True)
class ConnectionChange:
    """What a callback receives: ``service`` went from ``previous`` (None: never seen) to
    ``online`` at ``at``; ``error`` says why it is offline; ``status`` is every service then."""

    service: str
    online: bool
    previous: bool | None
    at: datetime
    error: str | None
    status: MonitorStatus = field(repr=False)


class ConnectionMonitor:
    """Checks ``central`` (a store URL), ``redis`` (a Redis URL) and ``http`` (a health URL),
    each optional, every ``interval`` seconds with ``timeout`` (see module doc)::

        with ConnectionMonitor(central=url, redis="redis://cache:6379/0") as monitor:
            monitor.on_change(lambda change: print(change.service, change.online))
            ...

    A round takes at most about the sum of the services' timeouts (PostgreSQL counts its
    connect timeout in whole seconds, at least 2), so a change is seen within about
    ``interval`` plus that.
    """

    def __init__(self, *, central: Any = None, redis: str | None = None, http: str | None = None,
                 interval: float = 5.0, timeout: float = 2.0) -> None:
        if not interval > 0 or not timeout > 0:
            raise UsageError(f"ConnectionMonitor: interval and timeout must be positive seconds; got "
                             f"interval={interval!r}, timeout={timeout!r}")
        self.interval, self.timeout = float(interval), float(timeout)
        probes: dict[str, _Probe] = {}
        if central is not None:
            probes["central"] = _central_probe(central, self.timeout)
        if redis is not None:
            probes["redis"] = _redis_probe(redis, self.timeout)
        if http is not None:
            probes["http"] = _http_probe(http, self.timeout)
        if not probes:
            raise UsageError("ConnectionMonitor: nothing to check; give central=URL, redis=URL and/or http=URL")
        self._probes = probes
        self._states = {name: ServiceState(name, p.target) for name, p in probes.items()}
        self._probe_started = {name: float("-inf") for name in probes}
        self._callbacks: list[Callable[[ConnectionChange], Any]] = []
        self._state_lock = threading.Lock()  # the states
        self._dispatch_lock = threading.RLock()  # one observation reported at a time, in order
        self._life_lock = threading.Lock()  # start/stop
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._loop = _LoopThread()

    # -- what it knows ----------------------------------------------------------------------
    @property
    def services(self) -> tuple[str, ...]:
        """The services this monitor checks."""
        return tuple(self._probes)

    @property
    def status(self) -> MonitorStatus:
        """Every service's state now (a frozen snapshot)."""
        with self._state_lock:
            states = list(self._states.values())
        frame = pd.DataFrame({
            "service": [s.service for s in states], "target": [s.target for s in states],
            "state": [s.state for s in states],
            "online": pd.Series([s.online for s in states], dtype=object),
            "since": pd.to_datetime(pd.Series([s.since for s in states], dtype=object), utc=True),
            "checked_at": pd.to_datetime(pd.Series([s.checked_at for s in states], dtype=object), utc=True),
            "error": pd.Series([s.error for s in states], dtype=object)})
        return MonitorStatus(frame[_COLUMNS])

    @property
    def online(self) -> bool:
        """True when every service was online at its last probe (False before the first)."""
        with self._state_lock:
            return all(s.online for s in self._states.values())

    def is_online(self, service: str) -> bool | None:
        """Whether ``service`` was online at its last probe; None before its first probe."""
        with self._state_lock:
            if service not in self._states:
                raise KeyError(f"{service!r}: this monitor checks {', '.join(self._states)}")
            return self._states[service].online

    @property
    def running(self) -> bool:
        """True while the background thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def __repr__(self) -> str:
        parts = [f"{name}={p.target}" for name, p in self._probes.items()]
        state = "online" if self.online else "not online"
        return f"ConnectionMonitor({', '.join(parts)}; {state}{', running' if self.running else ''})"

    # -- callbacks --------------------------------------------------------------------------
    def on_change(self, callback: Callable[[ConnectionChange], Any]) -> Callable[[ConnectionChange], Any]:
        """Call ``callback(change)`` on every change of a service's state (sync callables, or
        coroutine functions run on the monitor's event loop thread); returns ``callback``, so
        it also works as a decorator."""
        if not callable(callback):
            raise UsageError(f"on_change: expected a callable or coroutine function; got {type(callback).__name__}")
        with self._dispatch_lock:
            self._callbacks.append(callback)
        return callback

    def remove_callback(self, callback: Callable[[ConnectionChange], Any]) -> None:
        """Stop calling ``callback`` (nothing happens if it is not registered)."""
        with self._dispatch_lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    # -- checking ---------------------------------------------------------------------------
    def check(self, *services: str) -> MonitorStatus:
        """Probe ``services`` (default: all) once, now, in this thread; report changes to the
        callbacks; returns the status afterwards."""
        names = services or self.services
        unknown = [n for n in names if n not in self._probes]
        if unknown:
            raise UsageError(f"check: this monitor checks {', '.join(self._probes)}; not {', '.join(unknown)}")
        observed = [self._probe(name) for name in names]
        with self._dispatch_lock:
            changes = [c for c in (self._record(*o) for o in observed) if c is not None]
            for change in changes:
                self._report(change)
        return self.status

    def _probe(self, name: str) -> tuple[str, float, datetime, str | None]:
        started = time.monotonic()
        probe = self._probes[name]
        try:
            probe.run()
        except Exception as exc:  # noqa: BLE001 - any failure to answer is "offline", with its text
            return name, started, datetime.now(timezone.utc), _error_text(exc, probe.raw)
        return name, started, datetime.now(timezone.utc), None

    def _record(self, name: str, started: float, at: datetime, error: str | None) -> ConnectionChange | None:
        """Store one probe's result; the change it makes, if any (an older probe finishing
        after a newer one is ignored)."""
        with self._state_lock:
            if started < self._probe_started[name]:
                return None
            self._probe_started[name] = started
            old = self._states[name]
            online = error is None
            changed = old.online is not online
            self._states[name] = ServiceState(name, old.target, online, at if changed else old.since, at, error)
        if not changed:
            return None
        level = logging.INFO if online else logging.WARNING
        log.log(level, "%s %s is %s%s", name, old.target, "online" if online else "offline",
                f": {error}" if error else "")
        return ConnectionChange(name, online, old.online, at, error, self.status)

    def _report(self, change: ConnectionChange) -> None:
        for callback in list(self._callbacks):
            try:
                result = callback(change)
                if inspect.isawaitable(result):
                    self._loop.submit(result, callback, change)
            except Exception:  # noqa: BLE001 - a failing callback never stops the monitor or the others
                log.exception("ConnectionMonitor: callback %r failed on %r", callback, change)

    # -- the background thread --------------------------------------------------------------
    def start(self) -> ConnectionMonitor:
        """Check every ``interval`` seconds in a background thread (the first round at once);
        returns the monitor. Starting a running monitor does nothing."""
        with self._life_lock:
            if self.running:
                return self
            self._stopping = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stopping,), daemon=True,
                                            name="invoicekit-monitor")
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background thread and the event loop thread, waiting for a round in
        progress (at most about the sum of the timeouts) and, for up to ``timeout`` seconds
        (default: the monitor's), for async callbacks still running. Safe to call again."""
        with self._life_lock:
            self._stopping.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._loop.stop(self.timeout if timeout is None else timeout)

    def __enter__(self) -> ConnectionMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            started = time.monotonic()
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the monitor keeps going whatever a round meets
                log.exception("ConnectionMonitor: a round of checks failed")
            stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))


class _LoopThread:
    """A private asyncio event loop in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pending: set[Future] = set()

    def submit(self, awaitable: Any, callback: Any, change: ConnectionChange) -> None:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                                name="invoicekit-monitor-loop")
                self._thread.start()
            future = asyncio.run_coroutine_threadsafe(_awaited(awaitable), self._loop)
            self._pending.add(future)

        def done(f: Future) -> None:
            with self._lock:
                self._pending.discard(f)
            if not f.cancelled() and f.exception() is not None:
                log.error("ConnectionMonitor: callback %r failed on %r", callback, change, exc_info=f.exception())

        future.add_done_callback(done)

    def stop(self, timeout: float) -> None:
        with self._lock:
            loop, thread, pending = self._loop, self._thread, list(self._pending)
            self._loop = self._thread = None
        if loop is None:
            return
        deadline = time.monotonic() + (timeout if thread is not threading.current_thread() else 0.0)
        for future in pending:
            try:
                future.result(max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - logged by its done callback; a slow one is cancelled
                future.cancel()
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join()
            loop.close()


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


# -- the probes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Probe:
    target: str  # shown: password masked
    run: Callable[[], None]  # raises when the service does not answer in time
    raw: str = field(default="", repr=False)  # the URL as given, to mask its password in errors

def _error_text(exc: BaseException, raw: str) -> str:
    """``Type: message`` of a probe's failure, on one line, passwords masked (also raw ones
    the driver may repeat)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in _passwords(raw):
        text = text.replace(secret, "***")
    text = mask_secrets(text)
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 400 else text[:399] + "…"


def _central_probe(central: Any, timeout: float) -> _Probe:
    from .io.central import CentralStore

    store = CentralStore(central)

    def probe() -> None:
        store.ping(timeout)

    return _Probe(store.display, probe, central if isinstance(central, str) else "")


def _redis_probe(url: str, timeout: float) -> _Probe:
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:
        raise MissingDependencyError("redis", "redis") from exc
    shown = mask_secrets(str(url))
    try:
        redis.Redis.from_url(str(url)).close()  # parses the URL, connects to nothing
    except ValueError as exc:
        raise UsageError(f"ConnectionMonitor: redis={shown!r} is not a Redis URL ({mask_secrets(str(exc))}); "
                         "use redis://host:6379/0, rediss://... or unix:///path.sock") from None

    def probe() -> None:
        client = redis.Redis.from_url(str(url), socket_connect_timeout=timeout, socket_timeout=timeout,
                                      retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        try:
            client.ping()
        finally:
            client.close()

    return _Probe(shown, probe, str(url))


def _http_probe(url: str, timeout: float) -> _Probe:
    import urllib.request

    shown = mask_secrets(str(url))
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"ConnectionMonitor: http={shown!r} is not an http:// or https:// URL with a host; "
                         "give the health URL, e.g. https://api.example.com/health")
    origin = _origin(str(url))

    class SameOrigin(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
            if _origin(newurl) != origin:
                import urllib.error

                raise urllib.error.HTTPError(newurl, code, f"redirect to another host or scheme refused: "
                                             f"{mask_secrets(newurl)}", headers, fp)
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    opener = urllib.request.build_opener(SameOrigin())

    def probe() -> None:
        request = urllib.request.Request(str(url), method="GET", headers={"User-Agent": "invoicekit-monitor"})
        with opener.open(request, timeout=timeout) as response:  # 2xx; urllib raises HTTPError for the rest
            response.read(65536)

    return _Probe(shown, probe, str(url))


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower() or None, port
