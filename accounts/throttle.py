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


def _slots(now: float) -> tuple[int, int]:
    slot = int(now // _window())
    return slot, slot - 1


def _count(base: str, now: float) -> tuple[int, int]:
    """Failures in the current and the previous window."""
    current, previous = _slots(now)
    got = _cache().get_many([f"{base}:{current}", f"{base}:{previous}"])
    return int(got.get(f"{base}:{current}", 0)), int(got.get(f"{base}:{previous}", 0))


def _add(base: str, now: float) -> None:
    current, _ = _slots(now)
    key = f"{base}:{current}"
    cache = _cache()
    cache.add(key, 0, timeout=2 * _window() + 60)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=2 * _window() + 60)


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
                "forgotten your password, ask your administrator."
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
