"""Whole-store comparison pushed down into the central store: only differing ids travel back.

``reconcile(local, url, scope="all")`` on a PostgreSQL central store does not read the
store whole. It stages the local side's *keys* (id, version, checksum, currency,
``modified_at``, ``deleted_at``: :data:`KEY_SCHEMA`, :func:`local_keys`) in bulk (ADBC
ingest, binary ``COPY``) into a temporary table, lets the server full-outer-join them with
``invoices`` on id, and gets back only (:func:`compare_keys`, :data:`DIFF_SCHEMA`):

* the local ids whose keys differ from the central row's, or that the store lacks;
* the central-only ids, with their keys (version, checksum, times): a status row needs no more.

Full central rows are then fetched only for the ids present on both sides whose keys
differ (``read_central(url, ids=...)``), and compared as a full read would.

What "keys equal" stands for: same version, same stored checksum (SHA-256 over invoice
number, client JSON, line-item JSON and total: :mod:`invoicekit.integrity`), same
currency, same ``modified_at`` and ``deleted_at``. The checksums are *trusted*: a row whose
stored checksum does not match its content (``invoicekit.tampered`` finds them) can hide an
edit made at the same version and time, which the full read (comparing content field by
field) reports. ``reconcile(..., pushdown=False)`` is that exact path.

Encryption at rest: checksums are over the plaintext, so an encrypted central row compares
by checksum as a plaintext one does, and ``read_central`` decrypts what is fetched. Where
no keys are configured (the full read would then compare ciphertext), central rows holding
encrypted client text are treated as differing and fetched; so are local rows holding
encrypted client text (staged with no checksum): the full comparison decides them.

Backends without the push-down (SQLite: ``CentralStore.compares_keys`` is False) make
:func:`compare_keys` return None; reconcile then reads the store whole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError, driver_errors, translate
from .backends import CentralStore

__all__ = ["KEY_SCHEMA", "DIFF_SCHEMA", "PushdownStats", "local_keys", "compare_keys", "diff_keys",
           "supports_pushdown"]

_TS = pa.timestamp("us", "UTC")

#: the staged local keys (one row per local invoice with an id)
KEY_SCHEMA = pa.schema([
    ("ik_id", pa.string()), ("ik_version", pa.int64()), ("ik_checksum", pa.string()), ("ik_currency", pa.string()),
    ("ik_modified_at", _TS), ("ik_deleted_at", _TS),
])

#: what the store returns: ids differing or missing on one side; central keys where it holds the id
DIFF_SCHEMA = pa.schema([
    ("id", pa.string()), ("in_local", pa.bool_()), ("in_central", pa.bool_()), ("version", pa.int64()),
    ("checksum", pa.string()), ("modified_at", _TS), ("deleted_at", _TS),
])


@dataclass(frozen=True)
class PushdownStats:
    """What a pushed-down comparison moved: ``staged`` local key rows sent, ``returned`` key
    rows the store sent back (differing + missing + central-only), of which ``central_only``;
    ``fetched`` full central rows read (the ids on both sides whose keys differ);
    ``unverifiable`` local rows staged without a checksum (encrypted client text)."""

    staged: int
    returned: int
    central_only: int
    fetched: int
    unverifiable: int

    def summary(self) -> pd.DataFrame:
        """One row per figure."""
        return pd.DataFrame({"figure": list(asdict(self)), "rows": list(asdict(self).values())})

    def _repr_html_(self) -> str:
        from .._html import frame_html

        return "<b>pushed-down comparison</b>" + frame_html(self.summary())


def supports_pushdown(url_or_engine: Any) -> bool:
    """Whether the central store's backend compares keys in the store (PostgreSQL)."""
    return bool(CentralStore(url_or_engine).compares_keys)


def local_keys(invoices: pa.Table) -> tuple[pa.Table, int]:
    """The keys of ``invoices`` (rows with an id) as :data:`KEY_SCHEMA`, and how many rows
    got no checksum: those holding encrypted client text (their plaintext is not at hand to
    vouch for the checksum), which therefore always compare as differing."""
    from ..security import encrypted_mask

    sealed = encrypted_mask(invoices.column("client_data"))
    checksum = pc.if_else(sealed, pa.scalar(None, pa.string()), invoices.column("checksum"))
    keys = pa.table([invoices.column(c) for c in ("id", "version")] + [checksum] +
                    [invoices.column(c) for c in ("currency", "modified_at", "deleted_at")],
                    names=KEY_SCHEMA.names)
    keys = keys.filter(invoices.column("id").is_valid()).cast(KEY_SCHEMA)
    return keys, int(pc.sum(sealed).as_py() or 0)


def compare_keys(url_or_engine: Any, keys: pa.Table, *, where: str = "client") -> pa.Table | None:
    """The ids whose keys differ between ``keys`` (:data:`KEY_SCHEMA`, distinct ids) and the
    central store, as :data:`DIFF_SCHEMA`; None when the store's backend cannot compare.

    ``where="client"`` (the default): the store sends every row's keys (no line items, no
    client text; two sessions in one snapshot, each scanning half the table) and they are
    compared here, in Arrow (:func:`diff_keys`). ``where="server"``: the local keys are
    staged in the store and joined there (nothing is written: the staging table is the
    session's); on PostgreSQL 15 a hash join of a million text ids costs the server more
    than sending the keys (BENCHMARKS.md, session 12)."""
    if where not in ("client", "server"):
        raise UsageError(f"compare_keys: where= is 'client' or 'server', not {where!r}")
    from ..security import ENVELOPE_HEAD, TOKEN_PREFIX, keys_configured

    store = CentralStore(url_or_engine)
    if not store.compares_keys:
        return None
    store.require_schema()
    # without keys the full read compares encrypted client text as it is: such rows are fetched
    opaque = () if keys_configured() else (TOKEN_PREFIX, ENVELOPE_HEAD)
    try:
        if where == "client":
            return diff_keys(keys.cast(KEY_SCHEMA), store.central_keys(opaque=opaque))
        out = store.compare_keys(keys.cast(KEY_SCHEMA), opaque=opaque)
    except driver_errors() as exc:
        raise translate(exc, store=store.display, context="reconcile (push-down)") from exc
    return out.select(DIFF_SCHEMA.names).cast(DIFF_SCHEMA)


def diff_keys(keys: pa.Table, central: pa.Table) -> pa.Table:
    """:data:`DIFF_SCHEMA` rows from the local ``keys`` and the store's ``central`` keys
    (:meth:`~invoicekit.io.backends.base.CentralStore.central_keys`), as the server's join
    gives them: local ids whose keys differ (version or checksum unequal or null; currency,
    modified_at or deleted_at distinct; central client text opaque) or that the store lacks,
    and the central-only ids; one hash lookup of the local ids in the central ones."""
    c_ids = _flat(central.column("id"))
    pos = _flat(pc.index_in(keys.column("ik_id"), value_set=c_ids))

    def at(name: str) -> pa.Array:
        return _flat(central.column(name)).take(pos)

    def same(a: pa.Array, b: pa.Array) -> pa.Array:  # IS NOT DISTINCT FROM
        both = pc.and_(a.is_valid(), b.is_valid())
        return pc.if_else(both, pc.fill_null(pc.equal(a, b), False), pc.and_(a.is_null(), b.is_null()))

    equal = pc.and_(pc.fill_null(pc.equal(at("version"), _flat(keys.column("ik_version"))), False),
                    pc.fill_null(pc.equal(at("checksum"), _flat(keys.column("ik_checksum"))), False))
    for mine, theirs in (("ik_currency", "currency"), ("ik_modified_at", "modified_at"),
                         ("ik_deleted_at", "deleted_at")):
        equal = pc.and_(equal, same(at(theirs), _flat(keys.column(mine))))
    differ = pc.invert(pc.and_(equal, pc.invert(pc.fill_null(at("ik_opaque"), True))))
    moved = pos.filter(differ)
    n = len(moved)
    mine = {"id": _flat(keys.column("ik_id")).filter(differ), "in_local": pa.array(np.ones(n, np.bool_)),
            "in_central": moved.is_valid(),
            **{name: _flat(central.column(name)).take(moved) for name in _CENTRAL_KEYS}}
    seen = np.zeros(len(c_ids), np.bool_)
    seen[pos.drop_null().to_numpy(zero_copy_only=False)] = True
    only = pa.array(~seen)
    n_only = int(len(seen) - seen.sum())
    theirs = {"id": c_ids.filter(only), "in_local": pa.array(np.zeros(n_only, np.bool_)),
              "in_central": pa.array(np.ones(n_only, np.bool_)),
              **{name: _flat(central.column(name)).filter(only) for name in _CENTRAL_KEYS}}
    return pa.concat_tables([pa.table(mine).cast(DIFF_SCHEMA), pa.table(theirs).cast(DIFF_SCHEMA)])


#: the central keys a DIFF_SCHEMA row carries
_CENTRAL_KEYS = ("version", "checksum", "modified_at", "deleted_at")


def _flat(values) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
