"""Fixed-window counters in the shared cache: the ingress throttle's and the failed-authentication guard's.

Redis when configured (every web process and host counts the same requests), else the file cache.
"""

from __future__ import annotations

import logging
import time

import redis
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)
CACHE_DOWN = (redis.RedisError, OSError)  # what the shared cache raises when Redis cannot be reached


def window(name: str, period: int) -> tuple[str, float]:
    """The cache key of the current fixed window of `period` seconds, and the seconds left in it."""
    now = time.time()
    return f"{name}:{int(now // period)}", period - now % period


def window_count(key: str, period: int) -> int:
    """Add one to a shared counter (atomic INCR in Redis), created for one window; 0 if the cache is down.

    A cache that cannot be reached (Redis down) counts nothing rather than refuse: the event is stored in
    PostgreSQL and answered 202, and the sweeper queues it once the broker is back (pipeline.dispatch).
    """
    try:
        backend = caches["default"]
        if isinstance(backend, RedisCache):
            return _redis_count(backend, key, period)
        cache.add(key, 0, timeout=period + 1)
        try:
            return cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=period + 1)
            return 1
    except CACHE_DOWN as exc:
        logger.warning("throttle counter %s unavailable (%s); not counted", key.split(":", 1)[0], type(exc).__name__)
        return 0


def _redis_count(backend: RedisCache, key: str, period: int) -> int:
    """The same count in one round trip: Django's add() then incr() cost three (SET NX, EXISTS, INCR).

    MULTI/EXEC, so the window's key cannot expire between its creation and the INCR (which would leave
    a key without expiry). The value is what RedisCache stores for an int, so cache.get() reads it.
    """
    full_key = backend.make_and_validate_key(key)
    pipe = backend._cache.get_client(full_key, write=True).pipeline(transaction=True)  # noqa: SLF001
    pipe.set(full_key, 0, nx=True, ex=period + 1)
    pipe.incr(full_key)
    return int(pipe.execute()[1])
