"""The only way WeasyPrint may reach anything outside the HTML: a closed URL fetcher.

Allowed: ``data:`` URLs; ``file:`` URLs inside the template's own asset folder (after
resolving symlinks and ``..``); ``http(s):`` URLs starting with one of the caller's
allow-list prefixes. Everything else raises, so WeasyPrint leaves the resource out.
Every refused URL is recorded in :attr:`ClosedFetcher.refused`.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

__all__ = ["closed_fetcher", "FetchRefused"]


class FetchRefused(ValueError):
    """A URL the render fetcher does not serve."""


def closed_fetcher(asset_dirs: tuple[str, ...], allow: tuple[str, ...] = ()):
    """A WeasyPrint URL fetcher serving ``data:`` URLs, files under ``asset_dirs`` and the
    ``allow`` URL prefixes (e.g. ``("https://cdn.example.com/logos/",)``) only."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    roots = tuple(os.path.realpath(d) for d in asset_dirs)

    class ClosedFetcher(URLFetcher):
        """See :func:`closed_fetcher`."""

        def __init__(self) -> None:
            super().__init__(timeout=10, allowed_protocols=("data", "file", "http", "https"),
                             allow_redirects=False)
            self.refused: list[str] = []

        def _refuse(self, url: str, why: str):
            self.refused.append(url[:200])
            raise FetchRefused(f"refused {url[:80]!r}: {why}")

        def fetch(self, url, headers=None):
            scheme = url.split(":", 1)[0].lower() if ":" in url else ""
            if scheme == "data":
                return super().fetch(url, headers)
            if scheme == "file":
                return self._file(url)
            if scheme in ("http", "https") and any(url.startswith(p) for p in allow):
                return super().fetch(url, headers)
            return self._refuse(url, "only data: URLs and the template's asset folder are served")

        def _file(self, url: str):
            parts = urlsplit(url)
            path = os.path.realpath(unquote(parts.path))
            inside = any(os.path.commonpath([root, path]) == root for root in roots)
            if parts.netloc not in ("", "localhost") or not inside or not os.path.isfile(path):
                return self._refuse(url, "file outside the template's asset folder")
            with open(path, "rb") as fh:
                body = fh.read()
            return URLFetcherResponse(url, body, {"Content-Type": _mime(path)})

    return ClosedFetcher()


def _mime(path: str) -> str:
    import mimetypes

    return mimetypes.guess_type(path)[0] or "application/octet-stream"
