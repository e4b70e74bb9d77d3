"""Retry policy as data on the Flow: {"max_attempts": 8, "backoff": {"1": 10, "3": 60, "5": 600}, "jitter": 0.2}.

backoff maps "from attempt N on" to a delay in seconds; jitter spreads retries
by ±share of the delay so a recovered target is not hit by a wall of retries.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from integrations.errors import bounded_retry_after

# No wait the pipeline schedules is longer than this, whatever the policy or a server says; a date past it
# would not fit a datetime anyway.
MAX_DELAY_SECONDS = 30 * 86_400


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff: tuple[tuple[int, float], ...]  # (from attempt, delay seconds), ascending
    jitter: float

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RetryPolicy:
        try:
            max_attempts = int(data.get("max_attempts", 8))
            backoff = tuple(sorted((int(k), float(v)) for k, v in (data.get("backoff") or {"1": 10}).items()))
            jitter = float(data.get("jitter", 0.2))
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValidationError(f"retry_policy: {exc}") from exc
        if max_attempts < 1:
            raise ValidationError("retry_policy.max_attempts: must be at least 1")
        if not 0 <= jitter <= 1:
            raise ValidationError("retry_policy.jitter: must be between 0 and 1")
        if any(delay < 0 for _, delay in backoff) or any(start < 1 for start, _ in backoff):
            raise ValidationError("retry_policy.backoff: attempts start at 1 and delays are not negative")
        return cls(max_attempts=max_attempts, backoff=backoff, jitter=jitter)

    def delay_after(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the given failed attempt; never less than the server's Retry-After.

        The Retry-After counts up to ICBRIDGE_RETRY_AFTER_MAX_SECONDS (errors.bounded_retry_after).
        """
        delay = 0.0
        for start, seconds in self.backoff:
            if attempt >= start:
                delay = seconds
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            delay = max(delay, bounded_retry_after(retry_after))
        return min(delay, MAX_DELAY_SECONDS)

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
