"""Render invoices to PDF from Jinja templates with WeasyPrint: fast, exact, safe.

* :func:`render_pdf` - one invoice's PDF as bytes.
* :func:`render_batch` - many invoices to files, resumable, deterministic, in parallel;
  returns a :class:`RenderResult`.
* :data:`TEMPLATES` - the names of the shipped templates (``template=`` also takes a path
  to a user template or folder).

Needs the ``pdf`` extra (``pip install 'invoicekit[pdf]'``) and the fonts and libraries of
``scripts/sysdeps.sh``.
"""

from ._batch import render_batch, render_pdf
from ._result import RenderResult
from ._templates import SHIPPED as TEMPLATES

__all__ = ["render_pdf", "render_batch", "RenderResult", "TEMPLATES"]
