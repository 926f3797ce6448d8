"""Offline device stores as *other* software writes them: seeded, varied and adversarial.

The field devices' schema (tables ``transactions``, ``sync_queue``, ``app_settings``) leaves
much open, and device apps fill the gaps differently. :func:`write_foreign_store` writes one
such store with nothing but :mod:`sqlite3`, :mod:`json` and :mod:`hashlib`, as a third-party
app would, and returns a :class:`ForeignTruth` saying what a correct sync must make of it.
Nothing here uses invoicekit's own readers or writers, so the stores test the toolkit on
data shaped by other hands.

Conventions of the generated stores (and of the truth):

* Each invoice's history is queued oldest first; queue ids have gaps (a device deletes
  acknowledged rows). Invoices the device synced earlier are in :attr:`ForeignTruth.central`
  (the central state before this sync); their later changes are queued.
* Versions: a new invoice is version 1, each change adds one, a deletion included: deleting
  a row at version ``v`` leaves a tombstone at ``v + 1`` in the central store, whatever
  version the device put in the ``delete`` payload (the row's own, or ``v + 1``).
* Checksums follow the design: SHA-256 of ``json.dumps({invoice_number, client_data,
  line_items, total_amount}, sort_keys=True, separators=(',', ':'))`` with the total as a
  float and the JSON columns as the stored text, or, for a device that checksums the
  objects it holds (kind ``nested_payload``), as those nested objects (see
  :func:`design_checksum`).
* Line items are ``{"description", "quantity", "unit_price"}`` whose products sum exactly
  (in decimal) to ``total_amount``, except in deliberately poisoned rows.

Kinds (:data:`KINDS`), each a variant the devices' schema leaves open:

``kept_row_delete``
    honours ``sync_queue``'s foreign key: a deleted invoice keeps its row (content and
    version unchanged, ``pending``, ``modified_at`` the time of deletion) and queues
    ``delete`` with payload ``{"id", "version"}`` (the row's version).
``removed_row_delete``
    removes the row and queues ``delete`` with the full row as payload.
``nested_payload``
    payloads hold ``client_data`` and ``line_items`` as nested JSON; the device checksums
    those objects; rows store ``json.dumps`` text, some in another key order or spacing;
    a few payloads were altered after checksumming (must be quarantined).
``no_currency``
    no currency column, payload key or setting anywhere (the devices' schema has none).
``currency_setting``
    no currency column; ``app_settings`` key ``currency`` holds it (JSON text or plain).
``resent_ops``
    operations queued twice (identical but for the queue id: a resend after a lost
    acknowledgement) and re-queued with a later ``created_at``: redeliveries.
``unknown_ops``
    operations named ``remove``, ``DELETE``, ``Update``, ``upsert``: quarantined.
``id_mismatch``
    payloads whose ``id`` names another existing invoice than their queue row's
    ``transaction_id``: quarantined, and the other invoice left alone.
``poisoned``
    NUL characters, totals beyond NUMERIC(12,2), years 0 and 10000 and ``0000-00-00``,
    versions of 2**31 and more, NaN and Infinity: quarantined, with good operations
    queued before and after each.
``timestamps``
    ``created_at``/``modified_at`` written every way devices write them (ISO with ``T`` or
    a space, with or without microseconds, ``Z``, ``+02:00``, epoch INTEGER and REAL).
``mixed``
    all of the above mixed per invoice.

Every kind also varies what SQLite allows: totals stored as REAL, INTEGER or TEXT, versions
as TEXT, ``sync_status`` casing, unknown extra columns, the design's columns in another
order or declared without types, WAL or rollback journal, JSON with and without
``ensure_ascii``, names in many scripts (umlauts, CJK, emoji).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pandas as pd

from ._html import frame_html
from .errors import UsageError

__all__ = ["write_foreign_store", "write_foreign_suite", "ForeignTruth", "design_checksum", "KINDS", "ACTIONS"]

KINDS = ("kept_row_delete", "removed_row_delete", "nested_payload", "no_currency", "currency_setting",
         "resent_ops", "unknown_ops", "id_mismatch", "poisoned", "timestamps", "mixed")

#: what a correct engine does with a queue row: apply it, recognise it as applied, or set it aside
ACTIONS = ("sync", "redelivery", "quarantine")

_UTC = timezone.utc
_BASE = datetime(2026, 3, 2, 7, 30, tzinfo=_UTC)
_CENTS = Decimal("0.01")

# -- what the devices write about ----------------------------------------------------------

_NAMES = ["Müller Bäckerei GmbH", "Zoë Ångström", "株式会社山田商事", "北京星光科技有限公司", "Café Olé ☕",
          "🚀 Rocket Repairs Ltd", "Łódź Ślusarstwo Sp. z o.o.", "Ærø Fisk ApS", "Straße & Söhne KG",
          "O'Brien \"The Plumber\" Ltd", "Ñandú Diseño S.L.", "Ελληνικά Τρόφιμα ΑΕ", "Иванов и партнёры",
          "서울 디자인 스튜디오", "Nguyễn Văn Thành", "Back\\slash Consulting", "Robert'); DROP TABLE transactions;--",
          "Dvořák Elektro s.r.o.", "Jürgen Weiß", "Fjällräven Örebro AB"]
_STREETS = ["Hauptstraße 5", "Bahnhofplatz 1\n8001 Zürich", "1-2-3 Shibuya, 東京都", "Rue de l'Église 12",
            "ul. Piotrkowska 104", "Harbour Road 7, Apt. #4", "Via dei Mille 3", "Kungsgatan 44"]
_ITEMS = ["Consulting (hour)", "Beratung vor Ort", "設計作業", "Installation ✔", "Ersatzteil Ø 12 mm",
          "Emoji sticker pack 🎉", "Travel — flat rate", "Wartungsvertrag 12 Monate", "Café & croissants",
          "Cable, 5 m", "Line with \"quotes\"", "Tab\tseparated item", "Licence 1/12"]
_QUANTITY_DENOMINATORS = [1, 1, 1, 1, 2, 4, 8]
_CURRENCIES = ["EUR", "EUR", "USD", "GBP", "CHF", "SEK", "PLN"]
_DEVICE_IDS = ["tablet-07", "field-phone-3", "kiosk-Zürich", "android-a1b2c3"]

# -- timestamp styles ------------------------------------------------------------------------

_TS_STYLES = ("iso_t_us", "iso_t", "iso_space", "iso_space_us", "iso_z", "iso_z_ms", "offset", "offset_us",
              "epoch_int", "epoch_float")
_SUBSECOND = ("iso_t_us", "iso_space_us", "iso_z_ms", "offset_us", "epoch_float")
#: fractions exact in every sub-second style (milliseconds, microseconds and binary floats)
_FRACTIONS = [0, 250_000, 500_000, 750_000]
_PLUS2 = timezone(timedelta(hours=2))


def _ts(at: datetime, style: str) -> str | int | float:
    """``at`` (aware, UTC) written in ``style``."""
    if style == "epoch_int":
        return int(at.timestamp())
    if style == "epoch_float":
        return at.timestamp()
    if style.startswith("offset"):
        local = at.astimezone(_PLUS2)
        frac = f".{local.microsecond:06d}" if style == "offset_us" else ""
        return f"{local:%Y-%m-%dT%H:%M:%S}{frac}+02:00"
    naive = f"{at:%Y-%m-%d}{' ' if style.startswith('iso_space') else 'T'}{at:%H:%M:%S}"
    if style in ("iso_t_us", "iso_space_us"):
        return f"{naive}.{at.microsecond:06d}"
    if style == "iso_z_ms":
        return f"{naive}.{at.microsecond // 1000:03d}Z"
    return naive + ("Z" if style == "iso_z" else "")


# -- checksums and JSON ------------------------------------------------------------------------


def design_checksum(data: dict) -> str:
    """The devices' checksum, verbatim from the design: SHA-256 of the compact, key-sorted JSON of
    ``invoice_number``, ``client_data``, ``line_items`` and ``total_amount`` as ``data`` holds them.

    >>> design_checksum({"invoice_number": "A-1", "client_data": "{}", "line_items": "[]", "total_amount": 0.0})[:12]
    '371d987f4ab4'
    """
    relevant = ["invoice_number", "client_data", "line_items", "total_amount"]
    text = json.dumps({k: data.get(k) for k in relevant}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


_JSON_STYLES = {
    "default": {},
    "compact": {"separators": (",", ":")},
    "unicode": {"ensure_ascii": False},
    "unicode_compact": {"ensure_ascii": False, "separators": (",", ":")},
    "indent": {"indent": 2, "ensure_ascii": False},
}


def _dumps(obj: Any, style: str) -> str:
    return json.dumps(obj, **_JSON_STYLES[style])


def _reordered(obj: Any) -> Any:
    """``obj`` with every object's keys in reverse order (same parsed value, other text)."""
    if isinstance(obj, dict):
        return {k: _reordered(obj[k]) for k in reversed(list(obj))}
    if isinstance(obj, list):
        return [_reordered(v) for v in obj]
    return obj


# -- the model ----------------------------------------------------------------------------------


@dataclass
class _Profile:
    """Store-wide choices of one device app."""

    kind: str
    layout: str  # design | reordered | loose
    currency_mode: str  # column | setting | none
    currency: str | None  # fixed currency (column mode), the setting's value, or None
    setting_json: bool
    ts_style: str | None  # one style for every timestamp, or None: a style per value
    json_styles: list[str]
    client_order: list[str]
    line_order: list[str]
    payload_order: list[str]
    wal: bool
    fk: bool
    upper_ids: bool
    device_id: str
    foreign_op_id: bool
    extra_columns: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Content:
    """One version of an invoice, as the device holds and stores it."""

    version: int
    invoice_number: str
    client: dict
    lines: list[dict]
    total: Decimal | float  # Decimal, or a float when poisoned (NaN, inf)
    currency: str | None
    created: datetime
    at: datetime
    rstyle: str  # how the row writes this version's timestamps
    pstyle: str  # how its payloads write them
    client_text: str = ""
    items_text: str = ""
    checksum: str = ""
    created_text: str | None = None  # a poisoned literal replacing the created timestamp
    version_stored: int | str | None = None


@dataclass
class _Op:
    tid: str
    operation: str
    payload: str
    created_at: str | int | float
    order: datetime
    action: str
    why: str
    effect: str | None  # 'write' | 'delete' | None
    content: _Content | None
    payload_id: str | None
    payload_version: int | None
    at: datetime
    retry_count: int = 0
    op_key: int = 0  # creation order: breaks ties of ``order``
    app_op_id: int = 0  # the app's own op id (kind ``mixed``): a resend keeps its original's
    app_status: str = "queued"  # the app's own queue status (an extra column of some layouts)
    queue_id: int = 0


@dataclass
class _Invoice:
    id: str
    story: str
    nested: bool
    other_text: bool
    central: _Content | None = None
    row: _Content | None = None
    row_modified: tuple[datetime, str] | None = None  # a kept-row deletion's time and style
    row_status: str = "pending"
    ops: list[_Op] = field(default_factory=list)


# -- store-wide choices ----------------------------------------------------------------------------

_LAYOUTS = ("design", "reordered", "loose")


def _profile(rng: random.Random, kind: str, seed: int, currency: str | None) -> _Profile:
    layout = _LAYOUTS[(KINDS.index(kind) + seed) % len(_LAYOUTS)]
    mode = {"no_currency": "none", "currency_setting": "setting"}.get(kind, "column")
    if kind == "mixed":
        mode = rng.choice(["column", "setting", "none"] if currency is None else ["column", "setting"])
    fixed = currency if mode == "column" else (currency or "CHF") if mode == "setting" else None
    client_order = rng.choice([["name", "email", "address", "tax_id"], ["address", "email", "name", "tax_id"],
                               ["email", "name", "tax_id", "address"]])
    payload_order = ["id", "invoice_number", "client_data", "line_items", "total_amount", "currency",
                     "created_at", "modified_at", "version", "checksum"]
    if rng.random() < 0.5:
        payload_order = sorted(payload_order)
    extras = {}
    if layout != "design" or kind == "mixed":
        extras = {"transactions": ["device_id", "pdf_path", "notes", "is_draft"],
                  "sync_queue": ["device_id", "last_attempt_at", "priority"] + (["status"] if rng.random() < 0.5
                                                                               else []),
                  "app_settings": ["updated_at"]}
    return _Profile(
        kind=kind, layout=layout, currency_mode=mode, currency=fixed, setting_json=rng.random() < 0.5,
        ts_style=None if kind in ("timestamps", "mixed") else rng.choice(["iso_t_us", "iso_t_us", "iso_space",
                                                                           "iso_t", "iso_z_ms"]),
        json_styles=rng.sample(["default", "default", "compact", "unicode", "unicode_compact", "indent"], 3),
        client_order=client_order, line_order=rng.choice([["description", "quantity", "unit_price"],
                                                          ["unit_price", "quantity", "description"]]),
        payload_order=payload_order, wal=rng.random() < 0.5, fk=kind == "kept_row_delete",
        upper_ids=rng.random() < 0.2, device_id=rng.choice(_DEVICE_IDS), foreign_op_id=kind == "mixed",
        extra_columns=extras,
    )


# -- building histories ------------------------------------------------------------------------------


class _Builder:
    """Builds invoices and their queued operations for one store."""

    def __init__(self, rng: random.Random, prof: _Profile) -> None:
        self.rng = rng
        self.prof = prof
        self.invoices: list[_Invoice] = []
        self.op_keys = 0

    # ids, times, styles
    def new_id(self) -> str:
        text = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return text.upper() if self.prof.upper_ids else text

    def styles(self) -> tuple[str, str, str]:
        """(row, payload, queue) timestamp styles of one event."""
        if self.prof.ts_style is not None:
            return (self.prof.ts_style,) * 3
        if self.rng.random() < 0.5:  # half the events with fractions of a second
            return tuple(self.rng.choice(_SUBSECOND) for _ in range(3))
        # whole seconds: an epoch float would be an integral REAL, which a typed column stores as INTEGER
        return tuple(self.rng.choice([s for s in _TS_STYLES if s != "epoch_float"]) for _ in range(3))

    def instant(self, after: datetime, styles: tuple[str, ...], *, lo: int = 5, hi: int = 1200) -> datetime:
        at = after + timedelta(minutes=self.rng.randint(lo, hi), seconds=self.rng.randint(0, 59))
        frac = 0
        if all(s in _SUBSECOND for s in styles):
            frac = self.rng.choice(_FRACTIONS[1:] if "epoch_float" in styles else _FRACTIONS)
        return at.replace(microsecond=frac)

    def start(self) -> datetime:
        return _BASE + timedelta(minutes=self.rng.randint(0, 5 * 24 * 60))

    # content
    def line(self) -> dict:
        rng = self.rng
        denom = rng.choice(_QUANTITY_DENOMINATORS)
        qty = Decimal(rng.choice([1, 1, 2, 3, 5, 10, 12])) if denom == 1 else Decimal(rng.randint(1, 4 * denom)) / denom
        cents = denom * rng.randint(1, 3000) * rng.choice([1, 1, 5, 100])
        price = Decimal(cents) / 100
        values = {"description": rng.choice(_ITEMS), "quantity": int(qty) if qty == qty.to_integral_value()
                  else float(qty), "unit_price": float(price)}
        return {k: values[k] for k in self.prof.line_order}

    def client(self) -> dict:
        rng = self.rng
        name = rng.choice(_NAMES)
        slug = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum())[:12] or "client"
        values = {"name": name, "email": f"billing@{slug}.example" if rng.random() < 0.9 else None,
                  "address": rng.choice(_STREETS), "tax_id": rng.choice([None, f"CHE-{rng.randint(100, 999)}.123.456",
                                                                         f"DE{rng.randint(10**8, 10**9 - 1)}"])}
        out = {k: values[k] for k in self.prof.client_order}
        if rng.random() < 0.2:
            out["phone"] = f"+41 44 {rng.randint(100, 999)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
        return out

    def currency(self) -> str | None:
        if self.prof.currency_mode != "column":
            return None
        return self.prof.currency or self.rng.choice(_CURRENCIES)

    def first_content(self, version: int, created: datetime, at: datetime, styles: tuple[str, ...]) -> _Content:
        rng = self.rng
        number = rng.choice(["INV-2026-{:05d}", "R{:06d}", "2026/{}", "F-{:04d}-ZH"]).format(rng.randint(1, 99999))
        lines = [self.line() for _ in range(rng.choice([1, 1, 2, 3, 4]))]
        return _Content(version=version, invoice_number=number, client=self.client(), lines=lines,
                        total=_total(lines), currency=self.currency(), created=created, at=at,
                        rstyle=styles[0], pstyle=styles[1])

    def edited(self, c: _Content, at: datetime, styles: tuple[str, ...], *, what: str | None = None) -> _Content:
        """The next version of ``c``: one realistic change."""
        rng = self.rng
        client, lines, number, currency = dict(c.client), [dict(x) for x in c.lines], c.invoice_number, c.currency
        what = what or rng.choice(["quantity", "add_line", "drop_line", "address", "number"])
        if what == "quantity":
            lines[rng.randrange(len(lines))]["quantity"] = rng.choice([1, 2, 4, 6, 20])
        elif what == "add_line" or (what == "drop_line" and len(lines) == 1):
            lines.append(self.line())
        elif what == "drop_line":
            lines.pop(rng.randrange(len(lines)))
        elif what == "address":
            client["address"] = rng.choice([s for s in _STREETS if s != client.get("address")])
        elif what == "number":
            number = number + "-A"
        elif what == "currency":
            currency = rng.choice([x for x in _CURRENCIES if x != currency])
        return _Content(version=c.version + 1, invoice_number=number, client=client, lines=lines,
                        total=_total(lines), currency=currency, created=c.created, at=at,
                        rstyle=styles[0], pstyle=styles[1], created_text=c.created_text)

    def render(self, inv: _Invoice, c: _Content) -> _Content:
        """Fill in ``c``'s stored text and checksum as the device writes them."""
        if inv.nested:
            c.client_text = _dumps(_reordered(c.client), self.rng.choice(["compact", "unicode", "indent"])) \
                if inv.other_text else json.dumps(c.client)
            c.items_text = _dumps(_reordered(c.lines), self.rng.choice(["compact", "unicode"])) \
                if inv.other_text else json.dumps(c.lines)
            client, items = c.client, c.lines
        else:
            style = self.rng.choice(self.prof.json_styles)
            c.client_text, c.items_text = _dumps(c.client, style), _dumps(c.lines, style)
            client, items = c.client_text, c.items_text
        c.checksum = design_checksum({"invoice_number": c.invoice_number, "client_data": client,
                                      "line_items": items, "total_amount": float(c.total)})
        if c.version_stored is None:
            c.version_stored = c.version
            if self.prof.layout == "loose" and self.rng.random() < 0.3:
                c.version_stored = str(c.version)
        return c

    # payloads and queue rows
    def payload(self, inv: _Invoice, c: _Content, *, pid: str | None = None, version: int | None = None,
                extra: dict | None = None) -> str:
        rng = self.rng
        total: Any = float(c.total)
        if self.prof.layout == "loose" and isinstance(c.total, Decimal) and rng.random() < 0.2:
            total = f"{c.total:.2f}"
        v = c.version if version is None else version
        values = {
            "id": pid or inv.id, "invoice_number": c.invoice_number,
            "client_data": c.client if inv.nested else c.client_text,
            "line_items": c.lines if inv.nested else c.items_text,
            "total_amount": total, "currency": c.currency,
            "created_at": c.created_text or _ts(c.created, c.pstyle), "modified_at": _ts(c.at, c.pstyle),
            "version": str(v) if self.prof.layout == "loose" and rng.random() < 0.15 else v,
            "checksum": c.checksum,
        }
        order = [k for k in self.prof.payload_order if k != "currency" or self.prof.currency_mode == "column"]
        body = {k: values[k] for k in order}
        if rng.random() < 0.25:
            body["sync_status"] = "pending"
        if rng.random() < 0.2:
            body["device_id"] = self.prof.device_id
        body.update(extra or {})
        return _dumps(body, rng.choice(["default", "compact", "unicode_compact"]))

    def queue(self, inv: _Invoice, operation: str, payload: str, at: datetime, qstyle: str, *, action: str = "sync",
              why: str, effect: str | None, content: _Content | None, payload_id: str | None = None,
              payload_version: int | None = None) -> _Op:
        self.op_keys += 1
        op = _Op(tid=inv.id, operation=operation, payload=payload, created_at=_ts(at, qstyle), order=at,
                 action=action, why=why, effect=effect, content=content,
                 payload_id=inv.id if payload_id is None else payload_id,
                 payload_version=content.version if payload_version is None and content else payload_version,
                 at=at, retry_count=self.rng.choice([0, 0, 0, 1, 3]), op_key=self.op_keys, app_op_id=self.op_keys,
                 app_status=self.rng.choice(["queued", "sending"]))
        inv.ops.append(op)
        return op

    def write_op(self, inv: _Invoice, operation: str, c: _Content, qstyle: str, *, why: str,
                 action: str = "sync") -> _Op:
        self.render(inv, c)
        return self.queue(inv, operation, self.payload(inv, c), c.at, qstyle, action=action, why=why,
                          effect="write", content=c)

    # one invoice's life
    def lifecycle(self, story: str, *, synced: bool, edits: int, end: str = "alive", nested: bool = False,
                  other_text: bool = False, t0: datetime | None = None) -> _Invoice:
        """An invoice synced earlier (``synced``) or created offline, edited ``edits`` times
        offline, then left alive, deleted keeping its row (``kept``) or removing it (``removed``)."""
        inv = _Invoice(id=self.new_id(), story=story, nested=nested, other_text=other_text)
        self.invoices.append(inv)
        t = t0 or self.start()
        styles = self.styles()
        if synced:
            created = (t - timedelta(days=self.rng.randint(3, 40))).replace(microsecond=0)
            cur = self.first_content(self.rng.randint(1, 4), created, self.instant(created, styles), styles)
            inv.central = self.render(inv, cur)
        else:
            cur = self.first_content(1, t.replace(microsecond=0), t.replace(microsecond=0), styles)
            self.write_op(inv, "insert", cur, styles[2], why="created offline")
        for _ in range(edits):
            styles = self.styles()
            cur = self.edited(cur, self.instant(max(cur.at, t), styles), styles)
            self.write_op(inv, "update", cur, styles[2], why="edited offline")
        inv.row = cur
        inv.row_status = "synced" if synced and not edits else "pending"
        if end == "kept":
            self.kept_delete(inv, cur)
        elif end == "removed":
            self.removed_delete(inv, cur)
        return inv

    def kept_delete(self, inv: _Invoice, cur: _Content, *, operation: str = "delete", action: str = "sync",
                    why: str = "deleted; the device kept the row (foreign key)") -> _Op:
        styles = self.styles()
        at = self.instant(cur.at, styles)
        inv.row_modified, inv.row_status = (at, styles[0]), "pending"
        body = {"id": inv.id, "version": cur.version_stored if self.prof.layout == "loose" else cur.version}
        if self.rng.random() < 0.3:
            body = {"version": body["version"], "id": inv.id}
        return self.queue(inv, operation, json.dumps(body), at, styles[2], action=action, why=why,
                          effect="delete", content=cur, payload_version=cur.version)

    def removed_delete(self, inv: _Invoice, cur: _Content, *, operation: str = "delete", action: str = "sync",
                       why: str | None = None) -> _Op:
        styles = self.styles()
        at = self.instant(cur.at, styles)
        inv.row = None
        bumped = self.rng.random() < 0.5
        extra = {"deleted_at": _ts(at, styles[1])} if self.rng.random() < 0.5 else {}
        version = cur.version + 1 if bumped else cur.version
        why = why or ("deleted; row removed; payload carries the tombstone's version" if bumped
                      else "deleted; row removed; payload is the row as removed (its version)")
        return self.queue(inv, operation, self.payload(inv, cur, version=version, extra=extra), at, styles[2],
                          action=action, why=why, effect="delete", content=cur, payload_version=version)


def _total(lines: list[dict]) -> Decimal:
    return sum((Decimal(str(x["quantity"])) * Decimal(str(x["unit_price"])) for x in lines),
               Decimal(0)).quantize(_CENTS)


# -- stories: one (or two) invoices each -------------------------------------------------------------


def _s_synced(b: _Builder, story: str) -> None:
    b.lifecycle(story, synced=True, edits=0, nested=b.prof.kind == "nested_payload")


def _s_new(b: _Builder, story: str, **kw) -> None:
    b.lifecycle(story, synced=False, edits=b.rng.choice([0, 0, 1, 2]), nested=b.prof.kind == "nested_payload", **kw)


def _s_edited(b: _Builder, story: str, **kw) -> None:
    b.lifecycle(story, synced=True, edits=b.rng.choice([1, 1, 2, 3]), nested=b.prof.kind == "nested_payload", **kw)


def _s_edited_currency(b: _Builder, story: str) -> None:
    inv = b.lifecycle(story, synced=True, edits=0)
    styles = b.styles()
    prev = inv.row
    cur = b.edited(prev, b.instant(prev.at, styles), styles, what="currency")
    cur.client_text, cur.items_text, cur.checksum, cur.version_stored = prev.client_text, prev.items_text, \
        prev.checksum, cur.version
    b.queue(inv, "update", b.payload(inv, cur), cur.at, styles[2], why="currency changed offline (same checksum)",
            effect="write", content=cur)
    inv.row, inv.row_status = cur, "pending"


def _s_deleted_kept(b: _Builder, story: str) -> None:
    synced = story != "new_then_deleted_kept_row"
    b.lifecycle(story, synced=synced, edits=b.rng.choice([0, 0, 1]), end="kept")


def _s_deleted_removed(b: _Builder, story: str) -> None:
    synced = story != "new_then_deleted_removed_row"
    b.lifecycle(story, synced=synced, edits=b.rng.choice([0, 0, 1]), end="removed")


def _s_nested(b: _Builder, story: str) -> None:
    b.lifecycle(story, synced=b.rng.random() < 0.5, edits=b.rng.choice([0, 1, 2]), nested=True,
                other_text=story == "nested_other_text")


def _s_nested_tampered(b: _Builder, story: str) -> None:
    inv = b.lifecycle(story, synced=True, edits=0, nested=True, other_text=b.rng.random() < 0.5)
    styles = b.styles()
    cur = b.render(inv, b.edited(inv.row, b.instant(inv.row.at, styles), styles, what="quantity"))
    forged = replace(cur, lines=[dict(x) for x in cur.lines])
    forged.lines[0]["unit_price"] = float(Decimal(str(forged.lines[0]["unit_price"])) + 100)
    b.queue(inv, "update", b.payload(inv, forged), cur.at, styles[2], action="quarantine",
            why="nested payload altered after checksumming", effect=None, content=cur)
    inv.row, inv.row_status = cur, "pending"


def _s_resent(b: _Builder, story: str) -> None:
    end = b.rng.choice(["alive", "alive", "removed", "kept"])
    synced, edits = b.rng.random() < 0.5, b.rng.choice([0, 1, 2])
    inv = b.lifecycle(story, synced=synced, edits=edits or int(synced and end == "alive"), end=end)
    original = b.rng.choice(inv.ops)
    later = [op.order for op in inv.ops if op.order > original.order]
    for _ in range(b.rng.choice([1, 1, 2])):
        delay = timedelta(minutes=b.rng.randint(1, 180))
        if later and b.rng.random() < 0.7:  # resent before the invoice's next operation
            delay = min(delay, (later[0] - original.order) / 2)
        order = original.order + delay
        b.op_keys += 1
        if story == "resent_exact":
            copy = replace(original, order=order, action="redelivery", op_key=b.op_keys,
                           why=f"resend of queue row with the same content ({original.operation} v"
                               f"{original.payload_version}) after a lost acknowledgement")
        else:
            copy = replace(original, order=order, created_at=_ts(order.replace(microsecond=0), b.styles()[2]),
                           action="redelivery", op_key=b.op_keys, app_op_id=b.op_keys, retry_count=0,
                           why=f"the same payload re-queued later ({original.operation} v{original.payload_version})")
        inv.ops.append(copy)


def _s_unknown(b: _Builder, story: str) -> None:
    name = story.removeprefix("unknown_").removeprefix("edited_then_unknown_")
    why = f"unknown operation {name!r}"
    if name == "upsert":
        inv = b.lifecycle(story, synced=False, edits=0)
        inv.ops[-1].operation, inv.ops[-1].action, inv.ops[-1].why, inv.ops[-1].effect = name, "quarantine", why, None
        return
    inv = b.lifecycle(story, synced=True, edits=1 if story.startswith("edited_then") else 0)
    if name == "Update":
        styles = b.styles()
        cur = b.edited(inv.row, b.instant(inv.row.at, styles), styles)
        op = b.write_op(inv, name, cur, styles[2], why=why, action="quarantine")
        op.effect, inv.row, inv.row_status = None, cur, "pending"
    elif name == "DELETE":
        op = b.removed_delete(inv, inv.row, operation=name, action="quarantine", why=why + " (row removed)")
        op.effect = None
    else:
        op = b.kept_delete(inv, inv.row, operation=name, action="quarantine", why=why + " (row kept)")
        op.effect = None


def _s_id_mismatch(b: _Builder, story: str) -> None:
    target = b.lifecycle("mismatch_target", synced=True, edits=b.rng.choice([0, 0, 1]))
    inv = b.lifecycle(story, synced=True, edits=0)
    styles = b.styles()
    after = max(inv.row.at, target.row.at)
    if story == "id_mismatch_own_content":  # its own edit, but the payload names the other invoice
        cur = b.render(inv, b.edited(inv.row, b.instant(after, styles), styles))
        payload, version = b.payload(inv, cur, pid=target.id), cur.version
        why = "payload of this invoice's edit names another invoice's id"
    else:  # a plausible next version of the other invoice, queued under this invoice's row
        cur = b.render(inv, b.edited(inv.row, b.instant(after, styles), styles))
        theirs = b.render(target, b.edited(target.row, cur.at, styles))
        payload, version = b.payload(target, theirs), theirs.version
        why = "queue row carries another invoice's next version"
    b.queue(inv, "update", payload, cur.at, styles[2], action="quarantine", why=why, effect=None,
            content=cur, payload_id=target.id, payload_version=version)
    inv.row, inv.row_status = cur, "pending"


_POISONS = {
    "poison_nul_text": "NUL character in invoice_number (raw in the row, \\u0000 in the payload)",
    "poison_nul_json": "NUL character inside client_data and line_items JSON (\\u0000)",
    "poison_total_overflow": "total 1e13, beyond NUMERIC(12,2)",
    "poison_date_year0": "created_at in year 0",
    "poison_date_zero": "created_at '0000-00-00 00:00:00'",
    "poison_date_year10000": "created_at in year 10000",
    "poison_version_2_31": "version 2**31",
    "poison_nan": "NaN total and unit price",
    "poison_infinity": "Infinity total and unit price",
}


def _poisoned(b: _Builder, story: str, c: _Content) -> _Content:
    c = replace(c, lines=[dict(x) for x in c.lines], client=dict(c.client), version_stored=None)
    if story == "poison_nul_text":
        c.invoice_number += "\x00"
    elif story == "poison_nul_json":
        c.client["name"] = c.client["name"][:4] + "\x00" + c.client["name"][4:]
        c.lines[0]["description"] += "\x00"
    elif story == "poison_total_overflow":
        c.lines = [{"description": "Gold bars", "quantity": 1, "unit_price": 1e13}]
        c.total = Decimal("10000000000000.00")
    elif story in ("poison_date_year0", "poison_date_zero", "poison_date_year10000"):
        c.created_text = {"poison_date_year0": "0000-01-01T00:00:00", "poison_date_zero": "0000-00-00 00:00:00",
                          "poison_date_year10000": "10000-01-01T00:00:00"}[story]
    elif story == "poison_version_2_31":
        c.version = 2**31 + b.rng.randint(0, 1000)
    else:
        bad = float("nan") if story == "poison_nan" else float("inf")
        c.lines[0]["unit_price"] = bad
        c.total = bad
    return c


def _s_poison(b: _Builder, story: str) -> None:
    t = _BASE + timedelta(hours=b.rng.randint(36, 100))  # between the early and the late anchors
    synced = b.rng.random() < 0.5
    inv = b.lifecycle(story, synced=synced, edits=0, t0=t)
    styles = b.styles()
    if synced:
        cur = b.edited(inv.row, b.instant(max(inv.row.at, t), styles), styles)
        op_name = "update"
    else:
        inv.ops.clear()
        cur = inv.row
        op_name = "insert"
    cur = _poisoned(b, story, cur)
    b.write_op(inv, op_name, cur, styles[2], why=_POISONS[story], action="quarantine")
    inv.ops[-1].effect = None
    inv.row, inv.row_status = cur, "pending"


_STORIES = {
    "synced": _s_synced, "new_offline": _s_new, "edited_offline": _s_edited,
    "edited_offline_currency": _s_edited_currency,
    "deleted_kept_row": _s_deleted_kept, "new_then_deleted_kept_row": _s_deleted_kept,
    "deleted_removed_row": _s_deleted_removed, "new_then_deleted_removed_row": _s_deleted_removed,
    "nested_same_text": _s_nested, "nested_other_text": _s_nested, "nested_tampered": _s_nested_tampered,
    "resent_exact": _s_resent, "resent_requeued": _s_resent,
    "unknown_remove": _s_unknown, "unknown_DELETE": _s_unknown, "unknown_Update": _s_unknown,
    "unknown_upsert": _s_unknown, "edited_then_unknown_remove": _s_unknown,
    "id_mismatch_own_content": _s_id_mismatch, "id_mismatch_other_content": _s_id_mismatch,
    **{name: _s_poison for name in _POISONS},
}

_COMMON = {"synced": 3, "new_offline": 3, "edited_offline": 3}

#: per kind: the stories every store of the kind has, and the weights of the rest
_PLAN: dict[str, tuple[list[str], dict[str, int]]] = {
    "kept_row_delete": (["deleted_kept_row", "deleted_kept_row", "new_then_deleted_kept_row"],
                        {**_COMMON, "deleted_kept_row": 3, "edited_offline_currency": 1}),
    "removed_row_delete": (["deleted_removed_row", "deleted_removed_row", "new_then_deleted_removed_row"],
                           {**_COMMON, "deleted_removed_row": 3, "edited_offline_currency": 1}),
    "nested_payload": (["nested_same_text", "nested_other_text", "nested_other_text", "nested_tampered"],
                       {**_COMMON, "nested_other_text": 3, "nested_same_text": 1}),
    "no_currency": ([], {**_COMMON, "deleted_kept_row": 1, "deleted_removed_row": 1}),
    "currency_setting": ([], {**_COMMON, "deleted_kept_row": 1, "deleted_removed_row": 1}),
    "resent_ops": (["resent_exact", "resent_exact", "resent_requeued", "resent_requeued"],
                   {**_COMMON, "resent_exact": 2, "resent_requeued": 2}),
    "unknown_ops": (["unknown_remove", "unknown_DELETE", "unknown_Update", "unknown_upsert",
                     "edited_then_unknown_remove"], dict(_COMMON)),
    "id_mismatch": (["id_mismatch_own_content", "id_mismatch_other_content"], dict(_COMMON)),
    "poisoned": (list(_POISONS), dict(_COMMON)),
    "timestamps": ([], {**_COMMON, "deleted_kept_row": 1, "deleted_removed_row": 1}),
    "mixed": ([], {**{name: 1 for name in _STORIES}, **{k: 6 for k in _COMMON}}),
}

#: ``mixed`` has a story of each of these families at least
_MIXED_FAMILIES = [["deleted_kept_row", "new_then_deleted_kept_row"],
                   ["deleted_removed_row", "new_then_deleted_removed_row"],
                   ["nested_same_text", "nested_other_text", "nested_tampered"], ["resent_exact", "resent_requeued"],
                   ["unknown_remove", "unknown_DELETE", "unknown_Update", "unknown_upsert"],
                   ["id_mismatch_own_content", "id_mismatch_other_content"], list(_POISONS)]

#: invoices a story makes (an id mismatch also makes the invoice it points at)
_SIZE = {"id_mismatch_own_content": 2, "id_mismatch_other_content": 2}


def _minimum(kind: str) -> int:
    required = [family[0] for family in _MIXED_FAMILIES] if kind == "mixed" else _PLAN[kind][0]
    return 2 + sum(_SIZE.get(s, 1) for s in required)


def _build(rng: random.Random, prof: _Profile, n: int) -> list[_Invoice]:
    b = _Builder(rng, prof)
    nested = prof.kind == "nested_payload"
    # anchors: an invoice queued before everything else, one after, so every quarantined
    # operation has good ones around it
    b.lifecycle("new_offline", synced=False, edits=1, nested=nested, t0=_BASE - timedelta(hours=6))
    b.lifecycle("edited_offline", synced=True, edits=1, nested=nested, t0=_BASE + timedelta(days=6))
    required, weights = _PLAN[prof.kind]
    if prof.kind == "mixed":  # one story of every family, the rest drawn
        required = [rng.choice(family) for family in _MIXED_FAMILIES]
    if prof.currency_mode != "column" or prof.currency is not None:
        weights = {k: w for k, w in weights.items() if k != "edited_offline_currency"}
    for story in required:
        _STORIES[story](b, story)
    names, w = list(weights), list(weights.values())
    while len(b.invoices) < n:
        story = rng.choices(names, w)[0]
        if len(b.invoices) + _SIZE.get(story, 1) > n:
            continue
        if prof.kind == "mixed":
            _mixed_story(b, story)
        else:
            _STORIES[story](b, story)
    return b.invoices


def _mixed_story(b: _Builder, story: str) -> None:
    """A story of ``mixed``: nested payloads and the text's shape drawn per invoice too."""
    if story in ("synced", "new_offline", "edited_offline") and b.rng.random() < 0.3:
        b.lifecycle(story, synced=story != "new_offline", edits=0 if story == "synced" else 1, nested=True,
                    other_text=b.rng.random() < 0.5)
    else:
        _STORIES[story](b, story)


# -- ordering the queue -------------------------------------------------------------------------------


def _order_queue(rng: random.Random, invoices: list[_Invoice]) -> list[_Op]:
    ops = sorted((op for inv in invoices for op in inv.ops), key=lambda op: (op.order, op.op_key))
    next_id = rng.randint(1, 400)
    for op in ops:
        op.queue_id = next_id
        next_id += 1 if rng.random() < 0.8 else rng.randint(2, 9)
    return ops


# -- writing the file --------------------------------------------------------------------------------

_DESIGN_DDL = """
CREATE TABLE transactions (
    id TEXT PRIMARY KEY,  -- UUID4 for global uniqueness
    invoice_number TEXT,
    client_data TEXT,     -- JSON blob
    line_items TEXT,      -- JSON blob
    total_amount DECIMAL(10,2),
    created_at TIMESTAMP,
    modified_at TIMESTAMP,
    sync_status TEXT DEFAULT 'pending',  -- pending, synced, conflict
    checksum TEXT,        -- SHA256 hash for integrity
    version INTEGER DEFAULT 1
);
CREATE TABLE sync_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT,
    operation TEXT,       -- insert, update, delete
    payload TEXT,         -- JSON data
    retry_count INTEGER DEFAULT 0,
    created_at TIMESTAMP,
    FOREIGN KEY (transaction_id) REFERENCES transactions(id)
);
CREATE TABLE app_settings (
    key TEXT PRIMARY KEY,
    value TEXT,
    sync_required BOOLEAN DEFAULT 0
);
CREATE INDEX idx_sync_status ON transactions(sync_status);
CREATE INDEX idx_created_at ON transactions(created_at);
"""

_TYPED = {
    "transactions": [("id", "TEXT PRIMARY KEY"), ("invoice_number", "TEXT"), ("client_data", "TEXT"),
                     ("line_items", "TEXT"), ("total_amount", "DECIMAL(10,2)"), ("created_at", "TIMESTAMP"),
                     ("modified_at", "TIMESTAMP"), ("sync_status", "TEXT DEFAULT 'pending'"), ("checksum", "TEXT"),
                     ("version", "INTEGER DEFAULT 1")],
    "sync_queue": [("id", "INTEGER PRIMARY KEY AUTOINCREMENT"), ("transaction_id", "TEXT"), ("operation", "TEXT"),
                   ("payload", "TEXT"), ("retry_count", "INTEGER DEFAULT 0"), ("created_at", "TIMESTAMP")],
    "app_settings": [("key", "TEXT PRIMARY KEY"), ("value", "TEXT"), ("sync_required", "BOOLEAN DEFAULT 0")],
}
_EXTRA_DECL = {"device_id": "TEXT", "pdf_path": "TEXT", "notes": "TEXT", "is_draft": "BOOLEAN DEFAULT 0",
               "last_attempt_at": "TIMESTAMP", "priority": "INTEGER DEFAULT 0", "status": "TEXT DEFAULT 'queued'",
               "updated_at": "TIMESTAMP", "op_id": "INTEGER", "currency": "TEXT"}
_FK = "FOREIGN KEY (transaction_id) REFERENCES transactions(id)"


def _ddl(rng: random.Random, prof: _Profile) -> str:
    """The store's DDL: the design's verbatim, or its columns shuffled and extended, or untyped."""
    extra = dict(prof.extra_columns)
    if prof.currency_mode == "column":
        extra["transactions"] = [*extra.get("transactions", []), "currency"]
    if prof.foreign_op_id:
        extra["sync_queue"] = [*extra.get("sync_queue", []), "op_id"]
    if prof.layout == "design":
        adds = [f"ALTER TABLE {t} ADD COLUMN {c} {_EXTRA_DECL[c]};" for t, cols in extra.items() for c in cols]
        return _DESIGN_DDL + "\n".join(adds)
    out = []
    for table, cols in _TYPED.items():
        cols = cols + [(c, _EXTRA_DECL[c]) for c in extra.get(table, [])]
        if prof.layout == "loose":  # a device that declares (almost) no types: values keep their storage class
            cols = [(c, d if "PRIMARY KEY" in d else "") for c, d in cols]
        cols = rng.sample(cols, len(cols))
        body = [f"{c} {d}".strip() for c, d in cols] + ([_FK] if table == "sync_queue" else [])
        out.append(f"CREATE TABLE {table} ({', '.join(body)});")
    return "\n".join(out)


_SETTINGS = [("device_id", None), ("locale", '"de_CH"'), ("schema_version", "3"),
             ("company", json.dumps({"name": "Müller & Söhne AG", "vat": "CHE-123.456.789"})),
             ("last_sync_at", None), ("pdf_template", "classic")]


def _settings(rng: random.Random, prof: _Profile) -> list[dict]:
    rows = []
    for key, value in _SETTINGS:
        if key == "device_id":
            value = json.dumps(prof.device_id)
        elif key == "last_sync_at":
            value = json.dumps(_ts(_BASE - timedelta(days=2), "iso_t_us"))
        rows.append({"key": key, "value": value, "sync_required": rng.choice([0, 1])})
    if prof.currency_mode == "setting":
        rows.append({"key": "currency", "value": json.dumps(prof.currency) if prof.setting_json else prof.currency,
                     "sync_required": 1})
    if "updated_at" in prof.extra_columns.get("app_settings", []):
        for r in rows:
            r["updated_at"] = _ts(_BASE - timedelta(days=30), "iso_space")
    return rows


def _stored_total(rng: random.Random, prof: _Profile, c: _Content) -> Any:
    """The total as the device binds it: a float, or (untyped columns) TEXT '12.50' or an int."""
    if prof.layout == "loose" and isinstance(c.total, Decimal):
        pick = rng.random()
        if pick < 0.3:
            return f"{c.total:.2f}"
        if pick < 0.5 and c.total == c.total.to_integral_value():
            return int(c.total)
    return float(c.total)


def _status(rng: random.Random, status: str) -> str:
    return rng.choice([status, status, status.upper(), status.capitalize()])


def _row(rng: random.Random, prof: _Profile, inv: _Invoice) -> dict:
    c = inv.row
    modified, mstyle = inv.row_modified or (c.at, c.rstyle)
    row = {"id": inv.id, "invoice_number": c.invoice_number, "client_data": c.client_text,
           "line_items": c.items_text, "total_amount": _stored_total(rng, prof, c),
           "created_at": c.created_text or _ts(c.created, c.rstyle), "modified_at": _ts(modified, mstyle),
           "sync_status": _status(rng, inv.row_status), "checksum": c.checksum, "version": c.version_stored}
    if prof.currency_mode == "column":
        row["currency"] = c.currency
    extras = {"device_id": prof.device_id, "pdf_path": f"/sdcard/Invoices/{c.invoice_number}.pdf",
              "notes": rng.choice([None, "", "Bitte bis Monatsende zahlen 🙏", "電話確認済み"]),
              "is_draft": 0}
    row.update({k: extras[k] for k in prof.extra_columns.get("transactions", [])})
    return row


def _queue_row(rng: random.Random, prof: _Profile, op: _Op) -> dict:
    row = {"id": op.queue_id, "transaction_id": op.tid, "operation": op.operation, "payload": op.payload,
           "retry_count": op.retry_count, "created_at": op.created_at}
    extras = {"device_id": prof.device_id, "last_attempt_at": None if not op.retry_count else op.created_at,
              "priority": 0, "status": op.app_status}
    row.update({k: extras[k] for k in prof.extra_columns.get("sync_queue", [])})
    if prof.foreign_op_id:  # the app's own op ids: a counter; a resend keeps its original's
        row["op_id"] = op.app_op_id
    return row


def _insert(conn: sqlite3.Connection, table: str, row: dict) -> None:
    cols = list(row)
    conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                 [row[c] for c in cols])


def _write(path: str, rng: random.Random, prof: _Profile, invoices: list[_Invoice], ops: list[_Op]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if prof.wal:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA user_version={rng.choice([0, 3, 12])}")
        if prof.fk:
            conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(_ddl(rng, prof))
        conn.execute("BEGIN")
        for inv in sorted(invoices, key=lambda i: (i.row.created if i.row else _BASE, i.id)):
            if inv.row is not None:
                _insert(conn, "transactions", _row(rng, prof, inv))
        for op in ops:
            _insert(conn, "sync_queue", _queue_row(rng, prof, op))
        for setting in _settings(rng, prof):
            _insert(conn, "app_settings", setting)
        conn.execute("COMMIT")
    finally:
        conn.close()


# -- the truth ---------------------------------------------------------------------------------------

_EXPECTED_COLUMNS = ["id", "situation", "present", "deleted", "version", "currency", "total", "created_at",
                     "modified_at"]
_QUEUE_COLUMNS = ["queue_id", "transaction_id", "operation", "payload_id", "payload_version", "created_at",
                  "why", "action"]
_CENTRAL_COLUMNS = ["id", "invoice_number", "client_data", "line_items", "total_amount", "currency", "created_at",
                    "modified_at", "version", "checksum"]


@dataclass(frozen=True)
class ForeignTruth:
    """What a correct sync makes of a store :func:`write_foreign_store` wrote.

    ``expected``: one row per invoice id: ``situation`` (its story), and the central store's
    state after a correct drain of the queue on top of ``central``: ``present``, ``deleted``,
    ``version`` (null when absent), ``currency`` (None where the store records none: the
    caller supplies it), ``total`` (decimal text), ``created_at`` and ``modified_at`` (UTC).
    An invoice whose operations are all quarantined keeps its ``central`` state, even where
    the device's row holds a later edit.

    ``queue``: one row per ``sync_queue`` row: ``queue_id``, ``transaction_id``,
    ``operation``, ``payload_id`` and ``payload_version`` (as the payload names them),
    ``created_at`` (as stored), ``why`` it is there and the ``action`` a correct engine takes
    (see :data:`ACTIONS`).

    ``central``: the central store's rows before this sync (what the device synced earlier),
    in the devices' row shape; :meth:`write_central_seed` writes them as a plain store.
    ``layout``: the store-wide choices (DDL, currency, timestamps, journal, extra columns).
    """

    path: str
    kind: str
    seed: int
    expected: pd.DataFrame
    queue: pd.DataFrame
    central: pd.DataFrame
    layout: dict

    def summary(self) -> pd.DataFrame:
        """Invoices per situation, with their queue rows per action."""
        acts = self.queue.merge(self.expected[["id", "situation"]], left_on="transaction_id", right_on="id")
        counts = acts.pivot_table(index="situation", columns="action", values="queue_id", aggfunc="count",
                                  fill_value=0).reindex(columns=list(ACTIONS), fill_value=0)
        out = self.expected.groupby("situation").size().rename("invoices").to_frame().join(counts).fillna(0)
        return out.astype(int).reset_index()

    def _repr_html_(self) -> str:
        return (f"<b>ForeignTruth</b> {self.kind!r} (seed {self.seed}): {len(self.expected)} invoices, "
                f"{len(self.queue)} queue rows" + frame_html(self.summary(), caption="by situation"))

    def __repr__(self) -> str:
        acts = self.queue["action"].value_counts()
        return (f"ForeignTruth({self.kind!r}, seed={self.seed}, invoices={len(self.expected)}, "
                + ", ".join(f"{a}={int(acts.get(a, 0))}" for a in ACTIONS) + ")")

    def write_central_seed(self, path: str | os.PathLike) -> str:
        """Write :attr:`central` (the central state before this sync) as a plain offline store
        at ``path``: the devices' schema, every row ``synced``, ISO timestamps in UTC, no queue;
        a ``currency`` column, or the ``currency`` setting, exactly as the device records it.
        Load it (``read_local``) and write it to a fresh central store to set the scene."""
        path = os.fspath(path)
        if os.path.exists(path):
            raise UsageError(f"{path} exists; write_central_seed never overwrites a store")
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.executescript(_DESIGN_DDL)
            cols = list(_CENTRAL_COLUMNS)
            if self.layout["currency_mode"] == "column":
                conn.execute("ALTER TABLE transactions ADD COLUMN currency TEXT")
            else:
                cols.remove("currency")
            conn.execute("BEGIN")
            for row in self.central[cols].astype(object).to_dict("records"):
                _insert(conn, "transactions", {**row, "sync_status": "synced"})
            if self.layout["currency_mode"] == "setting":
                _insert(conn, "app_settings", {"key": "currency", "value": json.dumps(self.layout["currency"])})
            conn.execute("COMMIT")
        finally:
            conn.close()
        return path


def _replay(inv: _Invoice, prof: _Profile) -> dict:
    """The central state of ``inv`` after the ``sync`` operations of its queue, in queue order."""
    state = inv.central
    deleted, version, at = False, state.version if state else None, state.at if state else None
    for op in sorted(inv.ops, key=lambda o: o.queue_id):
        if op.action != "sync":
            continue
        if op.effect == "write":
            state, deleted, version, at = op.content, False, op.content.version, op.content.at
        elif op.effect == "delete":
            deleted, version, at = True, version + 1, op.at
    currency = None
    if state is not None:
        currency = state.currency if prof.currency_mode == "column" else prof.currency
    return {"id": inv.id, "situation": inv.story, "present": state is not None, "deleted": deleted,
            "version": version, "currency": currency,
            "total": f"{state.total:.2f}" if state is not None else None,
            "created_at": pd.Timestamp(state.created) if state is not None else pd.NaT,
            "modified_at": pd.Timestamp(at) if at is not None else pd.NaT}


def _central_row(inv: _Invoice) -> dict:
    c = inv.central
    return {"id": inv.id, "invoice_number": c.invoice_number, "client_data": c.client_text,
            "line_items": c.items_text, "total_amount": f"{c.total:.2f}", "currency": c.currency,
            "created_at": _ts(c.created, "iso_t_us"), "modified_at": _ts(c.at, "iso_t_us"),
            "version": c.version, "checksum": c.checksum}


def _truth(path: str, kind: str, seed: int, prof: _Profile, invoices: list[_Invoice], ops: list[_Op]) -> ForeignTruth:
    expected = pd.DataFrame([_replay(inv, prof) for inv in invoices], columns=_EXPECTED_COLUMNS)
    expected["version"] = expected["version"].astype("Int64")
    for col in ("created_at", "modified_at"):
        expected[col] = pd.to_datetime(expected[col], utc=True)
    queue = pd.DataFrame([{"queue_id": op.queue_id, "transaction_id": op.tid, "operation": op.operation,
                           "payload_id": op.payload_id, "payload_version": op.payload_version,
                           "created_at": str(op.created_at), "why": op.why, "action": op.action} for op in ops],
                         columns=_QUEUE_COLUMNS)
    queue["payload_version"] = queue["payload_version"].astype("Int64")
    central = pd.DataFrame([_central_row(inv) for inv in invoices if inv.central is not None],
                           columns=_CENTRAL_COLUMNS)
    layout = {"ddl": prof.layout, "currency_mode": prof.currency_mode, "currency": prof.currency,
              "currency_setting_json": prof.setting_json if prof.currency_mode == "setting" else None,
              "timestamps": prof.ts_style or "varied", "json_styles": list(prof.json_styles),
              "journal": "wal" if prof.wal else "delete", "foreign_keys": prof.fk, "upper_case_ids": prof.upper_ids,
              "extra_columns": {t: list(c) for t, c in prof.extra_columns.items()},
              "foreign_op_id": prof.foreign_op_id}
    return ForeignTruth(path=path, kind=kind, seed=seed, expected=expected, queue=queue, central=central,
                        layout=layout)


# -- public entry points ----------------------------------------------------------------------------------


def write_foreign_store(path: str | os.PathLike, *, kind: str, seed: int = 0, n: int = 40,
                        currency: str | None = None) -> ForeignTruth:
    """Write an offline store of ``kind`` (see :data:`KINDS` and the module doc) at ``path``,
    as another device app would, with ``n`` invoices; returns its :class:`ForeignTruth`.

    The same ``kind``, ``seed``, ``n`` and ``currency`` always write the same store.
    ``currency``: the currency of every invoice (column kinds: otherwise drawn per invoice)
    or of the ``app_settings`` setting (``currency_setting``: otherwise CHF); ``no_currency``
    takes none. Never overwrites: ``path`` must not exist.

    >>> import os, sqlite3, tempfile
    >>> truth = write_foreign_store(os.path.join(tempfile.mkdtemp(), "d.sqlite"), kind="kept_row_delete", n=12)
    >>> sorted(set(truth.queue["action"]))
    ['sync']
    >>> conn = sqlite3.connect(truth.path)
    >>> conn.execute("SELECT count(*) FROM sync_queue WHERE operation = 'delete'").fetchone()[0] >= 3
    True
    >>> conn.close()
    """
    path = os.fspath(path)
    if kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not isinstance(n, int) or n < _minimum(kind):
        raise UsageError(f"kind {kind!r} needs n >= {_minimum(kind)} invoices; got {n!r}")
    if currency is not None and kind == "no_currency":
        raise UsageError("kind 'no_currency' records no currency; leave currency=None")
    if os.path.exists(path):
        raise UsageError(f"{path} exists; write_foreign_store never overwrites a store")
    rng = random.Random(f"invoicekit.foreign:{kind}:{seed}:{n}:{currency}")
    prof = _profile(rng, kind, seed, currency)
    invoices = _build(rng, prof, n)
    ops = _order_queue(rng, invoices)
    _write(path, rng, prof, invoices, ops)
    return _truth(path, kind, seed, prof, invoices, ops)


def write_foreign_suite(directory: str | os.PathLike, *, seed: int = 0) -> dict[str, str]:
    """One store of every kind in ``directory`` (created if missing), named ``<kind>.sqlite``;
    returns kind -> path. Regenerate a store's truth with :func:`write_foreign_store` and the
    same seed (in another directory)."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    return {kind: write_foreign_store(os.path.join(directory, f"{kind}.sqlite"), kind=kind, seed=seed).path
            for kind in KINDS}
