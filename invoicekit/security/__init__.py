"""Field encryption: client email, address, tax id and ``client_data`` as Fernet tokens.

:func:`encrypt` and :func:`decrypt` work on whole columns of an
:class:`~invoicekit.schema.InvoiceSet` and return new sets; :func:`rotate_keys`
re-encrypts a store under the newest key, batch by batch, resumably. Keys come from
``keys=``, ``INVOICEKIT_KEYS`` or ``INVOICEKIT_KEY_FILE`` and never appear in a repr, log
or error. ``cryptography`` (the ``security`` extra) is imported only when keys are used.

Signed identities (:mod:`invoicekit.security.identity`): :func:`issue_token` and
:func:`verify_token`, HS256 JWTs naming who pushes to the central store (PyJWT, the same extra).
"""

from ._columns import DEFAULT_FIELDS, ENCRYPTABLE, decrypt, encrypt
from ._keys import HOW_TO as KEY_HELP
from ._keys import KEY_FILE_ENV, KEYS_ENV, Keys, configured_keys, generate_key
from ._rotate import RotationResult, rotate_keys
from .identity import Identity, TokenSecret, issue_token, verify_token


def decrypt_if_configured(invoice_set):
    """``invoice_set`` with its encrypted fields decrypted when the environment configures
    keys (``INVOICEKIT_KEYS`` or ``INVOICEKIT_KEY_FILE``); unchanged, at no cost, otherwise.
    The loaders call it, so a store encrypted at rest reads as plaintext where keys are set."""
    import os

    if not (os.environ.get(KEYS_ENV) or os.environ.get(KEY_FILE_ENV)):
        return invoice_set
    return decrypt(invoice_set)

__all__ = [
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
