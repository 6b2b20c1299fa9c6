"""OAuth2 grants of the mailboxes: connect, refresh, reconnect needed, disconnect.

* Consent: :func:`oauth_consent_begin` keeps the state and the PKCE verifier in
  the person's session, bound to the mailbox and to the person; the callback
  (:func:`oauth_consent_finish`) accepts only a state found there, for the same
  person, on a mailbox they may still change, and exchanges the code with the
  verifier. Each state is used once.
* Tokens are stored encrypted (OAuthGrant.set_tokens, retrieval/crypto.py) and
  never leave this module but as the SASL credential of the engine's spec.
* :func:`oauth_access_token` gives the poll and the IDLE process a token valid
  for at least FETCH_OAUTH_REFRESH_MARGIN seconds, refreshing it first when
  needed: one refresh at a time per grant, across workers and hosts. The lock
  is a write to the grant's row inside a transaction: a row lock on
  PostgreSQL, the database's one write lock on SQLite. Whoever waited for it
  finds the token refreshed and uses it.
* A mailbox has up to two grants, one per purpose (OAuthGrant.Purpose): the
  source it polls and the IMAP mailbox it delivers into. Each is connected,
  refreshed and disconnected on its own; the purpose travels with the consent.
* A refresh answered ``invalid_grant`` (revoked, expired, password changed)
  marks the mailbox "reconnect needed" (Mailbox.Health.REAUTH), which alerts
  once (services.failures.health_change) and takes it off the schedule until a
  new consent.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from retrieval import oauth
from retrieval.crypto import DecryptionError
from retrieval.engine.report import ExitCode
from retrieval.models import Mailbox, OAuthGrant
from retrieval.services.failures import health_change
from retrieval.services.specs import OAUTH_AUTH, SpecError

if TYPE_CHECKING:
    from django.contrib.sessions.backends.base import SessionBase

    from accounts.models import User

logger = logging.getLogger(__name__)

SESSION_KEY = "fetchweb_oauth_pending"
# Consents started but not finished, per session: older ones are dropped.
PENDING_MAX = 5
Purpose = OAuthGrant.Purpose
# The Mailbox field holding each purpose's login kind, and its user name.
AUTH_FIELD = {Purpose.SOURCE: "auth", Purpose.DESTINATION: "destination_auth"}
USERNAME_FIELD = {
    Purpose.SOURCE: "username",
    Purpose.DESTINATION: "destination_username",
}

RECONNECT_REASON = (
    "{provider} no longer accepts fetchweb's access to this account (the grant "
    "was revoked or has expired). Press Reconnect on the mailbox page and give "
    "consent again; polling resumes then."
)
RECONNECT_DESTINATION_REASON = (
    "{provider} no longer accepts fetchweb's access to the mailbox messages are "
    "delivered into (the grant was revoked or has expired); nothing is fetched "
    "until then. Press Reconnect the destination on the mailbox page and give "
    "consent again; polling resumes then."
)


class ReconnectNeeded(SpecError):
    """The grant is gone: only a new consent helps."""

    exit_code = ExitCode.AUTHFAIL
    permanent = True


class ProviderUnavailable(SpecError):
    """The provider could not refresh the token now; the next poll tries again."""

    exit_code = ExitCode.SOCKET
    permanent = False


class ConsentRefused(Exception):
    """The callback does not belong to a consent this session started."""


# --- consent ----------------------------------------------------------------------------


def oauth_consent_begin(
    *,
    session: SessionBase,
    user: User,
    mailbox: Mailbox,
    provider_key: str,
    purpose: str = Purpose.SOURCE,
) -> str:
    """Remember a new consent in ``session``; returns the provider's URL.
    ``purpose``: which login of the mailbox the grant will be for."""
    p = oauth.provider(provider_key)
    if p is None:
        raise oauth.ProviderError("This provider is not configured.")
    chosen = Purpose(purpose)
    consent = oauth.consent(p, login_hint=getattr(mailbox, USERNAME_FIELD[chosen]))
    pending: dict[str, dict[str, Any]] = dict(session.get(SESSION_KEY) or {})
    pending[consent.state] = {
        "mailbox": mailbox.pk,
        "user": user.pk,
        "provider": p.key,
        "purpose": chosen.value,
        "verifier": consent.verifier,
        "at": time.time(),
    }
    newest = sorted(pending.items(), key=lambda item: item[1]["at"])[-PENDING_MAX:]
    session[SESSION_KEY] = dict(newest)
    return consent.url


@dataclass(frozen=True)
class PendingConsent:
    mailbox_id: int
    provider_key: str
    verifier: str
    purpose: str = Purpose.SOURCE


def oauth_consent_take(
    *, session: SessionBase, user: User, state: str
) -> PendingConsent:
    """The consent this ``state`` names, removed from the session (a state is
    used once). ConsentRefused when the session did not start it, it is too old,
    was started by someone else, or has no PKCE verifier."""
    pending: dict[str, dict[str, Any]] = dict(session.get(SESSION_KEY) or {})
    entry = pending.pop(state, None) if state else None
    session[SESSION_KEY] = pending
    if entry is None:
        raise ConsentRefused(
            "This answer from the provider does not belong to a consent started in "
            "this browser session (or it was used already). Start again from the "
            "mailbox page."
        )
    if time.time() - float(entry.get("at", 0)) > settings.FETCH_OAUTH_STATE_SECONDS:
        raise ConsentRefused(
            "The consent took too long. Start again from the mailbox page."
        )
    if entry.get("user") != user.pk:
        raise ConsentRefused("This consent was started by another person.")
    verifier = entry.get("verifier")
    if not isinstance(verifier, str) or not verifier:
        raise ConsentRefused("The consent has no PKCE verifier; start again.")
    purpose = entry.get("purpose", Purpose.SOURCE)
    if purpose not in Purpose.values:
        raise ConsentRefused("The consent names no known purpose; start again.")
    return PendingConsent(
        int(entry["mailbox"]), str(entry["provider"]), verifier, str(purpose)
    )


def oauth_consent_finish(
    *, mailbox: Mailbox, consent: PendingConsent, code: str
) -> OAuthGrant:
    """Exchange the code (with the verifier) and store the grant for the
    consent's purpose; that login (the source's, or the destination's) uses
    XOAUTH2 from now on (unless OAUTHBEARER was chosen), and a mailbox that
    needed a reconnect is working again."""
    p = oauth.provider(consent.provider_key)
    if p is None:
        raise oauth.ProviderError("This provider is no longer configured.")
    tokens = oauth.exchange(p, code=code, verifier=consent.verifier)
    if not tokens.refresh:
        logger.warning(
            "mailbox %s: %s sent no refresh token; the grant lasts one access token",
            mailbox.pk,
            p.key,
        )
    purpose = Purpose(consent.purpose)
    auth_field = AUTH_FIELD[purpose]
    with transaction.atomic():
        grant, _ = OAuthGrant.objects.select_for_update().get_or_create(
            mailbox=mailbox, purpose=purpose, defaults={"provider": p.key}
        )
        grant.mailbox = mailbox
        grant.provider = p.key
        grant.refresh_token_encrypted = ""
        _store(grant, tokens)
        grant.connected_at = timezone.now()
        grant.save()
        if getattr(mailbox, auth_field) not in OAUTH_AUTH:
            Mailbox.objects.filter(pk=mailbox.pk).update(
                **{auth_field: Mailbox.Auth.XOAUTH2}
            )
        health = Mailbox.objects.values_list("health", flat=True).get(pk=mailbox.pk)
        if health == Mailbox.Health.REAUTH:
            # Back into the schedule at once, its failures without the new
            # grant forgotten (as Resume does for a paused mailbox).
            Mailbox.objects.filter(pk=mailbox.pk).update(
                failure_count=0,
                permanent_failures=0,
                failing_since=None,
                next_poll_at=timezone.now(),
            )
            health_change(
                mailbox_id=mailbox.pk,
                before=health,
                after=Mailbox.Health.OK,
                reason="",
                now=timezone.now(),
            )
    return grant


def _store(grant: OAuthGrant, tokens: oauth.Tokens) -> None:
    grant.set_tokens(access=tokens.access, refresh=tokens.refresh)
    grant.expires_at = datetime.fromtimestamp(tokens.expires_at, tz=UTC)
    grant.scope = tokens.scope or grant.scope


def _grant(mailbox: Mailbox, purpose: str) -> OAuthGrant | None:
    return (
        OAuthGrant.objects.select_related("mailbox")
        .filter(mailbox=mailbox, purpose=purpose)
        .first()
    )


def oauth_disconnect(*, mailbox: Mailbox, purpose: str = Purpose.SOURCE) -> bool:
    """Forget the grant of ``purpose`` (and ask the provider to revoke it);
    False if none."""
    grant = _grant(mailbox, purpose)
    if grant is None:
        return False
    p = oauth.provider(grant.provider)
    if p is not None:
        with contextlib.suppress(DecryptionError, oauth.ProviderError):
            oauth.revoke(p, token=grant.get_refresh_token() or grant.get_access_token())
    OAuthGrant.objects.filter(pk=grant.pk).delete()
    return True


# --- the token a poll logs in with -------------------------------------------------------


def _fresh(grant: OAuthGrant, now: datetime) -> bool:
    margin = timedelta(seconds=settings.FETCH_OAUTH_REFRESH_MARGIN)
    return (
        bool(grant.access_token_encrypted)
        and grant.expires_at is not None
        and grant.expires_at > now + margin
    )


def oauth_access_token(
    *, mailbox: Mailbox, purpose: str = Purpose.SOURCE
) -> str | None:
    """A usable access token of the mailbox's grant for ``purpose``; None when
    it has no such grant.

    Raises ReconnectNeeded (the grant is gone) or ProviderUnavailable (try later).
    """
    grant = _grant(mailbox, purpose)
    if grant is None:
        return None
    try:
        if _fresh(grant, timezone.now()):
            return grant.get_access_token()
        return _refreshed(grant.pk, mailbox)
    except DecryptionError as exc:
        raise SpecError(f"The stored OAuth2 token cannot be read: {exc}") from exc


def _refreshed(grant_pk: int, mailbox: Mailbox) -> str:
    failure: oauth.ProviderError | None = None
    with transaction.atomic():
        rows = OAuthGrant.objects.filter(pk=grant_pk)
        # The lock: a write first, so a second refresher waits here until this
        # transaction ends, and then finds the new token (below).
        rows.update(locked_at=timezone.now())
        grant = rows.select_related("mailbox").get()
        if _fresh(grant, timezone.now()):
            return grant.get_access_token()
        p = oauth.provider(grant.provider)
        refresh_token = grant.get_refresh_token()
        if p is None:
            raise ProviderUnavailable(
                f"The OAuth2 provider {grant.provider!r} is no longer configured."
            )
        if not refresh_token:
            failure = oauth.ProviderError(
                "no refresh token is stored", code="invalid_grant"
            )
        else:
            try:
                tokens = oauth.refresh(p, refresh_token=refresh_token)
            except oauth.ProviderError as exc:
                failure = exc
            else:
                _store(grant, tokens)
                grant.refreshed_at = timezone.now()
                grant.refreshes += 1
                grant.save()
                logger.info("mailbox %s: OAuth2 access token refreshed", mailbox.pk)
                return tokens.access
        if failure.invalid_grant:
            # Nothing stored can log in any more: keep no token around.
            rows.update(access_token_encrypted="", refresh_token_encrypted="")
    label = p.label if p is not None else grant.provider
    if failure.invalid_grant:
        words = (
            RECONNECT_DESTINATION_REASON
            if grant.purpose == Purpose.DESTINATION
            else RECONNECT_REASON
        )
        reason = words.format(provider=label)
        oauth_reconnect_needed(mailbox_id=mailbox.pk, reason=reason)
        raise ReconnectNeeded(reason) from failure
    raise ProviderUnavailable(
        f"The access token could not be refreshed: {failure}"
    ) from failure


def oauth_reconnect_needed(*, mailbox_id: int, reason: str) -> bool:
    """Mark the mailbox "reconnect needed" (alerting once); False if it was."""
    health = Mailbox.objects.values_list("health", flat=True).get(pk=mailbox_id)
    if health == Mailbox.Health.REAUTH:
        return False
    return health_change(
        mailbox_id=mailbox_id,
        before=health,
        after=Mailbox.Health.REAUTH,
        reason=reason,
        now=timezone.now(),
    )
