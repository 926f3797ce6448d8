"""``RenderBatch``: choose a template and locale, preview page 1 of an invoice, render a
batch with a progress bar and look at the result.

``render_batch`` takes ``progress=`` as a switch for its own tqdm bar, not a callback, so
the widget renders the batch in steps of invoices (``render_batch(..., where={"id": step})``,
each step resumable and deterministic as a whole batch is) and moves an ``IntProgress``
after each step; the steps' files make one :class:`~invoicekit.render.RenderResult`.
The preview renders one invoice with ``render_pdf`` and rasterises page 1 with
``pdftoppm`` (poppler-utils), locally, in a temporary folder.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

from .._args import as_invoice_set
from ..errors import RenderError, UsageError
from ..render import RenderResult, render_batch, render_pdf
from ._base import Displayable, render, widgets_module

__all__ = ["RenderBatch", "LOCALES", "templates", "rasterise"]

#: the locales offered first: one or more per language the shipped templates have labels for
#: (any Babel locale works: pass it as ``locale=`` and it joins the list)
LOCALES = ("en_GB", "en_US", "de_DE", "de_AT", "de_CH", "fr_FR", "fr_BE", "es_ES", "it_IT", "nl_NL", "nl_BE")
#: invoices offered in the preview picker (the first live ones; ``preview(id)`` takes any)
PREVIEW_CHOICES = 500
EINVOICES = (("plain PDF", None), ("Factur-X e-invoice (PDF/A-3 with CII XML)", "factur-x"))


def templates() -> tuple[str, ...]:
    """The shipped templates' names (``invoicekit.render``'s list)."""
    from ..render import TEMPLATES

    return tuple(TEMPLATES)


def _check_locale(locale: Any) -> str:
    from babel import Locale, UnknownLocaleError

    if not isinstance(locale, str):
        raise UsageError(f"RenderBatch: locale must be a string such as 'de_DE'; got {type(locale).__name__}",
                         reason="bad_locale")
    try:
        Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise UsageError(f"RenderBatch: unknown locale {locale!r} ({exc}); use e.g. {', '.join(LOCALES[:4])}",
                         reason="bad_locale") from None
    return locale


def rasterise(pdf: bytes, *, page: int = 1, size: int = 800, timeout: float = 120) -> bytes:
    """Page ``page`` of ``pdf`` as a PNG whose longer side is ``size`` pixels (pdftoppm)."""
    exe = shutil.which("pdftoppm")
    if exe is None:
        raise RenderError("the preview needs pdftoppm: install poppler-utils (apt-get install poppler-utils)",
                          reason="no_rasteriser")
    with tempfile.TemporaryDirectory(prefix="invoicekit-preview-") as tmp:
        src, out = os.path.join(tmp, "in.pdf"), os.path.join(tmp, "page")
        with open(src, "wb") as fh:
            fh.write(pdf)
        args = [exe, "-png", "-f", str(page), "-l", str(page), "-scale-to", str(int(size)), "-singlefile", src, out]
        try:
            done = subprocess.run(args, capture_output=True, timeout=timeout, check=False)  # a list: no shell
        except subprocess.TimeoutExpired:
            raise RenderError(f"pdftoppm took longer than {timeout:g} s for the preview", reason="rasterise_failed") \
                from None
        if done.returncode != 0 or not os.path.exists(out + ".png"):
            why = done.stderr.decode("utf-8", "replace").strip()[-300:]
            raise RenderError(f"pdftoppm could not rasterise page {page}: {why or 'no output'}",
                              reason="rasterise_failed")
        with open(out + ".png", "rb") as fh:
            return fh.read()


class RenderBatch(Displayable):
    """Render invoices to PDF from a notebook: pickers, a page-1 preview, a run button with
    a progress bar, the results.

    ``invoice_set``: the invoices (an InvoiceSet or a store path / URL); every live one is
    rendered into ``out_dir``. ``seller``: the seller details (default: each store's
    ``app_settings`` key ``seller``). ``template``, ``locale``, ``einvoice``: the starting
    choices (the pickers change them). ``workers``: as for ``render_batch``; ``step``:
    invoices per progress step (default: about 50 steps, at least 16 invoices each).

    Scriptable: :meth:`preview`, :meth:`run` (returns the RenderResult), :attr:`options`.
    """

    def __init__(self, invoice_set: Any, out_dir: str | os.PathLike, *, seller: dict | None = None,
                 template: str = "invoice", locale: str = "en_GB", einvoice: str | None = None,
                 workers: int | None = None, step: int | None = None) -> None:
        self._set = as_invoice_set(invoice_set, func="RenderBatch", param="invoice_set")
        self._out = os.fspath(out_dir)
        self._seller, self._workers = seller, workers
        if step is not None and (not isinstance(step, (int, np.integer)) or step < 1):
            raise UsageError(f"RenderBatch: step must be a positive number of invoices; got {step!r}")
        inv = self._set.invoices
        live = inv[inv["deleted_at"].isna()]
        self._ids = pd.unique(live["id"].astype(str).to_numpy())
        self._step = int(step) if step is not None else max(16, math.ceil(len(self._ids) / 50))
        self._choices = live.drop_duplicates("id").head(PREVIEW_CHOICES)
        names = templates()
        if template not in names and not (str(template).endswith(".html") and os.path.isfile(str(template))):
            raise UsageError(f"RenderBatch: template {template!r}: expected one of {list(names)} or the path of an "
                             "existing .html file", reason="bad_template")
        if einvoice not in dict((v, k) for k, v in EINVOICES):
            raise UsageError(f"RenderBatch: einvoice={einvoice!r}: expected None or 'factur-x'", reason="bad_einvoice")
        self._template_names = names if template in names else (*names, str(template))
        locale = _check_locale(locale)
        self._locales = LOCALES if locale in LOCALES else (locale, *LOCALES)
        self._result: RenderResult | None = None
        self._png: bytes | None = None
        self._png_of: str | None = None
        self.widget = self._build(template, locale, einvoice)

    # -- public state ------------------------------------------------------------------------
    @property
    def invoice_set(self):
        """The invoices to render."""
        return self._set

    @property
    def out_dir(self) -> str:
        """Where the PDFs go."""
        return self._out

    @property
    def options(self) -> dict:
        """The current choices: ``template``, ``locale``, ``einvoice``."""
        return {"template": self._template.value, "locale": self._locale.value, "einvoice": self._einvoice.value}

    @property
    def result(self) -> RenderResult | None:
        """The RenderResult of the last :meth:`run`, else None."""
        return self._result

    @property
    def preview_png(self) -> bytes | None:
        """The PNG of the last preview, else None."""
        return self._png

    # -- actions -----------------------------------------------------------------------------
    def preview(self, invoice_id: str | None = None) -> bytes:
        """Render ``invoice_id`` (default: the one picked) with the current choices and show
        page 1; returns the PNG."""
        inv = invoice_id if invoice_id is not None else self._pick.value
        if inv is None:
            raise UsageError("RenderBatch.preview: there is no live invoice to preview", reason="no_invoice")
        if not isinstance(inv, str) or inv not in set(self._ids):
            raise UsageError(f"RenderBatch.preview: {inv!r} is not the id of a live invoice of the set",
                             reason="unknown_invoice")
        o = self.options
        pdf = render_pdf(self._set, inv, template=o["template"], locale=o["locale"], seller=self._seller,
                         einvoice=o["einvoice"])
        self._png, self._png_of = rasterise(pdf), inv
        self._image.value = self._png
        self._image.layout.display = ""
        self._say(f"page 1 of {inv} ({o['template']}, {o['locale']})")
        return self._png

    def run(self) -> RenderResult:
        """Render every live invoice with the current choices, step by step (the bar moves
        after each step); returns the :class:`~invoicekit.render.RenderResult`."""
        o = self.options
        started = time.perf_counter()
        steps = [self._ids[i:i + self._step] for i in range(0, len(self._ids), self._step)]
        self._bar.max, self._bar.value = max(len(self._ids), 1), 0
        self._bar.bar_style = ""
        parts = []
        for ids in steps or [None]:
            part = render_batch(self._set, self._out, template=o["template"], locale=o["locale"],
                                seller=self._seller, einvoice=o["einvoice"], workers=self._workers, progress=False,
                                where={"id": list(ids)} if ids is not None else None)
            parts.append(part)
            self._bar.value += len(part.files)
            self._counter.value = f"{self._bar.value:,} of {len(self._ids):,} invoices"
        files = pd.concat([p.files for p in parts], ignore_index=True) if len(parts) > 1 else parts[0].files
        self._result = RenderResult(files, self._out, parts[0].template, time.perf_counter() - started)
        self._bar.bar_style = "success" if self._result.ok else "danger"
        self._results.value = self._result._repr_html_()
        c = self._result.counts()
        self._say(f"{c['rendered']:,} rendered, {c['skipped']:,} already there, {c['failed']:,} failed")
        return self._result

    # -- the widget -------------------------------------------------------------------------------
    def _build(self, template: str, locale: str, einvoice: str | None):
        w = widgets_module()
        self._template = w.Dropdown(options=list(self._template_names), value=template, description="template")
        self._locale = w.Dropdown(options=list(self._locales), value=locale, description="locale")
        self._einvoice = w.Dropdown(options=list(EINVOICES), value=einvoice, description="output",
                                    layout=w.Layout(width="28em"))
        labels = (self._choices["invoice_number"].astype("string").fillna("(no number)") + " · "
                  + self._choices["client_name"].astype("string").fillna("")).tolist()
        options = list(zip(labels, self._choices["id"].astype(str).tolist()))
        self._pick = w.Dropdown(options=options, value=options[0][1] if options else None, description="preview",
                                layout=w.Layout(width="28em"))
        preview = w.Button(description="preview page 1", tooltip="render the picked invoice and show its first page")
        preview.on_click(lambda _b: self._guarded(self.preview))
        self._image = w.Image(format="png", layout=w.Layout(max_width="420px", border="1px solid #d0d7de",
                                                             display="none"))
        run = w.Button(description=f"render {len(self._ids):,} invoices", button_style="primary",
                       tooltip=f"render every live invoice into {self._out}")
        run.on_click(lambda _b: self._guarded(self.run))
        self._bar = w.IntProgress(min=0, max=max(len(self._ids), 1), value=0, description="rendered",
                                  layout=w.Layout(width="28em"))
        self._counter = w.HTML(f"0 of {len(self._ids):,} invoices")
        self._msg = w.HTML()
        self._results = w.HTML()
        box = w.VBox([w.HTML(render("style.html")), w.HBox([self._template, self._locale]), self._einvoice,
                      w.HBox([self._pick, preview]), self._image, w.HBox([run, self._bar, self._counter]), self._msg,
                      self._results])
        box.add_class("ikw")
        return box

    def _guarded(self, action) -> None:
        from ..errors import InvoicekitError

        try:
            action()
        except InvoicekitError as exc:  # said in the widget; a script calling the method gets the error
            self._say(str(exc))
            self._bar.bar_style = "danger"

    def _say(self, text: str) -> None:
        import html

        self._msg.value = f"<div class='ikw-msg'>{html.escape(text)}</div>"

    # -- display ---------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        o = self.options
        return render("render_static.html", style=render("style.html"), live=len(self._ids), out_dir=self._out,
                      template=o["template"], locale=o["locale"], einvoice=o["einvoice"],
                      preview=base64.b64encode(self._png).decode() if self._png else None, preview_of=self._png_of,
                      result=self._result._repr_html_() if self._result is not None else "")

    def __repr__(self) -> str:
        o = self.options
        done = f", last run: {self._result!r}" if self._result is not None else ""
        return (f"RenderBatch({len(self._ids):,} live invoices -> {self._out}, template {o['template']}, "
                f"locale {o['locale']}{', ' + o['einvoice'] if o['einvoice'] else ''}{done})")
