"""F&O throttling as it is since 10.0.36: on the environment's resource use and the integration's priority.

Microsoft removed the user-based service protection limits (6,000 requests / 300 s per user…) in 10.0.36;
F&O throttles when the environment's resources are strained, lower-priority integrations first, and answers
429 with Retry-After and "This request could not be processed at this time due to system experiencing high
resource utilization." An administrator maps each Microsoft Entra application to a priority (Low, Medium,
High) under System administration > Throttling priority mapping.
"Priority-based throttling" https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/priority-based-throttling
"Service protection API limits" (fixtures/finops/service-protection-429-messages.md)

Simplification (docs/sandbox.md): resource use is modelled as the environment's requests in a sliding
window and its requests in flight, both counted across every caller, against a capacity (`requests` per
`window_seconds`, `concurrent`). A Low-priority integration is throttled at half the capacity, Medium at
three quarters, High (the default) at all of it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

from sandbox.common.limits import StoredLimits, age_out, check_positive, retry_after

CAPACITY = {"requests": 6000, "window_seconds": 300, "concurrent": 52}
PRIORITY_SHARE = {"Low": 0.5, "Medium": 0.75, "High": 1.0}
MESSAGE = "This request could not be processed at this time due to system experiencing high resource utilization."


class _Environment:
    """The environment's requests in the window and in flight, across every caller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamps: deque[float] = deque()
        self._running = 0

    def reset(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._running = 0

    def enter(self, user: str, limits: dict[str, Any]) -> tuple[str | None, int, int]:
        """Admit one request of `user`: (None, 0, room left) or ("resources", Retry-After s, 0)."""
        share = PRIORITY_SHARE.get(limits["priorities"].get(user, "High"), 1.0)
        now = time.monotonic()
        window = float(limits["window_seconds"])
        with self._lock:
            age_out(self._stamps, now - window)
            allowed = max(1, math.floor(limits["requests"] * share))
            if len(self._stamps) >= allowed:
                # Room comes back when enough of the window's requests have aged out.
                oldest = self._stamps[len(self._stamps) - allowed]
                return "resources", retry_after(oldest, now, window), 0
            if self._running >= max(1, math.floor(limits["concurrent"] * share)):
                return "resources", 1, 0
            self._stamps.append(now)
            self._running += 1
            return None, 0, allowed - len(self._stamps)

    def leave(self, user: str, started: float) -> None:
        with self._lock:
            self._running = max(0, self._running - 1)


class ResourceThrottling(StoredLimits):
    """The environment's capacity and priority mapping (EmulatorRecord $config / throttling) and its counters."""

    KEY = "throttling"
    counters_class = _Environment

    def defaults(self) -> dict[str, Any]:
        return {**CAPACITY, "priorities": {}}

    def configure(self, *, priorities: dict[str, str] | None = None, **changes: int) -> dict[str, Any]:
        """Change the capacity (requests, window_seconds, concurrent) and the priority of application users
        (their object ids → Low / Medium / High); the counters restart."""
        check_positive(changes, CAPACITY, "throttling setting")
        current = self.current()
        if priorities is not None:
            bad = {p for p in priorities.values() if p not in PRIORITY_SHARE}
            if bad:
                raise ValueError(f"priority must be one of {', '.join(PRIORITY_SHARE)}, got {', '.join(sorted(bad))}")
            current["priorities"] = {**current["priorities"], **priorities}
        current.update(changes)
        return self.store(current)
