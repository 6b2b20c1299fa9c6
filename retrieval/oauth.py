"""OAuth2 providers and their endpoints, spoken through Authlib (issue 16).

This module holds no state: it reads the providers the superuser configured
(settings.FETCH_OAUTH_PROVIDERS, from the environment), builds the consent URL
(authorization code flow with PKCE S256) and talks to the token and revocation
endpoints. What is stored, and when a token is refreshed, is decided in
retrieval/services/oauth.py.
"""

from __future__ import annotations

import contextlib
import functools
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from django.conf import settings
from django.urls import reverse

# Seconds any one call to a provider may take.
HTTP_TIMEOUT = 20
# An access token without "expires_in" is taken to last this long (RFC 6749
# leaves it out for tokens whose lifetime the provider documents elsewhere).
DEFAULT_LIFETIME = 3600


class ProviderError(Exception):
    """The provider could not be reached or answered with an error.

    ``invalid_grant``: the grant is revoked or expired; only a new consent helps.
    """

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code

    @property
    def invalid_grant(self) -> bool:
        return self.code == "invalid_grant"


@dataclass(frozen=True)
class Provider:
    key: str
    label: str
    client_id: str
    client_secret: str = field(repr=False)
    authorize_url: str
    token_url: str
    revocation_url: str
    scopes: tuple[str, ...]
    authorize_params: tuple[tuple[str, str], ...] = ()

    def session(self) -> OAuth2Session:
        # A secret goes in the body (Google and Microsoft accept it there);
        # a public client (no secret) sends only its id.
        method = "client_secret_post" if self.client_secret else "none"
        return OAuth2Session(
            self.client_id,
            self.client_secret or None,
            scope=" ".join(self.scopes),
            redirect_uri=redirect_uri(),
            code_challenge_method="S256",
            token_endpoint_auth_method=method,
            revocation_endpoint_auth_method=method,
            default_timeout=HTTP_TIMEOUT,
        )


def redirect_uri() -> str:
    """fetchweb's callback, as registered with every provider."""
    return settings.FETCH_OAUTH_REDIRECT_URI or (
        settings.FETCH_BASE_URL + reverse("retrieval:oauth-callback")
    )


def form_action_policy(policy: str, known: list[Provider]) -> str:
    """``policy`` (a Content-Security-Policy) with the providers' authorization
    origins added to ``form-action``: the "Connect" form's POST is answered
    with a redirect there, which browsers check against the form's page."""
    origins = sorted(
        {
            f"{parts.scheme}://{parts.netloc}"
            for parts in (urllib.parse.urlsplit(p.authorize_url) for p in known)
            if parts.scheme in ("http", "https") and parts.netloc
        }
    )
    if not policy or not origins:
        return policy
    directives = [d.strip() for d in policy.split(";") if d.strip()]
    for index, directive in enumerate(directives):
        if directive.split()[0] == "form-action":
            directives[index] = " ".join([directive, *origins])
            break
    return "; ".join(directives)


@functools.lru_cache(maxsize=16)
def _discovered(url: str) -> dict[str, Any]:
    """The OpenID discovery document, read once per process (a failure is not
    kept: the next call asks again)."""
    try:
        reply = requests.get(url, timeout=HTTP_TIMEOUT)
        reply.raise_for_status()
        document = reply.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderError(
            f"The OpenID discovery document at {url} failed: {exc}"
        ) from exc
    if not isinstance(document, dict):
        raise ProviderError(f"The OpenID discovery document at {url} is not an object.")
    return document


def providers() -> dict[str, Provider]:
    """Every provider with a client id, by key. A provider whose discovery
    document cannot be read is left out (the page then offers no button)."""
    found = {}
    for key in settings.FETCH_OAUTH_PROVIDERS:
        with contextlib.suppress(ProviderError):
            known = provider(key)
            if known is not None:
                found[key] = known
    return found


def provider(key: str) -> Provider | None:
    """The provider configured under ``key`` (None: not configured); its
    endpoints from the discovery document when only that is set."""
    entry = settings.FETCH_OAUTH_PROVIDERS.get(key)
    if not entry or not entry.get("client_id"):
        return None
    return _provider(key, entry)


def _provider(key: str, entry: dict[str, Any]) -> Provider:
    urls = {
        name: str(entry.get(name) or "")
        for name in ("authorize_url", "token_url", "revocation_url")
    }
    if entry.get("discovery_url") and not (urls["authorize_url"] and urls["token_url"]):
        document = _discovered(str(entry["discovery_url"]))
        urls["authorize_url"] = str(document.get("authorization_endpoint") or "")
        urls["token_url"] = str(document.get("token_endpoint") or "")
        urls["revocation_url"] = urls["revocation_url"] or str(
            document.get("revocation_endpoint") or ""
        )
    return Provider(
        key=key,
        label=str(entry.get("label") or key),
        client_id=str(entry["client_id"]),
        client_secret=str(entry.get("client_secret") or ""),
        authorize_url=urls["authorize_url"],
        token_url=urls["token_url"],
        revocation_url=urls["revocation_url"],
        scopes=tuple(entry.get("scopes") or ()),
        authorize_params=tuple(sorted((entry.get("authorize_params") or {}).items())),
    )


@dataclass(frozen=True)
class Consent:
    """Where to send the browser, and what the callback must find again."""

    url: str
    state: str
    verifier: str = field(repr=False)


def consent(p: Provider, *, login_hint: str = "") -> Consent:
    """The authorization URL with a fresh state and PKCE S256 challenge."""
    if not (p.authorize_url and p.token_url):
        raise ProviderError(
            f"{p.label}: no authorization or token endpoint is configured."
        )
    verifier = generate_token(64)
    state = generate_token(32)
    extra = dict(p.authorize_params)
    if login_hint:
        extra["login_hint"] = login_hint
    url, _ = p.session().create_authorization_url(
        p.authorize_url, state=state, code_verifier=verifier, **extra
    )
    return Consent(url=url, state=state, verifier=verifier)


@dataclass(frozen=True)
class Tokens:
    access: str = field(repr=False)
    refresh: str | None = field(repr=False)  # None: the provider sent no new one
    expires_at: float  # seconds since the epoch
    scope: str


def _tokens(answer: dict[str, Any]) -> Tokens:
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise ProviderError("The provider's answer has no access token.")
    expires_in = answer.get("expires_in")
    lifetime = (
        float(expires_in)
        if isinstance(expires_in, (int, float, str))
        and str(expires_in).replace(".", "", 1).isdigit()
        else DEFAULT_LIFETIME
    )
    refresh = answer.get("refresh_token")
    return Tokens(
        access=access,
        refresh=refresh if isinstance(refresh, str) and refresh else None,
        expires_at=time.time() + lifetime,
        scope=str(answer.get("scope") or ""),
    )


def _call(what: str, request: Any) -> dict[str, Any]:
    """Run one token request; every failure becomes a ProviderError."""
    try:
        answer = request()
    except AuthlibBaseError as exc:
        raise ProviderError(
            f"The provider refused the {what}: {exc.error}"
            + (f" ({exc.description})" if exc.description else ""),
            code=str(exc.error or ""),
        ) from exc
    except requests.RequestException as exc:
        raise ProviderError(
            f"The provider could not be reached for the {what}: {exc}"
        ) from exc
    except ValueError as exc:  # not JSON, or Authlib's checks of the answer
        raise ProviderError(
            f"The provider's answer to the {what} is unusable: {exc}"
        ) from exc
    return dict(answer)


def exchange(p: Provider, *, code: str, verifier: str) -> Tokens:
    """The callback's code (and the PKCE verifier) for tokens."""
    session = p.session()
    return _tokens(
        _call(
            "authorization code",
            lambda: session.fetch_token(
                p.token_url,
                grant_type="authorization_code",
                code=code,
                code_verifier=verifier,
            ),
        )
    )


def refresh(p: Provider, *, refresh_token: str) -> Tokens:
    session = p.session()
    return _tokens(
        _call(
            "token refresh",
            lambda: session.refresh_token(p.token_url, refresh_token=refresh_token),
        )
    )


def revoke(p: Provider, *, token: str) -> None:
    """Tell the provider the grant is no longer wanted (best effort: a provider
    without a revocation endpoint keeps it until the user removes it there)."""
    if not p.revocation_url or not token:
        return
    session = p.session()
    try:
        session.revoke_token(p.revocation_url, token, token_type_hint="refresh_token")
    except (requests.RequestException, AuthlibBaseError, ValueError):
        return
