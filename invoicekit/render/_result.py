"""The result of a batch render: one row per invoice asked for."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

__all__ = ["RenderResult", "FILE_COLUMNS"]

#: the columns of :attr:`RenderResult.files`
FILE_COLUMNS = ("id", "invoice_number", "path", "pages", "bytes", "sha256", "ok", "skipped", "error")


@dataclass(frozen=True)
class RenderResult:
    """What :func:`invoicekit.render.render_batch` did.

    ``files`` has one row per invoice: ``id``, ``invoice_number``, ``path`` (the PDF),
    ``pages``, ``bytes``, ``sha256``, ``ok``, ``skipped`` (already there and unchanged, so
    not rendered again) and ``error`` (why it failed, else null).
    """

    files: pd.DataFrame
    out_dir: str
    template: str
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every invoice was rendered (or already there)."""
        return bool(self.files["ok"].all())

    @property
    def failures(self) -> pd.DataFrame:
        """The invoices that failed: ``id``, ``invoice_number``, ``error``."""
        return self.files.loc[~self.files["ok"].astype(bool), ["id", "invoice_number", "error"]].reset_index(drop=True)

    def counts(self) -> dict:
        """``rendered``, ``skipped``, ``failed``, ``pages`` and ``bytes`` as plain ints."""
        f = self.files
        ok, skipped = f["ok"].astype(bool), f["skipped"].astype(bool)
        return {"rendered": int((ok & ~skipped).sum()), "skipped": int(skipped.sum()), "failed": int((~ok).sum()),
                "pages": int(f.loc[ok, "pages"].fillna(0).sum()), "bytes": int(f.loc[ok, "bytes"].fillna(0).sum())}

    def summary(self) -> pd.DataFrame:
        """One row of counts (see :meth:`counts`) plus the rate in invoices per second."""
        c = self.counts()
        rate = c["rendered"] / self.seconds if self.seconds > 0 else float("nan")
        return pd.DataFrame([{**c, "seconds": round(self.seconds, 2), "invoices_per_s": round(rate, 1)}])

    def _repr_html_(self) -> str:
        """The compact report: counts, the failures and the first files."""
        from ..reports import render_html

        return render_html(self, standalone=False)

    def __repr__(self) -> str:
        c = self.counts()
        return (f"RenderResult({c['rendered']:,} rendered, {c['skipped']:,} skipped, {c['failed']:,} failed, "
                f"{c['pages']:,} pages, template {self.template})")

    def to_html(self, path: str) -> None:
        """Write the complete report: counts, failures first, every file (works offline)."""
        from ..reports import render_html, write

        write(path, render_html(self))
