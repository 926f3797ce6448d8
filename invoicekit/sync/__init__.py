"""Sync: plan operations from a resolution, then apply them to both stores exactly once."""

from .apply import SyncResult, apply_sync
from .engine import DrainResult, SyncEngine
from .plan import KINDS, SyncPlan, plan_sync

__all__ = ["plan_sync", "SyncPlan", "apply_sync", "SyncResult", "KINDS", "SyncEngine", "DrainResult"]
