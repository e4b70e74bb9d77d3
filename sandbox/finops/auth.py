"""The F&O OData error body, and throttling (priority-based, on resource use: throttling.py)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse

from integrations.protocols.odata.errors import v4_error
from sandbox.common.result import Result
from sandbox.finops.model import EMULATOR, Entity
from sandbox.finops.throttling import MESSAGE as THROTTLED_MESSAGE
from sandbox.finops.throttling import ResourceThrottling


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


# Throttling on the environment's resource use and the integration's priority (throttling.py); F&O has no
# user-based limits since 10.0.36.
LIMITS = ResourceThrottling(EMULATOR)


def configure_service_protection(*, priorities: dict[str, str] | None = None, **changes: int) -> dict[str, Any]:
    """Change the environment's capacity (requests, window_seconds, concurrent) and the priorities of
    application users (object id → Low / Medium / High); counters restart."""
    return LIMITS.configure(priorities=priorities, **changes)


def denied(claims: dict[str, Any]) -> Result:
    return error(403, f"The application {claims.get('appid')} is not registered as a user of this environment.")


def throttled(limit: str, retry_after: int, limits: dict[str, Any]) -> Result:
    """The 429 of priority-based throttling, with the documented message and Retry-After."""
    return error(429, THROTTLED_MESSAGE, **{"Retry-After": str(retry_after)})
