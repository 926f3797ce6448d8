"""Settings marked ``sync_required`` travel between a device and the central ``settings``
table (one row per device and key), three-way like invoices.

Per key, against the last-synced value and central version the device records
(``invoicekit_settings_base``): equal values are ``same``; a key central lacks is
``inserted``; a device change over an unchanged central row is ``pushed`` (compare-and-set
on the central version); a central change over an unchanged device value is ``pulled``;
both changed (or no record and different values) is a ``conflict``, written nowhere and
reported, unless ``prefer="local"`` or ``"central"`` settles it. Values compare as JSON
(``{"a": 1}`` equals ``{ "a":1 }``); text that is no JSON compares as text.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import cache as _cache
from .._html import frame_html, page
from ..errors import UsageError, driver_errors, translate
from ..io import _sqlite
from ..io.backends.base import now_iso
from ..io.central import CentralStore
from ..io.local import STORE_ID_KEY, ensure_schema

__all__ = ["sync_settings", "SettingsSyncResult", "OUTCOMES"]

OUTCOMES = ("same", "inserted", "pushed", "pulled", "conflict")

_LOCAL_SQL = ("SELECT s.key, s.value, b.value, b.version FROM app_settings s "
              "LEFT JOIN invoicekit_settings_base b ON b.key = s.key "
              "WHERE s.sync_required = 1 AND s.key <> ? ORDER BY s.key")


def _canonical(text: Any) -> str | None:
    """A value as comparable text: JSON re-serialised with sorted keys, other text as is."""
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return str(text)


@dataclass(frozen=True)
class SettingsSyncResult:
    """What :func:`sync_settings` did, per key: ``settings`` has key, outcome (``same``,
    ``inserted``, ``pushed``, ``pulled``, ``conflict``), local_value, central_value (the
    JSON text on each side before the sync), base_version and central_version."""

    settings: pd.DataFrame
    device: str

    @property
    def conflicts(self) -> pd.DataFrame:
        """The keys both sides changed; nothing was written for them."""
        return self.settings[self.settings["outcome"] == "conflict"].reset_index(drop=True)

    @property
    def ok(self) -> bool:
        """True when no key is in conflict."""
        return self.conflicts.empty

    def summary(self) -> pd.DataFrame:
        """Keys per outcome."""
        counts = self.settings["outcome"].value_counts()
        return pd.DataFrame({"outcome": list(OUTCOMES), "keys": [int(counts.get(o, 0)) for o in OUTCOMES]})

    def _repr_html_(self) -> str:
        return (f"<b>SettingsSyncResult</b> for device {self.device}: {len(self.settings)} settings, "
                f"{len(self.conflicts)} in conflict" + frame_html(self.summary()) + frame_html(self.settings))

    def to_html(self, path: str) -> None:
        """Write a standalone HTML page with every key."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page("settings sync", self._repr_html_()))

    def __repr__(self) -> str:
        parts = ", ".join(f"{o} {n}" for o, n in zip(self.summary()["outcome"], self.summary()["keys"]) if n)
        return f"SettingsSyncResult(device {self.device}: {parts or 'nothing to sync'})"


def _decide(frame: pd.DataFrame, prefer: str | None) -> pd.Series:
    """The outcome of each key (vectorised over the keys)."""
    local, base, central = frame["local_c"], frame["base_c"], frame["central_c"]
    has_base, has_central = frame["base_version"].notna(), frame["central_version"].notna()
    central_moved = has_central & has_base & (frame["central_version"] != frame["base_version"])
    local_moved = ~has_base | (local != base)
    out = pd.Series("conflict", index=frame.index, dtype=object)
    out[~has_central] = "inserted"
    out[has_central & ~central_moved & has_base & local_moved] = "pushed"
    out[has_central & central_moved & ~local_moved] = "pulled"
    out[has_central & (local == central)] = "same"
    if prefer == "local":
        out[out == "conflict"] = "pushed"
    elif prefer == "central":
        out[out == "conflict"] = "pulled"
    return out


def _push_sql(mark: str) -> str:
    marks = ", ".join([mark] * 6)
    return (f"INSERT INTO settings (device, key, value, version, updated_at, updated_by) VALUES ({marks}) "
            "ON CONFLICT (device, key) DO UPDATE SET value = excluded.value, version = excluded.version, "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by "
            f"WHERE settings.version = {mark}")


def sync_settings(local: str | os.PathLike, central: Any, *, prefer: str | None = None,
                  actor: str | None = None, token: Any = None) -> SettingsSyncResult:
    """Sync the settings of the offline store ``local`` marked ``sync_required`` with the
    central store's ``settings`` table (see the module doc). ``prefer`` (``"local"`` or
    ``"central"``) settles conflicts; without it they are reported and left as they are.
    Central writes are compare-and-set on each key's version: a key another writer moved
    meanwhile becomes a conflict. Returns a :class:`SettingsSyncResult`. ``token``: the
    device's signed identity, required by a central store with identities on (the pushed
    settings then name its subject as ``updated_by``)."""
    from .._args import as_central, as_local_path
    from .apply import default_actor

    if prefer not in (None, "local", "central"):
        raise UsageError(f"sync_settings(): prefer is 'local', 'central' or None; got {prefer!r}")
    path = as_local_path(local, func="sync_settings", param="local")
    store = CentralStore(as_central(central, func="sync_settings", param="central"))
    store.require_schema()
    try:
        actor = store.identify(token) or actor or default_actor()
    except driver_errors() as exc:
        raise translate(exc, store=store.display, context="sync_settings") from exc
    with _sqlite.write_transaction(path) as conn:  # the device's settings hold still meanwhile
        ensure_schema(conn)
        device = conn.execute("SELECT value FROM app_settings WHERE key = ?", (STORE_ID_KEY,)).fetchone()[0]
        rows = conn.execute(_LOCAL_SQL, (STORE_ID_KEY,)).fetchall()
        frame = _frame(store, device, rows)
        frame["outcome"] = _decide(frame, prefer)
        frame = _push(store, device, frame, actor, token=token)
        _local_writes(conn, frame)
    pulled = frame.loc[frame["outcome"] == "pulled", "key"].tolist()
    if pulled:
        _cache.invalidate(path, settings=pulled, clients=False)
    shown = frame[["key", "outcome", "local_value", "central_value", "base_version", "central_version"]]
    return SettingsSyncResult(settings=shown.astype({"key": "string[pyarrow]", "outcome": "string[pyarrow]",
                                                      "base_version": "Int64", "central_version": "Int64"})
                              .reset_index(drop=True), device=device)


def _central_rows(store: CentralStore, device: str) -> pd.DataFrame:
    try:
        got = store.fetch(f"SELECT key, value, version FROM settings WHERE device = {store.mark}", (device,))
    except driver_errors() as exc:
        raise translate(exc, store=store.display, context="sync_settings") from exc
    return pd.DataFrame(got, columns=["key", "central_value", "central_version"])


def _frame(store: CentralStore, device: str, rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["key", "local_value", "base_value", "base_version"])
    frame = frame.merge(_central_rows(store, device), on="key", how="left")
    for side in ("local", "base", "central"):
        frame[f"{side}_c"] = frame[f"{side}_value"].map(_canonical).fillna("\x00none")  # NULL equals NULL
    return frame


def _push(store: CentralStore, device: str, frame: pd.DataFrame, actor: str, *, token: Any = None) -> pd.DataFrame:
    """Compare-and-set the pushed and inserted keys; a key that moved meanwhile is a conflict."""
    go = frame["outcome"].isin(["pushed", "inserted"])
    if not go.any():
        return frame
    todo = frame[go]
    current = todo["central_version"].fillna(todo["base_version"]).fillna(0).astype(int)
    new_version = current + 1
    now = now_iso()
    params = [(device, k, v, int(n), now, actor, int(c))
              for k, v, n, c in zip(todo["key"], todo["local_value"], new_version, current)]
    try:
        store.execute(_push_sql(store.mark), params, token=token)
    except driver_errors() as exc:
        raise translate(exc, store=store.display, context="sync_settings") from exc
    after = _central_rows(store, device).set_index("key")
    frame = frame.copy()
    frame["new_version"] = pd.Series(new_version, index=todo.index)
    for i, key in zip(todo.index, todo["key"]):
        landed = key in after.index and int(after.at[key, "central_version"]) == int(frame.at[i, "new_version"]) \
            and after.at[key, "central_value"] == frame.at[i, "local_value"]
        if not landed:
            frame.at[i, "outcome"] = "conflict"
    return frame


def _local_writes(conn, frame: pd.DataFrame) -> None:
    """Pulled values into ``app_settings``; every settled key's new last-synced record."""
    pulled = frame[frame["outcome"] == "pulled"]
    conn.executemany("UPDATE app_settings SET value = ? WHERE key = ?",
                     list(zip(pulled["central_value"], pulled["key"])))
    settled = frame[frame["outcome"].isin(["same", "pulled", "pushed", "inserted"])]
    values = settled["local_value"].where(settled["outcome"].isin(["pushed", "inserted"]), settled["central_value"])
    versions = settled.get("new_version", pd.Series(index=settled.index, dtype=float))
    versions = versions.where(settled["outcome"].isin(["pushed", "inserted"]), settled["central_version"])
    conn.executemany("INSERT OR REPLACE INTO invoicekit_settings_base (key, value, version) VALUES (?, ?, ?)",
                     [(k, v, int(n)) for k, v, n in zip(settled["key"], values, versions)])
