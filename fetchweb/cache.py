"""Django's Redis cache, with one Redis client object per pool instead of one per
call.

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` for every
operation, and redis-py builds its tables of reply callbacks (about 160 entries,
twice) in each constructor: measured at about a tenth of a millisecond of CPU per
cache call, several times what the call itself costs, and a poll makes several
(bench/poll_cpu.py). A ``redis.Redis`` is only a handle on its connection pool:
redis-py documents it as safe to share between threads, and the pool takes its
connections anew in a forked child (it checks the pid), so one per pool is kept.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        django_client: Any = self  # its private helpers are not in django-stubs
        index = django_client._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            pool = django_client._get_connection_pool(write)
            client = django_client._client(connection_pool=pool)
            client = self._clients.setdefault(index, client)
        return client


class RedisCache(django_redis.RedisCache):
    """``BACKEND: fetchweb.cache.RedisCache``: Django's, with the client above."""

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
