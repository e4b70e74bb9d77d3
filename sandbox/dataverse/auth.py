"""The Web API error body, and how much a caller may: service protection and the application user."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse

from integrations.protocols.odata.errors import v4_error
from sandbox.common.limits import ServiceLimits
from sandbox.common.result import Result
from sandbox.dataverse.tables import EMULATOR


def error(status: int, code: str, message: str, **headers: str) -> Result:
    """The Web API error body: {"error": {"code": "0x…", "message": "…"}}."""
    return Result.json(v4_error(code, message), status, **headers)


def fault_body(status: int, text: str) -> HttpResponse:
    if status == 429:
        return error(429, "0x80072322", f"Number of requests exceeded the limit. {text}").to_http()
    return error(status, "0x80040216", f"An unexpected error occurred. {text}").to_http()


LIMITS = ServiceLimits(EMULATOR)  # per application user, per process (Dataverse: per web server)


def throttled(limit: str, retry_after: int, limits: dict[str, int]) -> Result:
    """429 with the Web API code of the exceeded limit (fixtures/dataverse/service-protection-error-codes.md)."""
    window = limits["window_seconds"]
    code, message = {
        "requests": (
            "0x80072322",
            f"Number of requests exceeded the limit of {limits['requests']} over time window of {window} seconds.",
        ),
        "execution_ms": (
            "0x80072321",
            f"Combined execution time of incoming requests exceeded limit of {limits['execution_ms']:,}  "
            f"milliseconds over time window of {window} seconds. Decrease number of concurrent requests or "
            "reduce the duration of requests and try again later.",
        ),
        "concurrent": ("0x80072326", f"Number of concurrent requests exceeded the limit of {limits['concurrent']}."),
    }[limit]
    return error(429, code, message, **{"Retry-After": str(retry_after)})


def configure_service_protection(**changes: int) -> dict[str, int]:
    """Change the limits (requests, window_seconds, execution_ms, concurrent) and restart the counters."""
    return LIMITS.configure(**changes)


def service_protection_limits() -> dict[str, int]:
    return LIMITS.current()


def denied(claims: dict[str, Any]) -> Result:
    return error(
        403,
        "0x80072560",
        f"The user is not a member of the organization. No application user exists for application id "
        f"{claims.get('appid')}.",
    )
