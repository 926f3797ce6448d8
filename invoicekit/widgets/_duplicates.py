"""``DuplicateReview``: say of candidate duplicates whether they are the same invoice, and
keep the answers in the store so that later runs do not ask again.

Cards come from :class:`~invoicekit.dedupe.DuplicatePairs` (one card per pair) or
:class:`~invoicekit.dedupe.DuplicateClusters` (one card per cluster: its survivor and each
other member). The decisions are the frame :func:`~invoicekit.dedupe.record_decisions`
takes (``id_a < id_b``, ``same``); :meth:`DuplicateReview.save` stores them, and
``find_duplicates(..., decisions=store)`` respects them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..dedupe import DuplicateClusters, DuplicatePairs, read_decisions, record_decisions
from ..errors import UsageError
from ..schema import InvoiceSet
from ._base import Displayable, KeyBox, frame_table, render, rows_in, widgets_module

__all__ = ["DuplicateReview"]

#: the invoice fields a card shows, and the similarity column of each
CARD_FIELDS = (("invoice_number", "sim_invoice_number"), ("client_name", "sim_client_name"),
               ("client_tax_id", "sim_client_tax_id"), ("client_email", "sim_client_email"),
               ("client_address", "sim_client_address"), ("total", "sim_total"), ("currency", None),
               ("created_at", "sim_created_at"), ("lines", "sim_line_items"))
_VERDICT = {"same": True, "different": False}
_AUTO = "auto"
_EMPTY = pd.DataFrame({"id_a": pd.Series([], dtype=object), "id_b": pd.Series([], dtype=object),
                       "same": pd.Series([], dtype=bool)})


def _key(a: Any, b: Any) -> tuple[str, str]:
    a, b = str(a), str(b)
    return (a, b) if a < b else (b, a)


class DuplicateReview(Displayable):
    """Review candidate duplicates card by card: the same invoice, not the same, or later.

    ``pairs_or_clusters``: :class:`~invoicekit.dedupe.DuplicatePairs` (a card per pair whose
    ``action`` is in ``actions``; default ``("review", "merge")``, None for every pair) or
    :class:`~invoicekit.dedupe.DuplicateClusters` (a card per cluster). ``invoices``: the set
    the duplicates were found in, to show their fields; else they are read from ``store``
    when given (else the card shows similarities only). ``store``: where decisions are kept
    (a central URL or an offline store path); pairs it already holds a decision on are
    left out, and :meth:`save` adds the new ones.

    Scriptable: :meth:`mark`, :meth:`skip`, :meth:`press`, :attr:`decisions`, :meth:`save`.
    """

    KEYS = (("s", "the same invoice (every member of a cluster)"), ("d", "not the same"),
            ("2s / 2d", "member 2 of a cluster: the same / not the same as the first"),
            ("k", "skip: decide later"), ("n", "next card"), ("p", "previous card"),
            ("u", "next undecided card"), ("x", "clear this card"), ("w", "save the decisions to the store"))

    def __init__(self, pairs_or_clusters: DuplicatePairs | DuplicateClusters, *, invoices: Any = None,
                 store: Any = None, actions: tuple[str, ...] | None = ("review", "merge"), actor: str | None = None,
                 token: Any = None) -> None:
        if not isinstance(pairs_or_clusters, (DuplicatePairs, DuplicateClusters)):
            raise UsageError("DuplicateReview() takes DuplicatePairs (find_duplicates) or DuplicateClusters "
                             f"(cluster_duplicates); got {type(pairs_or_clusters).__name__}", reason="bad_input")
        self._source, self._store, self._actor, self._token = pairs_or_clusters, store, actor, token
        self._kind = "pair" if isinstance(pairs_or_clusters, DuplicatePairs) else "cluster"
        stored = read_decisions(store) if store is not None else None
        self._cards, self._links, self._stored = _cards(pairs_or_clusters, actions, stored)
        self._invoices = _load_invoices(invoices, store, self._links)
        self._dec = _EMPTY.copy()
        self._saved = _EMPTY.copy()
        self._skipped: set[int] = set()
        self._pos = 0
        self._message = ""
        self.widget = self._build()
        self._refresh()

    # -- public state -------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``pair`` or ``cluster``: what a card is."""
        return self._kind

    @property
    def store(self) -> Any:
        """Where :meth:`save` keeps the decisions (None: nowhere)."""
        return self._store

    @property
    def cards(self) -> pd.DataFrame:
        """One row per card: ``card``, ``members`` (ids, the first one the survivor or
        ``id_a``), ``score``, ``action``, ``reason``."""
        return self._cards.copy()

    @property
    def pairs(self) -> pd.DataFrame:
        """The pairs under review: ``card``, ``id_a``, ``id_b`` (``id_a < id_b``), ``anchor``,
        ``other`` (the pair as the card shows it)."""
        return self._links.copy()

    @property
    def left_out(self) -> int:
        """Pairs left out because the store already holds a decision on them."""
        return self._stored

    @property
    def position(self) -> int:
        """The index (0-based) of the card shown."""
        return self._pos

    @property
    def decisions(self) -> pd.DataFrame:
        """The decisions so far, as :func:`~invoicekit.dedupe.record_decisions` takes them:
        ``id_a`` (< ``id_b``), ``id_b``, ``same``; a new frame each time, in card order."""
        d = self._dec
        card = d.merge(self._links[["id_a", "id_b", "card"]], on=["id_a", "id_b"], how="left")["card"]
        out = d.assign(_c=card.fillna(len(self._cards)).to_numpy()).sort_values(["_c", "id_a", "id_b"], kind="stable")
        return out[["id_a", "id_b", "same"]].reset_index(drop=True).astype(
            {"id_a": "string[pyarrow]", "id_b": "string[pyarrow]", "same": bool})

    def progress(self) -> tuple[int, int]:
        """(cards decided, cards): decided when every pair of the card has an answer."""
        return int(self._decided().sum()), len(self._cards)

    # -- scripting ----------------------------------------------------------------------------------
    def mark(self, id_a: str, id_b: str, same: bool | None) -> "DuplicateReview":
        """Say whether ``id_a`` and ``id_b`` (two invoices of one card) are the same invoice;
        ``same=None`` forgets the answer. Returns the review."""
        a, b = self._check_pair(id_a, id_b)
        if same is not None and not isinstance(same, (bool, np.bool_)):
            raise UsageError(f"DuplicateReview.mark: same must be True, False or None; got {same!r}",
                             reason="bad_decision")
        self._set(pd.DataFrame({"id_a": [a], "id_b": [b], "same": [same]}))
        self._refresh()
        return self

    def mark_card(self, same: bool | None, card: int | None = None) -> "DuplicateReview":
        """Answer every pair of one card (default: the one shown) at once."""
        pos = self._pos if card is None else self._check_card(card)
        links = self._links[self._links["card"] == pos]
        self._set(pd.DataFrame({"id_a": links["id_a"].to_numpy(), "id_b": links["id_b"].to_numpy(), "same": same}))
        self._refresh()
        return self

    def skip(self) -> "DuplicateReview":
        """Leave the card shown undecided for now and show the next undecided one."""
        if len(self._cards):
            self._skipped.add(self._pos)
            self.next(undecided=True)
        return self

    def go(self, card: int) -> "DuplicateReview":
        """Show card ``card`` (0-based)."""
        self._pos = self._check_card(card)
        self._refresh()
        return self

    def next(self, *, undecided: bool = False) -> "DuplicateReview":
        """Show the next card (wrapping), or the next undecided one not skipped."""
        n = len(self._cards)
        if not n:
            return self
        if undecided:
            open_ = np.flatnonzero(~self._decided())
            fresh = np.array([i for i in open_ if i not in self._skipped], dtype=int)  # the open cards: few
            pick = fresh if len(fresh) else open_
            if not len(pick):
                self._say("every card is decided: save (w) to keep the decisions")
                self._refresh()
                return self
            after = pick[pick > self._pos]
            self._pos = int(after[0] if len(after) else pick[0])
        else:
            self._pos = (self._pos + 1) % n
        self._refresh()
        return self

    def previous(self) -> "DuplicateReview":
        """Show the previous card (wrapping)."""
        if len(self._cards):
            self._pos = (self._pos - 1) % len(self._cards)
            self._refresh()
        return self

    def press(self, keys: str) -> "DuplicateReview":
        """Run keyboard commands (see :attr:`KEYS`), e.g. ``press("sndk")``."""
        self._keybox.press(keys)
        return self

    def save(self) -> pd.DataFrame:
        """Store the decisions not saved yet in :attr:`store` (``record_decisions``; the
        actor and token given to the review); returns what was stored (empty when nothing
        was new, and then nothing is written)."""
        if self._store is None:
            raise UsageError("DuplicateReview.save: no store to save to; pass store= (a central URL or an offline "
                             "store path) when creating the review, or record_decisions(store, review.decisions)",
                             reason="no_store")
        todo = self._unsaved()
        if not len(todo):
            self._say("nothing new to save")
            return todo.assign(actor=pd.Series([], dtype=object), at=pd.Series([], dtype="datetime64[ns, UTC]"))
        stored = record_decisions(self._store, todo, actor=self._actor, token=self._token)
        self._saved = pd.concat([self._saved.merge(todo[["id_a", "id_b"]], how="left", indicator=True)
                                 .query("_merge == 'left_only'").drop(columns="_merge"), todo], ignore_index=True)
        self._say(f"saved {len(stored)} decision(s)")
        self._refresh()
        return stored

    # -- checks and state ---------------------------------------------------------------------
    def _check_card(self, card: Any) -> int:
        if not isinstance(card, (int, np.integer)) or not 0 <= card < len(self._cards):
            raise UsageError(f"DuplicateReview: card {card!r} is outside 0..{len(self._cards) - 1}",
                             reason="unknown_card")
        return int(card)

    def _check_pair(self, id_a: Any, id_b: Any) -> tuple[str, str]:
        members = self._members()
        for name, value in (("id_a", id_a), ("id_b", id_b)):
            if not isinstance(value, str) or value not in members:
                raise UsageError(f"DuplicateReview.mark: {name} {value!r} is not an invoice of any card under review",
                                 reason="unknown_invoice")
        if id_a == id_b:
            raise UsageError(f"DuplicateReview.mark: {id_a!r} paired with itself", reason="bad_decision")
        if members[id_a] != members[id_b]:
            raise UsageError(f"DuplicateReview.mark: {id_a!r} and {id_b!r} are on different cards "
                             f"({members[id_a]} and {members[id_b]}): only invoices of one card are compared",
                             reason="unknown_pair")
        return _key(id_a, id_b)

    def _members(self) -> dict[str, int]:
        if not hasattr(self, "_member_card"):
            m = self._cards[["card", "members"]].explode("members")
            self._member_card = dict(zip(m["members"].astype(str), m["card"].astype(int)))
        return self._member_card

    def _set(self, frame: pd.DataFrame) -> None:
        d = self._dec
        d = d[~rows_in(d, frame, ["id_a", "id_b"])]
        keep = frame[frame["same"].notna()].astype({"same": bool})
        self._dec = pd.concat([d, keep], ignore_index=True).astype({"same": bool})

    def _unsaved(self) -> pd.DataFrame:
        now = self.decisions
        old = self._saved.astype({"id_a": str, "id_b": str})
        merged = now.astype({"id_a": str, "id_b": str}).merge(old, on=["id_a", "id_b"], how="left",
                                                              suffixes=("", "_old"))
        new = merged["same_old"].isna().to_numpy() | (merged["same"] != merged["same_old"]).to_numpy()
        return now[new].reset_index(drop=True)

    def _decided(self) -> np.ndarray:
        answered = self._links.merge(self._dec, on=["id_a", "id_b"], how="left")["same"].notna()
        per_card = answered.groupby(self._links["card"].to_numpy()).all()
        return per_card.reindex(np.arange(len(self._cards)), fill_value=True).to_numpy(dtype=bool)

    def _verdict(self, a: str, b: str) -> bool | None:
        a, b = _key(a, b)
        hit = self._dec.loc[(self._dec["id_a"] == a) & (self._dec["id_b"] == b), "same"]
        return bool(hit.iloc[0]) if len(hit) else None

    # -- the widget ------------------------------------------------------------------------------
    def _build(self):
        w = widgets_module()
        b = self._button
        self._card = w.HTML()
        self._toggles = w.VBox()
        actions = w.HBox([b("the same [s]", "s", lambda: self.mark_card(True), "success"),
                          b("not the same [d]", "d", lambda: self.mark_card(False), "danger"),
                          b("skip for now [k]", "k", self.skip),
                          b("clear [x]", "x", lambda: self.mark_card(None))])
        nav = w.HBox([b("◀ previous [p]", "p", self.previous), b("next ▶ [n]", "n", self.next),
                      b("next undecided [u]", "u", lambda: self.next(undecided=True))])
        self._save = b("save to the store [w]", "w", self.save, "primary")
        self._save.disabled = self._store is None
        self._bar = w.IntProgress(min=0, max=max(len(self._cards), 1), description="decided",
                                  layout=w.Layout(width="22em"))
        self._count = w.HTML()
        self._keybox = KeyBox(self._commands(), say=self._say, placeholder="keys: s d k n p u x w")
        keys_doc = w.HTML(render("keys.html", keys=self.KEYS,
                                 shortcut_note="ipywidgets has no key events of its own, so the box reads them"))
        self._msg = w.HTML()
        self._table = w.HTML()
        box = w.VBox([w.HTML(render("style.html")), self._card, self._toggles, actions, nav,
                      w.HBox([self._bar, self._count]), w.HBox([self._keybox.box, self._save]), keys_doc, self._msg,
                      self._table])
        box.add_class("ikw")
        return box

    def _button(self, label: str, key: str, action, style: str = ""):
        w = widgets_module()
        button = w.Button(description=label, button_style=style, tooltip=f"{label} (key {key})",
                          layout=w.Layout(width="auto"))
        button.on_click(lambda _b: self._guarded(action))
        return button

    def _guarded(self, action) -> None:
        try:
            action()
        except UsageError as exc:
            self._say(str(exc))

    def _commands(self):
        def verdict(same: bool):
            def run(number: int | None) -> None:
                if not len(self._cards):
                    raise UsageError("there are no cards to decide")
                if number is None:
                    self.mark_card(same)
                    return
                members = self._cards.at[self._pos, "members"]
                if not 2 <= number <= len(members):
                    raise UsageError(f"card {self._pos + 1} has members 2..{len(members)} to compare with the first; "
                                     f"got {number}")
                self.mark(members[0], members[number - 1], same)
            return run

        return {"s": verdict(True), "d": verdict(False), "k": lambda _n: self.skip(),
                "n": lambda _n: self.next(), "p": lambda _n: self.previous(),
                "u": lambda _n: self.next(undecided=True), "x": lambda _n: self.mark_card(None),
                "w": lambda _n: self.save()}

    def _say(self, text: str) -> None:
        import html

        self._message = text
        if hasattr(self, "_msg"):
            self._msg.value = f"<div class='ikw-msg'>{html.escape(text)}</div>"

    def _on_member(self, a: str, b: str):
        def handler(change) -> None:
            if getattr(self, "_syncing", False):
                return
            self._guarded(lambda: self.mark(a, b, _VERDICT.get(change["new"])))
        return handler

    def _refresh(self) -> None:
        if not hasattr(self, "_card"):
            return
        w = widgets_module()
        decided, count = self.progress()
        self._bar.max, self._bar.value = max(count, 1), decided
        self._count.value = render("progress.html", decided=decided, count=count, choices=len(self._dec)).replace(
            "conflict", self._kind)
        self._table.value = frame_table(self.decisions, caption="decisions (the frame record_decisions takes)",
                                        max_rows=200, empty="no decisions yet")
        self._card.value = self._card_html()
        self._syncing = True
        try:
            old = self._toggles.children
            rows = []
            if len(self._cards):
                members = self._cards.at[self._pos, "members"]
                for k, other in enumerate(members[1:], start=2):
                    v = self._verdict(members[0], other)
                    value = _AUTO if v is None else "same" if v else "different"
                    toggle = w.ToggleButtons(options=[("—", _AUTO), ("the same", "same"),
                                                      ("not the same", "different")], value=value,
                                             description=f"{k}. vs 1.", style={"button_width": "7.5em"},
                                             tooltips=["no answer yet", f"{other} is the same invoice as {members[0]}",
                                                       f"{other} is another invoice than {members[0]}"])
                    toggle.observe(self._on_member(members[0], other), names="value")
                    rows.append(toggle)
            self._toggles.children = rows
            for child in old:
                child.close()
        finally:
            self._syncing = False

    def _card_html(self) -> str:
        if not len(self._cards):
            return "<div class='ikw'><b>No duplicates to review.</b></div>"
        card = self._cards.loc[self._pos]
        members = list(card["members"])
        inv = self._invoices
        have = inv is not None
        shown = inv.reindex(members) if have else None
        sims = self._kind == "pair"
        pair = self._source.pairs if sims else None
        sim_row = None
        if sims:
            a, b = _key(members[0], members[1])
            hit = pair[(pair["id_a"] == a) & (pair["id_b"] == b)]
            sim_row = hit.iloc[0] if len(hit) else None
        rows = []
        for field, sim_col in CARD_FIELDS:
            values = [None] * len(members)
            if have and field in shown.columns:
                values = [None if pd.isna(v) else str(v) for v in shown[field].tolist()]  # one card: a few values
            sim = None
            if sim_row is not None and sim_col is not None and sim_col in sim_row.index and pd.notna(sim_row[sim_col]):
                sim = float(sim_row[sim_col])
            differs = have and len(set(values)) > 1
            rows.append({"field": field.replace("_", " "), "values": values, "differs": differs, "sim": sim})
        labels = [{"label": f"{k}. " + ("survivor" if self._kind == "cluster" and k == 1 else
                                        "id_a" if k == 1 else "id_b" if self._kind == "pair" else "member"),
                   "id": m} for k, m in enumerate(members, start=1)]
        verdicts = []
        for k, other in enumerate(members[1:], start=2):
            v = self._verdict(members[0], other)
            verdicts.append(f"{k} vs 1: " + ("not answered" if v is None else "the same" if v else "not the same"))
        score = card["score"]
        return render("card.html", kind=self._kind.capitalize(), position=self._pos + 1, count=len(self._cards),
                      score=None if pd.isna(score) else f"{float(score):.3f}", action=card["action"],
                      reason=card["reason"], have_invoices=have, members=labels, sims=sims, rows=rows,
                      verdicts=verdicts)

    # -- display ---------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        decided, count = self.progress()
        return render("duplicate_static.html", style=render("style.html"), decided=decided, count=count,
                      unit=f"{self._kind}s", stored=self._stored, card=self._card_html(),
                      keys=render("keys.html", keys=self.KEYS, shortcut_note=""),
                      decisions=frame_table(self.decisions, caption="decisions", empty="no decisions yet"))

    def __repr__(self) -> str:
        decided, count = self.progress()
        store = "" if self._store is None else f", {len(self._unsaved())} unsaved"
        return (f"DuplicateReview({decided} of {count} {self._kind}s decided, {len(self._dec)} answers{store}, "
                f"{self._stored} left out as decided in the store)")


def _cards(source, actions, stored: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The cards (card, members, score, action, reason), their pairs (card, id_a, id_b, anchor,
    other) less those ``stored`` already decides, and how many were left out for that."""
    if isinstance(source, DuplicatePairs):
        p = source.pairs
        if actions is not None:
            p = p[p["action"].isin(list(actions))]
        p = p[p["action"] != "keep_both"].reset_index(drop=True)
        a, b = p["id_a"].astype(str).to_numpy(), p["id_b"].astype(str).to_numpy()
        links = pd.DataFrame({"id_a": a, "id_b": b, "anchor": a, "other": b, "_group": np.arange(len(p))})
        meta = pd.DataFrame({"score": p["score"].to_numpy(dtype=float), "action": p["action"].astype(object).to_numpy(),
                             "reason": p["reason"].astype(object).to_numpy()})
    else:
        c = source.clusters.astype({"cluster_id": str, "id": str})
        c = c.sort_values(["cluster_id", "is_survivor", "id"], ascending=[True, False, True], kind="stable")
        anchor = c.groupby("cluster_id")["id"].transform("first")
        others = c[(c["id"] != anchor).to_numpy()]
        a, b = others["id"].to_numpy(), anchor[others.index].to_numpy()
        links = pd.DataFrame({"id_a": np.minimum(a, b), "id_b": np.maximum(a, b), "anchor": b, "other": a,
                              "_group": others["cluster_id"].to_numpy()})
        cluster_of = pd.Series(c["cluster_id"].to_numpy(), index=c["id"].to_numpy())
        lk = source.links
        score = (lk["score"].astype(float).groupby(lk["id_a"].astype(str).map(cluster_of).to_numpy()).min()
                 if len(lk) else pd.Series(dtype=float))
        groups = pd.unique(c["cluster_id"])
        meta = pd.DataFrame({"score": score.reindex(groups).to_numpy(dtype=float), "action": "merge",
                             "reason": [f"cluster of {n}" for n in c.groupby("cluster_id", sort=False).size()
                                        .reindex(groups)]}, index=groups)  # one per cluster
    left_out = 0
    if stored is not None and len(stored):
        hit = rows_in(links, stored.astype({"id_a": str, "id_b": str}), ["id_a", "id_b"])
        left_out = int(hit.sum())
        links = links[~hit]
    groups = pd.unique(links["_group"])
    meta = meta.loc[groups].reset_index(drop=True)
    card_of = pd.Series(np.arange(len(groups)), index=groups)
    links = links.assign(card=links["_group"].map(card_of).to_numpy(dtype=int))
    links = links[["card", "id_a", "id_b", "anchor", "other"]].reset_index(drop=True)
    first = links.groupby("card")["anchor"].first()
    rest = links.groupby("card")["other"].agg(list)
    members = [[first[k], *rest[k]] for k in range(len(groups))]  # one list per card (cards, not rows)
    cards = pd.DataFrame({"card": np.arange(len(groups)), "members": pd.Series(members, dtype=object)})
    return pd.concat([cards, meta], axis=1), links, left_out


def _load_invoices(invoices: Any, store: Any, links: pd.DataFrame) -> pd.DataFrame | None:
    """The invoices of the cards, indexed by id, with a ``lines`` summary: from ``invoices``
    (an InvoiceSet or its frame), else from ``store``; None when neither is given."""
    ids = pd.unique(pd.concat([links["id_a"], links["id_b"]])) if len(links) else np.array([], dtype=object)
    if invoices is None and store is not None:
        from ..io import read_central, read_local
        from ..io.records import is_central

        invoices = read_central(store, ids=list(ids)) if is_central(store) else read_local(store)
    if invoices is None:
        return None
    if isinstance(invoices, InvoiceSet):
        frame = invoices.invoices
        lines = invoices.lines_of(list(ids)).to_pandas(types_mapper=pd.ArrowDtype)
    elif isinstance(invoices, pd.DataFrame):
        frame, lines = invoices, None
    else:
        raise UsageError("DuplicateReview: invoices= takes the InvoiceSet the duplicates were found in (or its "
                         f"invoices frame); got {type(invoices).__name__}", reason="bad_input")
    if "id" not in frame.columns:
        raise UsageError("DuplicateReview: invoices= lacks the column 'id'", reason="missing_columns")
    frame = frame[frame["id"].astype(str).isin(ids)].drop_duplicates("id")
    frame = frame.set_index(frame["id"].astype(str))
    if lines is not None and len(lines):
        text = (lines["description"].astype(str) + " × " + lines["quantity"].astype(str) + " @ "
                + lines["unit_price"].astype(str))
        summary = text.groupby(lines["invoice_id"].astype(str).to_numpy()).agg("; ".join)
        frame = frame.assign(lines=summary.reindex(frame.index).to_numpy())
    elif "line_items" in frame.columns:
        frame = frame.assign(lines=frame["line_items"].astype("string").str.slice(0, 300).to_numpy())
    return frame
