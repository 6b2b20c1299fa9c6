"""API tokens: made, used and revoked only here.

A token is ``fw_<prefix>_<secret>``: the prefix finds the row, the secret is
checked against its SHA-256. Neither the whole token nor the secret is stored;
the caller shows the token once and forgets it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from accounts.models import ApiToken

if TYPE_CHECKING:
    from accounts.models import User

TOKEN_TAG = "fw"
MAX_TOKENS_PER_USER = 50
# last_used_at is written at most this often per token: a busy script must not
# turn every GET into a write.
LAST_USED_STEP = timedelta(minutes=1)


class TokenLimit(Exception):
    """The person already has as many active tokens as allowed."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns the row and the token text, shown once."""
    active = ApiToken.objects.filter(user=user, revoked_at__isnull=True).count()
    if active >= MAX_TOKENS_PER_USER:
        raise TokenLimit(
            f"You have {active} active tokens, the most allowed: revoke one first."
        )
    while True:
        prefix = secrets.token_hex(4)
        if not ApiToken.objects.filter(prefix=prefix).exists():
            break
    secret = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name.strip() or "API token",
        prefix=prefix,
        secret_hash=_digest(secret),
    )
    return token, f"{TOKEN_TAG}_{prefix}_{secret}"


def token_authenticate(*, text: str) -> ApiToken | None:
    """The active token ``text`` stands for, its person active; else None.
    Notes when it was last used."""
    tag, _, rest = text.partition("_")
    prefix, _, secret = rest.partition("_")
    if tag != TOKEN_TAG or not prefix or not secret:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(prefix=prefix, revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None or not hmac.compare_digest(token.secret_hash, _digest(secret)):
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_STEP:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def token_revoke(*, user: User, pk: int) -> bool:
    """Revoke ``user``'s own token ``pk``; False when they have no such active one
    (someone else's token is no different from a missing one)."""
    changed = ApiToken.objects.filter(pk=pk, user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    return bool(changed)
