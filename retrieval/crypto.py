"""Encryption at rest for remote mailbox passwords and tokens.

AES-256-GCM with keys from ``FIELD_ENCRYPTION_KEYS`` (never stored in the database).
The first key encrypts; every listed key decrypts, so a key is rotated by putting a
new one first and running ``manage.py rotate_secrets``. Each ciphertext names its key
and is bound to its row (associated data), so a ciphertext copied onto another
tenant's mailbox does not decrypt.

Stored form: ``v1$<key id>$<base64url(nonce + ciphertext)>``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

VERSION = "v1"


class DecryptionError(Exception):
    """The stored secret cannot be decrypted with any configured key."""


@dataclass(frozen=True)
class Key:
    key_id: str
    material: bytes


def generate_key() -> str:
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()


def _parse_key(text: str) -> Key:
    try:
        material = base64.urlsafe_b64decode(
            text.strip() + "=" * (-len(text.strip()) % 4)
        )
    except ValueError as exc:
        raise ValueError(
            "FIELD_ENCRYPTION_KEYS holds a key that is not base64."
        ) from exc
    if len(material) != 32:
        raise ValueError("Each key in FIELD_ENCRYPTION_KEYS must be 32 bytes (base64).")
    return Key(hashlib.sha256(material).hexdigest()[:8], material)


def validate_keys(configured: list[str] | tuple[str, ...]) -> str:
    """What is wrong with FIELD_ENCRYPTION_KEYS ("" when nothing): the system checks
    call this so that a typo stops `check`/`migrate`, not the first poll."""
    if not configured:
        return "FIELD_ENCRYPTION_KEYS is empty."
    for position, text in enumerate(configured, start=1):
        try:
            _parse_key(text)
        except ValueError as exc:
            return f"Key number {position}: {exc}"
    return ""


def legacy_key(secret_key: str) -> Key:
    """The key that installs without FIELD_ENCRYPTION_KEYS used to derive from
    SECRET_KEY; only ever used to decrypt what it encrypted then."""
    material = hashlib.sha256(b"fetchweb-field-key:" + secret_key.encode()).digest()
    return Key(hashlib.sha256(material).hexdigest()[:8], material)


@cache
def _keys_for(configured: tuple[str, ...], legacy_secret: str) -> tuple[Key, ...]:
    if not configured:
        # Settings always fill this in (environment or secrets file); never fall
        # back to a key anyone could derive.
        raise DecryptionError("FIELD_ENCRYPTION_KEYS is empty.")
    found = tuple(_parse_key(k) for k in configured)
    if legacy_secret:
        found += (legacy_key(legacy_secret),)
    return found


def keys() -> tuple[Key, ...]:
    """Every key that decrypts; the first one encrypts."""
    return _keys_for(
        tuple(settings.FIELD_ENCRYPTION_KEYS),
        getattr(settings, "FIELD_ENCRYPTION_LEGACY_SECRET", ""),
    )


def encrypt(plaintext: str, *, bound_to: str) -> str:
    key = keys()[0]
    nonce = os.urandom(12)
    sealed = AESGCM(key.material).encrypt(nonce, plaintext.encode(), bound_to.encode())
    return f"{VERSION}${key.key_id}${base64.urlsafe_b64encode(nonce + sealed).decode()}"


def decrypt(stored: str, *, bound_to: str) -> str:
    try:
        version, key_id, payload = stored.split("$", 2)
        blob = base64.urlsafe_b64decode(payload)
    except ValueError as exc:
        raise DecryptionError("The stored secret is malformed.") from exc
    if version != VERSION:
        raise DecryptionError(f"Unknown secret format {version!r}.")
    for key in keys():
        if key.key_id == key_id:
            try:
                return (
                    AESGCM(key.material)
                    .decrypt(blob[:12], blob[12:], bound_to.encode())
                    .decode()
                )
            except InvalidTag as exc:
                raise DecryptionError(
                    "The stored secret does not belong to this record."
                ) from exc
    raise DecryptionError(
        f"The key {key_id} that encrypted this secret is not in FIELD_ENCRYPTION_KEYS."
    )


def needs_rotation(stored: str) -> bool:
    return bool(stored) and not stored.startswith(f"{VERSION}${keys()[0].key_id}$")
