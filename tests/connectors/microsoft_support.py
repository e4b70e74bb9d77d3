"""Fixtures for the Microsoft connector and emulator tests: the hub served over real TLS, an app registration.

msal accepts only https authorities, so these tests serve the hub (and so the Azure AD, Dataverse and
F&O emulators) over TLS with a throw-away self-signed certificate that clients trust through
System.settings["ca_bundle"] / msal's `verify`. Import the fixtures you use into the test module.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.servers.basehttp import ThreadedWSGIServer
from django.db import connections
from django.test.testcases import LiveServerThread, QuietWSGIRequestHandler, _StaticFilesHandler

from integrations.models import System
from integrations.protocols import microsoft as msal_auth
from sandbox import azuread, dataverse, finops

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TENANT = azuread.DEFAULT_TENANT
CLIENT_ID = "535fb089-9ff3-47b6-9bfb-4f1264799865"
CLIENT_SECRET = "sandbox-secret-value"  # noqa: S105 - a sandbox credential made up for the tests


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_text(name))


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "icbridge test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class _TlsRequestHandler(QuietWSGIRequestHandler):
    def handle_one_request(self) -> None:
        # A keep-alive client holds this thread between requests; give its DB connection back meanwhile,
        # so the test database can be dropped at the end even if a client never hangs up.
        try:
            super().handle_one_request()
        finally:
            connections.close_all()

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["HTTPS"] = "on"
        environ["wsgi.url_scheme"] = "https"
        return environ


class _TlsServerThread(LiveServerThread):
    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__("127.0.0.1", _StaticFilesHandler)
        self.context = context

    def _create_server(self, connections_override: Any = None) -> ThreadedWSGIServer:
        server = ThreadedWSGIServer(
            (self.host, self.port), _TlsRequestHandler, allow_reuse_address=False, connections_override=None
        )
        server.socket = self.context.wrap_socket(server.socket, server_side=True)
        return server


@dataclass
class TlsServer:
    url: str
    ca_bundle: str


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory, django_db_setup: None) -> Iterator[TlsServer]:
    """The hub over https on 127.0.0.1 (like pytest-django's live_server, with TLS).

    It depends on django_db_setup so that it stops before the test database is dropped.
    """
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    thread = _TlsServerThread(context)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait(10)
    if thread.error:
        raise thread.error
    yield TlsServer(url=f"https://127.0.0.1:{thread.port}", ca_bundle=str(cert))
    thread.terminate()


@pytest.fixture
def ms_sandbox(transactional_db: None) -> Iterator[None]:
    """Fresh emulators and token caches, and the tests' app registration."""
    for module in (azuread, dataverse, finops):
        module.reset()
    msal_auth.clear_providers()
    azuread.register_app(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, tenant=TENANT)
    yield
    msal_auth.clear_providers()
    dataverse.reset()
    finops.reset()


@pytest.fixture
def make_ms_system(
    make_system: Callable[..., System], tls_server: TlsServer, ms_sandbox: None
) -> Callable[..., System]:
    def make(kind: str, **overrides: Any) -> System:
        values: dict[str, Any] = {
            "kind": kind,
            "base_url": f"{tls_server.url}/sandbox/{kind}",
            "auth_type": System.AuthType.CLIENT_CREDENTIALS,
            "auth_url": f"{tls_server.url}/sandbox/azuread/{TENANT}",
            "client_id": CLIENT_ID,
            "secret": CLIENT_SECRET,
            "settings": {"ca_bundle": tls_server.ca_bundle},
            "timeout_seconds": 15,
        }
        values.update(overrides)
        return make_system(**values)

    return make


@pytest.fixture
def dataverse_system(make_ms_system: Callable[..., System]) -> System:
    return make_ms_system("dataverse", name="Dataverse", slug="dataverse")


@pytest.fixture
def finops_system(make_ms_system: Callable[..., System]) -> System:
    finops.configure(default_company="se01")
    return make_ms_system("finops", name="F&O", slug="finops")


class _Inbox(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        self.server.received.append(  # type: ignore[attr-defined]
            {"headers": dict(self.headers), "body": json.loads(self.rfile.read(length) or b"null")}
        )
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@dataclass
class Inbox:
    url: str
    received: list[dict[str, Any]]


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """A plain HTTP endpoint that records what is POSTed to it (a business event subscriber)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Inbox)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Inbox(url=f"http://127.0.0.1:{server.server_address[1]}/events", received=server.received)  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


@dataclass
class MsClient:
    """Raw HTTP to the emulators with a sandbox token: for the emulator tests (no connector in between)."""

    server: TlsServer
    token: str = ""

    def fetch_token(self, resource: str) -> str:
        response = requests.post(
            f"{self.server.url}/sandbox/azuread/{TENANT}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "scope": f"{self.server.url}/sandbox/{resource}/.default",
            },
            verify=self.server.ca_bundle,
            timeout=10,
        )
        response.raise_for_status()
        self.token = response.json()["access_token"]
        return self.token

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.server.url}{path}", headers=headers, verify=self.server.ca_bundle, timeout=15, **kwargs
        )


@pytest.fixture
def dv(tls_server: TlsServer, ms_sandbox: None) -> MsClient:
    client = MsClient(tls_server)
    client.fetch_token("dataverse")
    return client


@pytest.fixture
def fo(tls_server: TlsServer, ms_sandbox: None) -> MsClient:
    finops.configure(default_company="usmf")
    client = MsClient(tls_server)
    client.fetch_token("finops")
    return client
