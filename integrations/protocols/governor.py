"""One rate governor per target identity, shared by every worker process on every host.

Three rules guard every request a connector sends (HttpConnector.send, the AX 2012 zeep transport):

1. Retry-After gate: after a 429 no request leaves any worker for that target until its Retry-After
   has passed; a send meanwhile fails at once, unsent, with ThrottledError(retry_after=remaining).
2. Rate: a token bucket of System.rate_limit_per_second (empty: no limit), one token deep, so that
   any window of T seconds sees at most rate × T + 1 requests. A send waits for its token when it
   comes within ICBRIDGE_THROTTLE_MAX_WAIT_SECONDS; else it fails unsent, retry_after = the wait,
   and the pipeline schedules the message (no task waits unboundedly).
3. Concurrency: at most System.max_concurrency requests in flight (empty: no limit). A slot is a lease
   that expires (max wait + the target's timeout + ICBRIDGE_LEASE_MARGIN_SECONDS), so a killed worker
   cannot hold it for ever; a send waits for a free slot within the same bound.

The state lives in Redis (settings.REDIS_URL, the broker) and every step is one Lua script, atomic and
on the Redis server's clock (the hosts' clocks may disagree). The bucket is kept as GCRA: one
"theoretical arrival time" per target, which is a token bucket in one number and makes a reservation
(wait this long, then send) possible without polling.

Without REDIS_URL (the embedded `make run` demo, filesystem broker, no Redis) the same rules are kept
in process memory: each worker process then governs only itself, which the one-machine demo accepts.

Target identity: kind, base URL and client id, not the System's pk. Dataverse and F&O count service
protection per application user per environment, so two Systems at the same environment with the
same client id are one caller there: they share the gate, the bucket and the slots. Give such Systems
the same limits; each send applies the limits of its own System to the shared state.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings

from integrations import errors

if TYPE_CHECKING:
    from integrations.models import System

logger = logging.getLogger(__name__)

GRANTED, PAUSED, RATE, BUSY = 0, 1, 2, 3  # what acquire answers, with a number of milliseconds
KEY_PREFIX = "icb:gov:"
BUSY_POLL_SECONDS = 0.02  # how often a send waiting for a free slot asks again

# KEYS: gate, bucket, leases.  ARGV: interval ms (0: no rate), max wait ms, max concurrency (0: none),
# lease ms, lease id.  Returns {status, ms}: GRANTED and the wait before sending (the slot is held),
# PAUSED and the pause left, RATE and the wait for a token (nothing reserved), BUSY and the time until
# the oldest lease expires.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local paused = tonumber(redis.call('GET', KEYS[1]) or '0') - now
if paused > 0 then return {1, math.ceil(paused)} end
local interval = tonumber(ARGV[1])
local wait, tat = 0, 0
if interval > 0 then
  tat = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), now) + interval
  wait = math.max(0, tat - interval - now)
  if wait > tonumber(ARGV[2]) then return {2, math.ceil(wait)} end
end
local limit = tonumber(ARGV[3])
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return {3, math.max(1, math.ceil(tonumber(oldest[2]) - now))}
  end
  local lease = math.ceil(tonumber(ARGV[4]))
  redis.call('ZADD', KEYS[3], now + lease, ARGV[5])
  if redis.call('PTTL', KEYS[3]) < lease then redis.call('PEXPIRE', KEYS[3], lease) end
end
if interval > 0 then
  redis.call('SET', KEYS[2], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1)
end
return {0, math.ceil(wait)}
"""

# KEYS: gate.  ARGV: ms.  The pause lasts at least ms from now; a longer one already set stays.
# The gate holds its end on the TIME clock, and the key outlives it by a second: Redis expires keys
# by a clock cached per event-loop round, which lags by milliseconds under load, so an expiry alone
# would end a pause a little before its Retry-After.
_PAUSE = """
local t = redis.call('TIME')
local ends = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 + tonumber(ARGV[1])
if tonumber(ARGV[1]) > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') < ends then
  redis.call('SET', KEYS[1], string.format('%.3f', ends), 'PX', math.ceil(tonumber(ARGV[1])) + 1000)
end
return 1
"""

# KEYS: gate.  Milliseconds left of the pause (0: none).
_PAUSED = """
local t = redis.call('TIME')
local left = tonumber(redis.call('GET', KEYS[1]) or '0') - (tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000)
return math.max(0, math.ceil(left))
"""


class Backend(Protocol):
    """Where the governors' state lives: Redis, or this process."""

    def acquire(
        self, identity: str, *, interval_ms: float, max_wait_ms: float, max_concurrency: int, lease_ms: float,
        lease_id: str,
    ) -> tuple[int, float]: ...  # fmt: skip

    def release(self, identity: str, lease_id: str) -> None: ...

    def pause(self, identity: str, ms: float) -> None: ...

    def paused_ms(self, identity: str) -> float: ...

    def reset(self) -> None: ...


def _keys(identity: str) -> list[str]:
    # One hash tag per target: on a Redis Cluster the three keys share a slot, as a script needs.
    return [f"{KEY_PREFIX}{{{identity}}}:{name}" for name in ("gate", "bucket", "leases")]


class RedisBackend:
    """The governors' state in Redis, shared by every process that uses the same database."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)
        self._acquire = self.client.register_script(_ACQUIRE)
        self._pause = self.client.register_script(_PAUSE)
        self._paused = self.client.register_script(_PAUSED)

    def acquire(
        self, identity: str, *, interval_ms: float, max_wait_ms: float, max_concurrency: int, lease_ms: float,
        lease_id: str,
    ) -> tuple[int, float]:  # fmt: skip
        status, ms = self._acquire(
            keys=_keys(identity), args=[interval_ms, max_wait_ms, max_concurrency, lease_ms, lease_id]
        )
        return int(status), float(ms)

    def release(self, identity: str, lease_id: str) -> None:
        self.client.zrem(_keys(identity)[2], lease_id)

    def pause(self, identity: str, ms: float) -> None:
        self._pause(keys=_keys(identity)[:1], args=[ms])

    def paused_ms(self, identity: str) -> float:
        return float(self._paused(keys=_keys(identity)[:1]))

    def reset(self) -> None:
        """Forget every governor's state (tests)."""
        keys = list(self.client.scan_iter(match=f"{KEY_PREFIX}*", count=500))
        if keys:
            self.client.delete(*keys)


@dataclass
class _LocalState:
    paused_until: float = 0.0
    tat: float = 0.0
    leases: dict[str, float] = field(default_factory=dict)


class LocalBackend:
    """The same rules in this process's memory (no Redis: the embedded demo); one process, one governor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, _LocalState] = {}

    @staticmethod
    def _now() -> float:
        return time.monotonic() * 1000

    def acquire(
        self, identity: str, *, interval_ms: float, max_wait_ms: float, max_concurrency: int, lease_ms: float,
        lease_id: str,
    ) -> tuple[int, float]:  # fmt: skip
        now = self._now()
        with self._lock:
            state = self._state.setdefault(identity, _LocalState())
            if state.paused_until > now:
                return PAUSED, state.paused_until - now
            tat, wait = 0.0, 0.0
            if interval_ms > 0:
                tat = max(state.tat, now) + interval_ms
                wait = max(0.0, tat - interval_ms - now)
                if wait > max_wait_ms:
                    return RATE, wait
            leases = state.leases
            if max_concurrency > 0:
                for held, expires in list(leases.items()):
                    if expires <= now:
                        del leases[held]
                if len(leases) >= max_concurrency:
                    return BUSY, max(1.0, min(leases.values()) - now)
                leases[lease_id] = now + lease_ms
            if interval_ms > 0:
                state.tat = tat
            return GRANTED, wait

    def release(self, identity: str, lease_id: str) -> None:
        with self._lock:
            state = self._state.get(identity)
            if state:
                state.leases.pop(lease_id, None)

    def pause(self, identity: str, ms: float) -> None:
        with self._lock:
            state = self._state.setdefault(identity, _LocalState())
            state.paused_until = max(state.paused_until, self._now() + ms)

    def paused_ms(self, identity: str) -> float:
        with self._lock:
            state = self._state.get(identity)
            return max(0.0, state.paused_until - self._now()) if state else 0.0

    def reset(self) -> None:
        with self._lock:
            self._state.clear()


@dataclass(frozen=True)
class Limits:
    rate: float | None = None  # requests per second; None: no limit
    max_concurrency: int | None = None  # requests in flight; None: no limit
    max_wait: float = 5.0  # seconds a send may wait for a token or a slot before it fails unsent
    lease_seconds: float = 60.0  # a slot not given back is free again after this


class Governor:
    """The gate, bucket and slots of one target identity, as seen by one connector."""

    def __init__(self, *, identity: str, name: str, limits: Limits, backend: Backend) -> None:
        self.identity = identity
        self.name = name
        self.limits = limits
        self.backend = backend

    def _unavailable(self, exc: redis.RedisError, summary: str) -> errors.TransientError:
        # Fail closed: sending without the shared state could overrun the target's limits for every worker.
        return errors.TransientError(
            f"{self.name}: the rate governor (Redis) cannot be reached ({type(exc).__name__})",
            request_summary=f"{summary} (not sent)",
        )

    def paused_for(self) -> float:
        """Seconds left of a Retry-After pause of this target (0 when none)."""
        return self.backend.paused_ms(self.identity) / 1000

    def pause(self, seconds: float) -> None:
        """Hold every worker back from this target for seconds (a 429's Retry-After); never shortens a pause."""
        try:
            self.backend.pause(self.identity, seconds * 1000)
        except redis.RedisError as exc:  # the 429 still fails this send; only the sharing is lost
            logger.warning("%s: cannot record a Retry-After pause of %.1f s (%s)", self.name, seconds, exc)

    @contextmanager
    def slot(self, summary: str, *, max_wait: float | None = None) -> Iterator[None]:
        """Hold one of the target's slots while the request runs; raise ThrottledError (not sent) if none comes.

        max_wait shortens the limits' own (the delivery's deadline: a token after it would be wasted).

        1. Paused by a Retry-After: fail at once with the time left.
        2. Reserve a token; if it comes later than the max wait allows, fail with that wait.
        3. No free slot: ask again every BUSY_POLL_SECONDS until the max wait has passed.
        4. Wait for the reserved token; paused meanwhile (a 429 elsewhere): fail unsent with the time left.
        5. Run the request, give the slot back.
        """
        limits = self.limits
        interval_ms = 1000 / limits.rate if limits.rate and limits.rate > 0 else 0.0
        concurrency = limits.max_concurrency or 0
        lease_id = uuid.uuid4().hex
        budget = limits.max_wait if max_wait is None else max(0.0, min(limits.max_wait, max_wait))
        deadline = time.monotonic() + budget
        not_sent = f"{summary} (not sent)"
        while True:
            try:
                status, ms = self.backend.acquire(
                    self.identity,
                    interval_ms=interval_ms,
                    max_wait_ms=max(0.0, deadline - time.monotonic()) * 1000,
                    max_concurrency=concurrency,
                    lease_ms=limits.lease_seconds * 1000,
                    lease_id=lease_id,
                )
            except redis.RedisError as exc:
                raise self._unavailable(exc, summary) from exc
            if status == GRANTED:
                break
            if status == PAUSED:
                raise errors.ThrottledError(
                    f"{self.name} asked us to wait {ms / 1000:.1f} s more (Retry-After)",
                    retry_after=ms / 1000,
                    request_summary=not_sent,
                )
            if status == RATE:
                raise errors.ThrottledError(
                    f"{self.name}: at its limit of {limits.rate:g} requests/s; the next may go in {ms / 1000:.1f} s",
                    retry_after=ms / 1000,
                    request_summary=not_sent,
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.ThrottledError(
                    f"{self.name}: all {concurrency} concurrent request slot(s) stayed busy for {budget:g} s",
                    retry_after=min(1.0, ms / 1000),
                    request_summary=not_sent,
                )
            time.sleep(min(BUSY_POLL_SECONDS, left, ms / 1000))
        try:
            if ms > 0:
                time.sleep(ms / 1000)  # the reserved token's time; bounded by the max wait
                # A 429 may have come back to another worker while this one waited for its token: the
                # reservation predates that pause, so ask the gate again rather than send into it.
                try:
                    paused = self.backend.paused_ms(self.identity)
                except redis.RedisError as exc:
                    raise self._unavailable(exc, summary) from exc
                if paused > 0:
                    raise errors.ThrottledError(
                        f"{self.name} asked us to wait {paused / 1000:.1f} s more (Retry-After)",
                        retry_after=paused / 1000,
                        request_summary=not_sent,
                    )
            yield
        finally:
            if concurrency:
                try:
                    self.backend.release(self.identity, lease_id)
                except redis.RedisError as exc:  # the lease expires on its own
                    logger.warning("%s: cannot give a request slot back (%s)", self.name, exc)


def rate_within_window(*, requests: int, window_seconds: float, jitter_seconds: float = 0.5) -> float:
    """The bucket rate (System.rate_limit_per_second) that keeps a target's sliding window from filling.

    Dataverse and F&O count service protection as N requests per sliding window per user ("Service
    protection API limits": 6,000 requests in 300 seconds). Any T seconds of grants hold at most
    rate × T + 1 requests (the bucket is one token deep), and the requests reach the target up to
    jitter_seconds closer together than they were granted, so the window sees at most
    rate × (window + jitter) + 1: paced at (N - 1) / (window + jitter), no 429 arises at all, hence
    no request can be in flight across one.
    """
    if requests < 2 or window_seconds <= 0:
        raise ValueError("a window of at least 2 requests over a positive number of seconds is needed")
    return (requests - 1) / (window_seconds + max(jitter_seconds, 0.0))


def target_identity(system: System) -> str:
    """Who the target sees calling: kind, base URL (scheme and host folded to lower case) and client id."""
    parts = urlsplit(system.base_url.strip())
    base = urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))
    return hashlib.sha256(f"{system.kind}\n{base}\n{system.client_id}".encode()).hexdigest()[:32]


_backends: dict[str, Backend] = {}
_backends_lock = threading.Lock()


def backend(url: str | None = None) -> Backend:
    """The process's backend: Redis at url (default settings.REDIS_URL), or in-process without one."""
    if url is None:
        url = settings.REDIS_URL
    with _backends_lock:
        found = _backends.get(url)
        if found is None:
            found = _backends[url] = RedisBackend(url) if url else LocalBackend()
        return found


def governor_for(system: System) -> Governor:
    """The governor of a System's target, with the System's limits."""
    max_wait = settings.ICBRIDGE_THROTTLE_MAX_WAIT_SECONDS
    limits = Limits(
        rate=system.rate_limit_per_second
        if system.rate_limit_per_second and system.rate_limit_per_second > 0
        else None,
        max_concurrency=system.max_concurrency or None,
        max_wait=max_wait,
        lease_seconds=max_wait + system.timeout_seconds + settings.ICBRIDGE_LEASE_MARGIN_SECONDS,
    )
    return Governor(identity=target_identity(system), name=system.name, limits=limits, backend=backend())
