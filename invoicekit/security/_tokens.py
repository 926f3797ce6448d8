"""How an encrypted value looks in a column, and the per-value work done in worker processes.

An encrypted text field is ``fernet:`` followed by its Fernet token. ``client_data`` is
JSON the central store parses (``client_data_text::jsonb`` and its generated columns), so
it is encrypted whole into a JSON object that stays valid JSON::

    {"encrypted":"fernet:gAAAAA...","name":"ACME GmbH"}

``name`` (the client's name, not a sensitive field) stays readable for the central
store's name index, unless ``client_name`` is itself among the encrypted fields. The token
encrypts the exact original text, so decryption restores it byte for byte and its checksum.

The ``*_chunk`` functions run in worker processes (or inline for small inputs); they get
the keys as bytes with each chunk and never raise on a bad token: they report its index
and a reason code instead, so no error or traceback carries keys or plaintext.
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["PREFIX", "ENVELOPE_HEAD", "ENVELOPE_COLUMNS", "token_of", "token_reason",
           "encrypt_chunk", "decrypt_chunk", "rotate_chunk", "seal_chunk", "envelope", "rotate_embedded_chunk"]

PREFIX = "fernet:"
ENVELOPE_HEAD = '{"encrypted":"' + PREFIX
#: columns whose encrypted form is the JSON envelope (the others get the plain prefix)
ENVELOPE_COLUMNS = ("client_data",)

# version (1) + timestamp (8) + IV (16) + HMAC (32); the AES-CBC ciphertext is whole 16-byte blocks
_FIXED = 57

_CACHE: dict[tuple[bytes, ...], tuple] = {}


def _fernets(material: tuple[bytes, ...]):
    """(MultiFernet over all keys, Fernet of the newest), cached per process."""
    found = _CACHE.get(material)
    if found is None:
        from cryptography.fernet import Fernet, MultiFernet

        ferns = [Fernet(k) for k in material]
        found = (MultiFernet(ferns), ferns[0])
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[material] = found
    return found


def token_of(text: str) -> str | None:
    """The Fernet token inside a marked value, or None when ``text`` is not marked."""
    if text.startswith(PREFIX):
        return text[len(PREFIX):]
    if text.startswith(ENVELOPE_HEAD):
        return text[len(ENVELOPE_HEAD):].split('"', 1)[0]
    return None


def token_reason(token: str) -> str:
    """Why a token no key opens: ``truncated_token`` (not whole Fernet framing, e.g. cut
    short), ``foreign_token`` (not a Fernet token at all) or ``invalid_token`` (its
    signature fails: tampered with, or encrypted under a key that is not configured)."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return "truncated_token"
    if len(raw) < _FIXED + 16 or (len(raw) - _FIXED) % 16:
        return "truncated_token"
    if raw[0] != 0x80:
        return "foreign_token"
    return "invalid_token"


def encrypt_chunk(material: tuple[bytes, ...], values: list[str]) -> list[str]:
    """Fernet tokens (newest key) of ``values``, in order."""
    _, newest = _fernets(material)
    enc = newest.encrypt
    return [enc(v.encode("utf-8")).decode("ascii") for v in values]


def decrypt_chunk(material: tuple[bytes, ...], tokens: list[str]) -> tuple[list[str | None], list[int]]:
    """(plaintexts, indices of the tokens no key opens); a failed one is None."""
    from cryptography.fernet import InvalidToken

    multi, _ = _fernets(material)
    out: list[str | None] = []
    bad: list[int] = []
    for i, token in enumerate(tokens):
        try:
            out.append(multi.decrypt(token.encode("ascii")).decode("utf-8"))
        except (InvalidToken, UnicodeError):
            out.append(None)
            bad.append(i)
    return out, bad


def _fresh(multi, newest, token: str) -> tuple[str | None, str | None]:
    """(``token`` re-encrypted under the newest key, or None when it already is; the reason
    code when no key opens it)."""
    from cryptography.fernet import InvalidToken

    raw = token.encode("ascii", "replace")
    try:
        newest.decrypt(raw)
        return None, None
    except InvalidToken:
        pass
    try:
        return newest.encrypt(multi.decrypt(raw)).decode("ascii"), None
    except InvalidToken:
        return None, token_reason(token)


def rotate_chunk(material: tuple[bytes, ...], texts: list[str]) -> tuple[list[str | None], list[tuple[int, str]]]:
    """Stored marked texts re-encrypted under the newest key: (new texts, failures).

    A new text is None where the value is under the newest key already (nothing to do,
    which makes a rotation resumable); a failure is (index, reason code)."""

    multi, newest = _fernets(material)
    out: list[str | None] = []
    bad: list[tuple[int, str]] = []
    for i, text in enumerate(texts):
        token = token_of(text)
        if token is None:
            out.append(None)
            continue
        fresh, failed = _fresh(multi, newest, token)
        if fresh is None:
            out.append(None)
            if failed is not None:
                bad.append((i, failed))
            continue
        out.append(text.replace(token, fresh, 1))
    return out, bad


def envelope(token: str, client_json: str) -> str:
    """The stored form of an encrypted ``client_data``: the token, and the client's name
    (read from the plaintext JSON ``client_json``; null when it holds none) left readable."""
    import json

    try:
        parsed = json.loads(client_json)
    except ValueError:
        parsed = None
    name = parsed.get("name") if isinstance(parsed, dict) else None
    return f'{ENVELOPE_HEAD}{token}",' + '"name":' + json.dumps(name, ensure_ascii=False) + "}"


def seal_chunk(material: tuple[bytes, ...], texts: list[str]) -> tuple[list[str | None], list[tuple[int, str]]]:
    """Like :func:`rotate_chunk`, and a plaintext client JSON is encrypted (as its envelope)."""
    plain = [i for i, t in enumerate(texts) if token_of(t) is None]
    out, bad = rotate_chunk(material, texts)
    if plain:
        tokens = encrypt_chunk(material, [texts[i] for i in plain])
        for i, token in zip(plain, tokens):
            out[i] = envelope(token, texts[i])
    return out, bad


#: a marked token anywhere inside a JSON document (base64url is never escaped by JSON); compiled on first use
_EMBEDDED = None


def rotate_embedded_chunk(material: tuple[bytes, ...],
                          texts: list[str]) -> tuple[list[str | None], list[tuple[int, str]]]:
    """Documents (a queued payload) with every token inside re-encrypted under the newest key:
    (new texts, None where nothing changed; failures as (index, reason code))."""
    import re


    global _EMBEDDED
    if _EMBEDDED is None:
        _EMBEDDED = re.compile(re.escape(PREFIX) + r"([A-Za-z0-9_\-=]+)")
    multi, newest = _fernets(material)
    out: list[str | None] = []
    bad: list[tuple[int, str]] = []
    for i, text in enumerate(texts):
        changed, failed = text, None
        for token in dict.fromkeys(m.group(1) for m in _EMBEDDED.finditer(text)):
            fresh, failed = _fresh(multi, newest, token)
            if failed is not None:
                break
            if fresh is None:
                continue
            changed = changed.replace(PREFIX + token, PREFIX + fresh)
        if failed is not None:
            out.append(None)
            bad.append((i, failed))
        else:
            out.append(None if changed == text else changed)
    return out, bad
