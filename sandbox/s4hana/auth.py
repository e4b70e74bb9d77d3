"""Who may call: basic auth (SANDBOX_S4HANA_USERS) or an OAuth2 client-credentials token (SANDBOX_S4HANA_CLIENTS),
and SAP Gateway's CSRF protection (a token bound to the session cookie and the user)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from sandbox.common.faults import with_faults
from sandbox.models import EmulatorRecord
from sandbox.s4hana.model import available_services
from sandbox.s4hana.reply import fault_body
from sandbox.s4hana.store import CLIENT, EMULATOR, SYSTEM_ID

SESSION_COOKIE = f"SAP_SESSIONID_{SYSTEM_ID}_{CLIENT}"
TOKEN_LIFETIME_SECONDS = 3600


def users() -> dict[str, str]:
    return getattr(settings, "SANDBOX_S4HANA_USERS", {"ICBRIDGE": "sandbox"})


def clients() -> dict[str, str]:
    return getattr(settings, "SANDBOX_S4HANA_CLIENTS", {"icbridge-s4": "sandbox"})


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(request: HttpRequest) -> str | None:
    """The logged-on user, or None (401). The logon client is the sap-client URL parameter, else the
    system's standard client (SAP Help "SAP URL Parameters"); a client the system does not have fails
    the logon, as users exist per client."""
    if request.GET.get("sap-client", CLIENT) != CLIENT:
        return None
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        expected = users().get(user.upper())
        if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
            return user.upper()
        return None
    if scheme.lower() == "bearer" and value:
        record = EmulatorRecord.objects.filter(emulator=EMULATOR, entity="oauth_token", key=_token_hash(value)).first()
        if record and record.data["expires_at"] > time.time():
            return str(record.data["client_id"])
    return None


def unauthorized() -> HttpResponse:
    response = HttpResponse("Logon failed", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = f'Basic realm="SAP NetWeaver Application Server [{SYSTEM_ID}/{CLIENT}]"'
    return response


def _csrf_session(request: HttpRequest, user: str) -> EmulatorRecord | None:
    session_id = request.COOKIES.get(SESSION_COOKIE, "")
    if not session_id:
        return None
    record = EmulatorRecord.objects.filter(emulator=EMULATOR, entity="csrf_session", key=session_id).first()
    if record is None or record.data.get("user") != user:
        return None  # the token is bound to the user as well as the session
    return record


def issue_csrf_token(request: HttpRequest, response: HttpResponse, user: str) -> None:
    """Answer `x-csrf-token: Fetch`: the session's token, or a new session and token."""
    session = _csrf_session(request, user)
    if session is None:
        session = EmulatorRecord.objects.create(
            emulator=EMULATOR,
            entity="csrf_session",
            key=secrets.token_urlsafe(24),
            data={"user": user, "token": base64.b64encode(secrets.token_bytes(18)).decode()},
        )
        response.set_cookie(SESSION_COOKIE, session.key, httponly=True, path="/")
        response.set_cookie("sap-usercontext", f"sap-client={CLIENT}", path="/")
    response["x-csrf-token"] = session.data["token"]


def csrf_valid(request: HttpRequest, user: str) -> bool:
    token = request.headers.get("x-csrf-token", "")
    session = _csrf_session(request, user)
    return bool(token) and session is not None and hmac.compare_digest(session.data["token"], token)


def csrf_refused() -> HttpResponse:
    response = HttpResponse("CSRF token validation failed", status=403, content_type="text/plain")
    response["x-csrf-token"] = "Required"
    return response


def expire_sessions() -> int:
    """End every CSRF session, as SAP's session timeout does; the next write needs a new token."""
    deleted, _ = EmulatorRecord.objects.filter(emulator=EMULATOR, entity="csrf_session").delete()
    return deleted


@csrf_exempt
@with_faults(EMULATOR, fault_body)
def oauth_token(request: HttpRequest) -> HttpResponse:
    """OAuth2 client credentials (as the S/4HANA Cloud communication arrangement's token service)."""
    if request.method != "POST":
        return JsonResponse({"error": "invalid_request", "error_description": "use POST"}, status=405)
    client_id, client_secret = request.POST.get("client_id", ""), request.POST.get("client_secret", "")
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, _, client_secret = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            client_id = client_secret = ""
    if request.POST.get("grant_type") != "client_credentials":
        return JsonResponse(
            {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}, status=400
        )
    expected = clients().get(client_id)
    if expected is None or not hmac.compare_digest(expected.encode(), client_secret.encode()):
        return JsonResponse({"error": "invalid_client", "error_description": "Bad credentials"}, status=401)
    token = secrets.token_urlsafe(32)
    EmulatorRecord.objects.create(
        emulator=EMULATOR,
        entity="oauth_token",
        key=_token_hash(token),
        data={"client_id": client_id, "expires_at": time.time() + TOKEN_LIFETIME_SECONDS},
    )
    return JsonResponse(
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS - 1,
            "scope": " ".join(available_services()),
            "jti": uuid.uuid4().hex,
        }
    )
