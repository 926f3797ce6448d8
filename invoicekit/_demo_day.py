"""The demo's step 10: a device's day (settings, the connection monitor going offline and
back, the engine draining by itself, settings synced, reads through the Redis cache)."""

from __future__ import annotations

import logging
import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .cache import Cache
from .device import LocalStore
from .io import read_central
from .lookups import get_invoice
from .monitor import ConnectionMonitor
from .settings import Settings
from .sync import SyncEngine

__all__ = ["device_day"]


def _counts(summary) -> str:
    return ", ".join(f"{o} {n}" for o, n in summary.itertuples(index=False) if n) or "nothing"


def _away(url: str) -> tuple[Callable[[], None], Callable[[], None]] | None:
    """(take the central store out of reach, bring it back) for the embedded store; None for a URL."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url[len("sqlite:///"):])
    hidden = path.with_name(path.name + ".away")
    return (lambda: os.replace(path, hidden)), (lambda: os.replace(hidden, path))


def device_day(path: Path, url: str, result: dict, say: Callable[[str], None]) -> None:
    """Run step 10 on the synced device store at ``path`` against ``url``."""
    say("\n10. A device's day: offline edits, the monitor seeing central go and come back, settings synced, "
        "reads through the cache")
    settings = Settings(path, cache=False)
    settings.set("receipt_footer", "Thank you for your business!", sync_required=True)
    settings.set("printer", {"name": "Counter printer", "dpi": 203})  # stays on the device
    changes: list[str] = []
    quiet = logging.NullHandler()  # the monitor warns when central goes: the demo prints it itself
    logging.getLogger("invoicekit.monitor").addHandler(quiet)
    monitor = ConnectionMonitor(central=url, interval=60, timeout=1.0)
    monitor.on_change(lambda c: changes.append("online" if c.online else "offline"))
    engine = SyncEngine(path, url, monitor=monitor, actor="invoicekit-demo-device")
    monitor.check()
    store = LocalStore(path)
    new_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "invoicekit-demo/INV-DEMO-0002"))
    moves = _away(url)
    if moves:
        moves[0]()
        monitor.check()
    try:
        store.create(invoice_number="INV-DEMO-0002", currency="EUR", invoice_id=new_id,
                     client={"name": "Demo Kiosk GmbH", "tax_id": "DE811907980"},
                     line_items=[{"description": "Coffee beans 1 kg", "quantity": 3, "unit_price": "18.50"}])
        waiting = engine.drain()
        queued = len(store.queue())
    finally:
        if moves:
            moves[1]()
    if moves:
        engine.last_drain = None
        monitor.check()  # back online: the engine drains in the background
        deadline = time.monotonic() + 60
        while engine.last_drain is None and time.monotonic() < deadline:
            time.sleep(0.05)
        drained = engine.last_drain
        say(f"   central went {' then '.join(changes[1:])}; while offline a drain returned at once "
            f"(offline={waiting.offline}) and {queued} operation(s) waited in the queue")
    else:
        drained = waiting
        say("   (a given central URL is not taken offline: the queue drains at once)")
    say(f"   drained: {_counts(drained.summary())}; settings: {_counts(drained.settings.summary())} "
        f"(the printer setting is not marked sync_required and stays on the device)")
    monitor.stop()
    logging.getLogger("invoicekit.monitor").removeHandler(quiet)
    central = read_central(url, where={"id": new_id}, lines=False)
    cache = Cache(os.environ.get("INVOICEKIT_REDIS_URL"), namespace="invoicekit-demo")
    first = get_invoice(path, new_id, cache=cache)
    second = get_invoice(path, new_id, cache=cache)
    store.update(new_id, invoice_number="INV-DEMO-0002-A")
    third = get_invoice(path, new_id, cache=cache)
    cache.clear()
    same = first.invoices.equals(second.invoices)
    say(f"   the new invoice is in central: {len(central) == 1}; read through the cache twice: identical {same}; "
        f"after an edit the cache gives {third.invoices['invoice_number'].iloc[0]}")
    result["device_day"] = {"drained": {o: int(n) for o, n in drained.summary().itertuples(index=False) if n},
                            "settings": {o: int(n) for o, n in drained.settings.summary().itertuples(index=False)
                                         if n}}


@contextmanager
def _keys_configured(key: str):
    """``INVOICEKIT_KEYS`` set to ``key`` for the block, then as it was."""
    before = os.environ.get("INVOICEKIT_KEYS")
    os.environ["INVOICEKIT_KEYS"] = key
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("INVOICEKIT_KEYS", None)
        else:
            os.environ["INVOICEKIT_KEYS"] = before


def security_step(path: Path, work: Path, result: dict, say: Callable[[str], None]) -> None:
    """Step 11: the device's client fields encrypted at rest and the keys rotated; pushes to a
    central store that requires signed identities (an embedded one of its own, so a given
    central URL is never changed)."""
    import sqlite3

    from .errors import IdentityError, MissingDependencyError
    from .integrity import tampered
    from .io import init_db, read_local, write_central, write_local
    from .io.records import read_audit
    from .schema import InvoiceSet
    from .validate import validate

    say("\n11. Security: client fields encrypted at rest and keys rotated; pushes need a signed identity")
    try:
        from .security import decrypt, generate_key, issue_token, rotate_keys
    except MissingDependencyError as exc:  # pragma: no cover - the demo installs the extra
        say(f"   skipped: {exc}")
        return
    loaded = read_local(path)
    bad = set(validate(loaded).problems["id"].dropna())  # the sample device's damaged rows stay out
    keep = ~loaded.invoices["id"].isin(bad)
    plain = InvoiceSet(loaded.invoices[keep].reset_index(drop=True),
                       loaded.lines[loaded.lines["invoice_id"].isin(loaded.invoices["id"][keep])].reset_index(drop=True))
    old, new = generate_key(), generate_key()  # fresh keys each run: only counts are printed
    vault = work / "device_b_encrypted.sqlite"
    for leftover in (vault, vault.with_name(vault.name + "-wal"), vault.with_name(vault.name + "-shm")):
        leftover.unlink(missing_ok=True)  # a new key each run: the last run's file is not reused
    with _keys_configured(old):  # as INVOICEKIT_KEYS would: every write encrypts, every read decrypts
        write_local(plain, vault)
        again = write_local(plain, vault)  # new random tokens, same plaintext: nothing written
    conn = sqlite3.connect(vault)
    try:
        sealed = conn.execute("SELECT count(*) FROM transactions WHERE client_data LIKE '{\"encrypted\":\"fernet:%'")
        sealed = sealed.fetchone()[0]
    finally:
        conn.close()
    rotated = rotate_keys(vault, keys=[new, old])
    back = decrypt(read_local(vault), keys=[new])  # the old key is no longer needed
    same = back.invoices["client_data"].tolist() == plain.invoices["client_data"].tolist()
    say(f"   with a key configured, {sealed:,} of {len(plain):,} invoices hold client data as Fernet tokens on disk "
        f"(writing them again wrote {again.written}); rotation re-encrypted "
        f"{int(rotated.counts['rotated'].sum()):,} value(s) (rows, last-synced snapshots, queued payloads); "
        f"with only the new key everything decrypts: {same}; "
        f"checksums failing: {len(tampered(back.invoices))}")
    signed = f"sqlite:///{(work / 'central_signed.sqlite').resolve()}"
    secret = generate_key() + generate_key()  # >= 32 bytes, new each run
    init_db(signed, token_secret=secret)
    refused = []
    for label, token in (("no token", None), ("a token signed with another secret",
                                              issue_token("mallory", secret=generate_key() * 2, ttl=600))):
        try:
            write_central(plain, signed, token=token)
        except IdentityError as exc:
            refused.append(f"{label}: {exc.reason}")
    done = write_central(plain, signed, token=issue_token("analyst@example", secret=secret, ttl=600),
                         actor="someone else", op_id="demo-signed-push")
    actors = set(read_audit(signed, op_id="demo-signed-push")["actor"])
    say("   a store requiring identities refused " + "; ".join(refused)
        + f"; with a valid token it took {done.written:,} invoices"
        + (f", audited as {', '.join(sorted(actors))}" if actors else ""))
    result["security"] = {"sealed": int(sealed), "rotated": int(rotated.counts["rotated"].sum()),
                          "decrypts": bool(same), "refused": len(refused), "written": int(done.written)}


def snapshot_step(url: str, work: Path, result: dict, say: Callable[[str], None]) -> None:
    """Step 12: a local snapshot of the central store that later reads refresh with only the
    invoices changed since (the change marker the central schema keeps)."""
    from .integrity import checksum
    from .io import read_central, write_central
    from .io.snapshot import snapshot_info
    from .schema import InvoiceSet

    say("\n12. A snapshot of the central store: later reads fetch only what changed since")
    path = work / "central.snapshot"
    first = read_central(url, snapshot=path)
    built = snapshot_info(path)
    live = first.invoices[first.invoices["deleted_at"].isna()].sort_values("id").head(3)
    edited = live.assign(invoice_number=live["invoice_number"] + "-R", version=live["version"] + 1)
    edited["checksum"] = checksum(edited)
    write_central(InvoiceSet(edited, first.lines[first.lines["invoice_id"].isin(edited["id"])]), url)
    again = read_central(url, snapshot=path)
    refreshed = snapshot_info(path)
    full = read_central(url)
    key = ["id", "version", "checksum"]
    same = again.invoices[key].sort_values("id").reset_index(drop=True).equals(
        full.invoices[key].sort_values("id").reset_index(drop=True))
    say(f"   built: {built.rows:,} invoices copied to {path.name}; after 3 central edits a refresh fetched "
        f"{refreshed.fetched} ({refreshed.mode}); equal to a full read: {same}")
    result["snapshot"] = {"built": built.rows, "fetched": refreshed.fetched, "same": bool(same)}
