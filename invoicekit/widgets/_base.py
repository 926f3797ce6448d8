"""What the three widgets share: the optional imports, the Jinja environment of their HTML,
the display protocol (a live widget where a frontend runs widgets, static HTML elsewhere)
and the keyboard-command box.

ipywidgets has no key events in its core; ``ipyevents`` would add them but is not a
dependency. Each widget therefore has a small text box: what is typed there is read as
commands (one letter each, see the widget's ``KEYS``) and the box empties itself, and
every button names its key in its tooltip. Scripts call ``press("...")`` with the same
letters.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

from ..errors import MissingDependencyError, UsageError

__all__ = ["widgets_module", "render", "Displayable", "KeyBox", "side_label", "frame_table", "rows_in"]


def widgets_module():
    """``ipywidgets``, or a MissingDependencyError naming the ``notebooks`` extra."""
    try:
        import ipywidgets
    except ImportError:  # pragma: no cover - the extra is installed in the test environment
        raise MissingDependencyError("ipywidgets", "notebooks") from None
    return ipywidgets


@functools.lru_cache(maxsize=1)
def _environment():
    from jinja2 import DictLoader, Environment, StrictUndefined  # a core dependency

    from ._templates import TEMPLATES

    return Environment(loader=DictLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True)


def render(name: str, **context: Any) -> str:
    """One of the widgets' templates (autoescape on: every value is escaped)."""
    return _environment().get_template(name).render(**context)


def side_label(side: str | None) -> str:
    """How a choice reads on a button."""
    return {"local": "local", "central": "central", "base": "base", None: "not decided"}.get(side, str(side))


class Displayable:
    """Shows ``self.widget`` where widgets run; ``_repr_html_`` (static) and ``__repr__``
    fill the other formats (nbval, GitHub, a terminal)."""

    widget: Any

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        data = self.widget._repr_mimebundle_(include=include, exclude=exclude, **kwargs) or {}
        data = dict(data)
        data["text/plain"] = repr(self)
        data["text/html"] = self._repr_html_()
        return data

    def _repr_html_(self) -> str:  # pragma: no cover - each widget defines its own
        raise NotImplementedError


_COMMAND = re.compile(r"\s*(\d*)([A-Za-z?])")


class KeyBox:
    """A one-line text box whose typed letters run commands, then clear.

    ``commands`` maps a letter to ``f(number or None)``; a number typed before the letter
    (``3c``) is passed to it. Unknown letters are reported through ``say``.
    """

    def __init__(self, commands: dict[str, Callable[[int | None], None]], *, say: Callable[[str], None],
                 placeholder: str) -> None:
        w = widgets_module()
        self.commands = commands
        self.say = say
        self.box = w.Text(value="", placeholder=placeholder, continuous_update=True,
                          layout=w.Layout(width="16em"), tooltip="type the keys listed beside this box")
        self.box.add_class("ikw-keys")
        self.box.observe(self._typed, names="value")

    def _typed(self, change) -> None:
        text = change["new"]
        if not text:
            return
        # a number waits for its letter ("3" then "c"); anything else runs and clears
        if text.strip().isdigit():
            return
        self.box.value = ""
        self.press(text, strict=False)

    def press(self, keys: str, *, strict: bool = True) -> None:
        """Run the commands typed as ``keys`` (e.g. ``"l n 2c"``), in order. With ``strict``
        an unknown key is a UsageError raised before any command runs; otherwise it is
        reported (``say``) and the known ones run, as do commands whose own UsageError is
        reported instead of raised (typing in the box never raises)."""
        if not isinstance(keys, str):
            raise UsageError(f"press() takes the keys as a string, e.g. 'lcn'; got {type(keys).__name__}")
        parsed, pos, unknown = [], 0, []
        for m in _COMMAND.finditer(keys):
            if keys[pos:m.start()].strip():
                unknown.append(keys[pos:m.start()].strip())
            pos = m.end()
            if m.group(2) in self.commands:
                parsed.append((m.group(2), int(m.group(1)) if m.group(1) else None))
            else:
                unknown.append(m.group(0).strip())
        if keys[pos:].strip():
            unknown.append(keys[pos:].strip())
        known = ", ".join(sorted(self.commands))
        if unknown and strict:
            raise UsageError(f"unknown key {unknown[0]!r}; the keys are {known}")
        if unknown:
            self.say(f"unknown key {unknown[0]!r}: the keys are {known}")
        for letter, number in parsed:
            if strict:
                self.commands[letter](number)
                continue
            try:
                self.commands[letter](number)
            except UsageError as exc:
                self.say(str(exc))
                return


def frame_table(frame, *, caption: str = "", max_rows: int = 50, empty: str = "none") -> str:
    """A DataFrame as a small escaped table (the first ``max_rows`` rows)."""
    import pandas as pd

    shown = frame.head(max_rows)
    numeric = [c for c in shown.columns if pd.api.types.is_numeric_dtype(shown[c]) and not
               pd.api.types.is_bool_dtype(shown[c])]
    values = shown.astype(object).where(shown.notna(), None)
    return render("table.html", caption=caption, columns=[str(c) for c in shown.columns], numeric=numeric,
                  rows=values.to_numpy().tolist(), more=max(len(frame) - max_rows, 0), empty=empty)


def rows_in(left, right, cols: list[str]):
    """Per row of ``left``: whether ``right`` has a row with the same ``cols`` (vectorised)."""
    import numpy
    import pandas

    if not len(left) or not len(right):
        return numpy.zeros(len(left), dtype=bool)
    keys = pandas.MultiIndex.from_frame(right[cols].astype(str))
    return pandas.MultiIndex.from_frame(left[cols].astype(str)).isin(keys)
