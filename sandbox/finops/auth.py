"""The F&O OData error body, and service protection (user-based limits, the messages of its 429s)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse

from integrations.protocols.odata.errors import v4_error
from sandbox.common.limits import ServiceLimits
from sandbox.common.result import Result
from sandbox.finops.model import EMULATOR, Entity


def error(status: int, message: str, *, inner: str = "", kind: str = "", **headers: str) -> Result:
    extra: dict[str, Any] = {}
    if inner:
        extra["innererror"] = {"message": inner, "type": kind or "System.Exception", "stacktrace": ""}
    return Result.json(v4_error("", message, **extra), status, **headers)


def write_failed(entity: Entity, text: str, status: int = 400) -> Result:
    return error(
        status,
        "An error has occurred.",
        inner=f"Write failed for table row of type '{entity.table}'. Infolog: Error: {text}",
        kind="Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException",
    )


def fault_body(status: int, text: str) -> HttpResponse:
    if status == 429:
        return Result.to_http(
            error(
                429,
                "This request could not be processed at this time due to system experiencing high resource "
                f"utilization. ({text})",
            )
        )
    return Result.to_http(error(status, f"The service is unavailable. ({text})"))


LIMITS = ServiceLimits(EMULATOR)
THROTTLE_MESSAGES = {
    # Verbatim from Microsoft Learn (fixtures/finops/service-protection-429-messages.md), "exeeded" included.
    "requests": "Number of requests exeeded the limit of {requests} over the time window of {window_seconds} seconds.",
    "execution_ms": "Combined execution time of incoming requests exceeded limit of {execution_s} seconds over time "
    "window of {window_seconds} seconds. Decrease number of concurrent requests or reduce the duration of requests "
    "and try again later.",
    "concurrent": "Number of concurrent requests exceeded the limit of {concurrent}.",
}


def configure_service_protection(**changes: int) -> dict[str, int]:
    """Change the user-based limits (requests, window_seconds, execution_ms, concurrent); counters restart."""
    return LIMITS.configure(**changes)


def denied(claims: dict[str, Any]) -> Result:
    return error(403, f"The application {claims.get('appid')} is not registered as a user of this environment.")


def throttled(limit: str, retry_after: int, limits: dict[str, int]) -> Result:
    text = THROTTLE_MESSAGES[limit].format(execution_s=limits["execution_ms"] // 1000, **limits)
    return error(429, text, **{"Retry-After": str(retry_after)})
