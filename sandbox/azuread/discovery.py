"""What msal reads before it asks for a token: instance discovery, the tenant's OpenID configuration, its keys."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from sandbox.azuread.errors import fault_body, unknown_tenant
from sandbox.azuread.registrations import EMULATOR, tenant_known
from sandbox.common.faults import with_faults


def base_url(request: HttpRequest) -> str:
    """This host as the caller sees it; https also when a TLS-terminating proxy says so."""
    secure = request.is_secure() or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    return f"{'https' if secure else 'http'}://{request.get_host()}/sandbox/{EMULATOR}"


@require_GET
@with_faults(EMULATOR, fault_body)
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
@with_faults(EMULATOR, fault_body)
def openid_configuration(request: HttpRequest, tenant: str) -> HttpResponse:
    if not tenant_known(tenant):
        return unknown_tenant(tenant)
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
