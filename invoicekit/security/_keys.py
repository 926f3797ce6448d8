"""Fernet keys: where they come from, and a wrapper that never shows them.

Keys are looked up in this order: the ``keys=`` argument (a list of Fernet keys, newest
first, or a :class:`Keys`), the environment variable ``INVOICEKIT_KEYS`` (comma-separated,
newest first), the file named by ``INVOICEKIT_KEY_FILE`` (one key per line, newest first;
blank lines and ``#`` comments ignored). Key text lives only inside :class:`Keys`; the
functions that read it return a problem *text* instead of raising, so no frame of a
traceback holds key material in its locals, and no error message quotes a key.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any, Iterable

from ..errors import KeyConfigError, MissingDependencyError

__all__ = ["Keys", "generate_key", "as_keys", "resolve_keys", "configured_keys", "KEYS_ENV", "KEY_FILE_ENV", "HOW_TO"]

KEYS_ENV = "INVOICEKIT_KEYS"
KEY_FILE_ENV = "INVOICEKIT_KEY_FILE"

#: how to supply a key (ends every "no key" message)
HOW_TO = (f"pass keys=[KEY, ...] (newest first), or set {KEYS_ENV} to comma-separated Fernet keys "
          f"(newest first), or set {KEY_FILE_ENV} to a file holding one key per line (newest first); "
          "make a key with: python -c \"import invoicekit.security as s; print(s.generate_key())\"")


def fernet_module():
    """``cryptography.fernet``, or a MissingDependencyError naming the ``security`` extra."""
    try:
        from cryptography import fernet
    except ImportError:
        raise MissingDependencyError("cryptography", "security") from None
    return fernet


def generate_key() -> str:
    """A new random Fernet key (44 characters of url-safe base64), to store in a key file."""
    return fernet_module().Fernet.generate_key().decode("ascii")


def _valid(key: bytes) -> bool:
    try:
        return len(base64.urlsafe_b64decode(key)) == 32
    except (binascii.Error, ValueError):
        return False


def _as_bytes(item: Any) -> bytes | None:
    if isinstance(item, str):
        item = item.encode("ascii", "replace")
    return bytes(item).strip() if isinstance(item, (bytes, bytearray, memoryview)) else None


class Keys:
    """Fernet keys, newest first: the newest encrypts, any of them decrypts.

    Its ``repr`` and ``str`` show how many keys it holds, never the keys; it refuses to be
    pickled (keys travel to worker processes as bytes, by the toolkit only).

    >>> Keys([generate_key(), generate_key()])
    Keys(2 keys, newest first)
    """

    __slots__ = ("_material", "_source")

    def __init__(self, keys: Iterable[str | bytes], *, source: str = "keys=") -> None:
        problem, material = _parse(keys, source)
        keys = None  # no frame of a traceback keeps the caller's key text
        if problem:
            raise KeyConfigError(problem, reason="bad_key")
        object.__setattr__(self, "_material", material)
        object.__setattr__(self, "_source", source)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Keys are immutable")

    def __repr__(self) -> str:
        n = len(self._material)
        return f"Keys({n} key{'s' if n != 1 else ''}, newest first)"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._material)

    def __reduce__(self):
        raise TypeError("Keys are not pickled; configure them where they are used "
                        f"({KEYS_ENV} or {KEY_FILE_ENV})")

    @property
    def source(self) -> str:
        """Where the keys came from (``keys=``, ``INVOICEKIT_KEYS`` or the key file's path)."""
        return self._source

    def newest_only(self) -> "Keys":
        """These keys without the older ones (what remains after a rotation)."""
        return Keys(self._material[:1], source=self._source)

    def material(self) -> tuple[bytes, ...]:
        """The raw keys, newest first (for the toolkit's workers; never log these)."""
        return self._material

    def multifernet(self):
        """A ``cryptography.fernet.MultiFernet`` over these keys."""
        fernet = fernet_module()
        return fernet.MultiFernet([fernet.Fernet(k) for k in self._material])


def _parse(keys: Iterable[str | bytes], source: str) -> tuple[str, tuple[bytes, ...]]:
    """(problem text or "", keys as bytes). Never raises, never quotes a key."""
    if isinstance(keys, (str, bytes)):
        return (f"{source} must be a list of keys (newest first), not a single "
                f"{type(keys).__name__}; pass keys=[KEY]", ())
    try:
        items = [_as_bytes(k) for k in keys]
    except TypeError:
        return f"{source} must be a list of Fernet keys (str or bytes), newest first", ()
    if not items:
        return f"{source} holds no key; {HOW_TO}", ()
    for i, item in enumerate(items, 1):
        if item is None:
            return f"key #{i} of {source} is not str or bytes", ()
        if not _valid(item):
            return (f"key #{i} of {source} is not a Fernet key (expected 32 bytes of url-safe base64, "
                    f"44 characters); {HOW_TO}"), ()
    return "", tuple(items)


def _from_environment() -> tuple[str, Keys | None]:
    """(problem text or "", Keys or None): ``INVOICEKIT_KEYS``, else ``INVOICEKIT_KEY_FILE``."""
    listed = os.environ.get(KEYS_ENV, "")
    if listed.strip():
        problem, material = _parse([k for k in listed.split(",") if k.strip()], KEYS_ENV)
        return problem, None if problem else _trusted(material, KEYS_ENV)
    path = os.environ.get(KEY_FILE_ENV, "").strip()
    if not path:
        return "", None
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            lines = [line.strip() for line in handle]
    except OSError as exc:
        return f"{KEY_FILE_ENV}={path!r} cannot be read ({exc.strerror or type(exc).__name__}); {HOW_TO}", None
    source = f"key file {path!r}"
    problem, material = _parse([ln for ln in lines if ln and not ln.startswith("#")], source)
    return problem, None if problem else _trusted(material, source)


def _trusted(material: tuple[bytes, ...], source: str) -> Keys:
    keys = object.__new__(Keys)
    object.__setattr__(keys, "_material", material)
    object.__setattr__(keys, "_source", source)
    return keys


def configured_keys() -> Keys | None:
    """The keys the environment configures (``INVOICEKIT_KEYS``, else ``INVOICEKIT_KEY_FILE``),
    or None; a KeyConfigError when what is configured is no key."""
    problem, keys = _from_environment()
    if problem:
        raise KeyConfigError(problem, reason="bad_key")
    return keys


def as_keys(keys: Any, *, func: str) -> Keys | None:
    """``keys`` as :class:`Keys` (None stays None: the environment's, looked up when needed).
    Public functions call this first, so none of their frames keeps key text in a local."""
    if keys is None or isinstance(keys, Keys):
        return keys
    return resolve_keys(keys, func=func)


def resolve_keys(keys: Any = None, *, func: str) -> Keys:
    """``keys`` as :class:`Keys` (a list, a Keys, or None for the environment's); a
    KeyConfigError saying how to supply one when there is none."""
    fernet_module()  # a missing `cryptography` is said before any work starts
    if isinstance(keys, Keys):
        return keys
    if keys is not None:
        problem, material = _parse(keys, "keys=")
        keys = None  # no frame of a traceback keeps the caller's key text
        if problem:
            raise KeyConfigError(f"{func}: {problem}", reason="bad_key")
        return _trusted(material, "keys=")
    found = configured_keys()
    if found is None:
        raise KeyConfigError(f"{func}: no encryption key configured; {HOW_TO}")
    return found
