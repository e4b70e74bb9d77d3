"""Azure AD (Microsoft Entra ID) emulator: just enough of login.microsoftonline.com for msal client credentials.

GET  common/discovery/instance                         instance discovery (msal asks it for unknown hosts)
GET  <tenant>/v2.0/.well-known/openid-configuration    tenant OpenID configuration
GET  <tenant>/discovery/v2.0/keys                      JWKS (empty: sandbox tokens are HMAC-signed)
POST <tenant>/oauth2/v2.0/token                        grant_type=client_credentials, scope=<resource>/.default

App registrations are EmulatorRecord rows (entity "app", key = "<tenant>/<client id>") holding a
SHA-256 of the secret, never the secret itself; register_app() seeds one. Tokens are JWTs (HS256, key
derived from SECRET_KEY) with aud = the resource, checked by the Dataverse and F&O emulators through
verify_bearer(). Errors follow the real AADSTS shape: error, error_description with Trace/Correlation
ID and timestamp, error_codes, timestamp, trace_id, correlation_id, error_uri.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import jwt
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from sandbox.faults import with_faults
from sandbox.models import EmulatorRecord

EMULATOR = "azuread"
DEFAULT_TENANT = "88888888-8888-8888-8888-888888888888"
TOKEN_LIFETIME_SECONDS = 3599
# Resources the sandbox can issue tokens for: the emulators that check them.
RESOURCES = ("dataverse", "finops", "ax2012")


def _signing_key() -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), b"icbridge-sandbox-azuread", hashlib.sha256).digest()


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def base_url(request: HttpRequest) -> str:
    """This host as the caller sees it; https also when a TLS-terminating proxy says so."""
    secure = request.is_secure() or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    return f"{'https' if secure else 'http'}://{request.get_host()}/sandbox/{EMULATOR}"


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


def _fault_body(status: int, text: str) -> HttpResponse:
    if status == 429:
        return aad_error(429, "temporarily_unavailable", 50196, f"The server is throttling requests. {text}")
    return aad_error(status, "temporarily_unavailable", 90033, f"A transient error has occurred. {text}")


# --- app registrations --------------------------------------------------------------------------


def register_app(
    *,
    client_id: str,
    client_secret: str,
    tenant: str = DEFAULT_TENANT,
    display_name: str = "",
    denied: tuple[str, ...] = (),
    token_lifetime: int = TOKEN_LIFETIME_SECONDS,
) -> EmulatorRecord:
    """Create or replace a sandbox app registration; `denied` lists emulators where it has no app user."""
    record, _ = EmulatorRecord.objects.update_or_create(
        emulator=EMULATOR,
        entity="app",
        company="",
        key=_app_key(tenant, client_id),
        defaults={
            "data": {
                "tenant": tenant,
                "client_id": client_id,
                "display_name": display_name or f"icbridge sandbox app {client_id[:8]}",
                "secret_sha256": _secret_hash(client_secret),
                "object_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{client_id}")),
                "denied": list(denied),
                "token_lifetime": token_lifetime,
                "tokens_issued": 0,
            }
        },
    )
    return record


def _app_key(tenant: str, client_id: str) -> str:
    return f"{tenant}/{client_id}"


def _app(tenant: str, client_id: str) -> EmulatorRecord | None:
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity="app", key=_app_key(tenant, client_id)).first()


def tokens_issued(client_id: str, tenant: str = DEFAULT_TENANT) -> int:
    """How many tokens the sandbox issued to this app (msal's cache should keep this low)."""
    record = _app(tenant, client_id)
    return int(record.data.get("tokens_issued", 0)) if record else 0


def _tenant_known(tenant: str) -> bool:
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity="app", key__startswith=f"{tenant}/").exists()


def _unknown_tenant(tenant: str) -> JsonResponse:
    return aad_error(
        400,
        "invalid_request",
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into "
        "the correct cloud. Check with your subscription administrator, this may happen if there are no active "
        "subscriptions for the tenant.",
    )


# --- views --------------------------------------------------------------------------------------


@require_GET
@with_faults(EMULATOR, _fault_body)
def instance_discovery(request: HttpRequest) -> HttpResponse:
    """Tell msal where the tenant's OpenID configuration lives (shape of the real answer)."""
    endpoint = request.GET.get("authorization_endpoint", "")
    parts = [p for p in urlsplit(endpoint).path.split("/") if p]
    try:
        tenant = parts[parts.index(EMULATOR) + 1]
    except (ValueError, IndexError):
        tenant = "common"
    host = urlsplit(base_url(request)).netloc
    return JsonResponse(
        {
            "tenant_discovery_endpoint": f"{base_url(request)}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": request.GET.get("api-version", "1.1"),
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }
    )


@require_GET
@with_faults(EMULATOR, _fault_body)
def openid_configuration(request: HttpRequest, tenant: str) -> HttpResponse:
    if not _tenant_known(tenant):
        return _unknown_tenant(tenant)
    root = f"{base_url(request)}/{tenant}"
    return JsonResponse(
        {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "tenant_region_scope": "WW",
            "cloud_instance_name": "microsoftonline.com",
        }
    )


@require_GET
def jwks(request: HttpRequest, tenant: str) -> HttpResponse:
    # Sandbox tokens are HMAC-signed, so there is no public key to publish; the resources check them in-process.
    return JsonResponse({"keys": []})


def _resource_of(scope: str) -> str | None:
    """`<resource>/.default` → resource, if it is one of the sandbox's own resources."""
    scopes = scope.split()
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        return None
    resource = scopes[0].removesuffix("/.default").rstrip("/")
    parts = urlsplit(resource)
    if parts.scheme not in ("http", "https") or not any(parts.path.rstrip("/").endswith(f"/{r}") for r in RESOURCES):
        return None
    return resource


@csrf_exempt
@require_POST
@with_faults(EMULATOR, _fault_body)
def token(request: HttpRequest, tenant: str) -> HttpResponse:
    """Client-credentials grant, answered like Azure AD (v2 endpoint)."""
    grant_type = request.POST.get("grant_type", "")
    client_id = request.POST.get("client_id", "")
    client_secret = request.POST.get("client_secret", "")
    if not client_secret and request.headers.get("Authorization", "").startswith("Basic "):
        decoded = base64.b64decode(request.headers["Authorization"][6:]).decode(errors="replace")
        client_id, _, client_secret = decoded.partition(":")
    if grant_type != "client_credentials":
        return aad_error(
            400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant_type}'."
        )
    if not client_id:
        return aad_error(
            400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."
        )
    if not _tenant_known(tenant):
        return _unknown_tenant(tenant)
    app = _app(tenant, client_id)
    if app is None:
        return aad_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen "
            "if the application has not been installed by the administrator of the tenant or consented to by any "
            "user in the tenant. You may have sent your authentication request to the wrong tenant.",
        )
    if not client_secret:
        return aad_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    if not hmac.compare_digest(_secret_hash(client_secret), app.data.get("secret_sha256", "")):
        return aad_error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
            f"value, not the client secret ID, for a secret added to app '{client_id}'.",
        )
    scope = request.POST.get("scope", "")
    resource = _resource_of(scope)
    if resource is None:
        return aad_error(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope or '(none)'} is not valid. Client credential flows must have a "
            "scope value with /.default suffixed to the resource identifier (application ID URI).",
        )
    now = int(time.time())
    lifetime = int(app.data.get("token_lifetime", TOKEN_LIFETIME_SECONDS))
    claims = {
        "aud": resource,
        "iss": f"https://sts.windows.net/{tenant}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": client_id,
        "appidacr": "1",
        "idtyp": "app",
        "oid": app.data.get("object_id", ""),
        "sub": app.data.get("object_id", ""),
        "tid": tenant,
        "ver": "1.0",
        "uti": uuid.uuid4().hex[:22],
    }
    access_token = jwt.encode(claims, _signing_key(), algorithm="HS256", headers={"kid": "icbridge-sandbox"})
    with transaction.atomic():
        # Count issued tokens in the row itself (JSON), so an operator sees it in the admin too; the row
        # lock keeps concurrent token requests from losing a count.
        locked = EmulatorRecord.objects.select_for_update().get(pk=app.pk)
        locked.data["tokens_issued"] = int(locked.data.get("tokens_issued", 0)) + 1
        locked.save(update_fields=["data", "modified_at"])
    response = JsonResponse(
        {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access_token}
    )
    response["Cache-Control"] = "no-store, no-cache"
    response["Pragma"] = "no-cache"
    return response


# --- used by the resource emulators -------------------------------------------------------------


def _same_resource(audience: str, resource: str) -> bool:
    def norm(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.netloc.lower()}{parts.path.rstrip('/')}"

    return norm(audience) == norm(resource)


def verify_bearer(request: HttpRequest, emulator: str) -> tuple[dict[str, Any] | None, str]:
    """Claims of a valid token for this emulator, or (None, why not) for a 401.

    The scheme is ignored when matching the audience: the same resource may be reached through
    a TLS-terminating proxy.
    """
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None, "Bearer token is missing"
    try:
        claims = jwt.decode(
            header[7:], _signing_key(), algorithms=["HS256"], options={"verify_aud": False, "require": ["exp", "aud"]}
        )
    except jwt.ExpiredSignatureError:
        return None, "the access token has expired"
    except jwt.InvalidTokenError as exc:
        return None, f"the access token is invalid ({type(exc).__name__})"
    resource = f"http://{request.get_host()}/sandbox/{emulator}"
    if not _same_resource(str(claims.get("aud", "")), resource):
        return None, f"the access token's audience '{claims.get('aud')}' is not this resource"
    app = _app(str(claims.get("tid", "")), str(claims.get("appid", "")))
    if app is None:
        return None, "the application of this token no longer exists"
    claims["denied"] = emulator in app.data.get("denied", [])
    return claims, ""


def www_authenticate(request: HttpRequest, emulator: str, tenant: str = DEFAULT_TENANT) -> str:
    scheme = "https" if request.is_secure() else "http"
    return (
        f"Bearer authorization_uri={scheme}://{request.get_host()}/sandbox/{EMULATOR}/{tenant}/oauth2/authorize, "
        f"resource_id={scheme}://{request.get_host()}/sandbox/{emulator}"
    )


def unauthorized(request: HttpRequest, emulator: str, why: str) -> HttpResponse:
    """The 401 a Microsoft resource answers without a valid token: empty body, the challenge, the reason."""
    response = HttpResponse(status=401)
    response["WWW-Authenticate"] = www_authenticate(request, emulator)
    response["x-ms-diagnostics"] = why
    return response


urlpatterns = [
    path("common/discovery/instance", instance_discovery, name="azuread-instance-discovery"),
    path("<str:tenant>/v2.0/.well-known/openid-configuration", openid_configuration, name="azuread-openid"),
    path("<str:tenant>/discovery/v2.0/keys", jwks, name="azuread-jwks"),
    path("<str:tenant>/oauth2/v2.0/token", token, name="azuread-token"),
]


def reset() -> None:
    """Drop every app registration (and with it the issued-token counters)."""
    EmulatorRecord.objects.filter(emulator=EMULATOR).delete()
