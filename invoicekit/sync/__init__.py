"""Sync: plan operations from a resolution, then apply them to both stores exactly once."""

from ._settings import SettingsSyncResult, sync_settings
from .apply import SyncResult, apply_sync
from .engine import DrainResult, SyncEngine
from .plan import KINDS, SyncPlan, plan_sync

__all__ = ["plan_sync", "SyncPlan", "apply_sync", "SyncResult", "KINDS", "SyncEngine", "DrainResult", "sync_settings",
           "SettingsSyncResult"]
