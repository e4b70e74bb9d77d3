"""Fault injection shared by every emulator: latency, 5xx, 429, outage."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from integrations.protocols.odata.errors import v4_error
from sandbox.models import FaultSettings

ErrorBody = Callable[[int, str], HttpResponse]
WRITES = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})
# What an operator or a test may set (FaultSettings' fields besides the emulator's name).
FIELDS = ("latency_ms", "error_rate", "throttle_rate", "retry_after_seconds", "down", "slow_after_commit_ms")


def default_error(status: int, text: str) -> HttpResponse:
    return JsonResponse(v4_error(str(status), text), status=status)


def faults_for(emulator: str) -> FaultSettings:
    faults = FaultSettings.objects.filter(emulator=emulator).first()
    return faults or FaultSettings(emulator=emulator)


def injected_failure(emulator: str, error_body: ErrorBody = default_error) -> tuple[HttpResponse | None, FaultSettings]:
    """Apply latency, then answer for an outage, a throttle or an error if the dice say so."""
    faults = faults_for(emulator)
    if faults.latency_ms:
        time.sleep(faults.latency_ms / 1000)
    if faults.down:
        return error_body(503, f"{emulator} is down (sandbox outage)"), faults
    if faults.throttle_rate and random.random() < faults.throttle_rate:
        response = error_body(429, f"{emulator}: too many requests (sandbox throttle)")
        response["Retry-After"] = str(faults.retry_after_seconds)
        return response, faults
    if faults.error_rate and random.random() < faults.error_rate:
        return error_body(503, f"{emulator}: service unavailable (sandbox error)"), faults
    return None, faults


def with_faults(emulator: str, error_body: ErrorBody = default_error) -> Callable:
    """View decorator: the emulator's configured faults come before the view runs."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            failure, faults = injected_failure(emulator, error_body)
            if failure is not None:
                return failure
            request.sandbox_faults = faults
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def slow_after_commit(request: HttpRequest, status: int) -> None:
    """Fault slow_after_commit_ms: a write is committed and its answer comes late (the caller's lost response)."""
    delay = request.sandbox_faults.slow_after_commit_ms
    if delay and request.method in WRITES and status < 300:
        time.sleep(delay / 1000)


def set_faults(emulator: str, **values: Any) -> FaultSettings:
    faults, _ = FaultSettings.objects.update_or_create(emulator=emulator, defaults=values)
    return faults


def clear_faults(emulator: str | None = None) -> None:
    queryset = FaultSettings.objects.all()
    if emulator:
        queryset = queryset.filter(emulator=emulator)
    queryset.delete()
