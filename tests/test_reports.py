"""The HTML reports (``invoicekit.reports``): content and structure, escaping, golden files, and a real
browser (Debian's headless Chromium) for layout at 1280 px, the filter box and column sort.

Expectations are computed from the result objects' frames here, never from the report's own code.
Golden files live in ``tests/golden/``; ``INVOICEKIT_REGEN_GOLDEN=1`` rewrites them.
"""

from __future__ import annotations

import difflib
import html
import json
import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from bs4 import BeautifulSoup

import invoicekit as ik
from invoicekit.reconcile import IN_SYNC, STATUSES
from invoicekit.reports import COMPACT_ROWS, plan_html, reconcile_html, sync_result_html
from invoicekit.samples import make_invoices, make_scenario

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("INVOICEKIT_REGEN_GOLDEN") == "1"
SCRIPT = "<script>alert('x')</script> & Co"
TEMPLATE = "{{7*7}} GmbH {% raw %}"
LONG = "W" * 160  # one unbreakable word: must wrap, not widen the page
EM_DASH = "\u2014"


# -- data ---------------------------------------------------------------------------------------------
def _rename(s: ik.InvoiceSet, names: dict[str, str]) -> ik.InvoiceSet:
    """``s`` with the client name of some invoices replaced (client JSON and checksums recomputed)."""
    inv = s.invoices.copy()
    for i, name in names.items():
        m = inv["id"] == i
        client = json.loads(inv.loc[m, "client_data"].iloc[0])
        client["name"] = name
        inv.loc[m, "client_name"] = name
        inv.loc[m, "client_data"] = json.dumps(client)
    inv["checksum"] = ik.checksum(inv)
    return ik.InvoiceSet(inv, s.lines, base=s.base)


def test_nothing_needing_action_is_a_report_too(sc):
    """A device against its own export: every invoice the same, nothing needing action (the
    complete report used to fail building the highlights of no rows)."""
    device = sc.devices["device_a"]
    rec = ik.reconcile(device, ik.InvoiceSet(device.invoices.copy(), device.lines.copy()))
    assert set(rec.status["status"]) == {"same"}
    page = reconcile_html(rec)
    soup = BeautifulSoup(page, "html.parser")
    assert set(_rows(soup)) == set(device.invoices["id"].astype(str))
    assert "Nothing needs action" in page


@pytest.fixture(scope="module")
def sc():
    return make_scenario(n_central=120, new_per_device=8)


@pytest.fixture(scope="module")
def rec(sc):
    """device_a against central, with hostile client names on three invoices only the device holds."""
    device = sc.devices["device_a"]
    new = device.invoices.loc[~device.invoices["id"].isin(sc.central.invoices["id"]), "id"].tolist()
    local = _rename(device, {new[0]: SCRIPT, new[1]: TEMPLATE, new[2]: LONG})
    return ik.reconcile(local, sc.central)


@pytest.fixture(scope="module")
def page(rec):
    return reconcile_html(rec)


@pytest.fixture(scope="module")
def soup(page):
    return BeautifulSoup(page, "html.parser")


@pytest.fixture(scope="module")
def plan(rec):
    return ik.plan_sync(ik.resolve(rec, strategy="three_way"))


@pytest.fixture(scope="module")
def synced(sc, tmp_path_factory):
    """A real sync (SQLite device store, SQLite central store) of device_a: its plan and result."""
    tmp = tmp_path_factory.mktemp("sync")
    central = f"sqlite:///{tmp / 'central.sqlite'}"
    ik.init_db(central)
    ik.write_central(sc.central, central)
    path = tmp / "device_a.sqlite"
    ik.write_local(sc.devices["device_a"], path)
    plan = ik.plan_sync(ik.resolve(ik.reconcile(ik.read_local(path), ik.read_central(central)),
                                   strategy="merge_fields"))
    return plan, ik.apply_sync(plan, local=path, central=central, progress=False)


def _plain_pair():
    """No base (a store written by other software): one invoice's client name edited on the device."""
    central = make_invoices(6, source="central")
    inv = central.invoices.copy()
    inv["source"] = "device_x"
    target = inv["id"].iloc[2]
    local = _rename(ik.InvoiceSet(inv, central.lines), {target: "Renamed on the device Ltd"})
    linv = local.invoices.copy()
    linv.loc[linv["id"] == target, "version"] = 2
    linv.loc[linv["id"] == target, "sync_status"] = "pending"
    return ik.InvoiceSet(linv, central.lines), central, target


# -- helpers --------------------------------------------------------------------------------------------
def _rows(soup) -> dict[str, object]:
    """The report's rows by invoice id (``data-id``)."""
    return {r["data-id"]: r for r in soup.select("[data-row]")}


def _first(row):
    """The summary line of a row: a ``<tr>`` itself, or the first line of an invoice's ``<tbody>``."""
    return row if row.name == "tr" else row.find("tr")


def _side_by_side(row) -> dict[str, list]:
    """field label -> the base / local / central cells of one invoice's side-by-side table."""
    table = row.select_one("details.inv table")
    return {tr.th.get_text(): tr.find_all("td") for tr in table.tbody.find_all("tr")}


def _money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def _without_op_ids(text: str, ops: pd.DataFrame) -> str:
    """``text`` with each op id replaced by its rank among the operations (by kind and invoice id):
    a merged payload carries the time of the merge, so its op id differs from run to run."""
    ranked = ops.sort_values(["kind", "invoice_id"])["op_id"]
    for k, op in enumerate(ranked):
        text = text.replace(op, f"op-{k:04d}").replace(op[:8] + "\u2026", f"op-{k:04d}"[:8] + "\u2026")
    return text


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; run with INVOICEKIT_REGEN_GOLDEN=1 to write it"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(list(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden",
                                                 "now"))[:60])
        pytest.fail(f"{name} differs from its golden file (INVOICEKIT_REGEN_GOLDEN=1 regenerates it):\n{diff}")


# -- reconcile: complete, escaped, highlighted -------------------------------------------------------------
def test_every_invoice_is_in_the_complete_report(rec, soup):
    rows = _rows(soup)
    assert len(soup.select("[data-row]")) == len(rec.status) == len(rows)
    assert set(rows) == set(rec.status["id"])
    assert len(rows) > COMPACT_ROWS  # nothing stops after 20 rows
    # each invoice sits in the section of its status
    for section in soup.select("details.section"):
        status = section.summary.select_one(".chip").get_text()
        ids = {r["data-id"] for r in section.select("[data-row]")}
        assert ids == set(rec.status.loc[rec.status["status"] == status, "id"]), status
    # invoice number and client of every invoice the device holds
    local = rec.local.invoices.set_index("id")
    for i, row in rows.items():
        if i in local.index:
            cells = _first(row).find_all("td")
            assert cells[0].get_text() == local.at[i, "invoice_number"]
            assert cells[1].get_text() == local.at[i, "client_name"]


def test_values_are_escaped_and_templates_in_data_stay_text(rec, page, soup):
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co" in page
    assert [s.get("id") for s in soup.find_all("script")] == ["ikr-script"]  # only the report's own
    clients = [td.get_text() for td in soup.select("[data-row] > tr:first-child > td:nth-of-type(2)")]
    assert SCRIPT in clients and TEMPLATE in clients  # shown literally, {{7*7}} not evaluated
    assert "{{7*7}}" in page and "{% raw %}" in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)  # no CDN, nothing fetched


def test_compact_repr_has_no_script_and_says_where_the_rest_is(rec):
    compact = rec._repr_html_()
    soup = BeautifulSoup(compact, "html.parser")
    needing = int((~rec.status["status"].isin(IN_SYNC)).sum())
    assert "<script" not in compact and "<!doctype" not in compact.lower()
    assert len(soup.select("[data-row]")) == COMPACT_ROWS < needing
    assert f"and {needing - COMPACT_ROWS:,} more invoices needing action" in soup.get_text()
    assert "&lt;script&gt;" in compact or SCRIPT not in set(rec.status["id"])  # escaped wherever shown


def test_to_html_writes_the_complete_report(rec, page, tmp_path):
    path = tmp_path / "rec.html"
    rec.to_html(str(path))
    assert path.read_text(encoding="utf-8") == page


def test_checksums_are_shortened_with_the_full_value_on_hover(rec, soup):
    rows = _rows(soup)
    status = rec.status.set_index("id")
    checked = 0
    for i in status.index[~status["status"].isin(IN_SYNC)]:
        cells = _side_by_side(rows[i])["checksum"]
        for side, td in zip(("base", "local", "central"), cells):
            full = status.at[i, f"{side}_checksum"]
            if pd.isna(full):
                assert td.get_text() == EM_DASH
                continue
            abbr = td.abbr
            assert abbr["title"] == full and len(full) == 64
            assert abbr.get_text() == full[:10] + "\u2026"
            checked += 1
    assert checked > 20
    assert not re.search(r">[0-9a-f]{64}<", str(soup))  # never printed whole


def test_changed_values_are_highlighted_line_by_line(rec, soup):
    rows = _rows(soup)
    diff = rec.fields
    conflicts = rec.status.loc[rec.status["status"] == "conflict", "id"]
    assert len(conflicts)
    seen = 0
    for i in conflicts:
        table = _side_by_side(rows[i])
        mine = diff[diff["id"] == i].copy()
        parts = mine["field"].astype(object).str.extract(r"^lines\[(?P<d>.*)#(?P<n>\d+)\]\.(?:quantity|unit_price)$")
        mine["label"] = ("line: " + parts["d"] + " #" + parts["n"]).fillna(
            mine["field"].str.replace("client.", "client ", regex=False).str.replace("_", " "))
        # a line is one row: highlighted on a side when its quantity or its unit price changed there
        for label, f in mine.groupby("label")[["local_changed", "central_changed"]].any().iterrows():
            base, local, central = table[label]
            assert ("chg" in local.get("class", [])) == bool(f.local_changed), (i, label)
            assert ("chg" in central.get("class", [])) == bool(f.central_changed), (i, label)
            assert "chg" not in base.get("class", [])
            seen += 1
        # fields no side changed are not highlighted
        for label, field in (("invoice number", "invoice_number"), ("client name", "client.name"),
                             ("currency", "currency")):
            if not ((diff["id"] == i) & (diff["field"] == field)).any():
                assert not any("chg" in td.get("class", []) for td in table[label]), (i, label)
    assert seen >= len(conflicts)
    # a line shows quantity x unit price = line total, right-aligned
    line = next(tds for label, tds in _side_by_side(rows[conflicts.iloc[0]]).items() if label.startswith("line: "))
    assert re.fullmatch(r"[\d,.]+ \u00d7 [\d,.]+ = [\d,.]+", line[1].get_text()) and "num" in line[1].get("class", [])


def test_without_a_base_both_sides_of_a_difference_are_highlighted():
    local, central, target = _plain_pair()
    rec = ik.reconcile(local, central)
    assert dict(zip(rec.status["id"], rec.status["status"]))[target] == "local_ahead"
    soup = BeautifulSoup(reconcile_html(rec), "html.parser")
    table = _side_by_side(_rows(soup)[target])
    base, loc, cen = table["client name"]
    assert base.get_text() == EM_DASH and "na" in base.get("class", [])
    assert loc.get_text() == "Renamed on the device Ltd"
    assert "chg" in loc.get("class", []) and "chg" in cen.get("class", [])
    assert not any("chg" in td.get("class", []) for td in table["invoice number"])


def test_header_counts_and_exact_money_at_stake(rec, soup):
    table = soup.find("h2", string=re.compile("By status")).find_next("table")
    currencies = [th.get_text() for th in table.thead.find_all("th")[2:]]
    heads = pd.concat([rec.local.invoices, rec.central.invoices[~rec.central.invoices["id"].isin(
        rec.local.invoices["id"])]])[["id", "total", "currency"]]
    merged = rec.status[["id", "status"]].merge(heads, on="id")
    for tr in table.tbody.find_all("tr"):
        tds = tr.find_all("td")
        status = tds[0].get_text()
        assert int(tds[1].get_text().replace(",", "")) == rec.counts()[status]
        for cur, td in zip(currencies, tds[2:]):
            part = merged[(merged["status"] == status) & (merged["currency"] == cur)]
            expected = sum((Decimal(str(x)) for x in part["total"]), Decimal("0.00"))
            assert td.get_text() == (_money(expected) if len(part) else EM_DASH), (status, cur)
            assert "num" in td.get("class", [])
    assert [tr.td.get_text() for tr in table.tbody.find_all("tr")] == list(STATUSES)
    chart = soup.select_one("svg.chart")
    assert [t.get_text() for t in chart.select("text:not(.v)")] == list(STATUSES)
    assert [t.get_text() for t in chart.select("text.v")] == [f"{rec.counts()[s]:,}" for s in STATUSES]


def test_per_field_match_statistics(rec, soup):
    table = soup.find("h2", string="Field match statistics").find_next("table")
    stats = {tr.td.get_text(): [td.get_text() for td in tr.find_all("td")] for tr in table.tbody.find_all("tr")}
    both = rec.local.invoices.merge(rec.central.invoices, on="id", suffixes=("_l", "_c"))
    for label, col in (("total", "total"), ("client name", "client_name"), ("line items", "line_items"),
                       ("version", "version")):
        differing = int((both[f"{col}_l"].astype(str) != both[f"{col}_c"].astype(str)).sum())
        row = stats[label]
        assert int(row[1].replace(",", "")) == len(both)
        assert int(row[2].replace(",", "")) == len(both) - differing
        assert int(row[3].replace(",", "")) == differing, label
    assert int(stats["total"][3]) > 0 and int(stats["client name"][3]) == 0


def test_booleans_missing_values_and_numbers(plan, soup):
    plan_soup = BeautifulSoup(plan_html(plan), "html.parser")
    deletes = {td.get_text() for tr in plan_soup.select("[data-row]") for td in tr.find_all("td")[7:8]}
    assert deletes <= {"yes", "no"} and "yes" in deletes
    assert "True" not in plan_soup.get_text() and "<NA>" not in str(plan_soup) and "nan" not in plan_soup.get_text()
    # an invoice created on the device has no base and no central version: em dashes
    local_only = soup.select_one("details.section:has(.chip:-soup-contains('local_only')) [data-row] > tr")
    versions = local_only.find_all("td")[3:6]
    assert versions[0].get_text() == EM_DASH and versions[2].get_text() == EM_DASH
    assert all("num" in td.get("class", []) for td in versions)
    total = local_only.find_all("td")[2]
    assert "num" in total.get("class", []) and re.fullmatch(r"[\d,]+\.\d\d [A-Z]{3}", total.get_text())


def test_scope_device_says_central_only_is_out_of_scope(sc, tmp_path):
    url = f"sqlite:///{tmp_path / 'central.sqlite'}"
    ik.init_db(url)
    ik.write_central(sc.central, url)
    rec = ik.reconcile(sc.devices["device_a"], url)
    if rec.scope != "device":
        pytest.fail(f"reconcile(device, url) is expected to read the device's ids only, got scope={rec.scope}")
    soup = BeautifulSoup(reconcile_html(rec), "html.parser")
    row = next(tr for tr in soup.find("h2", string=re.compile("By status")).find_next("table").tbody.find_all("tr")
               if tr.td.get_text() == "central_only")
    assert row.find_all("td")[1].get_text() == "out of scope"
    assert len(soup.select("[data-row]")) == len(rec.status)


# -- plans and sync results ----------------------------------------------------------------------------------
def test_plan_report_lists_every_operation(plan, tmp_path):
    assert len(plan.ops) > COMPACT_ROWS
    path = tmp_path / "plan.html"
    plan.to_html(str(path))
    soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
    rows = soup.select("[data-row]")
    assert len(rows) == len(plan.ops)
    shown_ops = {tr.find_all("td")[9].abbr["title"] for tr in rows}
    assert shown_ops == set(plan.ops["op_id"])
    numbers = plan.target.invoices.set_index("id")["invoice_number"]
    for tr, op in zip(rows, plan.ops.itertuples()):  # sections in kind order, as the plan is
        first = tr.find_all("td")[0]
        assert first.abbr["title"] == op.invoice_id
        if op.invoice_id in numbers.index:
            assert first.get_text() == numbers[op.invoice_id]
    compact = BeautifulSoup(plan._repr_html_(), "html.parser")
    assert len(compact.select("[data-row]")) == COMPACT_ROWS and "plan.to_html" in compact.get_text()
    assert compact.find("script") is None


def test_sync_result_report_lists_every_operation(synced, tmp_path):
    plan, result = synced
    assert len(result.results) > COMPACT_ROWS
    path = tmp_path / "sync.html"
    result.to_html(str(path))
    soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
    rows = [tr for tr in soup.select("[data-row]")]
    by_section = {s.summary.select_one(".chip").get_text(): len(s.select("[data-row]"))
                  for s in soup.select("details.section")}
    assert sum(n for k, n in by_section.items() if k != "conflict") == len(result.results)
    assert by_section == {**({"conflict": len(result.conflicts)} if len(result.conflicts) else {}),
                          **result.results["kind"].value_counts().to_dict()}
    ops = {tr.find_all("td")[0].abbr["title"] for tr in rows}
    assert ops == set(result.results["op_id"])
    compact = BeautifulSoup(result._repr_html_(), "html.parser")
    assert compact.find("script") is None and "result.to_html" in compact.get_text()


# -- golden files ---------------------------------------------------------------------------------------------
def test_reconcile_report_matches_its_golden_file(rec, page):
    assert reconcile_html(rec) == page  # deterministic: the same result renders the same bytes
    _golden("reconcile.html", page)
    _golden("reconcile_compact.html", rec._repr_html_())


def test_plan_and_sync_reports_match_their_golden_files(plan, synced):
    _golden("plan.html", _without_op_ids(plan_html(plan), plan.ops))
    _golden("sync_result.html", _without_op_ids(sync_result_html(synced[1]), synced[1].results))


# -- a real browser -------------------------------------------------------------------------------------------
_HARNESS = """
<script id="ikr-test-harness">
window.addEventListener("load", function () {
  var out = {};
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  var de = document.documentElement;
  out.scrollWidth = de.scrollWidth; out.clientWidth = de.clientWidth; out.innerWidth = window.innerWidth;
  out.wide = Array.prototype.filter.call(document.querySelectorAll("body *"), function (el) {
    return el.getBoundingClientRect().right > de.clientWidth + 0.5;
  }).slice(0, 5).map(function (el) { return el.tagName + "." + el.className; });
  var box = document.querySelector("input.filter");
  box.value = __QUERY__;
  box.dispatchEvent(new Event("input", {bubbles: true}));
  var rows = Array.prototype.slice.call(document.querySelectorAll("[data-row]"));
  out.rows = rows.length;
  out.visible = rows.filter(function (r) { return !r.hidden && getComputedStyle(r).display !== "none"; })
                    .map(function (r) { return r.getAttribute("data-id") || r.textContent.trim(); });
  out.shown = document.querySelector(".toolbar .shown").textContent;
  box.value = ""; box.dispatchEvent(new Event("input", {bubbles: true}));
  out.afterClear = rows.filter(function (r) { return !r.hidden; }).length;
  var sort = __SORT__;
  if (sort) {
    var table = document.querySelectorAll("table.sortable")[sort.table];
    var th = Array.prototype.filter.call(table.querySelectorAll("thead th"), function (t) {
      return t.textContent.trim() === sort.column; })[0];
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    function keys() {
      var items = table.classList.contains("grouped") ? Array.prototype.map.call(table.tBodies, function (b) {
        return b.rows[0]; }) : Array.prototype.slice.call(table.tBodies[0].rows);
      return items.map(function (tr) { var c = tr.cells[idx]; return c.getAttribute("data-v") || c.textContent; });
    }
    th.querySelector("button").click(); out.ascending = keys();
    th.querySelector("button").click(); out.descending = keys();
  }
  var pre = document.createElement("pre"); pre.id = "ikr-test-result";
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str:
    """Debian's chromium, or a failure that says how to get it."""
    path = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else shutil.which("chromium")
    if not path:
        pytest.fail("the report tests need Debian's chromium (headless): run `bash scripts/sysdeps.sh test` as root "
                    "or with sudo, or `sudo apt-get install -y --no-install-recommends chromium`")
    return path


def in_browser(page: str, tmp_path: Path, *, query: str = "", sort: dict | None = None) -> dict:
    """Open ``page`` in headless Chromium at 1280 px, type ``query`` in the filter box, click a column
    header twice when ``sort`` says which; returns what the page measured."""
    harness = _HARNESS.replace("__QUERY__", json.dumps(query)).replace("__SORT__", json.dumps(sort))
    path = tmp_path / "page.html"
    path.write_text(page.replace("</body>", harness + "</body>"), encoding="utf-8")
    proc = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900", "--virtual-time-budget=10000",
         "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    found = re.search(r'<pre id="ikr-test-result">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"chromium exited {proc.returncode} without the page's measurements: {proc.stderr[-1500:]}"
    return json.loads(html.unescape(found.group(1)))


def _assert_fits(measured: dict) -> None:
    assert measured["innerWidth"] == 1280
    assert measured["scrollWidth"] <= 1280 and measured["scrollWidth"] <= measured["clientWidth"], measured["wide"]


def test_reconcile_report_in_chromium_fits_filters_and_sorts(rec, page, tmp_path):
    local = rec.local.invoices.set_index("id")
    number = local["invoice_number"].iloc[3]
    measured = in_browser(page, tmp_path, query=number.lower(),
                          sort={"table": 0, "column": "total"})
    _assert_fits(measured)  # every section open, a 160-character word in a client name included
    everyone = set(rec.status["id"])
    heads = pd.concat([rec.local.invoices, rec.central.invoices[~rec.central.invoices["id"].isin(local.index)]])
    expected = set(heads.loc[heads["invoice_number"].str.lower().str.contains(number.lower(), regex=False), "id"])
    assert measured["rows"] == len(everyone)
    assert set(measured["visible"]) == expected and len(expected) >= 1
    assert measured["shown"] == f"{len(expected)} of {len(everyone)} rows match"
    assert measured["afterClear"] == len(everyone)
    first = rec.status.loc[rec.status["status"] == "conflict", "id"]  # the first section: conflicts
    totals = sorted(Decimal(str(local.at[i, "total"])) for i in first)
    assert [Decimal(v) for v in measured["ascending"]] == totals
    assert [Decimal(v) for v in measured["descending"]] == totals[::-1]


def test_filter_matches_full_ids_behind_shortened_ones_and_client_names(rec, page, tmp_path):
    target = rec.status.loc[rec.status["status"] == "central_ahead", "id"].iloc[0]
    measured = in_browser(page, tmp_path, query=target[-12:].upper())  # only in title / data-id
    assert measured["visible"] == [target]
    measured = in_browser(page, tmp_path, query="<SCRIPT>")  # case-insensitive, literal text
    names = rec.local.invoices.set_index("id")["client_name"]
    assert measured["visible"] == [i for i in rec.status["id"] if i in names.index and "<script>" in names[i].lower()]


def test_plan_and_sync_reports_in_chromium(plan, synced, tmp_path):
    page = plan_html(plan)
    measured = in_browser(page, tmp_path, query="PULL", sort={"table": 0, "column": "total"})
    _assert_fits(measured)
    assert len(measured["visible"]) == int((plan.ops["kind"] == "pull").sum()) > 0  # by section, any case
    pushed = plan.ops.loc[plan.ops["kind"] == "push", "invoice_id"].iloc[-1]
    number = plan.target.invoices.set_index("id").loc[pushed, "invoice_number"]
    assert len(in_browser(page, tmp_path, query=number)["visible"]) == 1
    pushes = plan.ops[plan.ops["kind"] == "push"].merge(plan.target.invoices[["id", "total"]], left_on="invoice_id",
                                                         right_on="id")
    assert [Decimal(v) for v in measured["ascending"]] == sorted(Decimal(str(t)) for t in pushes["total"])
    result = synced[1]
    measured = in_browser(sync_result_html(result), tmp_path, query="pull")
    _assert_fits(measured)
    flagged = (result.results["central"] == "conflict") | (result.results["local"] == "local_changed")
    assert measured["rows"] == len(result.results) + int(flagged.sum())
    pulls = result.results["kind"] == "pull"
    assert len(measured["visible"]) == int(pulls.sum() + (pulls & flagged).sum()) > 0


# -- validation, duplicates, render results -------------------------------------------------------------------
@pytest.fixture(scope="module")
def broken(sc):
    """device_a with problems: a total off by a cent on 25 invoices, a hostile unknown currency on one."""
    inv = sc.devices["device_a"].invoices.copy()
    inv.loc[inv.index[:25], "total"] = inv.loc[inv.index[:25], "total"].map(lambda t: t + Decimal("0.01"))
    inv.loc[inv.index[30], "currency"] = "<b>X</b>"
    return ik.validate(ik.InvoiceSet(inv, sc.devices["device_a"].lines))


def test_validation_report_lists_every_problem_escaped(broken, tmp_path):
    assert len(broken.problems) > COMPACT_ROWS
    path = tmp_path / "validation.html"
    broken.to_html(str(path))
    text = path.read_text(encoding="utf-8")
    soup = BeautifulSoup(text, "html.parser")
    rows = soup.select("[data-row]")
    assert len(rows) == len(broken.problems)
    by_section = {s.summary.select_one(".chip").get_text(): len(s.select("[data-row]"))
                  for s in soup.select("details.section")}
    assert by_section == broken.problems["rule"].value_counts().to_dict()
    assert "<b>X</b>" not in text and "&lt;b&gt;X&lt;/b&gt;" in text
    compact = broken._repr_html_()
    assert "<script" not in compact and len(BeautifulSoup(compact, "html.parser").select("[data-row]")) == COMPACT_ROWS
    measured = in_browser(text, tmp_path, query="unknown_currency")
    _assert_fits(measured)
    assert len(measured["visible"]) == int((broken.problems["rule"] == "unknown_currency").sum()) == 1


def test_duplicates_report_highlights_differing_fields_and_draws_the_histogram(tmp_path):
    from invoicekit.samples import read_jsonl

    pairs = ik.find_duplicates(read_jsonl(Path(__file__).parents[1] / "data" / "samples" / "central.jsonl"))
    path = tmp_path / "duplicates.html"
    pairs.to_html(str(path))
    soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
    rows = soup.select("[data-row]")
    assert len(rows) == len(pairs.pairs) > 0
    best = pairs.pairs.sort_values("score", ascending=False, kind="stable")
    header = [th.get_text() for th in soup.select("details.section table thead th")][:11]
    name_at = header.index("name")
    for tr, pair in zip(soup.select("details.section:first-of-type [data-row]"),
                        best[best["action"] == soup.select_one("details.section .chip").get_text()].itertuples()):
        tds = tr.find_all("td")
        assert tds[0].abbr["title"] == pair.id_a and tds[1].abbr["title"] == pair.id_b
        assert ("chg" in tds[name_at].get("class", [])) == (pair.sim_client_name < 1)
    bars = soup.select("svg.chart text.v")
    assert [int(b.get_text().replace(",", "")) for b in bars] == pairs.histogram()["pairs"].tolist()
    assert "DuplicatePairs" in pairs._repr_html_()


def test_render_report_shows_page_one_thumbnails(tmp_path):
    from tests._render_helpers import SELLER, invoice_set

    if shutil.which("pdftoppm") is None:
        pytest.fail("page-1 thumbnails need poppler's pdftoppm: run `bash scripts/sysdeps.sh test`")
    s = invoice_set([{"id": f"inv-{i}", "number": f"R-{i}", "client": f"<i>Client {i}</i>",
                      "lines": [("Work", 2, 10 + i)]} for i in range(3)])
    result = ik.render_batch(s, tmp_path / "pdf", seller=SELLER, workers=1)
    path = tmp_path / "render.html"
    result.to_html(str(path))
    text = path.read_text(encoding="utf-8")
    soup = BeautifulSoup(text, "html.parser")
    images = soup.select(".thumbs img")
    assert [f.figcaption.get_text() for f in soup.select(".thumbs figure")] == ["R-0", "R-1", "R-2"]
    for img in images:
        assert img["src"].startswith("data:image/png;base64,")  # embedded: the page works offline
        assert __import__("base64").b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(soup.select("[data-row]")) == 3
    measured = in_browser(text, tmp_path, query="r-1")
    _assert_fits(measured)
    assert len(measured["visible"]) == 1
    assert "RenderResult" in result._repr_html_()


# -- every other result's repr: the shared table look ----------------------------------------------------------
def test_frame_html_has_the_reports_look_for_every_other_repr():
    from invoicekit._html import frame_html, page

    frame = pd.DataFrame({"n": pd.array([1234567, None], dtype="Int64"), "ok": [True, False],
                          "amount": [Decimal("1234.50"), None], "note": ["<script>x</script>", None],
                          "local_checksum": ["ab" * 32, "cd" * 32]})
    frag = frame_html(frame, caption="by <rule>", max_rows=1)
    soup = BeautifulSoup(frag, "html.parser")
    tds = soup.select("tbody td")
    assert [td.get_text() for td in tds] == ["1,234,567", "yes", "1,234.50", "<script>x</script>", "ab" * 5 + "\u2026"]
    assert "num" in tds[0]["class"] and "num" in tds[2]["class"] and tds[4].abbr["title"] == "ab" * 32
    assert "<script>x" not in frag and soup.caption.get_text() == "by <rule>"
    assert soup.select_one("p.note").get_text() == "\u2026 1 more rows"  # a repr stays short and says so
    whole = BeautifulSoup(frame_html(frame), "html.parser").select("tbody tr")[1].find_all("td")
    assert [td.get_text() for td in whole][:4] == [EM_DASH, "no", EM_DASH, EM_DASH]
    doc = page("Title <x>", frag + frag)
    assert doc.lower().startswith("<!doctype html>") and doc.count("<style>") == 1 and "Title &lt;x&gt;" in doc
    assert doc.count("<table") == 2
