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
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Protocol, TypeVar

from sandbox.models import EmulatorRecord

DEFAULT_LIMITS = {"requests": 6000, "window_seconds": 300, "execution_ms": 1_200_000, "concurrent": 52}
T = TypeVar("T")


def check_positive(changes: Mapping[str, Any], names: Iterable[str], what: str) -> None:
    """ValueError for a name not among names, or a value that is not a positive integer."""
    unknown = set(changes) - set(names)
    if unknown:
        raise ValueError(f"unknown {what}(s): {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{what} '{name}' must be a positive integer, got {value!r}")


def checked_limits(current: dict[str, int], changes: dict[str, int]) -> dict[str, int]:
    """current updated with changes; unknown names or non-positive values raise ValueError."""
    check_positive(changes, DEFAULT_LIMITS, "service protection limit")
    return {**DEFAULT_LIMITS, **current, **changes}


def age_out(entries: deque[T], cutoff: float, moment: Callable[[T], float] = float) -> None:
    """Drop the entries (oldest first) whose moment is at or before cutoff: they left the sliding window."""
    while entries and moment(entries[0]) <= cutoff:
        entries.popleft()


def retry_after(oldest: float, now: float, window: float) -> int:
    """Whole seconds (at least 1) until the moment oldest leaves a window of that length."""
    return max(1, math.ceil(oldest + window - now))


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
            age_out(stamps, now - window)
            durations = self._durations.setdefault(user, deque())
            age_out(durations, now - window, moment=lambda entry: entry[0])
            if len(stamps) >= limits["requests"]:
                return "requests", retry_after(stamps[0], now, window), 0
            if sum(ms for _, ms in durations) >= limits["execution_ms"]:
                return "execution_ms", retry_after(durations[0][0], now, window), 0
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


class Counters(Protocol):
    """What an emulator's auth asks of its counters (ServiceProtection, F&O's environment)."""

    def enter(self, user: str, limits: dict[str, Any]) -> tuple[str | None, int, int]: ...

    def leave(self, user: str, started: float) -> None: ...

    def reset(self) -> None: ...


class StoredLimits(ABC):
    """An emulator's limits, kept in its EmulatorRecord ($config / KEY), and the counters they govern."""

    KEY: ClassVar[str]
    counters_class: ClassVar[Callable[[], Counters]]

    def __init__(self, emulator: str) -> None:
        self.emulator = emulator
        self.counters = self.counters_class()

    @abstractmethod
    def defaults(self) -> dict[str, Any]:
        """The limits before anything is stored: each emulator documents its own."""

    def current(self) -> dict[str, Any]:
        row = EmulatorRecord.objects.filter(emulator=self.emulator, entity="$config", company="", key=self.KEY).first()
        return {**self.defaults(), **(row.data if row else {})}

    def store(self, limits: dict[str, Any]) -> dict[str, Any]:
        """Keep the changed limits; the counters restart under them."""
        EmulatorRecord.objects.update_or_create(
            emulator=self.emulator, entity="$config", company="", key=self.KEY, defaults={"data": limits}
        )
        self.counters.reset()
        return limits


class ServiceLimits(StoredLimits):
    """One emulator's service protection limits (its EmulatorRecord $config / service-protection) and counters."""

    KEY = "service-protection"
    counters_class = ServiceProtection

    def defaults(self) -> dict[str, Any]:
        return dict(DEFAULT_LIMITS)

    def configure(self, **changes: int) -> dict[str, int]:
        """Change the limits (requests, window_seconds, execution_ms, concurrent); the counters restart."""
        return self.store(checked_limits(self.current(), changes))
