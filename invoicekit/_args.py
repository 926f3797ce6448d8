"""Argument checks of the public functions: say what was expected, or accept the obvious thing.

Wherever an :class:`~invoicekit.schema.InvoiceSet` is expected, a store is loaded for you:
a URL (``postgresql://...``, ``sqlite:///...``) with :func:`~invoicekit.io.read_central`,
a file path with :func:`~invoicekit.io.read_local` (or ``read_central`` when the file is a
central SQLite store), and a list of them is concatenated. Anything else is a
:class:`~invoicekit.errors.UsageError` saying what to pass instead.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from typing import Any, Sequence
from urllib.parse import quote

import pandas as pd

from .errors import UsageError, mask_secrets
from .schema import InvoiceSet

__all__ = ["expect", "as_invoice_set", "as_invoices_frame", "as_decisions", "as_local_path", "as_central"]

_LOAD = "load it with read_local(path) or read_central(url), or pass the path or URL itself"


def _name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _hint(value: Any, wanted: str) -> str:
    """What to do with ``value`` where a ``wanted`` (class name) is expected."""
    from .reconcile import Reconciliation
    from .resolve import Resolution
    from .sync.plan import SyncPlan

    hints = {
        "InvoiceSet": {
            Reconciliation: "a Reconciliation holds both sides: pass rec.local or rec.central",
            Resolution: "pass resolution.target (the content it writes)",
            SyncPlan: "pass plan.target (the content it writes)",
            pd.DataFrame: "wrap it with InvoiceSet(frame), or " + _LOAD,
        },
        "Reconciliation": {
            InvoiceSet: "reconcile the stores first: resolve(reconcile(local, central), strategy=...)",
            Resolution: "it is resolved already: plan it with plan_sync(resolution)",
            SyncPlan: "it is planned already: apply it with apply_sync(plan, local=..., central=...)",
        },
        "Resolution": {
            Reconciliation: "resolve it first: plan_sync(resolve(rec, strategy=...))",
            InvoiceSet: "reconcile and resolve first: plan_sync(resolve(reconcile(local, central), strategy=...))",
            SyncPlan: "it is planned already: apply it with apply_sync(plan, local=..., central=...)",
        },
        "SyncPlan": {
            Resolution: "plan it first: apply_sync(plan_sync(resolution), local=..., central=...)",
            Reconciliation: "resolve and plan it first: "
                            "apply_sync(plan_sync(resolve(rec, strategy=...)), local=..., central=...)",
            InvoiceSet: "reconcile, resolve and plan first: plan_sync(resolve(reconcile(local, central), ...))",
        },
    }.get(wanted, {})
    for cls, hint in hints.items():
        if isinstance(value, cls):
            return hint
    if wanted == "InvoiceSet":
        return _LOAD
    return ""


def expect(value: Any, cls: type, *, func: str, param: str, hint: str | None = None) -> Any:
    """``value`` when it is a ``cls``; else a UsageError saying what ``func`` takes and how to get it."""
    if isinstance(value, cls):
        return value
    hint = _hint(value, cls.__name__) if hint is None else hint
    article = "an" if cls.__name__[0] in "AEIOU" else "a"
    raise UsageError(f"{func}() takes {article} {cls.__name__} as {param}; got {_name(value)}"
                     + (f": {hint}" if hint else ""))


def _is_central_sqlite(path: str) -> bool:
    """True when ``path`` is a central SQLite store (``invoicekit db init``), not an offline one."""
    try:
        with open(path, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                return False
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except (OSError, sqlite3.Error):
        return False  # read_local reports what is wrong with it
    return {"invoices", "invoicekit_schema"} <= tables and "transactions" not in tables


def as_invoice_set(value: Any, *, func: str, param: str) -> InvoiceSet:
    """``value`` as an InvoiceSet: itself, a loaded store path or URL, or a list of those concatenated."""
    if isinstance(value, InvoiceSet):
        return value
    if isinstance(value, (str, os.PathLike)):
        from .io import read_central, read_local

        text = os.fsdecode(os.fspath(value))
        if "://" in text:
            return read_central(text)
        if _is_central_sqlite(text):
            return read_central(f"sqlite:///{os.path.abspath(text)}")
        return read_local(text)
    if isinstance(value, (list, tuple)) and value and not isinstance(value, pd.DataFrame):
        return InvoiceSet.concat(as_invoice_set(v, func=func, param=f"{param}[{i}]") for i, v in enumerate(value))
    raise UsageError(f"{func}() takes an InvoiceSet (or a store path or URL) as {param}; got {_name(value)}: "
                     f"{_hint(value, 'InvoiceSet')}")


def as_invoices_frame(value: Any, *, func: str, param: str = "invoices",
                      columns: Sequence[str] = ()) -> pd.DataFrame:
    """The invoices DataFrame of ``value`` (a DataFrame, an InvoiceSet's ``.invoices``, or a
    loaded store path or URL); a frame lacking ``columns`` is a UsageError naming them."""
    if isinstance(value, pd.DataFrame):
        frame = value
    elif isinstance(value, (InvoiceSet, str, os.PathLike, list, tuple)):
        frame = as_invoice_set(value, func=func, param=param).invoices
    else:
        raise UsageError(f"{func}() takes the invoices DataFrame (InvoiceSet.invoices), an InvoiceSet or a "
                         f"store path or URL as {param}; got {_name(value)}: {_hint(value, 'InvoiceSet')}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UsageError(f"{func}(): {param} lacks column(s) {', '.join(missing)}; expected the invoices of an "
                         "InvoiceSet (read_local(path).invoices)")
    return frame


_DECISION = "an (id, field, choice) tuple or a mapping with keys id, field, choice"


def _decision_rows(decisions: Any, *, func: str) -> list[tuple[Any, Any, Any]]:
    if isinstance(decisions, pd.DataFrame):
        missing = sorted({"id", "field", "choice"} - set(decisions.columns))
        if missing:
            raise UsageError(f"{func}(): decisions lack column(s) {missing}; expected id, field, choice")
        return list(decisions[["id", "field", "choice"]].itertuples(index=False, name=None))
    if isinstance(decisions, Mapping):  # {(id, field): choice}
        items = []
        for key, choice in decisions.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise UsageError(f"{func}(): decisions key {key!r}: expected (id, field) mapped to a choice")
            items.append((*key, choice))
        return items
    if isinstance(decisions, (str, bytes)) or not hasattr(decisions, "__iter__"):
        raise UsageError(f"{func}() takes decisions as a DataFrame (id, field, choice) or a list of (id, field, "
                         f"choice) tuples; got {_name(decisions)}")
    rows = list(decisions)
    if len(rows) == 3 and all(isinstance(v, str) for v in rows):
        rows = [tuple(rows)]  # one decision given bare: ("id", "field", "central")
    out = []
    for i, item in enumerate(rows):
        if isinstance(item, Mapping):
            if not {"id", "field", "choice"} <= set(item):
                raise UsageError(f"{func}(): decisions[{i}] is a mapping without "
                                 f"{sorted({'id', 'field', 'choice'} - set(item))}; expected {_DECISION}")
            out.append((item["id"], item["field"], item["choice"]))
        elif isinstance(item, (tuple, list)) and len(item) == 3:
            out.append(tuple(item))
        else:
            raise UsageError(f"{func}(): decisions[{i}] is {item!r}; expected {_DECISION}")
    return out


def as_decisions(decisions: Any, *, func: str, choices: Sequence[str]) -> pd.DataFrame | None:
    """Decisions as a DataFrame (id, field, choice), from a DataFrame, a list of
    ``(id, field, choice)`` tuples (or mappings) or a ``{(id, field): choice}`` mapping.
    A bad shape or choice is a UsageError naming the row."""
    if decisions is None:
        return None
    rows = _decision_rows(decisions, func=func)
    for i, (inv, field, choice) in enumerate(rows):
        for what, v in (("id", inv), ("field", field), ("choice", choice)):
            if not isinstance(v, str) or not v.strip():
                raise UsageError(f"{func}(): decisions[{i}] ({inv!r}, {field!r}, {choice!r}): {what} must be a "
                                 f"non-empty string; got {v!r}")
        if choice not in choices:
            raise UsageError(f"{func}(): decisions[{i}] ({inv!r}, {field!r}): choice {choice!r} is not one of "
                             f"{', '.join(choices)}")
    return pd.DataFrame(rows, columns=["id", "field", "choice"], dtype="string[pyarrow]")


def as_local_path(value: Any, *, func: str, param: str = "local") -> str:
    """``value`` as the path of an existing offline store (checked now, before anything is written)."""
    from .io import _sqlite
    from .io.local import REQUIRED_TABLES

    if isinstance(value, (str, os.PathLike)):
        path = os.fsdecode(os.fspath(value))
        if "://" in path:
            raise UsageError(f"{func}(): {param} takes the offline store's file path; got the URL "
                             f"{mask_secrets(path)!r}: a URL names the central store (central=...)")
        _sqlite.open_checked(path, tables=REQUIRED_TABLES).close()
        return path
    hint = "pass the path of the offline store's SQLite file"
    if isinstance(value, InvoiceSet):
        sources = sorted({s.split("#")[0] for s in value.invoices["source"].dropna().astype(str)})
        if len(sources) == 1:
            hint += f": {param}={sources[0]!r}"
    raise UsageError(f"{func}() takes a file path as {param}; got {_name(value)}: {hint}")


def as_central(value: Any, *, func: str, param: str = "central") -> Any:
    """``value`` when it can name the central store (URL, Engine or CentralStore); the URL
    itself is checked by :class:`~invoicekit.io.central.CentralStore`."""
    from sqlalchemy.engine import Engine

    from .io.central import CentralStore

    if isinstance(value, (str, os.PathLike)):
        CentralStore(value)  # a path or a URL SQLAlchemy cannot parse: a UsageError saying what works
        return value
    if isinstance(value, (CentralStore, Engine)):
        return value
    raise UsageError(f"{func}() takes the central store's URL as {param} (e.g. postgresql://user@host/db or "
                     f"sqlite:///central.sqlite); got {_name(value)}")
