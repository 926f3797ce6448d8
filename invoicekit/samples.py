"""Realistic, seeded sample data: invoices, device stores in every sync situation, duplicates.

Everything is generated with whole-array numpy/DuckDB operations, so a million invoices
take seconds. The same seed always gives the same data.

* :func:`make_invoices` - invoices with clients, line items and currencies.
* :func:`make_scenario` - a central set plus device sets covering every sync situation
  (``synced``, ``new_offline``, ``edited_offline``, ``edited_centrally``, ``edited_both``,
  ``deleted_local``, ``deleted_central``), with a truth table.
* :func:`make_duplicates` - re-entered copies of invoices with typos, and the truth.
* :func:`write_samples` - the small files committed in ``data/samples/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from . import _duck
from ._html import frame_html
from ._payload import rebuild
from .errors import UsageError
from .integrity import checksum
from .schema import INVOICE_SCHEMA, LINE_SCHEMA, InvoiceSet

__all__ = [
    "make_invoices", "make_scenario", "make_duplicates", "write_samples", "read_jsonl",
    "Scenario", "SITUATIONS", "SAMPLE_SEED", "SAMPLE_SELLER",
]

SAMPLE_SEED = 20261125
#: the fictional seller of the sample data (the demo stores it as a device's ``app_settings``
#: key ``seller``, where an analyst sets theirs once); its IBAN is the EPC's documented example
SAMPLE_SELLER = {"name": "Musterfirma Nord GmbH", "address": "Hafenstraße 12, 20457 Hamburg", "country": "DE",
                 "vat_id": "DE123456789", "iban": "DE89370400440532013000", "email": "billing@musterfirma.example"}
SITUATIONS = (
    "synced", "new_offline", "edited_offline", "edited_centrally", "edited_both",
    "deleted_local", "deleted_central",
)
_EPOCH = np.datetime64("2026-01-01T00:00:00", "us")

_FIRST = ["Anna", "Ben", "Chloé", "David", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas",
          "Kasia", "Luis", "Mia", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tomás"]
_LAST = ["Müller", "Smith", "García", "Nowak", "Rossi", "Dubois", "Jensen", "Kowalski",
         "O'Brien", "Schmidt", "Yilmaz", "Lindqvist", "Novák", "Costa", "Weber", "Brown"]
_FIRM = ["Bakery", "Builders", "Consulting", "Garage", "Design Studio", "Logistics", "Dental",
         "Florist", "Print Shop", "IT Services", "Café", "Architects"]
_FORM = ["GmbH", "Ltd", "S.L.", "Sp. z o.o.", "S.r.l.", "SARL", "ApS", "AB", "Inc.", "AG"]
_STREET = ["Main Street", "Hauptstraße", "Calle Mayor", "Rue de la Paix", "Via Roma",
           "Market Square", "Harbour Road", "Station Road", "Lindenweg", "Kings Avenue"]
_CITY = ["Berlin", "London", "Madrid", "Warsaw", "Milan", "Lyon", "Aarhus", "Kraków",
         "Dublin", "Hamburg", "Uppsala", "Brno", "Porto", "Zurich", "Boston"]
_CURRENCIES = np.array(["EUR", "EUR", "EUR", "USD", "GBP", "CHF", "SEK", "PLN", "DKK"])
_CATALOG = [
    ("Consulting hours", 95.00), ("Site visit", 180.00), ("Travel (flat rate)", 45.50),
    ("Software licence (monthly)", 29.99), ("Hardware: laptop", 1249.00), ("Printer toner", 64.90),
    ("Design workshop", 650.00), ("Maintenance contract", 320.00), ("Shipping", 12.50),
    ("Office chairs", 189.95), ("Cloud storage 1 TB", 9.99), ("Training day", 890.00),
    ("Spare parts kit", 37.25), ("Installation", 140.00), ("Support call-out", 75.00),
    ("Catering for 10", 210.40), ("Paper A4 (box)", 24.60), ("Network cabling (m)", 1.85),
]


def _clients(rng: np.random.Generator, k: int) -> pd.DataFrame:
    """A pool of ``k`` clients with their JSON text as a device would write it."""
    first = rng.choice(_FIRST, k)
    last = rng.choice(_LAST, k)
    firm = rng.choice(_FIRM, k)
    form = rng.choice(_FORM, k)
    is_firm = rng.random(k) < 0.7
    names = np.where(is_firm, np.char.add(np.char.add(np.char.add(last, " "), firm), np.char.add(" ", form)),
                     np.char.add(np.char.add(first, " "), last))
    rows = []
    for i in range(k):  # a small pool: plain Python is fine here
        name = str(names[i])
        slug = "".join(ch for ch in name.lower().encode("ascii", "ignore").decode() if ch.isalnum())[:16]
        rows.append(
            {
                "name": name,
                "email": f"billing@{slug or 'client'}{i}.example",
                "address": f"{rng.integers(1, 200)} {rng.choice(_STREET)}, {rng.choice(_CITY)}",
                "tax_id": f"{rng.choice(['DE', 'GB', 'ES', 'PL', 'IT', 'FR', 'DK', 'SE'])}{rng.integers(10**8, 10**9)}",
            }
        )
    df = pd.DataFrame(rows)
    df["client_data"] = [json.dumps(r) for r in rows]
    df["currency"] = rng.choice(_CURRENCIES, k)
    return df


def _uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random version-4 UUID strings, built with array operations."""
    b = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    b[:, 6] = (b[:, 6] & 0x0F) | 0x40  # version 4
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hexchars = np.frombuffer(b.tobytes().hex().encode(), dtype="S1").reshape(n, 32)
    out = np.full((n, 36), b"-", dtype="S1")
    out[:, _UUID_POS] = hexchars
    return out.view("S36").ravel().astype(str)


_UUID_POS = [i for i in range(36) if i not in (8, 13, 18, 23)]


def make_invoices(
    n: int, *, seed: int = SAMPLE_SEED, clients: int = 200, start: str = "2026-01-01",
    days: int = 300, source: str = "samples",
) -> InvoiceSet:
    """``n`` realistic invoices (1-5 lines each) from a pool of ``clients`` clients.

    Amounts are exact decimals; totals equal the sum of line totals; checksums are the
    devices'. All rows are ``synced`` at version 1.
    """
    rng = np.random.default_rng(seed)
    pool = _clients(rng, clients)
    cidx = rng.integers(0, clients, n)
    start_us = np.datetime64(start, "us")
    created = start_us + (rng.random(n) * days * 86400e6).astype("timedelta64[us]")
    created = np.sort(created)
    modified = created + (rng.random(n) * 3600e6).astype("timedelta64[us]")
    ids = _uuids(rng, n)
    years = created.astype("datetime64[Y]").astype(int) + 1970
    numbers = np.char.add(np.char.add(np.char.add("INV-", years.astype(str)), "-"),
                          np.char.zfill((np.arange(n) + 1).astype(str), 6))
    k = rng.integers(1, 6, n)
    inv_of_line = np.repeat(np.arange(n), k)
    line_no = np.arange(len(inv_of_line)) - np.repeat(np.cumsum(k) - k, k) + 1
    item = rng.integers(0, len(_CATALOG), len(inv_of_line))
    qty_milli = np.where(rng.random(len(item)) < 0.85, rng.integers(1, 11, len(item)) * 1000,
                         rng.integers(1, 20, len(item)) * 500)
    price_cents = np.round(np.array([p for _, p in _CATALOG])[item] * 100).astype(np.int64)
    descr = np.array([d for d, _ in _CATALOG], dtype=object)[item]
    total_cents = (qty_milli * price_cents + 500) // 1000  # half-up; samples are non-negative
    inv = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "invoice_number": pa.array(numbers, pa.string()),
            "client_name": pa.array(pool["name"].to_numpy()[cidx], pa.string()),
            "client_email": pa.array(pool["email"].to_numpy()[cidx], pa.string()),
            "client_address": pa.array(pool["address"].to_numpy()[cidx], pa.string()),
            "client_tax_id": pa.array(pool["tax_id"].to_numpy()[cidx], pa.string()),
            "client_data": pa.array(pool["client_data"].to_numpy()[cidx], pa.string()),
            "line_items": pa.nulls(n, pa.string()),
            "currency": pa.array(pool["currency"].to_numpy()[cidx], pa.string()),
            "total": pa.nulls(n, INVOICE_SCHEMA.field("total").type),
            "created_at": pa.array(created, pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")),
            "modified_at": pa.array(modified, pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")),
            "version": pa.array(np.ones(n, dtype=np.int64)),
            "sync_status": pa.array(np.full(n, "synced", dtype=object), pa.string()),
            "checksum": pa.nulls(n, pa.string()),
            "deleted_at": pa.nulls(n, pa.timestamp("us", tz="UTC")),
            "source": pa.array(np.full(n, source, dtype=object), pa.string()),
            "source_row": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        }
    )
    lines = pa.table(
        {
            "invoice_id": pa.array(ids[inv_of_line], pa.string()),
            "line_no": pa.array(line_no.astype(np.int32)),
            "description": pa.array(descr, pa.string()),
            "quantity": _dec(qty_milli, 3),
            "unit_price": _dec(price_cents, 2),
            "line_total": _dec(total_cents, 2),
        }
    )
    return rebuild(inv, lines)


def _dec(units: np.ndarray, scale: int) -> pa.Array:
    """Exact ``decimal128(12, scale)`` array from integer minor units (no float involved)."""
    units = np.asarray(units, dtype=np.int64)
    words = np.empty((len(units), 2), dtype=np.int64)
    words[:, 0] = units
    words[:, 1] = np.where(units < 0, -1, 0)  # sign-extend to 128 bits
    return pa.Array.from_buffers(pa.decimal128(12, scale), len(units), [None, pa.py_buffer(words.tobytes())])


@dataclass(frozen=True)
class Scenario:
    """A central set and device sets covering every sync situation, with the truth."""

    central: InvoiceSet
    devices: dict[str, InvoiceSet]
    truth: pd.DataFrame  # id, device, situation

    def summary(self) -> pd.DataFrame:
        """Invoices per (device, situation)."""
        return self.truth.groupby(["device", "situation"]).size().rename("invoices").reset_index()

    def _repr_html_(self) -> str:
        return (
            f"<b>Scenario</b>: {len(self.central):,} central invoices, devices "
            f"{', '.join(f'{k} ({len(v):,})' for k, v in self.devices.items())}"
            + frame_html(self.summary(), max_rows=50)
        )


_EDIT_SQL = """
SELECT invoice_id, line_no, description, quantity, unit_price,
       ROUND(quantity * unit_price, 2)::DECIMAL(12,2) AS line_total
FROM (
  SELECT l.invoice_id, l.line_no, l.description,
    CASE WHEN e.kind = 'quantity' AND l.line_no = 1 THEN l.quantity + e.delta ELSE l.quantity END::DECIMAL(12,3)
      AS quantity,
    CASE WHEN e.kind = 'price' AND l.line_no = m.last_line
         THEN ROUND(l.unit_price * (1 + e.delta / 100), 2) ELSE l.unit_price END::DECIMAL(12,2) AS unit_price
  FROM ln l
  JOIN (SELECT invoice_id, max(line_no) AS last_line FROM ln GROUP BY invoice_id) m USING (invoice_id)
  LEFT JOIN edits e ON e.id = l.invoice_id
)
"""


def _edit(s: InvoiceSet, edits: pd.DataFrame, *, version_bump: pd.Series, modified_shift_days: float,
          deleted: np.ndarray | None = None, status: str | None = None, source: str | None = None) -> InvoiceSet:
    """Apply line edits (``edits``: id, kind in quantity/price, delta) and bookkeeping."""
    ln = s.lines_table()
    e = pa.Table.from_pandas(edits, preserve_index=False) if len(edits) else pa.table(
        {"id": pa.array([], pa.string()), "kind": pa.array([], pa.string()), "delta": pa.array([], pa.int64())})
    con = _duck.connect(ln=ln, edits=e)
    try:
        new_lines = _duck.arrow(con, _EDIT_SQL)
    finally:
        con.close()
    inv = s.invoices.copy()
    bump = version_bump.to_numpy()
    inv["version"] = inv["version"] + pd.Series(bump.astype(np.int64), index=inv.index, dtype="int64[pyarrow]")
    shift = pd.to_timedelta(np.where(bump > 0, modified_shift_days, 0.0), unit="D")
    inv["modified_at"] = inv["modified_at"] + pd.Series(shift, index=inv.index).astype("duration[us][pyarrow]")
    if deleted is not None:
        inv.loc[deleted, "deleted_at"] = inv.loc[deleted, "modified_at"]
    if status is not None:
        inv.loc[bump > 0, "sync_status"] = status
    if source is not None:
        inv["source"] = source
    return rebuild(pa.Table.from_pandas(inv, preserve_index=False).cast(INVOICE_SCHEMA), new_lines.cast(LINE_SCHEMA))


def _subset(s: InvoiceSet, mask: np.ndarray) -> InvoiceSet:
    inv = s.invoices[mask].reset_index(drop=True)
    lines = s.lines[s.lines["invoice_id"].isin(inv["id"])].reset_index(drop=True)
    return InvoiceSet(inv, lines)


def make_scenario(
    *, seed: int = SAMPLE_SEED, n_central: int = 400, devices: tuple[str, ...] = ("device_a", "device_b"),
    new_per_device: int = 15, single_currency: tuple[str, ...] = ("device_b",), held: float = 0.8,
    shares: Mapping[str, float] | None = None,
) -> Scenario:
    """A central set and one set per device, covering every situation in :data:`SITUATIONS`.

    Devices named in ``single_currency`` only hold EUR invoices (as a legacy store whose
    currency comes from its settings). Device edits change line 1's quantity; central
    edits change the last line's price, or (for half of ``edited_both``) line 1's
    quantity too, which is a true conflict. ``held``: the share of central invoices some
    device holds (the rest are central-only); ``shares``: how the held ones are spread over
    ``synced``, ``edited_offline``, ``edited_centrally``, ``edited_both``, ``deleted_local``
    and ``deleted_central`` (default 50/12/12/10/8/8 %).
    """
    if not 0 < held <= 1:
        raise UsageError(f"make_scenario: held must be in (0, 1]; got {held!r}")
    rng = np.random.default_rng(seed)
    n_new = new_per_device * len(devices)
    base = make_invoices(n_central + n_new, seed=seed, source="central")
    inv = base.invoices
    central_mask = np.arange(len(inv)) < n_central
    inv["version"] = pd.Series(np.where(central_mask, rng.integers(1, 4, len(inv)), 1), dtype="int64[pyarrow]")
    holder = np.where(rng.random(len(inv)) < held, rng.integers(0, len(devices), len(inv)), -1)
    for d, name in enumerate(devices):
        if name in single_currency:
            holder[(holder == d) & (inv["currency"].to_numpy() != "EUR")] = -1
    new_idx = np.flatnonzero(~central_mask)
    holder[new_idx] = np.repeat(np.arange(len(devices)), new_per_device)
    if single_currency:
        inv.loc[new_idx[np.isin(holder[new_idx], [devices.index(x) for x in single_currency])], "currency"] = "EUR"
    probs = dict(shares) if shares is not None else {
        "synced": 0.5, "edited_offline": 0.12, "edited_centrally": 0.12, "edited_both": 0.1,
        "deleted_local": 0.08, "deleted_central": 0.08}
    wrong = set(probs) - set(SITUATIONS) | {"new_offline"} & set(probs)
    if wrong or abs(sum(probs.values()) - 1) > 1e-9 or min(probs.values()) < 0:
        raise UsageError(f"make_scenario: shares must map situations among {sorted(set(SITUATIONS) - {'new_offline'})} "
                         f"to shares >= 0 summing to 1; got {dict(probs)!r}")
    situation = np.where(holder >= 0, rng.choice(list(probs), len(inv), p=list(probs.values())), "central_only")
    situation[~central_mask] = "new_offline"
    for d in range(len(devices)):  # every device shows every situation, however small the set
        for sit in probs:
            if not np.any((holder == d) & (situation == sit)):
                spare = np.flatnonzero((holder == d) & (situation == "synced") & central_mask)
                situation[spare[0]] = sit
    both_same_field = (rng.random(len(inv)) < 0.5) & (situation == "edited_both")
    ids = inv["id"].to_numpy()

    # central side
    c_edit = np.isin(situation, ["edited_centrally", "edited_both"])
    c_del = situation == "deleted_central"
    c_edits = pd.DataFrame({"id": ids[c_edit], "kind": np.where(both_same_field[c_edit], "quantity", "price"),
                            "delta": np.where(both_same_field[c_edit], 2, 5)})
    central = _edit(base, c_edits, version_bump=pd.Series((c_edit | c_del).astype(int)), modified_shift_days=2.0,
                    deleted=c_del, status=None)
    central = _subset(central, central_mask)

    # device side
    d_edit = np.isin(situation, ["edited_offline", "edited_both"])
    d_del = situation == "deleted_local"
    d_edits = pd.DataFrame({"id": ids[d_edit], "kind": "quantity", "delta": 1})
    dev_all = _edit(base, d_edits, version_bump=pd.Series((d_edit | d_del).astype(int)), modified_shift_days=1.0,
                    deleted=d_del, status="pending")
    dev_inv = dev_all.invoices
    dev_inv.loc[~central_mask, "sync_status"] = "pending"
    dev_sets = {}
    for d, name in enumerate(devices):
        s = _subset(dev_all, holder == d)
        s.invoices["source"] = name
        s.invoices["source_row"] = pd.Series(np.arange(1, len(s.invoices) + 1), dtype="int64[pyarrow]")
        snapshot = _subset(base, (holder == d) & central_mask)  # what the device last synced
        snapshot.invoices["source"] = f"{name}#base"
        dev_sets[name] = s.with_base(snapshot)
    truth = pd.DataFrame({"id": ids, "device": np.where(holder >= 0, np.array(devices, dtype=object)[holder], ""),
                          "situation": situation})
    truth = truth[truth["device"] != ""].sort_values(["device", "id"]).reset_index(drop=True)
    return Scenario(central=central, devices=dev_sets, truth=truth)


_DUP_SQL = """
WITH src AS (
  SELECT i.*, d.new_id, d.kind, d.shift_s, d.pos
  FROM inv i JOIN dups d ON d.id = i.id
), mutated AS (
  SELECT *,
    CASE kind
      WHEN 'number_typo' THEN left(invoice_number, length(invoice_number) - 2)
           || right(invoice_number, 1) || substr(invoice_number, length(invoice_number) - 1, 1)
      WHEN 'number_format' THEN replace(invoice_number, '-', '')
      ELSE invoice_number END AS new_number,
    CASE kind
      WHEN 'name_case' THEN upper(client_name)
      WHEN 'name_typo' THEN left(client_name, pos % greatest(length(client_name) - 1, 1))
           || substr(client_name, pos % greatest(length(client_name) - 1, 1) + 2)
      ELSE client_name END AS new_name
  FROM src
)
SELECT * REPLACE (
  new_id AS id, new_number AS invoice_number, new_name AS client_name,
  json_object('name', new_name, 'email', client_email, 'address', client_address, 'tax_id', client_tax_id)::VARCHAR
    AS client_data,
  created_at + to_seconds(shift_s) AS created_at, modified_at + to_seconds(shift_s) AS modified_at,
  'reentered' AS source)
FROM mutated
"""

DUPLICATE_KINDS = ("exact", "number_typo", "number_format", "name_case", "name_typo")


def make_duplicates(
    invoice_set: InvoiceSet, *, rate: float = 0.05, seed: int = SAMPLE_SEED
) -> tuple[InvoiceSet, pd.DataFrame]:
    """Add re-entered copies of ``rate`` of the live invoices, as a person re-typing them would.

    Each copy gets a new id, is entered 0-3 days later, and carries one kind of
    difference from :data:`DUPLICATE_KINDS` (same data, swapped digits in the number,
    number without dashes, client name in capitals, one letter dropped from the name).
    Returns the enlarged set and the truth: ``id``, ``duplicate_of``, ``kind``.
    """
    rng = np.random.default_rng(seed + 1)
    live = invoice_set.invoices[invoice_set.invoices["deleted_at"].isna()]
    k = int(round(len(live) * rate))
    pick = np.sort(rng.choice(len(live), size=k, replace=False))
    dups = pd.DataFrame({
        "id": live["id"].to_numpy()[pick],
        "new_id": _uuids(rng, k),
        "kind": rng.choice(DUPLICATE_KINDS, k),
        "shift_s": rng.integers(0, 3 * 86400, k),
        "pos": rng.integers(1, 1000, k),
    })
    con = _duck.connect(inv=invoice_set.invoices_table(), dups=pa.Table.from_pandas(dups, preserve_index=False))
    try:
        new_inv = _duck.arrow(con, _DUP_SQL)
    finally:
        con.close()
    new_inv = new_inv.select(INVOICE_SCHEMA.names).cast(INVOICE_SCHEMA)
    id_map = dict(zip(dups["id"], dups["new_id"]))
    lines = invoice_set.lines[invoice_set.lines["invoice_id"].isin(dups["id"])].copy()
    lines["invoice_id"] = lines["invoice_id"].map(id_map).astype("string[pyarrow]")
    copies = InvoiceSet.from_arrow(new_inv, pa.Table.from_pandas(lines, preserve_index=False))
    copies.invoices["checksum"] = checksum(copies.invoices)
    out = InvoiceSet.concat([invoice_set, copies])
    out.invoices["source_row"] = pd.Series(np.arange(1, len(out) + 1), dtype="int64[pyarrow]")
    truth = dups.rename(columns={"id": "duplicate_of", "new_id": "id"})[["id", "duplicate_of", "kind"]]
    return out, truth.sort_values("id").reset_index(drop=True)


# ---------------------------------------------------------------------------------------
# files

_RAW_SQL = """
SELECT id, invoice_number, client_data, line_items, CAST(total AS VARCHAR) AS total_amount, currency,
       strftime(created_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS created_at,
       strftime(modified_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS modified_at,
       strftime(deleted_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS deleted_at,
       version, sync_status, checksum
FROM inv ORDER BY created_at, id
"""


def write_jsonl(invoice_set: InvoiceSet, path: str | os.PathLike) -> None:
    """Write invoices as JSON Lines in the stores' row shape (exact decimal text totals)."""
    con = _duck.connect(inv=invoice_set.invoices_table())
    try:
        rows = _duck.arrow(con, _RAW_SQL).to_pylist()
    finally:
        con.close()
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True, ensure_ascii=True) + "\n")


def read_jsonl(path: str | os.PathLike) -> InvoiceSet:
    """Read invoices written by :func:`write_jsonl` (rows keep their line number)."""
    from ._normalize import RAW_COLUMNS, normalize

    path = os.fspath(path)
    con = _duck.connect()
    try:
        raw = _duck.arrow(
            con,
            """SELECT row_number() OVER () AS source_row, id, invoice_number, client_data, line_items,
                      NULL::DOUBLE AS total_amount, total_amount AS total_text, currency, created_at,
                      modified_at, deleted_at, version, sync_status, checksum, ? AS source
               FROM read_json(?, format = 'newline_delimited', columns = {
                 id: 'VARCHAR', invoice_number: 'VARCHAR', client_data: 'VARCHAR', line_items: 'VARCHAR',
                 total_amount: 'VARCHAR', currency: 'VARCHAR', created_at: 'VARCHAR', modified_at: 'VARCHAR',
                 deleted_at: 'VARCHAR', version: 'VARCHAR', sync_status: 'VARCHAR', checksum: 'VARCHAR'})""",
            [path, path],
        )
    finally:
        con.close()
    return normalize(raw.select(RAW_COLUMNS))


def _iso(ts: pd.Series) -> list[str]:
    """Naive-UTC ISO text with microseconds, as devices write ``utcnow().isoformat()``."""
    import pyarrow.compute as pc

    arr = pa.array(ts).cast(pa.timestamp("us"))  # arrow's %S carries the microseconds
    return pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S").to_pylist()


def _queue_rows(s: InvoiceSet) -> list[tuple]:
    """sync_queue rows for a device's pending changes, oldest first."""
    inv = s.invoices
    pending = inv[inv["sync_status"] == "pending"].sort_values(["modified_at", "id"])
    op = np.where(pending["deleted_at"].notna(), "delete", np.where(pending["version"] == 1, "insert", "update"))
    when = _iso(pending["modified_at"])
    payload = [
        json.dumps({"id": i, "invoice_number": n, "client_data": c, "line_items": li, "total_amount": float(t),
                    "version": int(v), "checksum": h, "created_at": ca, "modified_at": ma}, sort_keys=True)
        for i, n, c, li, t, v, h, ca, ma in zip(
            *(pending[c].tolist() for c in ["id", "invoice_number", "client_data", "line_items", "total", "version",
                                             "checksum"]), _iso(pending["created_at"]), when)
    ]
    return list(zip(pending["id"].tolist(), op.tolist(), payload, [0] * len(payload), when))


def _write_legacy_store(s: InvoiceSet, path: str, *, damaged: bool) -> list[str]:
    """A store exactly as other software writes it: offline schema only, currency in settings."""
    import sqlite3

    from .io.local import OFFLINE_SCHEMA_SQL

    inv = s.invoices.sort_values(["created_at", "id"])
    rows = list(zip(
        inv["id"].tolist(), inv["invoice_number"].tolist(), inv["client_data"].tolist(), inv["line_items"].tolist(),
        [float(str(t)) for t in inv["total"].tolist()],
        _iso(inv["created_at"]), _iso(inv["modified_at"]),
        inv["sync_status"].tolist(), inv["checksum"].tolist(), inv["version"].tolist(),
    ))
    bad: list[str] = []
    if damaged:
        # field rot: one row whose total was altered after its checksum, one with broken JSON
        r = list(rows[3])
        r[4] = r[4] + 10.0
        rows[3] = tuple(r)
        r = list(rows[5])
        r[3] = r[3][:-7]
        rows[5] = tuple(r)
        bad = [rows[3][0], rows[5][0]]
    live = inv[inv["deleted_at"].isna()]
    deleted = set(inv["id"]) - set(live["id"])
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(OFFLINE_SCHEMA_SQL)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO transactions VALUES (?,?,?,?,?,?,?,?,?,?)",
                         [r for r in rows if r[0] not in deleted])
        conn.executemany(
            "INSERT INTO sync_queue (transaction_id, operation, payload, retry_count, created_at) VALUES (?,?,?,?,?)",
            _queue_rows(s))
        conn.executemany("INSERT INTO app_settings VALUES (?, ?, ?)",
                         [("default_currency", json.dumps("EUR"), 0), ("device_name", json.dumps("device_b"), 0)])
        conn.execute("COMMIT")
    finally:
        conn.close()
    return bad


def write_samples(directory: str | os.PathLike, *, seed: int = SAMPLE_SEED, damaged: bool = True) -> dict[str, str]:
    """Write the committed sample files into ``directory`` (overwriting them).

    * ``device_a.sqlite``: a toolkit-written offline store (with the additive columns and
      a ``sync_queue`` for its pending changes);
    * ``device_b.sqlite``: a legacy store in the bare offline schema (currency in
      ``app_settings``; a device that deletes rows outright), with two rotten rows when
      ``damaged``: one total altered after its checksum, one line_items JSON cut short;
    * ``central.jsonl``: the central dataset, including re-entered duplicates;
    * ``situations.csv``: truth per (device, invoice); ``duplicates.csv``: duplicate truth.

    The same seed regenerates the same content. Returns name -> path.
    """
    import sqlite3

    from .io.local import write_local

    os.makedirs(directory, exist_ok=True)
    paths = {name: os.path.join(directory, name) for name in
             ("device_a.sqlite", "device_b.sqlite", "central.jsonl", "situations.csv", "duplicates.csv")}
    for p in paths.values():
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(p + suffix):
                os.remove(p + suffix)
    sc = make_scenario(seed=seed)
    central, dup_truth = make_duplicates(sc.central, rate=0.05, seed=seed)
    write_jsonl(central, paths["central.jsonl"])
    dev_a = sc.devices["device_a"]
    write_local(dev_a, paths["device_a.sqlite"])
    conn = sqlite3.connect(paths["device_a.sqlite"], isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO sync_queue (transaction_id, operation, payload, retry_count, created_at) VALUES (?,?,?,?,?)",
            _queue_rows(dev_a))
        conn.execute("INSERT INTO app_settings VALUES ('device_name', ?, 0)", (json.dumps("device_a"),))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    bad = _write_legacy_store(sc.devices["device_b"], paths["device_b.sqlite"], damaged=damaged)
    truth = sc.truth.copy()
    truth.loc[truth["id"].isin(bad), "situation"] = "damaged"
    truth.to_csv(paths["situations.csv"], index=False, lineterminator="\n")
    dup_truth.to_csv(paths["duplicates.csv"], index=False, lineterminator="\n")
    return paths
