"""Signed identities: who pushes to the central store, as an HS256 JWT.

:func:`issue_token` signs a short-lived token naming a user or device; every push to a
central store initialised with a token secret (``init_db(url, token_secret=...)``) must
carry one (``token=``). :func:`verify_token` checks a token the way the central store does:
HS256 only (``alg: none`` and every other algorithm are refused), a valid signature, and the
claims ``exp`` (not passed), ``iat``, ``iss`` (the expected issuer) and ``sub`` (the subject).
On PostgreSQL the store itself verifies the token (see ``invoicekit.io._central_sql``); on
SQLite the toolkit does, with this function.

The secret lives in a :class:`TokenSecret` (at least 32 bytes), whose ``repr`` never shows
it and which refuses to be pickled; an :class:`~invoicekit.errors.IdentityError` never
holds the secret nor the token.

>>> secret = TokenSecret(b"x" * 32)
>>> secret
TokenSecret(32 bytes)
>>> who = verify_token(issue_token("alice", secret=secret), secret=secret)
>>> (who.subject, who.kind)
('alice', 'user')
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Union

from ..errors import IdentityError, MissingDependencyError, UsageError

__all__ = ["issue_token", "verify_token", "Identity", "TokenSecret", "read_secret_file", "token_text", "pusher_token",
           "DEFAULT_ISSUER", "KINDS", "MIN_SECRET_BYTES", "TOKEN_ENV", "TOKEN_FILE_ENV"]

DEFAULT_ISSUER = "invoicekit"
#: what a token may name
KINDS = ("user", "device")
MIN_SECRET_BYTES = 32
#: longest token text accepted (a token is a few hundred characters)
MAX_TOKEN_CHARS = 8192
#: where the CLI looks for a token when no ``--token-file`` is given
TOKEN_ENV = "INVOICEKIT_TOKEN"
TOKEN_FILE_ENV = "INVOICEKIT_TOKEN_FILE"

#: what a push takes as ``token=``: the token text, or a callable returning a fresh one
#: (a long-running SyncEngine asks it before each push, so tokens may expire meanwhile)
TokenLike = Union[str, Callable[[], str], None]


def _jwt():
    try:
        import jwt
    except ImportError:
        raise MissingDependencyError("pyjwt", "security") from None
    return jwt


class TokenSecret:
    """The HMAC secret tokens are signed with: ``str`` (UTF-8) or ``bytes``, at least 32
    bytes. Its ``repr``/``str`` show only its length; it cannot be pickled."""

    __slots__ = ("_material",)

    def __init__(self, secret: str | bytes | TokenSecret) -> None:
        if isinstance(secret, TokenSecret):
            material = secret._material
        elif isinstance(secret, str):
            material = secret.encode("utf-8")
        elif isinstance(secret, (bytes, bytearray, memoryview)):
            material = bytes(secret)
        else:
            raise IdentityError(f"a token secret is str or bytes; got {type(secret).__name__}", reason="bad_secret")
        secret = None  # no frame of a traceback keeps the caller's secret
        if len(material) < MIN_SECRET_BYTES:
            raise IdentityError(f"a token secret must be at least {MIN_SECRET_BYTES} bytes; got {len(material)} "
                                "(make one with: python -c \"import secrets; print(secrets.token_urlsafe(48))\")",
                                reason="weak_secret")
        object.__setattr__(self, "_material", material)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("TokenSecret is immutable")

    def reveal(self) -> bytes:
        """The secret's bytes (for the HMAC; never log them)."""
        return self._material

    def __eq__(self, other: object) -> bool:
        import hmac

        return isinstance(other, TokenSecret) and hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        return hash((TokenSecret, len(self._material)))

    def __repr__(self) -> str:
        return f"TokenSecret({len(self._material)} bytes)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a TokenSecret is not pickled: pass the secret file's path instead")


def read_secret_file(path: str | os.PathLike) -> TokenSecret:
    """The secret held in file ``path`` (surrounding whitespace and a final newline ignored)."""
    try:
        with open(path, "rb") as fh:
            return TokenSecret(fh.read().strip())
    except OSError as exc:
        raise IdentityError(f"cannot read the token secret file {os.fspath(path)!r}: {exc.strerror}",
                            reason="bad_secret") from None


@dataclass(frozen=True)
class Identity:
    """A verified token's claims: ``subject`` (user or device name), ``kind`` ('user' or
    'device'), ``issuer``, and ``issued_at``/``expires_at`` (UTC)."""

    subject: str
    kind: str
    issuer: str
    issued_at: datetime
    expires_at: datetime

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}"


def pusher_token(token_file: str | os.PathLike | None = None) -> str | None:
    """A command's push token: the file ``token_file``, else ``$INVOICEKIT_TOKEN``, else the
    file named by ``$INVOICEKIT_TOKEN_FILE``; None without any (a store with identities on
    then refuses the push, saying how to supply one)."""
    if token_file is None and os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    path = token_file or os.environ.get(TOKEN_FILE_ENV)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the token file {os.fsdecode(path)!r}: {exc.strerror}",
                         reason="bad_path") from None


def issue_token(subject: str, *, secret: str | bytes | TokenSecret, ttl: float = 3600,
                issuer: str = DEFAULT_ISSUER, kind: str = "user") -> str:
    """A token naming ``subject`` (a ``kind``: 'user' or 'device'), signed HS256 with
    ``secret``, valid for ``ttl`` seconds, issued by ``issuer``."""
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 200:
        raise IdentityError("a token's subject is a non-empty name of at most 200 characters", reason="bad_subject")
    if kind not in KINDS:
        raise IdentityError(f"a token's kind is one of {', '.join(KINDS)}; got {kind!r}", reason="bad_subject")
    if not ttl > 0:
        raise IdentityError(f"a token's ttl is a positive number of seconds; got {ttl!r}", reason="bad_ttl")
    key = TokenSecret(secret)
    secret = None
    now = int(time.time())
    claims = {"sub": subject, "iss": issuer, "iat": now, "exp": now + max(1, int(ttl)), "kind": kind,
              "jti": uuid.uuid4().hex}
    return _jwt().encode(claims, key.reveal(), algorithm="HS256", headers={"typ": "JWT"})


def _refusal(exc: Exception) -> tuple[str, str]:
    """(reason code, what was wrong) for a PyJWT exception; never quotes the token."""
    jwt = _jwt()
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token_expired", "the token has expired; issue a new one"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad_signature", "its signature does not match this store's secret"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "bad_algorithm", "it is not signed with HS256 (unsigned 'alg: none' tokens are refused)"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong_issuer", "it was issued by another issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return "missing_claim", f"it lacks the {exc.claim!r} claim"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "not_yet_valid", "it is not valid yet (issued in the future)"
    return "malformed_token", "it is not a well-formed signed token"


def verify_token(token: str, *, secret: str | bytes | TokenSecret, issuer: str = DEFAULT_ISSUER,
                 store: str | None = None) -> Identity:
    """The :class:`Identity` a valid ``token`` names; an :class:`~invoicekit.errors.IdentityError`
    (reason ``token_expired``, ``bad_signature``, ``bad_algorithm``, ``wrong_issuer``,
    ``missing_claim``, ``not_yet_valid`` or ``malformed_token``) otherwise. ``store`` names
    the store in the error."""
    key = TokenSecret(secret)
    secret = None
    text = _checked_text(token, store=store)
    jwt = _jwt()
    try:
        claims = jwt.decode(text, key.reveal(), algorithms=["HS256"], issuer=issuer,
                            options={"require": ["exp", "iat", "iss", "sub"], "verify_signature": True})
    except jwt.PyJWTError as exc:
        reason, what = _refusal(exc)
        raise _error(reason, what, store) from None
    sub, kind = claims.get("sub"), claims.get("kind", "user")
    if not isinstance(sub, str) or not sub.strip():
        raise _error("missing_claim", "its subject ('sub') is empty", store)
    if kind not in KINDS:
        raise _error("malformed_token", f"its kind is not one of {', '.join(KINDS)}", store)
    at = {k: datetime.fromtimestamp(claims[k], timezone.utc) for k in ("iat", "exp")}
    return Identity(subject=sub, kind=kind, issuer=claims["iss"], issued_at=at["iat"], expires_at=at["exp"])


def _error(reason: str, what: str, store: str | None) -> IdentityError:
    where = f"central store {store}" if store else "identity token"
    return IdentityError(f"{where}: identity token refused: {what}", reason=reason, store=store)


def _checked_text(token: Any, *, store: str | None) -> str:
    if not isinstance(token, str):
        raise _error("malformed_token", f"a token is text; got {type(token).__name__}", store)
    if len(token) > MAX_TOKEN_CHARS:
        raise _error("malformed_token", f"it is longer than {MAX_TOKEN_CHARS} characters", store)
    return token


def token_text(token: TokenLike, *, store: str | None = None) -> str | None:
    """The text of a push's ``token=`` (calling it when it is a callable); None for None."""
    if token is None:
        return None
    if callable(token):
        token = token()
    return _checked_text(token, store=store)


def required_error(store: str, *, context: str = "") -> IdentityError:
    """The error of a push without ``token=`` to a store that requires one."""
    head = f"{context}: " if context else ""
    return IdentityError(
        f"{head}central store {store} requires a signed identity token for every push; pass "
        "token=ik.issue_token(NAME, secret=SECRET) (on the command line: --token-file FILE, or set "
        f"{TOKEN_ENV})", reason="token_required", store=store)


def not_enabled_error(store: str, *, context: str = "") -> IdentityError:
    """The error of a push with ``token=`` to a store that verifies no tokens."""
    head = f"{context}: " if context else ""
    return IdentityError(
        f"{head}central store {store} has no token secret, so it cannot verify token=; turn identities on "
        "with init_db(URL, token_secret=...) (`invoicekit db init URL --token-secret-file FILE`), or push "
        "without token=", reason="tokens_not_enabled", store=store)
