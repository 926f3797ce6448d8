"""One error hierarchy for invoicekit.

Every error the toolkit raises on purpose derives from :class:`InvoicekitError`.
Errors that concern data carry the offending rows as a DataFrame so a notebook
user can look at them directly.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "InvoicekitError",
    "UsageError",
    "MissingDependencyError",
    "StoreError",
    "NotAStoreError",
    "StoreSchemaError",
    "ValidationError",
]


class InvoicekitError(Exception):
    """Base class of every error raised by invoicekit."""

    #: exit code the CLI maps this error to (2: bad usage or bad input)
    exit_code = 2


class UsageError(InvoicekitError, ValueError):
    """A function or command was called with options that make no sense."""


class MissingDependencyError(InvoicekitError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"invoicekit needs the optional package {module!r} for this; "
            f"install it with: pip install 'invoicekit[{extra}]'"
        )


class StoreError(InvoicekitError):
    """A store (SQLite file or central database) cannot be used as asked."""

    def __init__(self, message: str, *, store: str) -> None:
        self.store = store
        super().__init__(message)


class NotAStoreError(StoreError):
    """The file is missing, corrupt, or not a SQLite database at all."""


class StoreSchemaError(StoreError):
    """The store lacks tables or columns the offline/central schema requires."""

    def __init__(self, message: str, *, store: str, missing: list[str]) -> None:
        self.missing = list(missing)
        super().__init__(message, store=store)


class ValidationError(InvoicekitError):
    """Data broke one or more validation rules.

    ``problems`` is a DataFrame with one row per broken rule and offending row
    (columns ``source``, ``source_row``, ``id``, ``rule``, ``field``, ``value``,
    ``message``).
    """

    def __init__(self, problems: Any, *, context: str = "") -> None:
        self.problems = problems
        n = len(problems)
        rules = ", ".join(
            f"{rule} ({count})" for rule, count in problems["rule"].value_counts().sort_index().items()
        )
        first = problems.iloc[0] if n else None
        where = ""
        if first is not None:
            where = (
                f"; first: {first['source']} row {first['source_row']} id {first['id']!r}: "
                f"{first['message']}"
            )
        prefix = f"{context}: " if context else ""
        super().__init__(f"{prefix}{n} validation problem(s): {rules}{where}")
