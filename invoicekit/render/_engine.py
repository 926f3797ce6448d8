"""WeasyPrint, driven for throughput: parsed stylesheets and fonts reused per process,
several invoices laid out in one document and split into one PDF per invoice.

Where the time goes (cProfile and CPU time, one worker, default one-page template, 2026-12):
WeasyPrint's cost is per box it builds, styles, lays out and draws (~2,500 Python calls
per table cell, ~1,400 per one-line paragraph, ~10,000 fixed per page and PDF), so the
shipped templates print one block per line (no ``<br>``, whose line breaking re-splits the
rest of the paragraph per line, no inline runs), one fixed-layout table and one float per
band (157 -> 110 boxes for a three-line invoice). The style cascade is cut with a lean
user-agent stylesheet (``templates/_ua.css``). Python's cyclic garbage collector took
10-20% of a chunk at its default threshold (see ``_worker.GC_THRESHOLD``). Of the rest,
layout is ~2/3 and drawing plus PDF writing (font subsets, one pair per PDF) ~1/3; the
context (Babel, the EPC QR code with a fixed mask) ~1 ms and Jinja ~0.5 ms per invoice.
The per-document fixed cost (stylesheet parsing, font configuration) is paid once per
process, and once per chunk of invoices laid out together (16 or 64 per document made no
measurable difference); worker processes spread the rest over the cores.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone

from ._fetcher import closed_fetcher
from ._templates import SHIPPED_DIR, TemplateSpec, render_html

__all__ = ["engine", "Engine", "CHUNK"]

#: invoices laid out together in one document (one-page templates); bounds memory per task
CHUNK = 16
_LOCAL = threading.local()  # WeasyPrint objects are not shared between threads


def engine(spec: TemplateSpec, allow: tuple[str, ...]) -> "Engine":
    """This thread's engine for ``spec`` (built once, reused for every chunk)."""
    engines = _LOCAL.__dict__.setdefault("engines", {})
    key = (spec, allow)
    if key not in engines:
        if len(engines) > 4:
            engines.clear()
        engines[key] = Engine(spec, allow)
    return engines[key]


def _w3c(ts) -> str:
    ts = ts.astimezone(timezone.utc) if isinstance(ts, datetime) else datetime(1970, 1, 1, tzinfo=timezone.utc)
    return ts.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _lean_html(ua):
    """A WeasyPrint ``HTML`` using the lean user-agent stylesheet ``ua`` (shipped templates)."""
    from weasyprint import HTML

    class LeanHTML(HTML):
        """HTML with the shipped templates' lean UA stylesheet (see templates/_ua.css)."""

        def _ua_stylesheets(self, forms=False):
            return [ua]

    return LeanHTML


class Engine:
    """Layout and PDF writing for one template, with its stylesheets and fonts loaded once."""

    def __init__(self, spec: TemplateSpec, allow: tuple[str, ...]) -> None:
        from weasyprint import CSS, HTML
        from weasyprint.text.fonts import FontConfiguration

        self.spec = spec
        self.fonts = FontConfiguration()
        self.fetcher = closed_fetcher(spec.asset_dirs, allow)
        self.css = [CSS(filename=p, url_fetcher=self.fetcher, font_config=self.fonts) for p in spec.stylesheets]
        self.base_url = (spec.user_dir or SHIPPED_DIR).rstrip(os.sep) + os.sep
        self.html_class = HTML if spec.user_dir else _lean_html(CSS(filename=os.path.join(SHIPPED_DIR, "_ua.css")))

    def layout(self, contexts: list[dict], seller: dict, lang: str):
        """One WeasyPrint document holding ``contexts``, and each invoice's slice of its pages."""
        html = render_html(self.spec, contexts, seller, lang)
        doc = self.html_class(string=html, base_url=self.base_url, url_fetcher=self.fetcher).render(
            stylesheets=self.css, font_config=self.fonts, cache={})
        starts = {}
        for i, page in enumerate(doc.pages):
            # no attachments but the toolkit's: drop <a rel=attachment> links of templates
            page.links = [link for link in page.links if link[0] != "attachment"]
            for name in page.anchors:
                starts.setdefault(name, i)
        found = [starts.get(c["anchor"]) for c in contexts]
        if None in found or found != sorted(found) or (found and found[0] != 0):
            raise ValueError("the template must wrap each invoice in an element with id=\"{{ inv.anchor }}\"")
        ends = found[1:] + [len(doc.pages)]
        return doc, list(zip(found, ends))

    def write(self, doc, pages: tuple[int, int], ctx: dict, seller: dict, lang: str, einvoice=None) -> bytes:
        """The PDF of one invoice: its pages, with metadata from the invoice (never the clock)."""
        try:
            from weasyprint.pdf.metadata import DocumentMetadata
        except ImportError:  # WeasyPrint before the pdf package split
            from weasyprint.document import DocumentMetadata

        sub = doc.copy(doc.pages[pages[0]:pages[1]])
        stamp = _w3c(ctx["_created_at"])
        sub.metadata = DocumentMetadata(
            title=f"Invoice {ctx['number']}", authors=[seller["name"]], description=f"{ctx['client']['name'] or ''}",
            generator="invoicekit", created=stamp, modified=_w3c(ctx["_modified_at"]), lang=lang)
        options = {"pdf_identifier": ctx["id"].encode()[:32] or b"invoicekit"}
        if einvoice is not None:
            options.update(einvoice.pdf_options(sub, ctx, seller, template=self.spec.name))
        return sub.write_pdf(**options)
