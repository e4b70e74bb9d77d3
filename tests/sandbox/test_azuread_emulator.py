"""The Azure AD emulator: msal, unmodified, gets client-credentials tokens from it over real TLS."""

from __future__ import annotations

import msal
import pytest
import requests

from integrations.protocols.microsoft import MsalHttpClient
from sandbox import azuread
from sandbox.common.faults import set_faults
from tests.connectors.microsoft_support import CLIENT_ID, CLIENT_SECRET, TENANT, TlsServer, fixture_json

pytest_plugins = ["tests.connectors.microsoft_support"]


def msal_app(server: TlsServer, secret: str = CLIENT_SECRET, **options: object) -> msal.ConfidentialClientApplication:
    # REQUESTS_CA_BUNDLE would override a session-level verify, so the CA goes with each request.
    http_client = MsalHttpClient(verify=server.ca_bundle, timeout=10)
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=secret,
        authority=f"{server.url}/sandbox/azuread/{TENANT}",
        http_client=http_client,
        **options,
    )


def test_msal_gets_a_token_through_instance_discovery_and_caches_it(
    tls_server: TlsServer, ms_sandbox: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given msal with its own HTTP client (the CA bundle through its `verify` option; the environment's
    # bundle would win over it) pointed at the emulator's instance discovery endpoint
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    app = msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=CLIENT_SECRET,
        authority=f"{tls_server.url}/sandbox/azuread/{TENANT}",
        verify=tls_server.ca_bundle,
        instance_discovery=f"{tls_server.url}/sandbox/azuread/common/discovery/instance",
    )
    scope = f"{tls_server.url}/sandbox/dataverse/.default"

    # when
    first = app.acquire_token_for_client(scopes=[scope])
    second = app.acquire_token_for_client(scopes=[scope])

    # then the token response has the documented fields and the second call came from msal's cache
    sample = fixture_json("azure-ad/token-client-credentials.response.json")
    assert set(sample) <= set(first), first
    assert first["token_type"] == "Bearer"
    assert first["token_source"] == "identity_provider"
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    assert azuread.tokens_issued(CLIENT_ID) == 1


def test_msal_with_instance_discovery_off_gets_a_token(tls_server: TlsServer, ms_sandbox: None) -> None:
    app = msal_app(tls_server, instance_discovery=False)

    result = app.acquire_token_for_client(scopes=[f"{tls_server.url}/sandbox/finops/.default"])

    assert "access_token" in result, result
    assert result["expires_in"] > 3000


def test_discovery_documents_have_the_real_shape(tls_server: TlsServer, ms_sandbox: None) -> None:
    base = f"{tls_server.url}/sandbox/azuread"
    authorize = f"{base}/{TENANT}/oauth2/v2.0/authorize"

    discovery = requests.get(
        f"{base}/common/discovery/instance",
        params={"api-version": "1.1", "authorization_endpoint": authorize},
        verify=tls_server.ca_bundle,
        timeout=10,
    ).json()
    config = requests.get(
        f"{base}/{TENANT}/v2.0/.well-known/openid-configuration", verify=tls_server.ca_bundle, timeout=10
    ).json()

    assert set(discovery) == set(fixture_json("azure-ad/instance-discovery.response.json"))
    assert discovery["tenant_discovery_endpoint"] == f"{base}/{TENANT}/v2.0/.well-known/openid-configuration"
    real = fixture_json("azure-ad/openid-configuration-tenant-v2.response.json")
    needed = {"token_endpoint", "authorization_endpoint", "issuer", "jwks_uri", "device_authorization_endpoint"}
    assert needed <= set(config) <= set(real)
    assert config["token_endpoint"] == f"{base}/{TENANT}/oauth2/v2.0/token"


def test_a_bad_client_secret_gets_the_aadsts_error(tls_server: TlsServer, ms_sandbox: None) -> None:
    app = msal_app(tls_server, secret="wrong", instance_discovery=False)

    result = app.acquire_token_for_client(scopes=[f"{tls_server.url}/sandbox/dataverse/.default"])

    shape = fixture_json("azure-ad/token-client-credentials.error-invalid_scope.response.json")
    assert set(shape) <= set(result)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert "\r\nTrace ID: " in result["error_description"]
    assert "\r\nCorrelation ID: " in result["error_description"]
    assert azuread.tokens_issued(CLIENT_ID) == 0


def test_a_bad_scope_or_unknown_app_or_tenant_is_refused_like_azure_ad(tls_server: TlsServer, ms_sandbox: None) -> None:
    def token(tenant: str = TENANT, **data: str) -> requests.Response:
        form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        form["scope"] = f"{tls_server.url}/sandbox/dataverse/.default"
        return requests.post(
            f"{tls_server.url}/sandbox/azuread/{tenant}/oauth2/v2.0/token",
            data={**form, **data},
            verify=tls_server.ca_bundle,
            timeout=10,
        )

    bad_scope = token(scope="https://graph.microsoft.com/User.Read")
    unknown_app = token(client_id="00000000-0000-0000-0000-00000000dead")
    unknown_tenant = token(tenant="11111111-1111-1111-1111-111111111111")

    assert (bad_scope.status_code, bad_scope.json()["error"]) == (400, "invalid_scope")
    assert (unknown_app.status_code, unknown_app.json()["error_codes"]) == (400, [700016])
    assert (unknown_tenant.status_code, unknown_tenant.json()["error_codes"]) == (400, [90002])


def test_an_outage_answers_in_the_azure_ad_error_shape(tls_server: TlsServer, ms_sandbox: None) -> None:
    set_faults("azuread", down=True)

    response = requests.get(
        f"{tls_server.url}/sandbox/azuread/{TENANT}/v2.0/.well-known/openid-configuration",
        verify=tls_server.ca_bundle,
        timeout=10,
    )

    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.json()["error_codes"] == [90033]
