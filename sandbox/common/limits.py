"""Service protection limits as Dataverse and F&O keep them: per user, over a sliding window.

Three limits (Microsoft's defaults): number of requests (6,000 per 300 s), combined execution time
(1,200,000 ms per 300 s) and concurrent requests (52). Counters live in this process, as the real
services evaluate them per web server. ServiceLimits keeps one emulator's limits in its EmulatorRecord
($config / service-protection), so an operator or a test can change them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from sandbox.models import EmulatorRecord

DEFAULT_LIMITS = {"requests": 6000, "window_seconds": 300, "execution_ms": 1_200_000, "concurrent": 52}


def checked_limits(current: dict[str, int], changes: dict[str, int]) -> dict[str, int]:
    """current updated with changes; unknown names or non-positive values raise ValueError."""
    unknown = set(changes) - set(DEFAULT_LIMITS)
    if unknown:
        raise ValueError(f"unknown service protection limit(s): {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"service protection limit '{name}' must be a positive integer, got {value!r}")
    return {**DEFAULT_LIMITS, **current, **changes}


class ServiceProtection:
    """Sliding windows of requests and execution time, and a concurrency count, per user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, deque[float]] = {}
        self._durations: dict[str, deque[tuple[float, float]]] = {}
        self._running: dict[str, int] = {}

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._durations.clear()
            self._running.clear()

    def enter(self, user: str, limits: dict[str, int]) -> tuple[str | None, int, int]:
        """Admit one request: (None, 0, requests remaining), or (exceeded limit's name, Retry-After s, 0)."""
        now = time.monotonic()
        window = float(limits["window_seconds"])
        with self._lock:
            stamps = self._requests.setdefault(user, deque())
            while stamps and stamps[0] <= now - window:
                stamps.popleft()
            durations = self._durations.setdefault(user, deque())
            while durations and durations[0][0] <= now - window:
                durations.popleft()
            if len(stamps) >= limits["requests"]:
                return "requests", max(1, math.ceil(stamps[0] + window - now)), 0
            if sum(ms for _, ms in durations) >= limits["execution_ms"]:
                return "execution_ms", max(1, math.ceil(durations[0][0] + window - now)), 0
            if self._running.get(user, 0) >= limits["concurrent"]:
                return "concurrent", 1, 0
            stamps.append(now)
            self._running[user] = self._running.get(user, 0) + 1
            return None, 0, limits["requests"] - len(stamps)

    def leave(self, user: str, started: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._running[user] = max(0, self._running.get(user, 1) - 1)
            self._durations.setdefault(user, deque()).append((now, (now - started) * 1000))


class ServiceLimits:
    """One emulator's limits (its EmulatorRecord $config / service-protection) and its counters."""

    KEY = "service-protection"

    def __init__(self, emulator: str) -> None:
        self.emulator = emulator
        self.counters = ServiceProtection()

    def current(self) -> dict[str, int]:
        row = EmulatorRecord.objects.filter(emulator=self.emulator, entity="$config", company="", key=self.KEY).first()
        return {**DEFAULT_LIMITS, **(row.data if row else {})}

    def configure(self, **changes: int) -> dict[str, int]:
        """Change the limits (requests, window_seconds, execution_ms, concurrent); the counters restart."""
        limits = checked_limits(self.current(), changes)
        EmulatorRecord.objects.update_or_create(
            emulator=self.emulator, entity="$config", company="", key=self.KEY, defaults={"data": limits}
        )
        self.counters.reset()
        return limits
