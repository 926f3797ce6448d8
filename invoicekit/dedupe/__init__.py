"""Find, cluster and resolve invoices entered more than once (see :func:`find_duplicates`)."""

from ._cluster import DuplicateClusters, cluster_duplicates
from ._find import DuplicatePairs, find_duplicates
from ._resolve import DuplicateResolution, resolve_duplicates

__all__ = [
    "find_duplicates",
    "DuplicatePairs",
    "cluster_duplicates",
    "DuplicateClusters",
    "resolve_duplicates",
    "DuplicateResolution",
]
