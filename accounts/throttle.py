"""Sign-in throttling, per account and per address, kept in the shared cache.

The rule (README, configuration table): at most ``LOGIN_FAILURES_PER_ACCOUNT``
failed sign-ins (default 5) for one account and ``LOGIN_FAILURES_PER_ADDRESS``
(default 20) from one client address within ``LOGIN_FAILURE_WINDOW`` seconds
(default 900). Past either limit every sign-in for that account or from that
address is refused, the right password included, until the window has passed.
A successful sign-in clears the account's count.

Counting uses two consecutive fixed windows (the current one and the one
before), so a burst across a window boundary still counts in full: the limit
holds for any span of one window, and a lock lasts one to two windows.

The cache must be one that every web process shares (a gunicorn worker each has
its own local memory): the settings use Redis when REDIS_URL is set, a file cache
under var/ otherwise, in the ``throttle`` cache alias (its default timeout covers
two windows, so the file and database caches' ``incr`` does not shorten it).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import caches

if TYPE_CHECKING:
    from django.core.cache.backends.base import BaseCache
    from django.http import HttpRequest


def _cache() -> BaseCache:
    # Tests (and installs) may configure only "default"; fall back to it.
    return caches["throttle" if "throttle" in settings.CACHES else "default"]


def _window() -> int:
    return int(getattr(settings, "LOGIN_FAILURE_WINDOW", 900))


def _limits() -> tuple[int, int]:
    return (
        int(getattr(settings, "LOGIN_FAILURES_PER_ACCOUNT", 5)),
        int(getattr(settings, "LOGIN_FAILURES_PER_ADDRESS", 20)),
    )


def client_address(request: HttpRequest | None) -> str | None:
    """The client's IP address: REMOTE_ADDR, or behind a proxy (BEHIND_PROXY) the
    address the proxy appended last to X-Forwarded-For (earlier ones are whatever
    the client chose to send)."""
    if request is None:
        return None
    if settings.SECURE_PROXY_SSL_HEADER:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1][:45]
    address = request.META.get("REMOTE_ADDR")
    return str(address)[:45] if address else None


def _account_key(username: str) -> str:
    # Hashed: any text may be typed as a user name, and cache keys must be tame.
    digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return f"fetchweb:login-fail:account:{digest}"


def _address_key(address: str) -> str:
    return f"fetchweb:login-fail:address:{address}"


def _slots(now: float, window: int | None = None) -> tuple[int, int]:
    slot = int(now // (window or _window()))
    return slot, slot - 1


def _count(base: str, now: float, window: int | None = None) -> tuple[int, int]:
    """Failures in the current and the previous window."""
    current, previous = _slots(now, window)
    got = _cache().get_many([f"{base}:{current}", f"{base}:{previous}"])
    return int(got.get(f"{base}:{current}", 0)), int(got.get(f"{base}:{previous}", 0))


def _add(base: str, now: float, window: int | None = None) -> None:
    current, _ = _slots(now, window)
    key = f"{base}:{current}"
    cache = _cache()
    timeout = 2 * (window or _window()) + 60
    cache.add(key, 0, timeout=timeout)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=timeout)


@dataclass(frozen=True)
class Refusal:
    scope: str  # "account" or "address"
    minutes: int

    @property
    def message(self) -> str:
        wait = f"about {self.minutes} minute{'s' if self.minutes != 1 else ''}"
        if self.scope == "account":
            return (
                "Too many failed sign-in attempts for this account. To protect it, "
                f"signing in is paused for {wait}; please try again then. If you have "
                "forgotten your password, you can reset it by mail from the "
                "sign-in page."
            )
        return (
            "Too many failed sign-in attempts from your network. Signing in from "
            f"here is paused for {wait}; please try again then."
        )


def _minutes_left(current: int, now: float) -> int:
    window = _window()
    slot_end = (int(now // window) + 1) * window
    # The current window's failures still count during the next window.
    left = slot_end - now + (window if current else 0)
    return max(1, int(-(-left // 60)))


def refusal(username: str | None, address: str | None) -> Refusal | None:
    """Why a sign-in must be refused now, or None."""
    per_account, per_address = _limits()
    now = time.time()
    if username:
        current, previous = _count(_account_key(username), now)
        if current + previous >= per_account:
            return Refusal("account", _minutes_left(current, now))
    if address:
        current, previous = _count(_address_key(address), now)
        if current + previous >= per_address:
            return Refusal("address", _minutes_left(current, now))
    return None


def record_failure(username: str | None, address: str | None) -> None:
    now = time.time()
    if username:
        _add(_account_key(username), now)
    if address:
        _add(_address_key(address), now)


def clear_account(username: str) -> None:
    current, previous = _slots(time.time())
    base = _account_key(username)
    _cache().delete_many([f"{base}:{current}", f"{base}:{previous}"])


# --- password reset requests ------------------------------------------------------
#
# Every reset request counts (a valid-looking form, whether or not the address has
# an account, so the answer tells nothing): at most RESET_REQUESTS_PER_EMAIL
# (default 3) for one email address and RESET_REQUESTS_PER_ADDRESS (default 5)
# from one client address within RESET_REQUEST_WINDOW seconds (default 3600),
# counted in the same two consecutive windows as the sign-ins.


def _reset_window() -> int:
    return int(getattr(settings, "RESET_REQUEST_WINDOW", 3600))


def _reset_email_key(email: str) -> str:
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return f"fetchweb:reset:email:{digest}"


def _reset_address_key(address: str) -> str:
    return f"fetchweb:reset:address:{address}"


@dataclass(frozen=True)
class ResetRefusal:
    scope: str  # "email" or "address"
    minutes: int

    @property
    def message(self) -> str:
        wait = f"about {self.minutes} minute{'s' if self.minutes != 1 else ''}"
        if self.scope == "email":
            return (
                "Too many password reset requests for this email address. Please "
                f"check your mailbox (and its spam folder) for the mails already "
                f"sent, or try again in {wait}."
            )
        return (
            "Too many password reset requests from your network. Please try "
            f"again in {wait}."
        )


def reset_refusal(email: str, address: str | None) -> ResetRefusal | None:
    """Why a password reset request must be refused now, or None."""
    window, now = _reset_window(), time.time()
    per_email = int(getattr(settings, "RESET_REQUESTS_PER_EMAIL", 3))
    per_address = int(getattr(settings, "RESET_REQUESTS_PER_ADDRESS", 5))
    checks = [("email", _reset_email_key(email), per_email)] if email else []
    if address:
        checks.append(("address", _reset_address_key(address), per_address))
    for scope, key, limit in checks:
        current, previous = _count(key, now, window)
        if current + previous >= limit:
            slot_end = (int(now // window) + 1) * window
            left = slot_end - now + (window if current else 0)
            return ResetRefusal(scope, max(1, int(-(-left // 60))))
    return None


def record_reset(email: str, address: str | None) -> None:
    window, now = _reset_window(), time.time()
    if email:
        _add(_reset_email_key(email), now, window)
    if address:
        _add(_reset_address_key(address), now, window)
