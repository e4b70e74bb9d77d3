"""The error body Azure AD answers on its token and discovery endpoints (the AADSTS shape)."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpResponse, JsonResponse
from django.utils import timezone


def aad_error(
    status: int, error: str, code: int, description: str, *, extra: dict[str, Any] | None = None
) -> JsonResponse:
    """The error body Azure AD answers on its token and discovery endpoints."""
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\n"
            f"Timestamp: {stamp}"
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        **(extra or {}),
    }
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store, no-cache"
    return response


def fault_body(status: int, text: str) -> HttpResponse:
    if status == 429:
        return aad_error(429, "temporarily_unavailable", 50196, f"The server is throttling requests. {text}")
    return aad_error(status, "temporarily_unavailable", 90033, f"A transient error has occurred. {text}")


def unknown_tenant(tenant: str) -> JsonResponse:
    return aad_error(
        400,
        "invalid_request",
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into "
        "the correct cloud. Check with your subscription administrator, this may happen if there are no active "
        "subscriptions for the tenant.",
    )
