"""Labelled, adversarial test data for duplicate detection: :func:`make_dedupe_data`.

Written from how invoices are re-entered in practice, not from how the matcher works:

* clients (a few in CJK or Arabic script) with three numbering schemes: one global
  sequence, a per-client sequence (so different clients share invoice numbers) and
  plain per-client numbers; some clients rename or move part-way (client drift: later
  invoices carry the new name, address, e-mail and sometimes legal form, same tax id);
* subscriptions: monthly and weekly invoices with identical lines and totals and
  consecutive numbers; repeat orders of the same basket on the same day with new numbers;
* nulls: missing e-mails, addresses, tax ids, an empty client name now and then;
* re-entries (the duplicates) of about ``rate`` of the invoices, each with independent
  changes: OCR confusions in the number (O/0, I/1, S/5, B/8, Z/2), one adjacent
  transposition, dashes/spaces/case/leading zeros, a dropped prefix; the client name in
  another case, with another spelling of its legal form (GmbH/G.m.b.H., Ltd/Limited,
  Inc./Inc, SARL/S.A.R.L.), ``&``/``and``, a typo, or the client's *current* name after a
  rename; abbreviated addresses; totals off by a cent; dates shifted up to ten days either
  way; lines in another order or with a typo; some invoices re-entered twice.

``variant="keep_tax"`` re-entries keep the tax id (some with spaces); ``variant="hard"``:
a third lose it, a sixth mistype it, and most lose the e-mail.

Plain Python loops run over the client pool and over the re-entered rows only (this is
a test-data generator, not a hot path); the invoices themselves are numpy arrays.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import _duck
from .._payload import client_json_sql, rebuild
from ..schema import INVOICE_SCHEMA, LINE_SCHEMA, InvoiceSet

__all__ = ["make_dedupe_data", "VARIANTS"]

VARIANTS = ("keep_tax", "hard")

_SYL = ["ka", "lo", "mi", "ra", "ven", "to", "sel", "an", "dor", "ber", "fin", "gra", "hol", "ix", "jun",
        "kor", "lun", "mar", "nor", "ost", "pel", "qua", "rin", "sta", "tur", "ul", "vik", "wes", "yar", "zen"]
_LAST = ["Müller", "Smith", "García", "Nowak", "Rossi", "Dubois", "Jensen", "Kowalski", "O'Brien", "Schmidt",
         "Yilmaz", "Lindqvist", "Novák", "Costa", "Weber", "Brown", "Fischer", "Martin", "Bianchi", "Lopez"]
_FIRM = ["Bakery", "Builders", "Consulting", "Garage", "Design Studio", "Logistics", "Dental", "Florist",
         "Print Shop", "IT Services", "Café", "Architects", "Plumbing & Heating", "Food & Drink", "Motors"]
_FORM = ["GmbH", "Ltd", "Limited", "Inc.", "SARL", "BV", "AG", "S.L.", "Sp. z o.o.", "S.r.l.", "ApS", "AB", ""]
_FORM_ALT = {"GmbH": "G.m.b.H.", "Ltd": "Limited", "Limited": "Ltd.", "Inc.": "Inc", "SARL": "S.A.R.L.",
             "BV": "B.V.", "AG": "A.G.", "S.L.": "SL", "S.r.l.": "Srl", "AB": "Aktiebolag", "ApS": "A.p.S."}
_CJK = ["山田製作所", "北京华为科技有限公司", "株式会社さくら商事", "上海明珠贸易有限公司", "東京電子工業株式会社",
        "深圳创新科技", "大阪食品株式会社", "서울무역 주식회사", "한빛전자"]
_ARABIC = ["شركة الأمل للتجارة", "مؤسسة النور", "شركة الخليج للمقاولات", "مكتب الريان للاستشارات", "شركة السلام"]
_STREET = ["Main Street", "Hauptstraße", "Station Road", "Kings Avenue", "Lindenstraße", "Market Street",
           "Harbour Road", "Bahnhofstraße", "Church Street", "Rue de la Paix", "Via Roma", "High Street"]
_CITY = ["Berlin", "London", "Madrid", "Warsaw", "Milan", "Lyon", "Aarhus", "Dublin", "Hamburg", "Zurich",
         "Boston", "Osaka", "Dubai", "Shanghai"]
_CATALOG = [
    ("Consulting hours", 9500), ("Site visit", 18000), ("Travel (flat rate)", 4550), ("Software licence", 2999),
    ("Hardware: laptop", 124900), ("Printer toner", 6490), ("Design workshop", 65000), ("Maintenance", 32000),
    ("Shipping", 1250), ("Office chair", 18995), ("Cloud storage 1 TB", 999), ("Training day", 89000),
    ("Spare parts kit", 3725), ("Installation", 14000), ("Support call-out", 7500), ("Catering for 10", 21040),
    ("Paper A4 (box)", 2460), ("Network cabling (m)", 185), ("Window cleaning", 6000), ("Monthly retainer", 150000),
    ("Hosting plan", 4900), ("Bread rolls (dozen)", 540), ("Coffee beans 1 kg", 2290), ("Oil change", 8900),
    ("Dental check-up", 7000), ("Flowers (bouquet)", 3500), ("Business cards (500)", 4200), ("Pallet transport", 27500),
]
_OCR = {"0": "O", "O": "0", "1": "I", "I": "1", "5": "S", "S": "5", "8": "B", "B": "8", "2": "Z", "Z": "2"}
_DAY_US = 86_400_000_000


def _uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    b = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    b[:, 6] = (b[:, 6] & 0x0F) | 0x40
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    h = b.tobytes().hex()
    return np.array([f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-{h[i + 20:i + 32]}"
                     for i in range(0, 32 * n, 32)], dtype=object)


def _client_name(rng: np.random.Generator) -> tuple[str, str]:
    """(name without legal form, legal form)."""
    r = rng.random()
    if r < 0.04:
        return str(rng.choice(_CJK)) + ("" if rng.random() < 0.5 else str(rng.integers(1, 99))), ""
    if r < 0.07:
        return str(rng.choice(_ARABIC)) + ("" if rng.random() < 0.5 else f" {rng.integers(1, 99)}"), ""
    if r < 0.22:  # a person
        return f"{rng.choice(['Anna', 'Ben', 'Chloé', 'David', 'Elif', 'Hiro', 'Ines', 'Jonas', 'Mia'])} "\
               f"{rng.choice(_LAST)}", ""
    word = "".join(rng.choice(_SYL, rng.integers(2, 4))).capitalize()
    base = f"{word} {rng.choice(_FIRM)}" if r < 0.8 else f"{rng.choice(_LAST)} {rng.choice(_FIRM)}"
    return base, str(rng.choice(_FORM))


def _clients(rng: np.random.Generator, k: int) -> pd.DataFrame:
    rows = []
    for i in range(k):
        base, form = _client_name(rng)
        country = str(rng.choice(["DE", "GB", "FR", "NL", "US", "JP", "AE", "ES"]))
        slug = "".join(ch for ch in base.lower() if ch.isascii() and ch.isalnum())[:12] or "client"
        drift = rng.random() < 0.12
        new_base, new_form = (base, str(rng.choice(_FORM))) if rng.random() < 0.4 else _client_name(rng)
        rows.append({
            "name": f"{base} {form}".strip(), "new_name": f"{new_base} {new_form}".strip() if drift else None,
            "email": None if rng.random() < 0.08 else f"billing@{slug}{i}.example",
            "new_email": f"accounts@{slug}{i}.example" if drift and rng.random() < 0.5 else None,
            "address": None if rng.random() < 0.06 else f"{rng.integers(1, 300)} {rng.choice(_STREET)}, "
                                                        f"{rng.choice(_CITY)}",
            "new_address": f"{rng.integers(1, 300)} {rng.choice(_STREET)}, {rng.choice(_CITY)}" if drift else None,
            "tax_id": None if rng.random() < 0.05 else f"{country}{rng.integers(10**8, 10**9)}",
            "scheme": int(rng.choice(3, p=[0.35, 0.45, 0.2])),
            "prefix": "".join(rng.choice(list("ABCDEFGHKLMNPRTUVWXY"), 3)),
            "currency": str(rng.choice(["EUR", "EUR", "EUR", "USD", "GBP", "CHF"])),
            "drift_day": int(rng.integers(60, 300)) if drift else 10**6,
            "sub": int(rng.choice(3, p=[0.7, 0.22, 0.08])),  # 0 none, 1 monthly, 2 weekly
        })
    return pd.DataFrame(rows)


def _baskets(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n random baskets: (invoice index, item, quantity in thousandths, line count) per line."""
    k = rng.integers(1, 5, n)
    inv = np.repeat(np.arange(n), k)
    item = rng.integers(0, len(_CATALOG), len(inv))
    m = len(inv)
    qty = np.where(rng.random(m) < 0.85, rng.integers(1, 6, m) * 1000, rng.integers(1, 12, m) * 250)
    return inv, item, qty, k


def _originals(rng: np.random.Generator, n: int, start: np.datetime64) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n original invoices and their lines (plain frames; items by catalogue index)."""
    clients = _clients(rng, max(8, n // 40))
    sub_clients = np.flatnonzero(clients["sub"].to_numpy() > 0)
    # subscriptions: a basket repeated monthly / weekly
    periods = np.where(clients["sub"].to_numpy()[sub_clients] == 1, 30, 7)
    counts = np.minimum(300 // periods, 12)
    n_sub = int(min(counts.sum(), n // 4))
    sub_client = np.repeat(sub_clients, counts)[:n_sub]
    sub_k = np.concatenate([np.arange(c) for c in counts])[:n_sub] if len(counts) else np.zeros(0, int)
    sub_period = np.repeat(periods, counts)[:n_sub]
    first_day = rng.integers(0, 20, len(clients))
    sub_day = first_day[sub_client] + sub_k * sub_period + rng.integers(0, 2, n_sub)
    n_other = n - n_sub
    other_client = rng.integers(0, len(clients), n_other)
    other_day = rng.integers(0, 330, n_other)
    client = np.concatenate([sub_client, other_client])
    day = np.concatenate([sub_day, other_day])
    # repeat orders: 2% of ordinary invoices copy another invoice's basket, same client and day
    created = start + (day * _DAY_US + rng.integers(6, 20, n) * 3_600_000_000
                       + rng.integers(0, 3_600_000_000, n)).astype("timedelta64[us]")
    li, item, qty, _ = _baskets(rng, n)
    # subscription invoices share their client's basket: basket of the client's first one
    basket_of = np.arange(n)
    if n_sub:
        first_of_client = pd.Series(np.arange(n_sub)).groupby(sub_client).transform("min").to_numpy()
        basket_of[:n_sub] = first_of_client
    repeat = np.flatnonzero(rng.random(n) < 0.02)
    repeat = repeat[repeat >= n_sub + 1]
    basket_of[repeat] = repeat - 1
    client[repeat], created[repeat] = client[repeat - 1], created[repeat - 1] + np.timedelta64(3_600_000_000, "us")
    order = np.argsort(li, kind="stable")
    starts = np.searchsorted(li[order], np.arange(n))
    ends = np.searchsorted(li[order], np.arange(n), side="right")
    src_start, src_end = starts[basket_of], ends[basket_of]
    lens = src_end - src_start
    line_inv = np.repeat(np.arange(n), lens)
    pos = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    src = order[np.repeat(src_start, lens) + pos]
    lines = pd.DataFrame({"inv": line_inv, "line_no": pos + 1, "item": item[src], "qty": qty[src]})
    lines["description"] = np.array([d for d, _ in _CATALOG], dtype=object)[lines["item"]]
    lines["price"] = np.array([p for _, p in _CATALOG])[lines["item"]]
    inv = _numbered(rng, pd.DataFrame({"client": client, "created": created}), clients)
    new_pos = np.empty(n, dtype=np.int64)
    new_pos[inv["old_index"].to_numpy()] = np.arange(n)
    lines["inv"] = new_pos[lines["inv"].to_numpy()]
    return inv.drop(columns=["old_index"]), lines


def _numbered(rng: np.random.Generator, inv: pd.DataFrame, clients: pd.DataFrame) -> pd.DataFrame:
    """Invoice numbers by each client's scheme, and the client fields as of each date."""
    inv = inv.sort_values("created", kind="stable")
    old = inv.index.to_numpy()
    inv = inv.reset_index(drop=True)
    c = clients.iloc[inv["client"].to_numpy()].reset_index(drop=True)
    seq_global = np.arange(1, len(inv) + 1)
    seq_client = inv.groupby("client").cumcount().to_numpy() + 1
    year = inv["created"].to_numpy().astype("datetime64[Y]").astype(int) + 1970
    scheme = c["scheme"].to_numpy()
    num = np.where(scheme == 0, [f"INV-{y}-{s:06d}" for y, s in zip(year, seq_global)],
                   np.where(scheme == 1, [f"{p}-{s:04d}" for p, s in zip(c["prefix"], seq_client)],
                            [str(1000 + s) for s in seq_client]))
    day = (inv["created"].to_numpy() - np.datetime64("2026-01-01", "us")) // np.timedelta64(1, "D")
    drifted = day >= c["drift_day"].to_numpy()
    out = pd.DataFrame({
        "client": inv["client"], "created": inv["created"], "invoice_number": num,
        "client_name": np.where(drifted, c["new_name"], c["name"]),
        "client_email": np.where(drifted & c["new_email"].notna(), c["new_email"], c["email"]),
        "client_address": np.where(drifted, c["new_address"], c["address"]),
        "client_tax_id": c["tax_id"], "currency": c["currency"],
        "current_name": c["new_name"].fillna(c["name"]), "old_index": old,
    })
    empty = rng.random(len(out)) < 0.003
    out.loc[empty, "client_name"] = ""
    return out


# -- mutations of one re-entered value (plain Python: only the re-entered rows) -------------
def _ocr(rng, s: str) -> str:
    spots = [i for i, ch in enumerate(s) if ch in _OCR]
    if not spots:
        return s
    i = int(rng.choice(spots))
    return s[:i] + _OCR[s[i]] + s[i + 1:]


def _transpose(rng, s: str) -> str:
    spots = [i for i in range(len(s) - 1) if s[i].isdigit() and s[i + 1].isdigit() and s[i] != s[i + 1]]
    if not spots:
        return s
    i = int(rng.choice(spots))
    return s[:i] + s[i + 1] + s[i] + s[i + 2:]


def _number(rng, s: str) -> str | None:
    r = rng.random()
    if r < 0.35:
        return s
    if r < 0.5:
        return _ocr(rng, s)
    if r < 0.62:
        return _transpose(rng, s)
    if r < 0.72:
        return s.replace("-", "")
    if r < 0.78:
        return s.replace("-", " ").lower()
    if r < 0.84:  # leading zeros dropped or added
        head, _, tail = s.rpartition("-")
        return f"{head}-{tail.lstrip('0')}" if head else f"00{s}"
    if r < 0.9:
        return s.rpartition("-")[2] if "-" in s else s
    if r < 0.93:
        return None
    return _ocr(rng, s.replace("-", "/"))


def _typo(rng, s: str) -> str:
    letters = [i for i, ch in enumerate(s) if ch.isalpha()]
    if len(letters) < 4:
        return s
    i = int(rng.choice(letters[1:]))
    r = rng.random()
    if r < 0.4:
        return s[:i] + s[i + 1:]
    if r < 0.7 and i + 1 < len(s):
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    return s[:i] + s[i] + s[i:]


def _name(rng, s: str | None, current: str) -> str | None:
    if not isinstance(s, str) or not s:
        return s if isinstance(s, str) else None
    r = rng.random()
    if r < 0.35:
        return s
    if r < 0.45:
        return s.upper()
    if r < 0.6:
        for form, alt in _FORM_ALT.items():
            if s.endswith(" " + form):
                return s[: -len(form)] + alt
        return s + (" GmbH" if rng.random() < 0.5 else ",")
    if r < 0.68:
        return s.replace(" & ", " and ") if " & " in s else s.replace(" and ", " & ")
    if r < 0.85:
        return _typo(rng, s)
    if r < 0.92:
        return current  # retyped from today's client record
    return s.lower().replace(".", "")


def _address(rng, s: str | None) -> str | None:
    if not isinstance(s, str) or not s:
        return s if isinstance(s, str) else None
    r = rng.random()
    if r < 0.6:
        return s
    if r < 0.85:
        return s.replace("Street", "St.").replace("straße", "str.").replace("Road", "Rd").replace("Avenue", "Ave")
    if r < 0.93:
        return None
    return _typo(rng, s)


def _tax(rng, s: str | None, variant: str) -> str | None:
    if not isinstance(s, str) or not s:
        return s if isinstance(s, str) else None
    r = rng.random()
    if variant == "keep_tax":
        return s if r < 0.85 else f"{s[:2]} {s[2:5]} {s[5:8]} {s[8:]}"
    if r < 0.33:
        return None
    if r < 0.5:
        i = int(rng.integers(2, len(s)))
        return s[:i] + str((int(s[i]) + int(rng.integers(1, 9))) % 10) + s[i + 1:] if rng.random() < 0.6 \
            else _transpose(rng, s)
    return s


def _email(rng, s: str | None, variant: str) -> str | None:
    if not isinstance(s, str) or not s:
        return s if isinstance(s, str) else None
    if variant == "hard" and rng.random() < 0.7:
        return None
    return s.upper() if rng.random() < 0.1 else s


def _reentries(rng, inv: pd.DataFrame, lines: pd.DataFrame, rate: float, variant: str):
    """Re-entered copies of ``rate`` of ``inv`` (a few copied twice), with their lines."""
    n = len(inv)
    k = int(round(n * rate))
    pick = rng.choice(n, size=k, replace=False)
    twice = pick[rng.random(k) < 0.06]
    src = np.concatenate([pick, twice])
    rows = inv.iloc[src].reset_index(drop=True)
    rows["invoice_number"] = [_number(rng, s) for s in rows["invoice_number"]]
    rows["client_name"] = [_name(rng, s, c) for s, c in zip(rows["client_name"], rows["current_name"])]
    rows["client_address"] = [_address(rng, s) for s in rows["client_address"]]
    rows["client_tax_id"] = [_tax(rng, s, variant) for s in rows["client_tax_id"]]
    rows["client_email"] = [_email(rng, s, variant) for s in rows["client_email"]]
    shift = rng.integers(-10 * _DAY_US, 10 * _DAY_US + 1, len(rows))
    rows["created"] = rows["created"] + pd.to_timedelta(shift, unit="us")
    rows["cent_off"] = np.where(rng.random(len(rows)) < 0.12, rng.choice([-1, 1], len(rows)), 0)
    rows["src_row"] = src
    # lines: same, another order, or one typo
    ln = lines.merge(pd.DataFrame({"inv": src, "copy": np.arange(len(src))}), on="inv")
    ln = ln.sort_values(["copy", "line_no"]).reset_index(drop=True)
    how = rng.random(len(src))
    shuffled = how[ln["copy"]] < 0.2
    ln.loc[shuffled, "line_no"] = ln.loc[shuffled].groupby("copy")["line_no"].transform(lambda s: s[::-1].values)
    typo_rows = ln.index[(how[ln["copy"]] > 0.8) & ln.groupby("copy").cumcount().eq(0)]
    ln.loc[typo_rows, "description"] = [_typo(rng, s) for s in ln.loc[typo_rows, "description"]]
    ln["inv"] = ln["copy"]
    return rows, ln.drop(columns=["copy"])


def _units(units: np.ndarray, scale: int, kind: pa.DataType) -> pa.Array:
    """Exact decimal ``units`` / 10**scale (integer arithmetic, no float involved)."""
    whole = pa.array(np.asarray(units, dtype=np.int64)).cast(pa.decimal128(19, 0))
    return pc.multiply(whole, pa.scalar(Decimal(1).scaleb(-scale), pa.decimal128(scale + 1, scale))).cast(kind)


def make_dedupe_data(n: int, *, variant: str = "keep_tax", rate: float = 0.05, seed: int = 7,
                     start: str = "2026-01-01") -> tuple[InvoiceSet, pd.DataFrame]:
    """About ``n`` invoices (``n`` originals plus re-entries of ``rate`` of them) and the truth.

    Returns ``(invoice_set, truth)``; ``truth`` has one row per duplicate pair ``id_a``,
    ``id_b`` (``id_a < id_b``): every two entries of the same invoice. Row order is shuffled.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    rng = np.random.default_rng([seed, VARIANTS.index(variant)])
    inv, lines = _originals(rng, n, np.datetime64(start, "us"))
    dups, dup_lines = _reentries(rng, inv, lines, rate, variant)
    entity = np.concatenate([np.arange(len(inv)), dups["src_row"].to_numpy()])
    dup_lines = dup_lines.assign(inv=dup_lines["inv"] + len(inv))
    allinv = pd.concat([inv.assign(cent_off=0), dups.drop(columns=["src_row"])], ignore_index=True)
    all_lines = pd.concat([lines, dup_lines], ignore_index=True)
    perm = rng.permutation(len(allinv))  # rows in random order, ids random
    ids = _uuids(rng, len(allinv))
    table = _invoice_table(allinv, ids, perm)
    line_table = _line_table(all_lines, ids)
    out = rebuild(table, line_table)
    out = _cent_offsets(out, pd.Series(allinv["cent_off"].to_numpy(), index=ids))
    truth = _truth(ids, entity)
    return out, truth


def _invoice_table(inv: pd.DataFrame, ids: np.ndarray, perm: np.ndarray) -> pa.Table:
    n = len(inv)
    created = inv["created"].to_numpy().astype("datetime64[us]")
    ts = pa.timestamp("us", tz="UTC")
    t = pa.table({
        "id": pa.array(ids, pa.string()),
        "invoice_number": pa.array(inv["invoice_number"].to_numpy(dtype=object), pa.string(), from_pandas=True),
        "client_name": pa.array(inv["client_name"].to_numpy(dtype=object), pa.string(), from_pandas=True),
        "client_email": pa.array(inv["client_email"].to_numpy(dtype=object), pa.string(), from_pandas=True),
        "client_address": pa.array(inv["client_address"].to_numpy(dtype=object), pa.string(), from_pandas=True),
        "client_tax_id": pa.array(inv["client_tax_id"].to_numpy(dtype=object), pa.string(), from_pandas=True),
        "client_data": pa.nulls(n, pa.string()),
        "line_items": pa.nulls(n, pa.string()),
        "currency": pa.array(inv["currency"].to_numpy(dtype=object), pa.string(), from_pandas=True),
        "total": pa.nulls(n, INVOICE_SCHEMA.field("total").type),
        "created_at": pa.array(created, pa.timestamp("us")).cast(ts),
        "modified_at": pa.array(created + np.timedelta64(60_000_000, "us"), pa.timestamp("us")).cast(ts),
        "version": pa.array(np.ones(n, dtype=np.int64)),
        "sync_status": pa.array(np.full(n, "synced", dtype=object), pa.string()),
        "checksum": pa.nulls(n, pa.string()),
        "deleted_at": pa.nulls(n, ts),
        "source": pa.array(np.full(n, "synthetic", dtype=object), pa.string()),
        "source_row": pa.array(np.argsort(perm).astype(np.int64) + 1),
    })
    con = _duck.connect(t=t)
    try:
        data = _duck.arrow(con, f"SELECT {client_json_sql()} AS d FROM t").column("d")
    finally:
        con.close()
    return t.set_column(t.schema.get_field_index("client_data"), "client_data", data)


def _line_table(lines: pd.DataFrame, ids: np.ndarray) -> pa.Table:
    qty = lines["qty"].to_numpy()
    price = lines["price"].to_numpy()
    total = (qty * price + 500) // 1000
    return pa.table({
        "invoice_id": pa.array(ids[lines["inv"].to_numpy()], pa.string()),
        "line_no": pa.array(lines["line_no"].to_numpy().astype(np.int32)),
        "description": pa.array(lines["description"].to_numpy(), pa.string()),
        "quantity": _units(qty, 3, LINE_SCHEMA.field("quantity").type),
        "unit_price": _units(price, 2, LINE_SCHEMA.field("unit_price").type),
        "line_total": _units(total, 2, LINE_SCHEMA.field("line_total").type),
    })


def _cent_offsets(s: InvoiceSet, off: pd.Series) -> InvoiceSet:
    """Totals typed a cent off (the lines keep their amounts)."""
    inv = s.invoices.copy()
    delta = off.reindex(inv["id"].to_numpy()).to_numpy()
    cents = (inv["total"].astype(pd.ArrowDtype(pa.decimal128(14, 2))) * 100).astype("int64[pyarrow]").to_numpy()
    inv["total"] = pd.Series(pd.arrays.ArrowExtensionArray(
        _units(cents + delta, 2, INVOICE_SCHEMA.field("total").type)), index=inv.index)
    inv = inv.sort_values("source_row").reset_index(drop=True)
    return InvoiceSet(inv, s.lines)


def _truth(ids: np.ndarray, entity: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame({"id": ids, "entity": entity})
    df = df[df.groupby("entity")["id"].transform("size") > 1]
    m = df.merge(df, on="entity")
    m = m[m["id_x"] < m["id_y"]]
    return pd.DataFrame({"id_a": m["id_x"].to_numpy(), "id_b": m["id_y"].to_numpy()}).sort_values(
        ["id_a", "id_b"]).reset_index(drop=True)
