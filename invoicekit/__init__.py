"""invoicekit: reconcile, deduplicate and render invoices from offline stores, in Jupyter."""

from ._version import __version__
from .dedupe import (
    DuplicateClusters,
    DuplicatePairs,
    DuplicateResolution,
    cluster_duplicates,
    find_duplicates,
    resolve_duplicates,
)
from .device import LocalStore
from .errors import (
    InvoicekitError,
    MissingDependencyError,
    NotAStoreError,
    RenderError,
    StoreError,
    StoreSchemaError,
    StoreUnavailableError,
    UsageError,
    ValidationError,
)
from .integrity import checksum, tampered, verify
from .io import WriteResult, init_db, read_central, read_local, write_central, write_local
from .reconcile import Reconciliation, reconcile
from .render import RenderResult, render_batch, render_pdf
from .resolve import Resolution, resolve
from .schema import InvoiceSet
from .sync import DrainResult, SyncEngine, SyncPlan, SyncResult, apply_sync, plan_sync
from .validate import ValidationReport, validate

__all__ = [
    "__version__",
    "InvoiceSet",
    "read_local",
    "write_local",
    "read_central",
    "write_central",
    "WriteResult",
    "init_db",
    "validate",
    "ValidationReport",
    "reconcile",
    "Reconciliation",
    "resolve",
    "Resolution",
    "plan_sync",
    "SyncPlan",
    "apply_sync",
    "SyncResult",
    "LocalStore",
    "SyncEngine",
    "DrainResult",
    "find_duplicates",
    "DuplicatePairs",
    "cluster_duplicates",
    "DuplicateClusters",
    "resolve_duplicates",
    "DuplicateResolution",
    "render_pdf",
    "render_batch",
    "RenderResult",
    "checksum",
    "verify",
    "tampered",
    "InvoicekitError",
    "UsageError",
    "MissingDependencyError",
    "StoreError",
    "NotAStoreError",
    "StoreSchemaError",
    "StoreUnavailableError",
    "ValidationError",
    "RenderError",
]
