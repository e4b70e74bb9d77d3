"""Every inbound auth mode, good, wrong and missing: 401 with WWW-Authenticate, and nothing stored."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client

from integrations.api.auth import hmac_sign
from integrations.models import Flow, InboundEndpoint, Message
from tests.api.conftest import SECRET, dataverse_update, key_header, post_json

pytestmark = pytest.mark.django_db
BODY = json.dumps(dataverse_update()).encode()


def _post(client: Client, flow: Flow, *, query: str = "", body: bytes = BODY, **headers: Any) -> Any:
    return client.post(
        f"/api/webhooks/dataverse/{flow.slug}{query}", data=body, content_type="application/json", **headers
    )


def _refused(response: Any, challenge_start: str) -> None:
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith(challenge_start)
    assert set(response.json()) == {"error", "field"}
    assert not Message.objects.exists()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- shared secret header (Dataverse HttpHeader) ----------------------------------------------


def test_header_key_good(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="header")
    assert _post(client, flow, **key_header()).status_code == 202


def test_header_key_custom_name(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="header", credential_name="x-dynamics-secret")
    assert _post(client, flow, HTTP_X_DYNAMICS_SECRET=SECRET).status_code == 202


def test_header_key_wrong(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="header")
    _refused(_post(client, flow, HTTP_X_ICBRIDGE_KEY=SECRET + "x"), "ApiKey")


def test_header_key_missing(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="header")
    response = _post(client, flow)
    _refused(response, "ApiKey")
    assert response.json()["error"] == "header 'x-icbridge-key' is missing"


# --- query key (Dataverse WebhookKey) -------------------------------------------------------


def test_query_key_good(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="query_key")
    assert _post(client, flow, query=f"?code={SECRET}").status_code == 202


def test_query_key_wrong(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="query_key")
    _refused(_post(client, flow, query="?code=nope"), "ApiKey")


def test_query_key_missing(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="query_key")
    _refused(_post(client, flow), "ApiKey")


# --- HMAC-SHA256 with timestamp ----------------------------------------------------------------


def _hmac_headers(secret: str = SECRET, body: bytes = BODY, timestamp: int | None = None) -> dict[str, str]:
    signed = hmac_sign(secret=secret, body=body, timestamp=timestamp)
    return {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in signed.items()}


def test_hmac_good(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="hmac")
    assert _post(client, flow, **_hmac_headers()).status_code == 202


def test_hmac_wrong_secret(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="hmac")
    _refused(_post(client, flow, **_hmac_headers(secret="other")), "HMAC-SHA256")


def test_hmac_body_changed_after_signing(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="hmac")
    tampered = BODY.replace(b"James", b"Jimmy")
    _refused(_post(client, flow, body=tampered, **_hmac_headers()), "HMAC-SHA256")


def test_hmac_timestamp_outside_tolerance(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given a correctly signed request captured ten minutes ago
    flow = inbound_flow(auth_type="hmac", timestamp_tolerance_seconds=300)
    old = _hmac_headers(timestamp=int(time.time()) - 600)
    # when it is replayed
    response = _post(client, flow, **old)
    # then it is refused for its age
    _refused(response, "HMAC-SHA256")
    assert "tolerance is 300 s" in response.json()["error"]


def test_hmac_missing(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="hmac")
    _refused(_post(client, flow), "HMAC-SHA256")


# --- basic ---------------------------------------------------------------------------------------


def test_basic_good(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="basic", username="eventmesh")
    assert _post(client, flow, HTTP_AUTHORIZATION=_basic("eventmesh", SECRET)).status_code == 202


def test_basic_wrong_user(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="basic", username="eventmesh")
    _refused(_post(client, flow, HTTP_AUTHORIZATION=_basic("mallory", SECRET)), "Basic")


def test_basic_wrong_password(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="basic", username="eventmesh")
    _refused(_post(client, flow, HTTP_AUTHORIZATION=_basic("eventmesh", "guess")), "Basic")


def test_basic_not_base64(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="basic", username="eventmesh")
    _refused(_post(client, flow, HTTP_AUTHORIZATION="Basic %%%"), "Basic")


def test_basic_missing(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = inbound_flow(auth_type="basic", username="eventmesh")
    _refused(_post(client, flow), "Basic")


# --- bearer JWT ------------------------------------------------------------------------------------

ISSUER = "https://sts.windows.net/88888888-8888-8888-8888-888888888888/"
AUDIENCE = "api://icbridge"


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, "appid": "sender", **overrides}


def _bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def _hs_flow(inbound_flow: Callable[..., Flow]) -> Flow:
    return inbound_flow(auth_type="bearer", jwt_issuer=ISSUER, jwt_audience=AUDIENCE)


def test_bearer_hs256_good(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = _hs_flow(inbound_flow)
    token = jwt.encode(_claims(), SECRET, algorithm="HS256")
    assert _post(client, flow, **_bearer(token)).status_code == 202


def test_bearer_wrong_key(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = _hs_flow(inbound_flow)
    token = jwt.encode(_claims(), "another-key-entirely-000000000000", algorithm="HS256")
    _refused(_post(client, flow, **_bearer(token)), "Bearer")


def test_bearer_expired(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = _hs_flow(inbound_flow)
    token = jwt.encode(_claims(exp=int(time.time()) - 3600), SECRET, algorithm="HS256")
    response = _post(client, flow, **_bearer(token))
    _refused(response, "Bearer")
    assert "expired" in response.json()["error"]


def test_bearer_wrong_audience(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = _hs_flow(inbound_flow)
    token = jwt.encode(_claims(aud="api://someone-else"), SECRET, algorithm="HS256")
    _refused(_post(client, flow, **_bearer(token)), "Bearer")


def test_bearer_wrong_issuer(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = _hs_flow(inbound_flow)
    token = jwt.encode(_claims(iss="https://evil.example.com/"), SECRET, algorithm="HS256")
    _refused(_post(client, flow, **_bearer(token)), "Bearer")


def test_bearer_unsigned_token_is_refused(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = _hs_flow(inbound_flow)
    token = jwt.encode(_claims(), None, algorithm="none")
    _refused(_post(client, flow, **_bearer(token)), "Bearer")


def test_bearer_missing(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    flow = _hs_flow(inbound_flow)
    _refused(_post(client, flow), "Bearer")


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, Any]]:
    """An issuer's JWKS over real HTTP, as Azure AD publishes its signing keys."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    document = json.dumps({"keys": [{**public, "kid": "test-kid", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/discovery/v2.0/keys", key
    server.shutdown()
    server.server_close()


def test_bearer_rs256_from_jwks_good(
    client: Client, inbound_flow: Callable[..., Flow], jwks_server: tuple[str, Any]
) -> None:
    # given a flow trusting an issuer's published keys
    url, key = jwks_server
    flow = inbound_flow(auth_type="bearer", jwks_url=url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    # when a token signed by that issuer is sent
    token = jwt.encode(_claims(), key, algorithm="RS256", headers={"kid": "test-kid"})
    # then it is accepted
    assert _post(client, flow, **_bearer(token)).status_code == 202


def test_bearer_rs256_signed_by_another_key(
    client: Client, inbound_flow: Callable[..., Flow], jwks_server: tuple[str, Any]
) -> None:
    url, _ = jwks_server
    flow = inbound_flow(auth_type="bearer", jwks_url=url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(), other, algorithm="RS256", headers={"kid": "test-kid"})
    _refused(_post(client, flow, **_bearer(token)), "Bearer")


def test_bearer_hs256_token_against_a_jwks_endpoint_is_refused(
    client: Client, inbound_flow: Callable[..., Flow], jwks_server: tuple[str, Any]
) -> None:
    # An attacker signing HS256 with the public key must not pass (algorithm confusion).
    url, key = jwks_server
    flow = inbound_flow(auth_type="bearer", jwks_url=url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    token = jwt.encode(_claims(), SECRET, algorithm="HS256", headers={"kid": "test-kid"})
    _refused(_post(client, flow, **_bearer(token)), "Bearer")


# --- no credentials configured ------------------------------------------------------------------


def test_flow_without_inbound_config_accepts_nothing(client: Client, make_flow: Callable[..., Flow]) -> None:
    flow = make_flow()
    response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}", dataverse_update(), **key_header())
    _refused(response, "ApiKey")
    assert "no inbound credentials" in response.json()["error"]


def test_endpoint_without_a_secret_accepts_nothing(client: Client, make_flow: Callable[..., Flow]) -> None:
    flow = make_flow()
    InboundEndpoint.objects.create(flow=flow, auth_type="header", secret="")
    response = _post(client, flow, HTTP_X_ICBRIDGE_KEY="")
    _refused(response, "ApiKey")


def test_auth_is_checked_before_the_body_is_parsed(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # A stranger learns nothing about our parser: bad credentials win over a bad body.
    flow = inbound_flow(auth_type="header")
    _refused(_post(client, flow, body=b"not json"), "ApiKey")


def test_bearer_token_from_the_azure_ad_emulator(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given an app registered in the sandbox Azure AD, and a flow trusting that tenant's tokens
    from sandbox import azuread
    from sandbox.azuread.tokens import _signing_key

    tenant = azuread.DEFAULT_TENANT
    azuread.register_app(client_id="dataverse-sender", client_secret="app-secret")
    resource = "http://testserver/sandbox/dataverse"
    key = base64.b64encode(_signing_key()).decode()  # the emulator signs HS256 with this derived key
    flow = inbound_flow(auth_type="bearer", jwt_issuer=f"https://sts.windows.net/{tenant}/", jwt_audience=resource)
    endpoint = InboundEndpoint.objects.get(flow=flow)
    endpoint.secret = f"base64:{key}"
    endpoint.save()
    # when the sender gets a token by client credentials, as msal does, and posts with it
    answer = client.post(
        f"/sandbox/azuread/{tenant}/oauth2/v2.0/token",
        {
            "grant_type": "client_credentials",
            "client_id": "dataverse-sender",
            "client_secret": "app-secret",
            "scope": f"{resource}/.default",
        },
    )
    assert answer.status_code == 200, answer.content
    response = _post(client, flow, **_bearer(answer.json()["access_token"]))
    # then the event is accepted; a token for another resource is not
    assert response.status_code == 202, response.content
    other = client.post(
        f"/sandbox/azuread/{tenant}/oauth2/v2.0/token",
        {
            "grant_type": "client_credentials",
            "client_id": "dataverse-sender",
            "client_secret": "app-secret",
            "scope": "http://testserver/sandbox/finops/.default",
        },
    ).json()["access_token"]
    assert _post(client, flow, **_bearer(other)).status_code == 401


def test_a_rotated_secret_applies_at_once(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given a flow that took an event with its key (its settings are now cached by the web process)
    flow = inbound_flow(auth_type="header")
    assert _post(client, flow, **key_header()).status_code == 202
    # when an engineer rotates the key
    endpoint = InboundEndpoint.objects.get(flow=flow)
    endpoint.secret = "the-new-key"
    endpoint.save()
    # then the old key is refused and the new one taken, without waiting for the cache to expire
    later = BODY.replace(b"4af10637-4ea2", b"5bf10637-4ea2")  # the next change: another system job
    old = _post(client, flow, body=later, **key_header())
    new = _post(client, flow, body=later, HTTP_X_ICBRIDGE_KEY="the-new-key")
    assert (old.status_code, new.status_code) == (401, 202)
