"""invoicekit.widgets, headless: real sample stores, real resolve, a real SQLite store for the
duplicate decisions, real WeasyPrint and pdftoppm for the batch; buttons clicked and
toggles set programmatically, as the frontend would."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import ipywidgets
import pandas as pd
import pytest

import invoicekit as ik
from invoicekit.errors import UsageError
from invoicekit.samples import SAMPLE_SELLER, read_jsonl
from invoicekit.widgets import ConflictReview, DuplicateReview, RenderBatch

from .conftest import stop_process

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data" / "samples"


# -- helpers ---------------------------------------------------------------------------------
def central_taken(actions: pd.DataFrame) -> pd.Series:
    """The action that takes central's whole invoice: a pull when central is ahead, else central's
    content pushed one version past both (a device's version never goes down)."""
    ahead = actions["central_version"].to_numpy() > actions["local_version"].to_numpy()
    return pd.Series(["pull" if a else "push" for a in ahead], index=actions.index)


def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def button(review, text: str):
    found = [w for w in walk(review.widget) if isinstance(w, ipywidgets.Button) and w.description.startswith(text)]
    assert found, f"no button {text!r}"
    return found[0]


def toggles(review):
    return [w for w in walk(review.widget) if isinstance(w, ipywidgets.ToggleButtons)]


def key_box(review):
    (box,) = [w for w in walk(review.widget) if isinstance(w, ipywidgets.Text) and "ikw-keys" in w._dom_classes]
    return box


def html_of(review) -> str:
    return "".join(w.value for w in walk(review.widget) if isinstance(w, ipywidgets.HTML))


# -- data ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def central():
    return read_jsonl(SAMPLES / "central.jsonl")


@pytest.fixture(scope="module")
def rec_a(central):
    return ik.reconcile(ik.read_local(SAMPLES / "device_a.sqlite"), central)


@pytest.fixture(scope="module")
def res_a(rec_a):
    return ik.resolve(rec_a, strategy="three_way")


@pytest.fixture(scope="module")
def rec_b(central):
    return ik.reconcile(ik.read_local(SAMPLES / "device_b.sqlite"), central)


def unresolved_ids(res) -> list[str]:
    return res.actions.loc[res.actions["action"] == "unresolved", "id"].astype(str).tolist()


# -- ConflictReview --------------------------------------------------------------------------------
def test_conflict_review_shows_the_unresolved_conflicts(rec_a, res_a):
    cr = ConflictReview(res_a, reconciliation=rec_a)
    assert list(cr.ids) == unresolved_ids(res_a) and len(cr.ids) == 9
    assert cr.progress() == (0, 9) and len(cr.decisions) == 0
    assert list(cr.decisions.columns) == ["id", "field", "choice"]
    first = cr.current
    f = cr.fields()
    want = rec_a.fields[rec_a.fields["id"] == first]
    assert set(f["field"]) == set(want["field"])
    assert not f.loc[f["field"] == "total", "decidable"].item()  # the total follows from the lines
    needs = set(res_a.unresolved.loc[res_a.unresolved["id"] == first, "field"])
    assert set(f.loc[f["needs"], "field"]) == needs
    page = html_of(cr)
    number = rec_a.local.invoices.set_index("id").loc[first, "invoice_number"]
    assert f"Conflict 1 of 9: {number}" in page
    assert "ikw-chg" in page  # both sides changed: highlighted
    assert "0 of 9 conflicts decided" in page
    assert "ConflictReview(three_way: 0 of 9" in repr(cr)
    bundle = cr._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "<table>" in bundle["text/html"]


def test_a_resolution_alone_is_enough_to_review_it(rec_a, res_a):
    assert res_a.reconciliation is rec_a  # resolve() keeps what it decided
    cr = ConflictReview(res_a)
    first = cr.current
    cr.choose(first, "*", "central")
    again = cr.apply()
    assert again.actions.set_index("id").loc[first, "action"] != "unresolved"
    assert again.reconciliation is rec_a
    assert len(ConflictReview(again).ids) == len(cr.ids) - 1


def test_conflict_review_clicks_make_the_decisions_resolve_takes(rec_a, res_a):
    cr = ConflictReview(res_a, reconciliation=rec_a)
    ids = list(cr.ids)
    # conflict 1: the field toggle set to central
    first_field = cr.fields().query("needs")["field"].iloc[0]
    field_toggle = [t for t in toggles(cr) if "central" in [v for _, v in t.options]
                    and ("base", "base") in t.options and not t.options[1][0].startswith("whole")]
    field_toggle[0].value = "central"
    assert cr.decisions.values.tolist() == [[ids[0], first_field, "central"]]
    assert [t.value for t in toggles(cr)] == ["central", "auto"]  # redrawn: the field's choice shows, not whole
    # conflict 2: taken whole from local with the invoice toggle
    button(cr, "next ▶").click()
    assert cr.current == ids[1]
    (whole,) = [t for t in toggles(cr) if t.options[0][1] == "auto" and t.options[0][0].startswith("invoice")]
    whole.value = "local"
    fields = toggles(cr)[:-1]  # the grid's toggles; the invoice's comes last
    assert fields and all(t.disabled and t.value == "local" for t in fields)  # taken whole: shown, locked
    # conflict 3: the whole invoice from central, by key (typed in the key box)
    key_box(cr).value = "n"
    assert cr.current == ids[2]
    key_box(cr).value = "C"
    assert key_box(cr).value == ""  # the box empties itself
    d = cr.decisions
    assert d.values.tolist() == [[ids[0], first_field, "central"], [ids[1], "*", "local"], [ids[2], "*", "central"]]
    assert cr.progress() == (3, 9)
    assert "3 of 9 conflicts decided" in html_of(cr)
    res = cr.apply()
    assert res is cr.result and isinstance(res, ik.Resolution)
    acts = res.actions.set_index("id")
    assert acts.loc[ids[1], "action"] == "push" and acts.loc[ids[1], "winner"] == "local"
    assert acts.loc[ids[2], "winner"] == "central" and acts.loc[ids[2], "action"] == central_taken(acts)[ids[2]]
    assert acts.loc[ids[0], "action"] == "push" and acts.loc[ids[0], "winner"] == "merged"
    assert set(acts.index[acts["action"] == "unresolved"]) == set(ids[3:])
    # the merged invoice holds central's value of the field chosen
    desc = first_field.split("[", 1)[1].rsplit("#", 1)[0]
    central_value = rec_a.fields.set_index(["id", "field"]).loc[(ids[0], first_field), "central"]
    line = res.lines[(res.lines["invoice_id"] == ids[0]) & (res.lines["description"] == desc)]
    assert str(line["quantity"].iloc[0]) == str(central_value)
    # exactly what resolve gives for the same frame
    again = ik.resolve(rec_a, strategy="three_way", decisions=cr.decisions)
    pd.testing.assert_frame_equal(again.actions.drop(columns=[]), res.actions)


def test_take_all_buttons_settle_every_conflict(rec_a, res_a):
    cr = ConflictReview(res_a, reconciliation=rec_a)
    button(cr, "all needing ← local").click()
    want = res_a.unresolved[["id", "field"]].astype(str).assign(choice="local")
    got = cr.decisions.astype(str)
    assert sorted(map(tuple, got.values.tolist())) == sorted(map(tuple, want.values.tolist()))
    assert cr.progress() == (9, 9)
    res = cr.apply()
    assert not (res.actions["action"] == "unresolved").any()
    assert set(res.actions.set_index("id").loc[list(cr.ids), "winner"]) == {"merged"}
    button(cr, "all whole ← central").click()
    assert set(cr.decisions["field"]) == {"*"} and set(cr.decisions["choice"]) == {"central"}
    res = cr.apply()
    acts = res.actions.set_index("id").loc[list(cr.ids)]
    assert (acts["winner"] == "central").all() and acts["action"].eq(central_taken(acts)).all()
    button(cr, "clear all").click()
    assert len(cr.decisions) == 0 and cr.progress() == (0, 9)


def test_scripted_choices_and_keys(rec_a, res_a):
    cr = ConflictReview(res_a, reconciliation=rec_a)
    ids = list(cr.ids)
    cr.choose(ids[0], "*", "base")
    f = cr.fields(ids[0]).query("decidable")["field"].iloc[0]
    cr.choose(ids[0], f, "local")  # a field choice replaces the whole-invoice one
    assert cr.decisions.values.tolist() == [[ids[0], f, "local"]]
    cr.choose(ids[0], f, None)
    assert len(cr.decisions) == 0
    cr.go(ids[4]).press("1c")
    assert cr.decisions.values.tolist() == [[ids[4], cr.fields(ids[4])["field"].iloc[0], "central"]]
    cr.press("x")
    assert len(cr.decisions) == 0
    cr.press("l").press("u")  # the next undecided after conflict 5 is conflict 6
    assert cr.current == ids[5] and cr.decisions["id"].tolist() == [ids[4]] * len(cr.decisions)
    cr.go(8).press("u")  # wraps around, past the decided conflict 5
    assert cr.current == ids[0]
    cr.take_all("central", whole=True)
    assert cr.progress() == (9, 9)
    res = cr.press("a").result
    acts = res.actions.set_index("id").loc[ids]
    assert (acts["winner"] == "central").all() and acts["action"].eq(central_taken(acts)).all()
    # decisions to start from, in any shape resolve takes
    started = ConflictReview(res_a, reconciliation=rec_a, decisions=[(ids[3], "*", "local")])
    assert started.decisions.values.tolist() == [[ids[3], "*", "local"]] and started.progress() == (1, 9)


def test_bad_arguments_name_what_is_wrong(rec_a, res_a, rec_b):
    cr = ConflictReview(res_a, reconciliation=rec_a)
    inv = cr.current
    with pytest.raises(UsageError, match="invoice id 'nope' is not among the 9 conflicts"):
        cr.choose("nope", "*", "local")
    same = rec_a.status.loc[rec_a.status["status"] == "same", "id"].iloc[0]
    with pytest.raises(UsageError, match="it is 'same' in the reconciliation"):
        cr.choose(same, "*", "local")
    with pytest.raises(UsageError, match=r"field 'client\.colour' of invoice .* cannot be chosen"):
        cr.choose(inv, "client.colour", "local")
    with pytest.raises(UsageError, match="total follows from the lines"):
        cr.choose(inv, "total", "local")
    with pytest.raises(UsageError, match="side 'remote' is not one of local, central, base"):
        cr.choose(inv, "*", "remote")
    with pytest.raises(UsageError, match="side 'middle'"):
        cr.take_all("middle")
    with pytest.raises(UsageError, match="unknown key 'z'"):
        cr.press("nz")
    assert cr.current == inv  # nothing ran
    with pytest.raises(UsageError, match="needs the Reconciliation"):  # a Resolution built without one
        ConflictReview(dataclasses.replace(res_a, reconciliation=None))
    with pytest.raises(UsageError, match="include='everything'"):
        ConflictReview(res_a, reconciliation=rec_a, include="everything")
    with pytest.raises(UsageError, match="not a conflict of the reconciliation given"):
        ConflictReview(res_a, reconciliation=rec_b)
    with pytest.raises(UsageError, match="takes a Resolution"):
        ConflictReview(rec_a.local, reconciliation=rec_a)
    # device_b's store has no base snapshots: 'base' is refused by name
    cb = ConflictReview(rec_b, strategy="three_way")
    with pytest.raises(UsageError, match=f"side 'base' for invoice '{cb.current}', which has no base"):
        cb.choose(cb.current, "*", "base")
    assert all(("base", "base") not in t.options for t in toggles(cb))
    # typed in the box, a bad key is said in the widget, never raised
    key_box(cr).value = "q"
    assert "unknown key" in html_of(cr) and cr.current == inv


def test_include_conflicts_overrides_what_the_strategy_settled(rec_a, res_a):
    cr = ConflictReview(res_a, reconciliation=rec_a, include="conflicts")
    settled = [i for i in cr.ids if i not in unresolved_ids(res_a)]
    assert len(cr.ids) == 15 and len(settled) == 6
    assert cr.progress() == (6, 15)  # the strategy decided those
    target = settled[0]
    row = cr.fields(target).query("decidable").iloc[0]
    before = res_a.actions.set_index("id").loc[target]
    assert before["winner"] == "merged"
    cr.choose(target, row["field"], "base")  # undo the change the strategy took
    res = cr.apply()
    assert res.actions.set_index("id").loc[target, "action"] == "push"
    field = row["field"]
    assert field.startswith("lines[")
    desc, part = field.split("[", 1)[1].rsplit("#", 1)[0], field.rsplit(".", 1)[1]
    line = res.lines[(res.lines["invoice_id"] == target) & (res.lines["description"] == desc)]
    assert str(line[part].iloc[0]) == str(row["base"])
    was = res_a.lines[(res_a.lines["invoice_id"] == target) & (res_a.lines["description"] == desc)]
    assert str(was[part].iloc[0]) != str(row["base"])  # the strategy had taken the changed value


def test_values_are_escaped(rec_a, res_a, central):
    target = unresolved_ids(res_a)[0]
    inv = central.invoices.copy()  # central's rows: the device's checksums stay intact
    inv.loc[inv["id"] == target, "client_name"] = "<script>alert(1)</script>"
    inv.loc[inv["id"] == target, "invoice_number"] = "<b>INV</b>"
    rec = ik.reconcile(rec_a.local, central.with_invoices(inv))
    cr = ConflictReview(rec, strategy="three_way", include="conflicts")
    cr.go(target)
    assert {"client.name", "invoice_number"} <= set(cr.fields()["field"])
    page = html_of(cr) + cr._repr_html_()
    assert "<script>alert" not in page and "<b>INV</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;INV&lt;/b&gt;" in page


def test_no_conflicts_is_a_calm_review(central):
    sub = central.with_invoices(central.invoices.head(40))
    rec = ik.reconcile(sub, sub)
    cr = ConflictReview(rec)
    assert cr.ids == () and cr.current is None and cr.progress() == (0, 0)
    assert "No conflicts to review" in html_of(cr)
    assert not (cr.apply().actions["action"] == "unresolved").any()


# -- DuplicateReview -------------------------------------------------------------------------------
@pytest.fixture()
def store(tmp_path, central):
    url = f"sqlite:///{tmp_path / 'central.sqlite'}"
    ik.init_db(url)
    assert ik.write_central(central, url).summary() is not None
    return url


@pytest.fixture(scope="module")
def pairs(central):
    return ik.find_duplicates(central)


def test_duplicate_review_decisions_are_stored_and_respected(pairs, store, central):
    review = DuplicateReview(pairs, store=store, actions=None, actor="analyst-1")
    n = len(pairs.pairs)
    assert review.progress() == (0, n) and review.left_out == 0
    first = review.cards.loc[0, "members"]
    assert set(first) == {pairs.pairs["id_a"].iloc[0], pairs.pairs["id_b"].iloc[0]}
    page = html_of(review)
    shown = central.invoices.set_index("id").loc[first[0], "invoice_number"]
    assert shown in page and "similarity" in page  # fields read from the store
    button(review, "not the same").click()  # card 1, then the next undecided card shows
    button(review, "next ▶").click()
    assert review.position == 1
    (member,) = toggles(review)
    member.value = "same"
    key_box(review).value = "n"
    key_box(review).value = "k"  # skip card 3: no answer
    assert review.position == 3
    key_box(review).value = "d"
    pair = lambda k: tuple(sorted(review.cards.loc[k, "members"]))  # noqa: E731
    d = review.decisions
    assert [tuple(r) for r in d.values.tolist()] == [(*pair(0), False), (*pair(1), True), (*pair(3), False)]
    assert review.progress() == (3, n)
    stored = button(review, "save to the store").click()
    assert stored is None
    kept = ik.read_decisions(store)
    assert sorted(zip(kept["id_a"], kept["id_b"], kept["same"])) == sorted(
        [(*pair(0), False), (*pair(1), True), (*pair(3), False)])
    assert set(kept["actor"]) == {"analyst-1"}
    at = kept["at"].tolist()
    assert len(review.save()) == 0  # nothing new: nothing written
    assert ik.read_decisions(store)["at"].tolist() == at
    # a later run respects them, and a new review does not ask again
    again = ik.find_duplicates(central, decisions=store)
    by_pair = again.pairs.set_index(["id_a", "id_b"])["action"]
    assert by_pair[pair(0)] == "keep_both" and by_pair[pair(3)] == "keep_both" and by_pair[pair(1)] == "merge"
    later = DuplicateReview(pairs, store=store, actions=None)
    assert later.left_out == 3 and later.progress() == (0, n - 3)
    assert not {pair(0), pair(1), pair(3)} & set(zip(later.pairs["id_a"], later.pairs["id_b"]))
    assert "3 pairs already decided in the store left out" in later._repr_html_()


def test_duplicate_review_clusters_and_bad_arguments(pairs, central):
    clusters = ik.cluster_duplicates(pairs)
    review = DuplicateReview(clusters, invoices=central)
    assert review.kind == "cluster" and len(review.cards) == clusters.clusters["cluster_id"].nunique()
    survivor = clusters.clusters[clusters.clusters["is_survivor"]].set_index("cluster_id")["id"]
    members = review.cards.loc[0, "members"]
    assert members[0] in set(survivor)  # the survivor is shown first
    review.press("s")
    assert review.decisions.values.tolist() == [[*sorted(members[:2]), True]]
    review.mark(members[1], members[0], None)
    assert len(review.decisions) == 0
    other = review.cards.loc[1, "members"][0]
    with pytest.raises(UsageError, match="are on different cards"):
        review.mark(members[0], other, True)
    with pytest.raises(UsageError, match="id_b 'nope' is not an invoice of any card"):
        review.mark(members[0], "nope", True)
    with pytest.raises(UsageError, match="same must be True, False or None; got 'yes'"):
        review.mark(members[0], members[1], "yes")
    with pytest.raises(UsageError, match="no store to save to"):
        review.save()
    with pytest.raises(UsageError, match="takes DuplicatePairs"):
        DuplicateReview(central)
    with pytest.raises(UsageError, match="card 9999 is outside"):
        review.go(9999)
    # default cards: the pairs to merge or review (certain skips left out); no invoices: similarities only
    plain = DuplicateReview(pairs)
    assert set(plain.cards["action"]) <= {"merge", "review"}
    assert len(plain.cards) == int(pairs.pairs["action"].isin(["merge", "review"]).sum())
    assert "similarities only" in html_of(plain)


# -- RenderBatch -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def few():
    s = ik.read_local(SAMPLES / "device_a.sqlite")
    live = s.invoices[s.invoices["deleted_at"].isna()].head(6)
    return s.with_invoices(live.reset_index(drop=True))


def test_render_batch_previews_and_renders(few, tmp_path):
    rb = RenderBatch(few, tmp_path / "pdf", seller=SAMPLE_SELLER, step=4)
    (template,) = [w for w in walk(rb.widget) if isinstance(w, ipywidgets.Dropdown) and w.description == "template"]
    (locale,) = [w for w in walk(rb.widget) if isinstance(w, ipywidgets.Dropdown) and w.description == "locale"]
    assert set(template.options) == {"invoice", "invoice_multipage", "credit_note"}
    assert "de_DE" in locale.options and "fr_FR" in locale.options
    template.value, locale.value = "invoice_multipage", "fr_FR"
    assert rb.options == {"template": "invoice_multipage", "locale": "fr_FR", "einvoice": None}
    button(rb, "preview page 1").click()
    png = rb.preview_png
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    (image,) = [w for w in walk(rb.widget) if isinstance(w, ipywidgets.Image)]
    assert image.value == png
    button(rb, "render 6 invoices").click()
    result = rb.result
    assert isinstance(result, ik.RenderResult) and result.ok and result.counts()["rendered"] == 6
    assert result.template == "invoice_multipage.html"
    assert sorted(result.files["id"]) == sorted(few.invoices["id"])
    for path in result.files["path"]:
        assert Path(path).read_bytes()[:5] == b"%PDF-"
    (bar,) = [w for w in walk(rb.widget) if isinstance(w, ipywidgets.IntProgress)]
    assert bar.value == bar.max == 6 and bar.bar_style == "success"
    assert "6 rendered" in html_of(rb)
    again = rb.run()  # resumable: everything is there already
    assert again.counts() == {**again.counts(), "rendered": 0, "skipped": 6, "failed": 0}
    assert "RenderBatch(6 live invoices" in repr(rb) and "base64," in rb._repr_html_()
    with pytest.raises(UsageError, match="is not the id of a live invoice"):
        rb.preview("nope")


def test_render_batch_bad_choices(few, tmp_path):
    with pytest.raises(UsageError, match="unknown locale 'xx_QQ'"):
        RenderBatch(few, tmp_path, locale="xx_QQ")
    with pytest.raises(UsageError, match="template 'fancy'"):
        RenderBatch(few, tmp_path, template="fancy")
    with pytest.raises(UsageError, match="einvoice='xrechnung'"):
        RenderBatch(few, tmp_path, einvoice="xrechnung")
    rb = RenderBatch(few, tmp_path, locale="pt_BR")
    assert rb.options["locale"] == "pt_BR"
    # no seller anywhere: the widget says so, the script gets the error
    button(rb, "render").click()
    assert "no seller details" in html_of(rb) and rb.result is None
    with pytest.raises(UsageError, match="no seller details"):
        rb.run()


def test_locales_cover_the_template_languages():
    from invoicekit.render._labels import LABELS
    from invoicekit.widgets._render import LOCALES, templates

    languages = {loc.split("_")[0] for loc in LOCALES}
    assert set(LABELS) | {"en"} == languages
    from invoicekit.render._templates import SHIPPED

    assert templates() == tuple(SHIPPED)
    assert os.path.isdir(REPO / "invoicekit" / "widgets")


# -- end to end: JupyterLab in headless Chromium ----------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
_NOTEBOOK_CELLS = [
    """import os
import invoicekit as ik
from invoicekit.samples import read_jsonl
from invoicekit.widgets import ConflictReview

SAMPLES = os.environ["INVOICEKIT_SAMPLES"]
rec = ik.reconcile(ik.read_local(f"{SAMPLES}/device_a.sqlite"), read_jsonl(f"{SAMPLES}/central.jsonl"))
review = ConflictReview(rec, strategy="three_way")
review""",
    """review.decisions.to_csv("decisions.csv", index=False)
review.result.actions[["id", "action", "winner", "local_version", "central_version"]].to_csv("actions.csv", index=False)
print("saved", len(review.decisions))""",
]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def jupyterlab(tmp_path):
    """A JupyterLab server on 127.0.0.1 serving a notebook that shows a ConflictReview."""
    import subprocess
    import sys
    import time
    import urllib.request

    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in _NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(tmp_path / "review.ipynb"))
    port, token = _free_port(), "invoicekit-e2e"
    env = {**os.environ, "INVOICEKIT_SAMPLES": str(SAMPLES), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "PYTHONPATH": str(REPO)}
    log = open(tmp_path / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.news_url=None", "--LabApp.extension_manager=readonly", "--allow-root",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):  # up to a minute for the server to answer
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start: " + (tmp_path / "jupyter.log").read_text(errors="replace")[-2000:])
        if proc.poll() is not None:
            pytest.fail("JupyterLab exited: " + (tmp_path / "jupyter.log").read_text(errors="replace")[-2000:])
        yield {"url": f"{base}/lab/tree/review.ipynb?token={token}", "dir": tmp_path}
    finally:
        stop_process(proc, timeout=20)
        log.close()


def _run_cell(page, index: int, *, tries: int = 3) -> None:
    """Run cell ``index`` (Ctrl+Enter), again when the kernel dropped the request (a cell run
    the moment the kernel connects can be lost): its prompt must leave ``[ ]``."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    for _ in range(tries):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")
        try:
            page.wait_for_function("el => !/^\\[\\s*\\]:?$/.test(el.textContent.trim())", arg=prompt.element_handle(),
                                   timeout=20_000)
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: run it again
            continue
    pytest.fail(f"JupyterLab never ran cell {index + 1}")


def test_conflict_review_in_jupyterlab(jupyterlab, rec_a, res_a):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the end-to-end widget test needs Playwright (pip install playwright; no browser download: it "
                    f"drives Debian's {CHROMIUM}, apt-get install chromium)")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"the end-to-end widget test drives Debian's Chromium at {CHROMIUM}: apt-get install chromium")
    ids = unresolved_ids(res_a)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(90_000)
            page.goto(jupyterlab["url"])
            page.wait_for_selector(".jp-Notebook .jp-Cell")
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()  # the kernel is up
            _run_cell(page, 0)  # cell 1: the review shows itself
            review = page.locator(".ikw").first
            review.get_by_text("Conflict 1 of 9").wait_for()
            # conflict 1: field 1 takes central's value
            review.locator(".widget-toggle-buttons").first.get_by_role("button", name="central", exact=True).click()
            review.get_by_text("1 of 9 conflicts decided").wait_for()
            # conflict 2: the whole invoice from local
            review.get_by_role("button", name="next ▶ [n]").click()
            review.get_by_text("Conflict 2 of 9").wait_for()
            review.get_by_role("button", name="whole ← local [L]").click()
            review.get_by_text("2 of 9 conflicts decided").wait_for()
            # conflict 3 by keys typed in the key box: next, then the whole invoice from central
            keys = review.locator(".ikw-keys input")
            keys.click()
            keys.press_sequentially("n")
            review.get_by_text("Conflict 3 of 9").wait_for()
            keys.press_sequentially("C")
            review.get_by_text("3 of 9 conflicts decided").wait_for()
            review.get_by_role("button", name="apply decisions [a]").click()
            review.get_by_text("6 invoice(s) left unresolved").wait_for()
            table = review.locator("table", has=page.get_by_text("decisions (the frame resolve takes)"))
            rows = table.locator("tbody tr")
            assert rows.count() == 3
            shown = [[c.strip() for c in rows.nth(i).locator("td").all_inner_texts()] for i in range(3)]
            page.screenshot(path=str(jupyterlab["dir"] / "review.png"), full_page=True)
            _run_cell(page, 1)  # cell 2: the kernel writes what the widget holds
            page.locator(".jp-OutputArea-output").get_by_text("saved 3").wait_for()
        except Exception:
            page.screenshot(path=str(jupyterlab["dir"] / "failed.png"), full_page=True)  # to see what went wrong
            raise
        finally:
            browser.close()
    first_field = res_a.unresolved.loc[res_a.unresolved["id"] == ids[0], "field"].sort_values().iloc[0]
    want = [[ids[0], first_field, "central"], [ids[1], "*", "local"], [ids[2], "*", "central"]]
    assert shown == want
    saved = pd.read_csv(jupyterlab["dir"] / "decisions.csv", dtype=str)
    assert saved.values.tolist() == want
    acts = pd.read_csv(jupyterlab["dir"] / "actions.csv", dtype=str).set_index("id")
    assert acts.loc[ids[1], "winner"] == "local" and acts.loc[ids[2], "winner"] == "central"
    taken = acts.loc[[ids[2]]].astype({"central_version": int, "local_version": int})
    assert acts.loc[ids[2], "action"] == central_taken(taken)[ids[2]]
    assert (acts["action"] == "unresolved").sum() == 6
