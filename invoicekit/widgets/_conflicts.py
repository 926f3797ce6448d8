"""``ConflictReview``: decide a resolution's conflicts one invoice at a time, in a notebook
or from a script, and re-resolve with the decisions.

The decisions are exactly what :func:`invoicekit.resolve` takes (``id``, ``field``,
``choice`` in local / central / base; ``field='*'`` for the whole invoice). Choosing a
field drops a whole-invoice choice of that invoice and the other way round (resolve lets
``*`` win, so keeping both would only mislead).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from .._args import expect
from ..errors import UsageError
from ..reconcile import Reconciliation
from ..resolve import STRATEGIES, Resolution, resolve
from ._base import Displayable, KeyBox, frame_table, render, rows_in, widgets_module

__all__ = ["ConflictReview"]

SIDES = ("local", "central", "base")
#: what the conflicts under review are: the invoices the strategy left ``unresolved``, or every ``conflict``
INCLUDE = ("unresolved", "conflicts")
_AUTO = "auto"
_LINE = re.compile(r"^lines\[(?P<desc>.*)#(?P<n>\d+)\]\.(?P<part>quantity|unit_price)$")


def _label(field: str) -> str:
    """How a field reads in the table: ``lines[Site visit#2].quantity`` -> ``Site visit (2nd) · quantity``."""
    m = _LINE.match(field)
    if m is None:
        return field
    n = int(m["n"])
    nth = "" if n == 1 else f" ({n}{'nd' if n == 2 else 'rd' if n == 3 else 'th'})"
    return f"line {m['desc']}{nth} · {m['part'].replace('_', ' ')}"


def _text(value: Any) -> str | None:
    return None if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) else str(value)


class ConflictReview(Displayable):
    """Review the conflicts of a :class:`~invoicekit.resolve.Resolution`, one invoice at a time.

    ``ConflictReview(res, reconciliation=rec)`` (or ``ConflictReview(rec, strategy=...)``,
    which resolves first) shows base / local / central side by side per differing field,
    changed values highlighted, and takes a choice per field or per invoice. ``include``:
    ``"unresolved"`` (default: the invoices the strategy could not settle) or
    ``"conflicts"`` (every conflict, to override what the strategy chose). ``decisions``:
    earlier decisions to start from (the same frame ``resolve`` takes).

    Scriptable: :meth:`choose`, :meth:`take_all`, :meth:`clear`, :meth:`press` (the keys),
    :attr:`decisions`, :meth:`apply` (re-resolves and returns the new Resolution). Display
    the object (or ``.widget``) in a notebook to click instead.
    """

    #: the keyboard commands (typed in the widget's key box, or given to :meth:`press`)
    KEYS = (
        ("n", "next conflict"), ("p", "previous conflict"), ("u", "next undecided conflict"),
        ("l / c / b", "every field needing a decision here ← local / central / base"),
        ("2c", "field 2 ← central (any field number, then l / c / b)"),
        ("L / C / B", "whole invoice ← local / central / base"),
        ("x", "clear this conflict's choices"), ("a", "apply: re-resolve with the decisions"),
    )

    def __init__(self, resolution: Resolution | Reconciliation, *, reconciliation: Reconciliation | None = None,
                 strategy: str = "three_way", include: str = "unresolved", decisions: Any = None) -> None:
        if isinstance(resolution, Reconciliation) and reconciliation is None:
            resolution, reconciliation = resolve(resolution, strategy=strategy), resolution
        resolution = expect(resolution, Resolution, func="ConflictReview", param="resolution")
        reconciliation = reconciliation if reconciliation is not None else getattr(resolution, "reconciliation", None)
        if reconciliation is None:
            raise UsageError("ConflictReview needs the Reconciliation the resolution came from, to re-resolve with "
                             "the decisions: ConflictReview(res, reconciliation=rec) or ConflictReview(rec, "
                             "strategy=...)", reason="no_reconciliation")
        reconciliation = expect(reconciliation, Reconciliation, func="ConflictReview", param="reconciliation")
        if include not in INCLUDE:
            raise UsageError(f"ConflictReview: include={include!r} is not one of {', '.join(INCLUDE)}")
        if resolution.strategy not in STRATEGIES:  # pragma: no cover - resolve() checks it
            raise UsageError(f"ConflictReview: unknown strategy {resolution.strategy!r}")
        self._res, self._rec, self._include = resolution, reconciliation, include
        self._ids, self._fields, self._info = _prepare(resolution, reconciliation, include)
        self._pos = 0
        self._dec = pd.DataFrame({"id": pd.Series([], dtype=object), "field": pd.Series([], dtype=object),
                                  "choice": pd.Series([], dtype=object)})
        self._result: Resolution | None = None
        self._message = ""
        self._keys = None
        self.widget = self._build()
        if decisions is not None:
            self._set_frame(_as_frame(decisions))
        self._refresh()

    # -- public state ---------------------------------------------------------------------
    @property
    def resolution(self) -> Resolution:
        """The resolution under review (as given; :meth:`apply` returns a new one)."""
        return self._res

    @property
    def reconciliation(self) -> Reconciliation:
        """The reconciliation the resolution came from."""
        return self._rec

    @property
    def strategy(self) -> str:
        """The strategy :meth:`apply` re-resolves with (the resolution's)."""
        return self._res.strategy

    @property
    def ids(self) -> tuple[str, ...]:
        """The invoice ids under review, in review order."""
        return tuple(self._ids)

    @property
    def position(self) -> int:
        """The index (0-based) of the conflict shown."""
        return self._pos

    @property
    def current(self) -> str | None:
        """The id of the conflict shown (None when there is nothing to review)."""
        return self._ids[self._pos] if self._ids else None

    @property
    def result(self) -> Resolution | None:
        """The Resolution of the last :meth:`apply`, else None."""
        return self._result

    @property
    def decisions(self) -> pd.DataFrame:
        """The decisions so far: ``id``, ``field``, ``choice`` (the frame ``resolve`` takes), in
        review order, a whole-invoice ``*`` first; a new frame each time."""
        d = self._dec
        order = pd.Series(np.arange(len(self._ids)), index=self._ids)
        keyed = d.assign(_o=d["id"].map(order).to_numpy(), _w=(d["field"] != "*").to_numpy())
        out = keyed.sort_values(["_o", "_w", "field"], kind="stable")[["id", "field", "choice"]]
        return out.reset_index(drop=True).astype("string[pyarrow]")

    def fields(self, invoice_id: str | None = None) -> pd.DataFrame:
        """The differing fields of one conflict (default: the one shown): ``n`` (its number for
        the keys, null for ``total``), ``field``, ``base``, ``local``, ``central``, ``needs``
        (the strategy left it undecided), ``decidable`` and ``choice`` (this review's)."""
        inv = self._check_id(invoice_id if invoice_id is not None else self.current, func="fields")
        rows = self._fields[self._fields["id"] == inv]
        choice = rows[["field"]].merge(self._dec[self._dec["id"] == inv], on="field", how="left")["choice"]
        whole = self._whole_of(inv)
        out = rows[["n", "field", "base", "local", "central", "needs", "decidable"]].reset_index(drop=True)
        out["choice"] = np.where(out["decidable"], whole if whole else choice.to_numpy(dtype=object), None)
        return out.astype({"choice": "string[pyarrow]"})

    def progress(self) -> tuple[int, int]:
        """(conflicts decided, conflicts under review): decided means a whole-invoice choice,
        or a choice for every field the strategy left undecided."""
        return int(self._decided().sum()), len(self._ids)

    # -- scripting ----------------------------------------------------------------------------
    def choose(self, invoice_id: str, field: str, side: str | None) -> "ConflictReview":
        """Take ``field`` of ``invoice_id`` from ``side`` (local / central / base; None
        clears it); ``field='*'`` takes the whole invoice. Returns the review."""
        inv = self._check_id(invoice_id, func="choose")
        field = self._check_field(inv, field)
        if side is None:
            return self.clear(inv, field)
        self._check_side(side, [inv], func="choose")
        self._set_frame(pd.DataFrame({"id": [inv], "field": [field], "choice": [side]}))
        self._refresh()
        return self

    def take_all(self, side: str, *, whole: bool = False) -> "ConflictReview":
        """Every field needing a decision, in every conflict under review, ← ``side``; with
        ``whole=True`` every conflict is taken whole from ``side`` instead. Earlier choices of
        those fields (or invoices) are replaced. Returns the review."""
        self._check_side(side, self._ids, func="take_all")
        if whole:
            frame = pd.DataFrame({"id": list(self._ids), "field": "*", "choice": side})
        else:
            need = self._fields[self._fields["needs"]]
            frame = pd.DataFrame({"id": need["id"].to_numpy(), "field": need["field"].to_numpy(), "choice": side})
        self._set_frame(frame)
        self._refresh()
        return self

    def clear(self, invoice_id: str | None = None, field: str | None = None) -> "ConflictReview":
        """Forget choices: of one field, of one invoice (``field=None``), or all (no arguments)."""
        if invoice_id is None:
            self._dec = self._dec.iloc[0:0]
        else:
            inv = self._check_id(invoice_id, func="clear")
            hit = self._dec["id"] == inv
            if field is not None:
                hit &= self._dec["field"] == self._check_field(inv, field)
            self._dec = self._dec[~hit].reset_index(drop=True)
        self._refresh()
        return self

    def go(self, where: int | str) -> "ConflictReview":
        """Show the conflict at position ``where`` (0-based) or with that invoice id."""
        if isinstance(where, str):
            where = self._ids.index(self._check_id(where, func="go"))
        if not isinstance(where, (int, np.integer)) or not 0 <= where < max(len(self._ids), 1):
            raise UsageError(f"ConflictReview.go: position {where!r} is outside 0..{max(len(self._ids) - 1, 0)}")
        self._pos = int(where)
        self._refresh()
        return self

    def next(self, *, undecided: bool = False) -> "ConflictReview":
        """Show the next conflict (wrapping), or the next undecided one."""
        if not self._ids:
            return self
        if undecided:
            open_ = np.flatnonzero(~self._decided())
            if not len(open_):
                self._say("every conflict is decided: apply (a) to re-resolve")
                return self
            after = open_[open_ > self._pos]
            self._pos = int(after[0] if len(after) else open_[0])
        else:
            self._pos = (self._pos + 1) % len(self._ids)
        self._refresh()
        return self

    def previous(self) -> "ConflictReview":
        """Show the previous conflict (wrapping)."""
        if self._ids:
            self._pos = (self._pos - 1) % len(self._ids)
            self._refresh()
        return self

    def press(self, keys: str) -> "ConflictReview":
        """Run keyboard commands (see :attr:`KEYS`), e.g. ``press("lnnC")``."""
        self._keys.press(keys)
        return self

    def apply(self) -> Resolution:
        """Re-resolve the reconciliation with :attr:`decisions` (same strategy); returns the new
        :class:`~invoicekit.resolve.Resolution` (also kept as :attr:`result`)."""
        decisions = self.decisions
        self._result = resolve(self._rec, strategy=self.strategy, decisions=decisions if len(decisions) else None)
        left = int((self._result.actions["action"] == "unresolved").sum())
        self._say(f"applied {len(decisions)} decision(s): {left} invoice(s) left unresolved")
        self._refresh()
        return self._result

    # -- checks -------------------------------------------------------------------------------
    def _check_id(self, invoice_id: Any, *, func: str) -> str:
        if invoice_id is None and not self._ids:
            raise UsageError(f"ConflictReview.{func}: there are no conflicts under review")
        inv = str(invoice_id) if isinstance(invoice_id, str) else invoice_id
        if not isinstance(inv, str) or inv not in self._info.index:
            status = self._rec.status.set_index("id")["status"]
            hint = (f"; it is {status.get(inv)!r} in the reconciliation" if isinstance(inv, str) and inv in status.index
                    else "; it is not in the reconciliation")
            if isinstance(inv, str) and status.get(inv) == "conflict":
                hint = ("; the strategy settled it: ConflictReview(..., include='conflicts') reviews every conflict")
            raise UsageError(f"ConflictReview.{func}: invoice id {invoice_id!r} is not among the {len(self._ids)} "
                             f"conflicts under review{hint}", reason="unknown_invoice")
        return inv

    def _check_field(self, inv: str, field: Any) -> str:
        if field == "*":
            return "*"
        rows = self._fields[(self._fields["id"] == inv)]
        decidable = rows.loc[rows["decidable"], "field"].tolist()
        if field not in decidable:
            why = " (the total follows from the lines)" if field == "total" else ""
            raise UsageError(f"ConflictReview: field {field!r} of invoice {inv!r} cannot be chosen{why}; its "
                             f"fields to choose are {', '.join(map(repr, decidable)) or 'none'}, or '*' for the "
                             "whole invoice", reason="unknown_field")
        return field

    def _check_side(self, side: Any, ids, *, func: str) -> None:
        if side not in SIDES:
            raise UsageError(f"ConflictReview.{func}: side {side!r} is not one of {', '.join(SIDES)}",
                             reason="unknown_side")
        if side == "base":
            no_base = [i for i in ids if not self._info.at[i, "has_base"]]  # the ids asked for (few)
            if no_base:
                raise UsageError(f"ConflictReview.{func}: side 'base' for invoice {no_base[0]!r}, which has no base "
                                 "snapshot (its store was not written by invoicekit): choose local or central",
                                 reason="no_base")

    # -- state ---------------------------------------------------------------------------------
    def _set_frame(self, frame: pd.DataFrame) -> None:
        """Add decisions (replacing earlier ones of the same field, and the whole-invoice /
        field choices they exclude), all at once."""
        frame = frame.astype(object)
        d = self._dec
        whole_ids = frame.loc[frame["field"] == "*", "id"]
        field_ids = frame.loc[frame["field"] != "*", "id"]
        drop = pd.Series(rows_in(d, frame, ["id", "field"]), index=d.index)
        drop |= d["id"].isin(whole_ids)  # a whole-invoice choice replaces its field choices
        drop |= (d["field"] == "*") & d["id"].isin(field_ids)  # and a field choice its whole one
        self._dec = pd.concat([d[~drop], frame[["id", "field", "choice"]]], ignore_index=True)

    def _whole_of(self, inv: str) -> str | None:
        hit = self._dec.loc[(self._dec["id"] == inv) & (self._dec["field"] == "*"), "choice"]
        return str(hit.iloc[0]) if len(hit) else None

    def _decided(self) -> np.ndarray:
        """Per id under review (in order): decided or not (vectorised over the fields)."""
        need = self._fields.loc[self._fields["needs"], ["id", "field"]]
        chosen = need.merge(self._dec, on=["id", "field"], how="left")["choice"].notna().to_numpy()
        open_ids = need["id"].to_numpy()[~chosen]
        whole = self._dec.loc[self._dec["field"] == "*", "id"]
        ids = pd.Index(self._ids)
        return ~ids.isin(open_ids) | ids.isin(whole)

    # -- the widget ------------------------------------------------------------------------------
    def _build(self):
        w = widgets_module()
        self._head = w.HTML()
        self._grid = w.GridBox(layout=w.Layout(grid_template_columns="2.2em minmax(12em, 2fr) 1fr 1fr 1fr auto",
                                               grid_gap="0 4px", width="100%"))
        self._whole = w.ToggleButtons(options=[("invoice: not taken whole", _AUTO)], value=_AUTO,
                                      tooltips=["choose field by field"], style={"button_width": "auto"})
        self._whole.observe(self._on_whole, names="value")
        b = self._button
        nav = w.HBox([b("◀ previous", "p", self.previous), b("next ▶", "n", self.next),
                      b("next undecided", "u", lambda: self.next(undecided=True))])
        bulk = w.HBox([b("all needing ← local", None, lambda: self.take_all("local"),
                         "every field needing a decision, in every conflict, takes the local value"),
                       b("all needing ← central", None, lambda: self.take_all("central"),
                         "every field needing a decision, in every conflict, takes the central value"),
                       b("all whole ← local", None, lambda: self.take_all("local", whole=True),
                         "every conflict is taken whole from the local side"),
                       b("all whole ← central", None, lambda: self.take_all("central", whole=True),
                         "every conflict is taken whole from the central side"),
                       b("clear all", None, self.clear, "forget every choice")])
        self._bar = w.IntProgress(min=0, max=max(len(self._ids), 1), value=0, description="decided",
                                  layout=w.Layout(width="22em"))
        self._count = w.HTML()
        self._keys = KeyBox(self._commands(), say=self._say, placeholder="keys: n p u l c b L C B x a")
        keys_doc = w.HTML(render("keys.html", keys=self.KEYS,
                                 shortcut_note="ipywidgets has no key events of its own, so the box reads them"))
        self._msg = w.HTML()
        apply = b("apply decisions", "a", self.apply, "re-resolve with these decisions", style="primary")
        self._table = w.HTML()
        self._out = w.HTML()
        box = w.VBox([w.HTML(render("style.html")), self._head, self._grid, self._whole, nav, bulk,
                      w.HBox([self._bar, self._count]), w.HBox([self._keys.box, apply]), keys_doc, self._msg,
                      self._table, self._out])
        box.add_class("ikw")
        return box

    def _button(self, label: str, key: str | None, action, tooltip: str = "", style: str = ""):
        w = widgets_module()
        button = w.Button(description=label + (f" [{key}]" if key else ""), button_style=style,
                          tooltip=(tooltip or label) + (f" (key {key})" if key else ""),
                          layout=w.Layout(width="auto"))
        button.on_click(lambda _b: self._guarded(action))
        return button

    def _guarded(self, action) -> None:
        try:
            action()
        except UsageError as exc:
            self._say(str(exc))

    def _commands(self):
        def side(letter: str):
            def run(number: int | None) -> None:
                inv = self._check_id(None if not self._ids else self.current, func="press")
                s = {"l": "local", "c": "central", "b": "base"}[letter.lower()]
                if letter.isupper():
                    self.choose(inv, "*", s)
                elif number is None:
                    fields = self._fields[(self._fields["id"] == inv) & self._fields["needs"]]["field"]
                    if not len(fields):
                        raise UsageError(f"no field of {inv!r} needs a decision: type a field number first "
                                         f"(e.g. 2{letter}) or {letter.upper()} for the whole invoice")
                    self._check_side(s, [inv], func="press")
                    self._set_frame(pd.DataFrame({"id": inv, "field": fields.to_numpy(), "choice": s}))
                    self._refresh()
                else:
                    rows = self._fields[(self._fields["id"] == inv) & (self._fields["n"] == number)]
                    if not len(rows):
                        raise UsageError(f"invoice {inv!r} has no field number {number}")
                    self.choose(inv, rows["field"].iloc[0], s)
            return run

        cmds = {k: side(k) for k in "lcbLCB"}
        cmds.update({"n": lambda _n: self.next(), "p": lambda _n: self.previous(),
                     "u": lambda _n: self.next(undecided=True), "a": lambda _n: self.apply(),
                     "x": lambda _n: self.clear(self.current) if self._ids else None})
        return cmds

    def _say(self, text: str) -> None:
        self._message = text
        if hasattr(self, "_msg"):
            self._msg.value = f"<div class='ikw-msg'>{_escape(text)}</div>"

    def _on_whole(self, change) -> None:
        if getattr(self, "_syncing", False) or not self._ids:
            return
        self._guarded(lambda: self.choose(self.current, "*", None if change["new"] == _AUTO else change["new"]))

    def _on_field(self, field: str):
        def handler(change) -> None:
            if getattr(self, "_syncing", False):
                return
            self._guarded(lambda: self.choose(self.current, field, None if change["new"] == _AUTO else change["new"]))
        return handler

    def _refresh(self) -> None:
        if not hasattr(self, "_grid"):
            return
        w = widgets_module()
        decided, count = self.progress()
        self._bar.max, self._bar.value = max(count, 1), decided
        self._count.value = render("progress.html", decided=decided, count=count, choices=len(self._dec))
        self._table.value = frame_table(self.decisions, caption="decisions (the frame resolve takes)",
                                        max_rows=200, empty="no decisions yet")
        if self._result is not None:
            self._out.value = self._result._repr_html_()
        self._syncing = True
        try:
            old = self._grid.children
            if not self._ids:
                self._head.value = "<div class='ikw'><b>No conflicts to review.</b></div>"
                self._grid.children, self._whole.options = (), [("nothing to decide", _AUTO)]
            else:
                inv = self.current
                self._head.value = self._head_html(inv)
                self._grid.children = self._cells(w, inv)
                sides = [s for s in SIDES if s != "base" or self._info.at[inv, "has_base"]]
                self._whole.options = [("invoice: field by field", _AUTO)] + [(f"whole ← {s} [{s[0].upper()}]", s)
                                                                               for s in sides]
                self._whole.value = self._whole_of(inv) or _AUTO
            for child in old:
                child.close()
        finally:
            self._syncing = False

    def _head_html(self, inv: str) -> str:
        i = self._info.loc[inv]
        return render("conflict_head.html", position=self._pos + 1, count=len(self._ids), id=inv,
                      number=_text(i["invoice_number"]) or "(no number)", client=_text(i["client_name"]),
                      reason=_text(i["reason"]), local_version=_text(i["local_version"]),
                      central_version=_text(i["central_version"]), base_version=_text(i["base_version"]),
                      local_total=_money(i["local_total"], i["currency"]),
                      central_total=_money(i["central_total"], i["central_currency"]),
                      needs=int(self._fields.loc[(self._fields["id"] == inv), "needs"].sum()),
                      whole=self._whole_of(inv))

    def _rows(self, inv: str) -> list[dict]:
        """The shown conflict's rows for the templates: values, highlight classes, choice."""
        f = self.fields(inv)
        hint = self._fields.loc[self._fields["id"] == inv, "hint"].to_numpy(dtype=object)
        changed = self._fields.loc[self._fields["id"] == inv, ["local_hl", "central_hl"]].to_numpy(dtype=bool)
        rows = []
        for k, r in enumerate(f.astype(object).where(f.notna(), None).to_dict("records")):  # one card: few rows
            cls = {"base": "", "local": "ikw-chg" if changed[k, 0] else "",
                   "central": "ikw-chg" if changed[k, 1] else ""}
            if r["choice"] in cls:
                cls[r["choice"]] += " ikw-chosen"
            choice = (f"← {r['choice']}" if r["choice"] else "needs a decision" if r["needs"] else hint[k])
            rows.append({**r, "side": r["choice"], "label": _label(r["field"]), "need": bool(r["needs"]), "cls": cls,
                         "choice": choice,
                         "n": None if r["n"] is None else int(r["n"])})
        return rows

    def _cells(self, w, inv: str) -> list:
        head = ["#", "field", "base", "local", "central", "choice"]
        cells = [w.HTML(render("cell.html", value=h, cls="ikw-th", title=None, note=None)) for h in head]
        has_base = bool(self._info.at[inv, "has_base"])
        whole = self._whole_of(inv)
        for r in self._rows(inv):
            cells.append(w.HTML(render("cell.html", value=str(r["n"]) if r["n"] else "", cls="ikw-hint", title=None,
                                       note=None)))
            cells.append(w.HTML(render("cell.html", value=r["label"], cls="ikw-need" if r["need"] else "",
                                       title=r["field"], note="needs a decision" if r["need"] else None)))
            for side in ("base", "local", "central"):
                cells.append(w.HTML(render("cell.html", value=r[side], cls=r["cls"][side], title=None, note=None)))
            if not r["decidable"]:
                cells.append(w.HTML(render("cell.html", value=r["choice"], cls="ikw-hint", title=None, note=None)))
                continue
            shown = [s for s in ("base", "local", "central") if s != "base" or has_base]  # the columns' order
            toggle = w.ToggleButtons(options=[("—", _AUTO)] + [(s, s) for s in shown],
                                     value=r["side"] if r["side"] in SIDES else _AUTO,
                                     tooltips=[r["choice"] if r["side"] is None else "forget this choice"]
                                     + [f"take the {s} value" for s in shown],
                                     disabled=whole is not None, style={"button_width": "5.5em"})
            toggle.observe(self._on_field(r["field"]), names="value")
            cells.append(toggle)
        return cells

    # -- display -------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        decided, count = self.progress()
        rows = self._rows(self.current) if self._ids else []
        return render("conflict_static.html", style=render("style.html"), strategy=self.strategy,
                      decided=decided, count=count, choices=len(self._dec),
                      head=self._head_html(self.current) if self._ids else "", rows=rows,
                      keys=render("keys.html", keys=self.KEYS, shortcut_note=""),
                      decisions=frame_table(self.decisions, caption="decisions", empty="no decisions yet"))

    def __repr__(self) -> str:
        decided, count = self.progress()
        shown = f", showing {self.current}" if self._ids else ""
        return (f"ConflictReview({self.strategy}: {decided} of {count} conflicts decided, "
                f"{len(self._dec)} choices{shown})")


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def _money(total: Any, currency: Any) -> str:
    t, c = _text(total), _text(currency)
    return "no total" if t is None else f"{t} {c}" if c else t


def _as_frame(decisions: Any) -> pd.DataFrame:
    from .._args import as_decisions

    frame = as_decisions(decisions, func="ConflictReview", choices=SIDES)
    return frame.astype(object) if frame is not None else pd.DataFrame(columns=["id", "field", "choice"])


def _prepare(res: Resolution, rec: Reconciliation, include: str):
    """The ids under review, their fields (with ``needs``, ``decidable``, highlight flags,
    the strategy's hint and a number per decidable field) and one info row per id."""
    acts = res.actions
    if include == "unresolved":
        ids = acts.loc[acts["action"] == "unresolved", "id"]
    else:
        ids = acts.loc[(acts["status"] == "conflict") & (acts["action"] != "quarantine"), "id"]
    ids = ids.astype(str).tolist()
    status = rec.status.set_index(rec.status["id"].astype(str))
    missing = [i for i in ids if i not in status.index or status.at[i, "status"] != "conflict"][:1]
    if missing:
        raise UsageError(f"ConflictReview: invoice {missing[0]!r} of the resolution is not a conflict of the "
                         "reconciliation given: pass the reconciliation the resolution was resolved from",
                         reason="mismatched_reconciliation")
    fields = rec.fields[rec.fields["id"].isin(ids)].astype({"id": str, "field": str}).reset_index(drop=True)
    need = res.unresolved[["id", "field"]].astype(str).assign(needs=True)
    fields = fields.merge(need, on=["id", "field"], how="left")
    fields["needs"] = fields["needs"].fillna(False).astype(bool)
    lv, cv, bv = (fields[c].astype(object).where(fields[c].notna(), None) for c in ("local", "central", "base"))
    differ = (lv != cv).to_numpy()
    fields["decidable"] = (fields["field"] != "total").to_numpy() & differ
    info = status.loc[ids, ["reason", "local_version", "central_version", "base_version", "has_base",
                            "local_modified_at", "central_modified_at"]]
    info["has_base"] = info["has_base"].fillna(False).astype(bool)
    has_base = fields["id"].map(info["has_base"]).to_numpy(dtype=bool)
    fields["local_hl"] = np.where(has_base, fields["local_changed"].fillna(False).to_numpy(dtype=bool), differ)
    fields["central_hl"] = np.where(has_base, fields["central_changed"].fillna(False).to_numpy(dtype=bool), differ)
    fields["hint"] = _hints(fields, info, res.strategy, has_base, differ)
    # review order, decidable fields first, numbered 1, 2, ... per invoice (the keys use them)
    order = pd.Series(np.arange(len(ids)), index=ids)
    fields = fields.assign(_o=fields["id"].map(order)).sort_values(["_o", "decidable", "field"],
                                                                    ascending=[True, False, True], kind="stable")
    fields = fields.drop(columns="_o").reset_index(drop=True)
    rank = fields.groupby("id")["decidable"].cumsum()
    fields["n"] = pd.array(np.where(fields["decidable"], rank, 0), dtype="Int64")
    fields.loc[~fields["decidable"], "n"] = pd.NA
    loc = rec.local.invoices
    loc = loc[loc["id"].isin(ids)].drop_duplicates("id").set_index("id")
    cen = rec.central.invoices
    cen = cen[cen["id"].isin(ids)].drop_duplicates("id").set_index("id")
    info["invoice_number"] = loc["invoice_number"].reindex(ids).fillna(cen["invoice_number"].reindex(ids)).to_numpy()
    info["client_name"] = loc["client_name"].reindex(ids).fillna(cen["client_name"].reindex(ids)).to_numpy()
    info["local_total"] = loc["total"].reindex(ids).to_numpy()
    info["central_total"] = cen["total"].reindex(ids).to_numpy()
    info["currency"] = loc["currency"].reindex(ids).to_numpy()
    info["central_currency"] = cen["currency"].reindex(ids).to_numpy()
    return ids, fields, info


def _hints(fields: pd.DataFrame, info: pd.DataFrame, strategy: str, has_base: np.ndarray,
           differ: np.ndarray) -> np.ndarray:
    """What the strategy does with each field nobody chose (a hint beside it)."""
    local_newer = (fields["id"].map(info["local_modified_at"] > info["central_modified_at"])
                   .fillna(False).to_numpy(dtype=bool))
    lc = fields["local_changed"].fillna(False).to_numpy(dtype=bool)
    cc = fields["central_changed"].fillna(False).to_numpy(dtype=bool)
    newer = np.where(local_newer, "strategy: local (newer)", "strategy: central (newer)")
    merged = np.select([has_base & lc & ~cc, has_base & cc & ~lc], ["strategy: local (only local changed)",
                                                                    "strategy: central (only central changed)"],
                       default=newer if strategy == "merge_fields" else "needs a decision")
    by = {"prefer_local": np.full(len(fields), "strategy: local"),
          "prefer_central": np.full(len(fields), "strategy: central"),
          "last_write_wins": newer}.get(strategy, merged)
    out = np.where(differ, by, "same on both sides")
    return np.where(fields["field"].to_numpy() == "total", "follows from the lines", out)
