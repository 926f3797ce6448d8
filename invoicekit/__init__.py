"""invoicekit: reconcile, deduplicate and render invoices from offline stores, in Jupyter."""

from . import accessor as _accessor  # noqa: F401 - registers the DataFrame accessor .ik
from ._version import __version__
from .cache import Cache
from .dedupe import (
    CleanupResult,
    DuplicateClusters,
    DuplicatePairs,
    DuplicateResolution,
    apply_duplicates,
    cluster_duplicates,
    find_duplicates,
    read_decisions,
    record_decisions,
    resolve_duplicates,
    undo_duplicates,
)
from .device import LocalStore
from .errors import (
    IdentityError,
    InvoicekitError,
    InvoiceNotFoundError,
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
from .lookups import get_client, get_invoice
from .monitor import ConnectionMonitor
from .reconcile import Reconciliation, reconcile
from .render import RenderResult, render_batch, render_pdf
from .resolve import Resolution, resolve
from .schema import InvoiceSet
from .security.identity import Identity, TokenSecret, issue_token, verify_token
from .settings import Settings
from .sync import (
    DrainResult,
    SettingsSyncResult,
    SyncEngine,
    SyncPlan,
    SyncResult,
    apply_sync,
    plan_sync,
    sync_settings,
)
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
    "ConnectionMonitor",
    "SyncEngine",
    "DrainResult",
    "sync_settings",
    "SettingsSyncResult",
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
    "render_pdf",
    "render_batch",
    "RenderResult",
    "Cache",
    "get_invoice",
    "get_client",
    "Settings",
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
    "InvoiceNotFoundError",
    "ValidationError",
    "RenderError",
    "issue_token",
    "verify_token",
    "Identity",
    "TokenSecret",
    "IdentityError",
]
