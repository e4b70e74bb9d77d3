"""The token endpoint (client credentials; a user's password for a delegated token; HS256 JWTs, aud = the
resource) and the check of those tokens that the resource emulators make (verify_bearer)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import jwt
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from sandbox.azuread.errors import aad_error, fault_body, unknown_tenant
from sandbox.azuread.registrations import (
    EMULATOR,
    TOKEN_LIFETIME_SECONDS,
    find_app,
    find_user,
    secret_hash,
    tenant_known,
)
from sandbox.common.faults import with_faults
from sandbox.models import EmulatorRecord

# Resources the sandbox can issue tokens for: the emulators that check them.
RESOURCES = ("dataverse", "finops", "ax2012")


def _signing_key() -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), b"icbridge-sandbox-azuread", hashlib.sha256).digest()


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
@with_faults(EMULATOR, fault_body)
def token(request: HttpRequest, tenant: str) -> HttpResponse:
    """Client-credentials grant, answered like Azure AD (v2 endpoint)."""
    grant_type = request.POST.get("grant_type", "")
    client_id = request.POST.get("client_id", "")
    client_secret = request.POST.get("client_secret", "")
    if not client_secret and request.headers.get("Authorization", "").startswith("Basic "):
        decoded = base64.b64decode(request.headers["Authorization"][6:]).decode(errors="replace")
        client_id, _, client_secret = decoded.partition(":")
    if grant_type == "password":
        return _password_grant(request, tenant, client_id)
    if grant_type != "client_credentials":
        return aad_error(
            400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant_type}'."
        )
    if not client_id:
        return aad_error(
            400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."
        )
    if not tenant_known(tenant):
        return unknown_tenant(tenant)
    app = find_app(tenant, client_id)
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
    if not hmac.compare_digest(secret_hash(client_secret), app.data.get("secret_sha256", "")):
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
    lifetime = int(app.data.get("token_lifetime", TOKEN_LIFETIME_SECONDS))
    claims = _claims(resource, tenant, client_id, lifetime)
    claims.update(appidacr="1", idtyp="app", oid=app.data.get("object_id", ""), sub=app.data.get("object_id", ""))
    return _issue(app, claims, lifetime)


def _claims(resource: str, tenant: str, client_id: str, lifetime: int) -> dict[str, Any]:
    """What every access token of this tenant carries; the grant adds who it is for."""
    now = int(time.time())
    return {
        "aud": resource,
        "iss": f"https://sts.windows.net/{tenant}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": client_id,
        "tid": tenant,
        "ver": "1.0",
        "uti": uuid.uuid4().hex[:22],
    }


def _issue(
    app: EmulatorRecord, claims: dict[str, Any], lifetime: int, extra: dict[str, str] | None = None
) -> HttpResponse:
    access_token = jwt.encode(claims, _signing_key(), algorithm="HS256", headers={"kid": "icbridge-sandbox"})
    with transaction.atomic():
        # Count issued tokens in the row itself (JSON), so an operator sees it in the admin too; the row
        # lock keeps concurrent token requests from losing a count.
        locked = EmulatorRecord.objects.select_for_update().get(pk=app.pk)
        locked.data["tokens_issued"] = int(locked.data.get("tokens_issued", 0)) + 1
        locked.save(update_fields=["data", "modified_at"])
    response = JsonResponse(
        {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
            **(extra or {}),
        }
    )
    response["Cache-Control"] = "no-store, no-cache"
    response["Pragma"] = "no-cache"
    return response


def _password_grant(request: HttpRequest, tenant: str, client_id: str) -> HttpResponse:
    """Resource owner password credentials: a user's delegated token (scp, upn, no roles).

    "Microsoft identity platform and OAuth 2.0 Resource Owner Password Credentials": grant_type=password,
    client_id, username, password, scope; a public client sends no secret. The token carries the user.
    """
    if not tenant_known(tenant):
        return unknown_tenant(tenant)
    app = find_app(tenant, client_id)
    if app is None:
        return aad_error(
            400, "unauthorized_client", 700016, f"Application with identifier '{client_id}' was not found."
        )
    user = find_user(tenant, request.POST.get("username", ""))
    password = request.POST.get("password", "")
    if user is None or not hmac.compare_digest(secret_hash(password), user.data.get("password_sha256", "")):
        return aad_error(
            400, "invalid_grant", 50126, "Error validating credentials due to invalid username or password."
        )
    resource = _user_resource_of(request.POST.get("scope", ""))
    if resource is None:
        return aad_error(
            400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid."
        )
    lifetime = int(app.data.get("token_lifetime", TOKEN_LIFETIME_SECONDS))
    claims = _claims(resource, tenant, client_id, lifetime)
    claims.update(
        appidacr="0",  # a public client: no client authentication
        idtyp="user",
        scp="user_impersonation",
        upn=user.data["upn"],
        unique_name=user.data["upn"],
        oid=user.data["object_id"],
        sub=user.data["object_id"],
    )
    # A user sign-in also answers who signed in (id_token, client_info), which msal keys its cache by.
    id_claims = {k: claims[k] for k in ("iss", "iat", "nbf", "exp", "oid", "sub", "tid")}
    id_token = jwt.encode(
        {**id_claims, "aud": client_id, "preferred_username": user.data["upn"], "ver": "2.0"},
        _signing_key(),
        algorithm="HS256",
    )
    client_info = json.dumps({"uid": user.data["object_id"], "utid": tenant}).encode()
    extra = {
        "scope": f"{resource}/user_impersonation",
        "id_token": id_token,
        "client_info": base64.urlsafe_b64encode(client_info).decode().rstrip("="),
    }
    return _issue(app, claims, lifetime, extra)


def _user_resource_of(scope: str) -> str | None:
    """A delegated scope `<resource>/user_impersonation` (or `/.default`) → resource; msal adds openid etc."""
    for item in scope.split():
        for suffix in ("/user_impersonation", "/.default"):
            if item.endswith(suffix):
                return _resource_of(item.removesuffix(suffix) + "/.default")
    return None


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
    app = find_app(str(claims.get("tid", "")), str(claims.get("appid", "")))
    if app is None:
        return None, "the application of this token no longer exists"
    claims["denied"] = emulator in app.data.get("denied", [])
    return claims, ""
