"""Field encryption: client email, address, tax id and ``client_data`` as Fernet tokens.

:func:`encrypt` and :func:`decrypt` work on whole columns of an
:class:`~invoicekit.schema.InvoiceSet` and return new sets; :func:`rotate_keys`
re-encrypts a store under the newest key, batch by batch, resumably. Keys come from
``keys=``, ``INVOICEKIT_KEYS`` or ``INVOICEKIT_KEY_FILE`` and never appear in a repr, log
or error. ``cryptography`` (the ``security`` extra) is imported only when keys are used.

Signed identities (:mod:`invoicekit.security.identity`): :func:`issue_token` and
:func:`verify_token`, HS256 JWTs naming who pushes to the central store (PyJWT, the same extra).
"""

from ._columns import DEFAULT_FIELDS, ENCRYPTABLE, decrypt, encrypt, encrypted_mask
from ._keys import HOW_TO as KEY_HELP
from ._keys import KEY_FILE_ENV, KEYS_ENV, Keys, configured_keys, generate_key
from ._rotate import RotationResult, rotate_keys
from ._tokens import ENVELOPE_HEAD
from ._tokens import PREFIX as TOKEN_PREFIX
from .identity import Identity, TokenSecret, issue_token, verify_token


def decrypt_if_configured(invoice_set):
    """``invoice_set`` with its encrypted fields decrypted when the environment configures
    keys (``INVOICEKIT_KEYS`` or ``INVOICEKIT_KEY_FILE``); unchanged, at no cost, otherwise.
    The loaders call it, so a store encrypted at rest reads as plaintext where keys are set."""
    if not keys_configured():
        return invoice_set
    return decrypt(invoice_set)

def keys_configured() -> bool:
    """Whether the environment configures encryption keys (``INVOICEKIT_KEYS`` or
    ``INVOICEKIT_KEY_FILE``): then the stores are written encrypted at rest."""
    import os

    return bool(os.environ.get(KEYS_ENV) or os.environ.get(KEY_FILE_ENV))


def lookup_digest(text: str) -> str:
    """A name for ``text`` in cache keys (a client's normalised tax id, email or name): keyed
    (HMAC-SHA256 under a key derived from the newest encryption key) when keys are configured,
    so whoever reads the cache cannot test guesses of a low-entropy value against it; plain
    SHA-256 otherwise, where the stores themselves hold the value in the clear. 32 hex digits."""
    import hashlib
    import hmac

    keys = configured_keys() if keys_configured() else None
    if keys is None:
        return hashlib.sha256(text.encode()).hexdigest()[:32]
    secret = hmac.new(keys.material()[0], b"invoicekit cache lookup names v1", hashlib.sha256).digest()
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()[:32]


#: the one column a store keeps the client in (offline ``client_data``, central ``client_data_text``)
STORE_FIELDS = ("client_data",)


def encrypt_if_configured(invoice_set):
    """``invoice_set`` with ``client_data`` (the client JSON a store keeps, which carries every
    sensitive field) encrypted when the environment configures keys; unchanged otherwise.
    The writers call it on what they store, so a store is encrypted at rest where keys are
    set (values already encrypted stay as they are)."""
    if not keys_configured():
        return invoice_set
    return encrypt(invoice_set, fields=STORE_FIELDS)


def seal_client_data(text):
    """One stored ``client_data`` text encrypted (the envelope :func:`encrypt` writes) when
    keys are configured, else unchanged: for single-invoice writes (``LocalStore``)."""
    from ._tokens import encrypt_chunk, envelope, token_of

    if text is None or not keys_configured() or token_of(text) is not None:
        return text
    return envelope(encrypt_chunk(configured_keys().material(), [text])[0], text)


def open_client_data(text, *, store: str = "", invoice_id=None):
    """One stored ``client_data`` text decrypted (a :class:`~invoicekit.errors.KeyConfigError`
    without keys, a :class:`~invoicekit.errors.DecryptionError` naming the store and invoice
    when no key opens it); plaintext is returned as it is."""
    from ..errors import DecryptionError
    from ._keys import resolve_keys
    from ._tokens import decrypt_chunk, token_of, token_reason

    token = None if text is None else token_of(text)
    if token is None:
        return text
    plain, bad = decrypt_chunk(resolve_keys(None, func=store or "decrypt").material(), [token])
    if bad:
        reason = token_reason(token)
        raise DecryptionError(f"{store}: invoice {invoice_id!r} column 'client_data': no configured key opens its "
                              f"token ({reason})", invoice_id=invoice_id, column="client_data", reason=reason)
    return plain[0]


def seal_frame(invoices, fields, *, func: str):
    """``invoices`` (a frame of :data:`~invoicekit.schema.INVOICE_SCHEMA`) with ``fields``
    encrypted under the configured keys, on one thread (small frames: cache entries);
    ``func`` names the caller in a key error."""
    from ._columns import _encrypt_frame
    from ._keys import resolve_keys

    return _encrypt_frame(invoices, resolve_keys(None, func=func), tuple(fields), 1)


def open_frame(invoices, fields, *, func: str):
    """``invoices`` with ``fields`` decrypted under the configured keys (one thread); a
    :class:`~invoicekit.errors.KeyConfigError` or :class:`~invoicekit.errors.DecryptionError`
    where they do not open them."""
    from ._columns import _decrypt_frame

    return _decrypt_frame(invoices, None, tuple(fields), 1, func)


__all__ = [
    "encrypted_mask",
    "ENVELOPE_HEAD",
    "TOKEN_PREFIX",
    "seal_frame",
    "open_frame",
    "keys_configured",
    "lookup_digest",
    "encrypt_if_configured",
    "seal_client_data",
    "open_client_data",
    "STORE_FIELDS",
    "encrypt",
    "decrypt",
    "decrypt_if_configured",
    "rotate_keys",
    "RotationResult",
    "Keys",
    "generate_key",
    "configured_keys",
    "DEFAULT_FIELDS",
    "ENCRYPTABLE",
    "KEYS_ENV",
    "KEY_FILE_ENV",
    "KEY_HELP",
    "issue_token",
    "verify_token",
    "Identity",
    "TokenSecret",
]
