"""Find, cluster and resolve invoices entered more than once (see :func:`find_duplicates`);
apply the cleanup to a store and undo it; keep reviewers' decisions."""

from ._cleanup import CleanupResult, apply_duplicates, undo_duplicates
from ._cluster import DuplicateClusters, cluster_duplicates
from ._decisions import read_decisions, record_decisions
from ._find import DuplicatePairs, find_duplicates
from ._resolve import DuplicateResolution, resolve_duplicates

__all__ = [
    "find_duplicates",
    "DuplicatePairs",
    "cluster_duplicates",
    "DuplicateClusters",
    "resolve_duplicates",
    "DuplicateResolution",
    "apply_duplicates",
    "undo_duplicates",
    "CleanupResult",
    "record_decisions",
    "read_decisions",
]
