"""fetchweb.cache: Django's Redis cache with one client per connection pool."""

from __future__ import annotations

import os
import threading

import pytest
from django.core.cache import caches


@pytest.fixture
def redis_cache(settings, redis_url):
    settings.CACHES = {
        "default": {
            "BACKEND": "fetchweb.cache.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"cache-test-{os.getpid()}",
        }
    }
    cache = caches.create_connection("default")
    yield cache
    cache.clear()


def test_the_settings_use_it_with_redis():
    from tests.accounts.test_throttle import _settings_caches

    text = _settings_caches(REDIS_URL="redis://127.0.0.1:6379/0")
    assert text.count("fetchweb.cache.RedisCache") == 2


def test_one_client_serves_every_call(redis_cache):
    """Django's own builds a redis.Redis per call (~0.1 ms of CPU each)."""
    client = redis_cache._cache.get_client("k", write=True)
    assert redis_cache._cache.get_client("k") is client
    assert redis_cache._cache.get_client(None, write=True) is client


def test_it_stores_reads_adds_and_deletes(redis_cache):
    assert redis_cache.add("k", {"step": "tls"}, timeout=60)
    assert not redis_cache.add("k", 2, timeout=60)
    assert redis_cache.get("k") == {"step": "tls"}
    redis_cache.set("n", 1, timeout=60)
    assert redis_cache.incr("n") == 2
    redis_cache.delete("k")
    assert redis_cache.get("k") is None


def test_threads_share_the_client_safely(redis_cache):
    """The pool gives each thread's command a connection of its own."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                redis_cache.set(f"t{n}-{i}", i, timeout=60)
                assert redis_cache.get(f"t{n}-{i}") == i
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
