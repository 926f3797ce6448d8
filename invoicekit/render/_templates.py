"""Finding, hashing and rendering the Jinja templates (shipped ones and the user's).

Every template runs in Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment` with
autoescape always on, so invoice text can never become markup or code. A template gets
``invoices`` (a list of per-invoice contexts, each to be wrapped in an element whose
``id`` is the invoice's ``anchor``), ``seller`` and ``lang``; several invoices may be laid
out in one document and split afterwards, except for templates that use the
document-wide ``counter(pages)`` ("page n of m"), which get one invoice per document.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache

from ..errors import UsageError

__all__ = ["TemplateSpec", "find_template", "SHIPPED", "SHIPPED_DIR"]

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
#: the shipped templates, by name
SHIPPED = ("invoice", "invoice_multipage", "credit_note")
#: bump when the engine's output for the same template and data changes
ENGINE_VERSION = "2"


@dataclass(frozen=True)
class TemplateSpec:
    """A resolved template: its Jinja name, folders, stylesheets and content hash."""

    name: str
    user_dir: str | None
    stylesheets: tuple[str, ...]
    sha256: str
    single: bool  # one invoice per document (the template counts pages)

    @property
    def asset_dirs(self) -> tuple[str, ...]:
        """The folders the URL fetcher serves files from."""
        return tuple(d for d in (self.user_dir, SHIPPED_DIR) if d)


def _folder_hash(h, folder: str) -> None:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file():
            h.update(entry.name.encode() + b"\0")
            with open(entry.path, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())


def _stylesheets(folder: str, stem: str) -> tuple[str, ...]:
    return tuple(p for p in (os.path.join(folder, "base.css"), os.path.join(folder, f"{stem}.css"))
                 if os.path.isfile(p))


def find_template(template: str | os.PathLike) -> TemplateSpec:
    """A shipped template by name (``"invoice"``, ``"invoice_multipage"``, ``"credit_note"``) or a
    user template by path to its ``.html`` file (its folder holds its assets and CSS)."""
    text = os.fspath(template)
    stem = os.path.basename(text).removesuffix(".html")
    if stem in SHIPPED and os.sep not in text and "/" not in text:
        folder, user_dir = SHIPPED_DIR, None
    elif text.endswith(".html") and os.path.isfile(text):
        folder = user_dir = os.path.dirname(os.path.abspath(text))
    else:
        raise UsageError(f"template {text!r}: expected one of {list(SHIPPED)} or the path of an existing .html "
                         "file", reason="bad_template")
    h = hashlib.sha256(f"invoicekit-render:{ENGINE_VERSION}:{stem}\0".encode())
    for d in {folder, SHIPPED_DIR}:
        _folder_hash(h, d)
    sheets = _stylesheets(folder, stem)
    with open(os.path.join(folder, f"{stem}.html"), encoding="utf-8") as fh:
        source = fh.read()
    css = "".join(open(p, encoding="utf-8").read() for p in sheets)
    return TemplateSpec(f"{stem}.html", user_dir, sheets, h.hexdigest(), "counter(pages)" in source + css)


@lru_cache(maxsize=8)
def environment(user_dir: str | None):
    """The sandboxed Jinja environment: the user's folder first, then the shipped templates."""
    from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader
    from jinja2.sandbox import SandboxedEnvironment

    loaders = ([FileSystemLoader(user_dir)] if user_dir else []) + [PackageLoader("invoicekit.render", "templates")]
    return SandboxedEnvironment(loader=ChoiceLoader(loaders), autoescape=True, trim_blocks=True,
                                lstrip_blocks=True)


def render_html(spec: TemplateSpec, contexts: list[dict], seller: dict, lang: str) -> str:
    """The HTML of ``contexts`` laid out with ``spec``."""
    from ._labels import labels_for

    return environment(spec.user_dir).get_template(spec.name).render(invoices=contexts, seller=seller, lang=lang,
                                                                     t=labels_for(lang))
