"""What the resources that trust this Azure AD (the Dataverse and F&O emulators) do before a call: check the
bearer token, answer the 401 challenge, refuse an app without an application user, keep service protection."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from sandbox.azuread.registrations import DEFAULT_TENANT
from sandbox.azuread.registrations import EMULATOR as AZUREAD
from sandbox.azuread.tokens import verify_bearer
from sandbox.common.limits import ServiceLimits
from sandbox.common.result import Result

Claims = dict[str, Any]


def www_authenticate(request: HttpRequest, emulator: str, tenant: str = DEFAULT_TENANT) -> str:
    scheme = "https" if request.is_secure() else "http"
    return (
        f"Bearer authorization_uri={scheme}://{request.get_host()}/sandbox/{AZUREAD}/{tenant}/oauth2/authorize, "
        f"resource_id={scheme}://{request.get_host()}/sandbox/{emulator}"
    )


def unauthorized(request: HttpRequest, emulator: str, why: str) -> HttpResponse:
    """The 401 a Microsoft resource answers without a valid token: empty body, the challenge, the reason."""
    response = HttpResponse(status=401)
    response["WWW-Authenticate"] = www_authenticate(request, emulator)
    response["x-ms-diagnostics"] = why
    return response


def protected(
    request: HttpRequest,
    emulator: str,
    limits: ServiceLimits,
    handle: Callable[[Claims], Result],
    *,
    denied: Callable[[Claims], Result],
    throttled: Callable[[str, int, dict[str, int]], Result],
    remaining_header: str = "",
) -> HttpResponse:
    """Token (401), application user (denied → 403), service protection (throttled → 429), then handle(claims).

    remaining_header: where to tell the caller how many requests its window has left.
    """
    claims, why = verify_bearer(request, emulator)
    if claims is None:
        return unauthorized(request, emulator, why)
    if claims["denied"]:
        return denied(claims).to_http()
    user = str(claims.get("oid", ""))
    current = limits.current()
    exceeded, retry_after, remaining = limits.counters.enter(user, current)
    if exceeded:
        return throttled(exceeded, retry_after, current).to_http()
    started = time.monotonic()
    try:
        response = handle(claims).to_http()
        if remaining_header:
            response[remaining_header] = str(remaining)
        return response
    finally:
        limits.counters.leave(user, started)
