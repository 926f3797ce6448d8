"""The offline store's settings (``app_settings``): JSON values, the ``sync_required`` flag,
read through the Redis cache.

Devices write ``app_settings`` themselves, sometimes as JSON and sometimes as plain text
(``EUR``): a value that is no JSON reads as its text. The toolkit writes JSON. Setting
names are data, never SQL: any text is a name, bound as a parameter.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from typing import Any

import pandas as pd

from . import cache as _cache
from ._html import frame_html
from .errors import NotAStoreError, UsageError

__all__ = ["Settings"]

_UNSET = object()


def _decode(text: Any) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _no_nan(value: Any, key: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"setting {key!r}: {value!r} is not a JSON number; store a finite number or text")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise UsageError(f"setting {key!r}: JSON object keys must be text; got {k!r}")
            _no_nan(v, key)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _no_nan(v, key)


class Settings:
    """``Settings(store, *, cache=None)``: the settings of the offline store at ``store``.

    ``get(key, default=None)`` returns the value (parsed JSON, or the stored text when it is
    no JSON), ``set(key, value, *, sync_required=None)`` stores ``value`` as JSON (``None``
    keeps the key's flag; new keys are local only unless ``sync_required=True``),
    ``delete(key)`` removes it, ``sync_required(key)`` tells its flag, and :meth:`frame`
    lists everything. ``cache`` is a :class:`~invoicekit.cache.Cache` (``None``: the one
    ``INVOICEKIT_REDIS_URL`` names, if any; ``False``: none); every ``set`` and ``delete``
    invalidates the key's entry.
    """

    def __init__(self, store: str | os.PathLike, *, cache: Any = None) -> None:
        from ._args import as_local_path

        self.path = as_local_path(store, func="Settings", param="store")
        self.cache = _cache.as_cache(cache, func="Settings")

    def __repr__(self) -> str:
        return f"Settings({self.path!r})"

    @staticmethod
    def _key(key: Any) -> str:
        if not isinstance(key, str) or not key:
            raise UsageError(f"a setting's name is a non-empty string; got {key!r}")
        return key

    def _row(self, key: str) -> tuple[bool, Any, bool]:
        from .io import _sqlite

        conn = _sqlite.open_checked(self.path, tables=("app_settings",))
        try:
            row = conn.execute("SELECT value, sync_required FROM app_settings WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise NotAStoreError(f"{self.path}: cannot read app_settings ({exc})", store=self.path) from exc
        finally:
            conn.close()
        if row is None:
            return False, None, False
        return True, _decode(row[0]), bool(row[1])

    def _entry(self, key: str) -> tuple[bool, Any, bool]:
        key = self._key(key)
        stamp = None
        if self.cache is not None:
            hit, stamp = self.cache.get_json("set", key, self.path)
            if hit is not _cache.MISS and isinstance(hit, list) and len(hit) == 3 and isinstance(hit[0], bool):
                return hit[0], hit[1], bool(hit[2])
        entry = self._row(key)
        if self.cache is not None:
            try:
                self.cache.put_json("set", key, self.path, list(entry), stamp=stamp)
            except (TypeError, ValueError):  # a device's value JSON cannot carry (NaN): not cached
                pass
        return entry

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when the store has no such setting."""
        present, value, _ = self._entry(key)
        return value if present else default

    def __contains__(self, key: str) -> bool:
        return self._entry(key)[0]

    def sync_required(self, key: str) -> bool:
        """True when ``key`` is marked to be pushed to the central store."""
        return self._entry(key)[2]

    def set(self, key: str, value: Any, *, sync_required: bool | None = None) -> None:
        """Store ``value`` (anything JSON can hold) under ``key``, in one transaction."""
        from .io import _sqlite
        from .io.local import _ensure_schema

        key = self._key(key)
        _no_nan(value, key)
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"setting {key!r}: the value must be JSON (text, number, bool, None, list, dict); "
                             f"got {type(value).__name__} ({exc})") from None
        if sync_required is not None and not isinstance(sync_required, bool):
            raise UsageError(f"setting {key!r}: sync_required is True, False or None; got {sync_required!r}")
        try:
            with _sqlite.write_transaction(self.path) as conn:
                _ensure_schema(conn)
                conn.execute(
                    "INSERT INTO app_settings (key, value, sync_required) VALUES (?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                    "sync_required = CASE WHEN ? IS NULL THEN app_settings.sync_required "
                    "ELSE excluded.sync_required END",
                    (key, text, int(bool(sync_required)), None if sync_required is None else int(sync_required)))
        finally:
            _cache.invalidate(self.path, settings=[key], clients=False)

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it was there."""
        from .io import _sqlite

        key = self._key(key)
        try:
            with _sqlite.write_transaction(self.path) as conn:
                gone = conn.execute("DELETE FROM app_settings WHERE key = ?", (key,)).rowcount
        finally:
            _cache.invalidate(self.path, settings=[key], clients=False)
        return bool(gone)

    def frame(self) -> pd.DataFrame:
        """Every setting: key, value (parsed), sync_required; read from the store."""
        from .io import _sqlite

        conn = _sqlite.open_checked(self.path, tables=("app_settings",))
        try:
            rows = conn.execute("SELECT key, value, sync_required FROM app_settings ORDER BY key").fetchall()
        finally:
            conn.close()
        return pd.DataFrame({"key": pd.array([r[0] for r in rows], dtype="string[pyarrow]"),
                             "value": pd.Series([_decode(r[1]) for r in rows], dtype=object),
                             "sync_required": pd.array([bool(r[2]) for r in rows], dtype="boolean")})

    def _repr_html_(self) -> str:
        return frame_html(self.frame(), caption=f"settings of {self.path}")
