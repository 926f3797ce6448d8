"""The reports' Jinja environment: templates shipped in the package, autoescape always on."""

from __future__ import annotations

import functools

from markupsafe import Markup, escape

from ._chart import color

__all__ = ["render"]


@functools.lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined  # a core dependency

    from ._chart import COLORS

    env = Environment(
        loader=PackageLoader("invoicekit.reports", "templates"),
        autoescape=True,  # every value is escaped, whatever the file's extension
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["colors"] = COLORS
    env.filters["td"] = _td
    return env


def _td(c, extra: str = "", tag: str = "td"):
    """One table cell (see :class:`~invoicekit.reports._cells.Cell`), every value escaped. A filter
    rather than a macro: reports have hundreds of thousands of cells, and a macro call costs ten
    times as much."""
    if c is None:
        return Markup(f'<{tag} class="{escape(("na " + extra).strip())}">&mdash;</{tag}>')
    if c.cls == "chip":
        return Markup(f'<{tag} data-v="{escape(c.v)}"><span class="chip" style="--c:{escape(color(c.text))}">'
                      f"{escape(c.text)}</span></{tag}>")
    cls = c.cls if not extra or extra in c.cls.split() else f"{c.cls} {extra}".strip()
    attrs = (f' class="{escape(cls)}"' if cls else "") + (f' data-v="{escape(c.v)}"' if c.v is not None else "")
    body = f'<abbr title="{escape(c.title)}">{escape(c.text)}</abbr>' if c.title else escape(c.text)
    return Markup(f"<{tag}{attrs}>{body}</{tag}>")


def render(template: str, **context) -> str:
    """Render one of the package's templates."""
    return _environment().get_template(template).render(**context)
