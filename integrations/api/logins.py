"""Failed password logins (the admin login form): what django-axes asks of the project.

django-axes counts failures per (username, client address) and locks the pair out for a cool-off
(settings: ICBRIDGE_LOGIN_FAILURE_LIMIT, ICBRIDGE_LOGIN_COOLOFF_MINUTES; docs/security.md). It sees the
client address as the throttles do, and answers a locked-out login with the response below.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.db.models import Max
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone


def login_lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """django-axes' answer to a locked-out login (AXES_LOCKOUT_CALLABLE): 429, saying when to retry.

    JSON in the API's error shape for a client that asks for JSON, else a short page. The username
    is not echoed back.
    """
    cool_off = get_cool_off(request) or timedelta(minutes=15)
    last = AccessAttempt.objects.filter(
        username=get_client_username(request, credentials), ip_address=getattr(request, "axes_ip_address", None)
    ).aggregate(last=Max("attempt_time"))["last"]
    left = (last + cool_off - timezone.now()).total_seconds() if last else cool_off.total_seconds()
    wait = max(1, math.ceil(left))
    text = (
        f"too many failed logins for this user from this address; "
        f"logins are refused for {math.ceil(wait / 60)} min more (retry in {wait} s)"
    )
    headers = {"Retry-After": str(wait)}
    accept = request.headers.get("Accept", "")
    if (
        request.path.startswith("/api/")
        or "application/json" in accept
        or request.headers.get("X-Requested-With") == "XMLHttpRequest"
    ):
        return JsonResponse({"error": text, "field": None}, status=429, headers=headers)
    page = render(request, "admin/login_locked.html", {"text": text, "title": "Login refused"}, status=429)
    page["Retry-After"] = headers["Retry-After"]
    return page
