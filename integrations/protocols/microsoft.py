"""Azure AD client-credentials tokens for the Microsoft connectors, through msal.

One msal ConfidentialClientApplication (and so one token cache) per app registration per process: every
connector of the same authority, client id and secret shares it, and acquire_token_for_client() answers
from that cache until the token is about to expire. A token is never fetched per message.

msal only accepts https authorities (msal.authority.canonicalize). Real tenants are https; the sandbox
emulator is served over https in tests (a self-signed CA passed as System.settings["ca_bundle"]) and, in
the embedded demo, over plain http on a loopback address. For that last case only, msal is handed its
documented `http_client` extension: a session that carries msal's https URLs to the loopback host over
http and says so with X-Forwarded-Proto. msal itself is not changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import msal
import requests

from integrations import errors
from integrations.protocols import deadline
from integrations.protocols.odata.batch import BatchRequest, BatchResponse, ChangeSet, decode_responses, encode_requests
from integrations.protocols.transport import ConnectionReport, DeliveryResult, HttpConnector

if TYPE_CHECKING:
    from integrations.models import System

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MICROSOFT_HOSTS = {"login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net"}


class MsalHttpClient:
    """The http_client msal is given (its documented extension point).

    1. verify goes with every request: requests lets REQUESTS_CA_BUNDLE override a session's verify,
       so a private CA set on the session alone would be ignored.
    2. For a plain-http sandbox authority on a loopback address (see the module docstring), msal's https
       URLs to that host are carried over http, saying so with X-Forwarded-Proto.
    """

    def __init__(self, *, verify: str | bool, timeout: float, plain_netloc: str = "") -> None:
        self.verify = verify
        self.timeout = timeout
        self.plain_netloc = plain_netloc
        self.session = requests.Session()
        deadline.mount(self.session)  # a token fetched during a delivery counts against its deadline

    def _prepare(self, url: str, headers: dict[str, str] | None, kwargs: dict[str, Any]) -> tuple[str, dict[str, str]]:
        parts = urlsplit(url)
        headers = dict(headers or {})
        if self.plain_netloc and parts.scheme == "https" and parts.netloc == self.plain_netloc:
            url = urlunsplit(("http", *parts[1:]))
            headers["X-Forwarded-Proto"] = "https"
        kwargs.setdefault("timeout", self.timeout)
        kwargs["verify"] = self.verify
        return url, headers

    def get(self, url: str, params: Any = None, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        url, headers = self._prepare(url, headers, kwargs)
        return self.session.get(url, params=params, headers=headers, **kwargs)

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        url, headers = self._prepare(url, headers, kwargs)
        return self.session.post(url, params=params, data=data, headers=headers, **kwargs)

    def close(self) -> None:
        self.session.close()


@dataclass(frozen=True)
class AppKey:
    authority: str
    client_id: str
    secret_hash: str
    verify: str | bool


class TokenProvider:
    """Tokens of one app registration; thread-safe, shared by every connector that uses the same app."""

    def __init__(self, *, authority: str, client_id: str, secret: str, verify: str | bool, timeout: float) -> None:
        self.authority = authority
        self.client_id = client_id
        self._secret = secret
        self.verify = verify
        self.timeout = timeout
        self._app: msal.ConfidentialClientApplication | None = None
        self._http: MsalHttpClient | None = None
        self._lock = threading.Lock()
        self.tokens_fetched = 0  # tokens msal had to ask Azure AD for (not answered from its cache)

    def _build(self) -> msal.ConfidentialClientApplication:
        parts = urlsplit(self.authority)
        authority = self.authority
        plain_netloc = ""
        if parts.scheme == "http":
            if parts.hostname not in LOOPBACK_HOSTS:
                raise errors.AuthError(
                    f"the authority {self.authority} must use https (only a loopback sandbox may not)"
                )
            authority = urlunsplit(("https", *parts[1:]))
            plain_netloc = parts.netloc
        elif parts.scheme != "https":
            raise errors.AuthError(f"the authority '{self.authority}' is not an https URL")
        self._http = MsalHttpClient(verify=self.verify, timeout=self.timeout, plain_netloc=plain_netloc)
        options: dict[str, Any] = {"http_client": self._http}
        if parts.hostname not in MICROSOFT_HOSTS:
            # Instance discovery asks login.microsoftonline.com about the host; a private or sandbox
            # authority is known to us, so msal is told to trust it as configured.
            options["instance_discovery"] = False
        try:
            return self._application(authority, options)
        except ValueError as exc:  # OIDC discovery refused: unknown tenant or not an authority at all
            raise errors.AuthError(f"Azure AD authority {self.authority} was refused: {exc}") from exc
        except requests.RequestException as exc:
            raise errors.TransientError(
                f"Azure AD authority {self.authority} cannot be reached ({type(exc).__name__})"
            ) from exc

    def _application(self, authority: str, options: dict[str, Any]) -> msal.ClientApplication:
        """The msal application (a subclass may sign in a user with a public client instead)."""
        return msal.ConfidentialClientApplication(
            self.client_id, client_credential=self._secret, authority=authority, **options
        )

    def _acquire(self, app: Any, scope: str) -> dict[str, Any]:
        return app.acquire_token_for_client(scopes=[scope])

    def token(self, scope: str) -> str:
        """An access token for the scope, from msal's cache unless it expires soon."""
        with self._lock:
            if self._app is None:
                self._app = self._build()
            app = self._app
        try:
            result = self._acquire(app, scope)
        except requests.RequestException as exc:
            raise errors.TransientError(f"Azure AD token endpoint cannot be reached ({type(exc).__name__})") from exc
        if "access_token" in result:
            if result.get("token_source") == "identity_provider":
                with self._lock:
                    self.tokens_fetched += 1
            return result["access_token"]
        return self._raise(result)

    def _raise(self, result: dict[str, Any]) -> str:
        # Token endpoint errors: https://learn.microsoft.com/entra/identity-platform/reference-error-codes
        code = result.get("error", "")
        description = str(result.get("error_description", "")).split("\r\n", 1)[0]
        text = f"Azure AD refused a token for client {self.client_id}: {code}: {description}"
        if code in ("temporarily_unavailable", "server_error") or result.get("error_codes") in ([50196], [90033]):
            raise errors.TransientError(text, response_excerpt=description)
        raise errors.AuthError(text, response_excerpt=description)

    def invalidate(self) -> None:
        """Forget cached access tokens (the resource refused one), so the next call fetches a fresh token."""
        with self._lock:
            if self._app is None:
                return
            cache = self._app.token_cache
            for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(item)

    def close(self) -> None:
        """Close msal's pooled connections."""
        if self._http is not None:
            self._http.close()


_providers: dict[AppKey, TokenProvider] = {}
_providers_lock = threading.Lock()


def token_provider(*, authority: str, client_id: str, secret: str, verify: str | bool, timeout: float) -> TokenProvider:
    """The process's TokenProvider for this app registration (the secret is part of the key, hashed)."""
    key = AppKey(authority.rstrip("/"), client_id, hashlib.sha256(secret.encode()).hexdigest(), verify)
    with _providers_lock:
        provider = _providers.get(key)
        if provider is None:
            provider = TokenProvider(
                authority=key.authority, client_id=client_id, secret=secret, verify=verify, timeout=timeout
            )
            _providers[key] = provider
        return provider


def clear_providers() -> None:
    """Forget every app and its cache (tests; a secret rotation is picked up by the key already)."""
    with _providers_lock:
        for provider in _providers.values():
            provider.close()
        _providers.clear()


class MicrosoftConnector(HttpConnector):
    """HttpConnector with an Azure AD bearer token and one refresh on 401.

    Retry-After is honoured by the governor in HttpConnector.send, for every worker of the target.
    """

    # Both Microsoft OData services take $batch (send_batch below); a subclass's deliver_many uses it.
    batch_capable = True
    # The vendor's error classification: (system name, status, headers, body, summary) → error or None.
    classify: ClassVar[Callable[[str, int, dict[str, str], str, str], errors.ConnectorError | None]]
    # Rows per page asked with Prefer: odata.maxpagesize, unless System.settings["page_size"] says otherwise.
    default_page_size: ClassVar[int]

    def __init__(self, system: System) -> None:
        super().__init__(system)
        self.verify: str | bool = system.settings.get("ca_bundle") or True
        self.session.verify = self.verify
        self.scope = system.scope or f"{self.base_url}/.default"
        self.page_size = int(system.settings.get("page_size") or self.default_page_size)

    def raise_for_response(self, response: requests.Response, summary: str) -> None:
        failure = self.classify(self.system.name, response.status_code, dict(response.headers), response.text, summary)
        if failure is not None:
            raise failure

    # --- auth -------------------------------------------------------------------------------------

    def _provider(self) -> TokenProvider:
        missing = [
            label
            for label, value in (
                ("auth URL (Azure AD authority)", self.system.auth_url),
                ("client id", self.system.client_id),
                ("client secret", self.system.secret),
            )
            if not value
        ]
        if missing:
            raise errors.AuthError(f"{self.system.name}: {', '.join(missing)} not configured")
        return token_provider(
            authority=self.system.auth_url,
            client_id=self.system.client_id,
            secret=self.system.secret or "",
            verify=self.verify,
            timeout=self.timeout,
        )

    def access_token(self) -> str:
        return self._provider().token(self.scope)

    # --- requests ---------------------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send with a bearer token; refresh the token once on 401 (Retry-After: HttpConnector.send)."""
        if not url.startswith(self.base_url):
            # Links (nextLink, deltaLink) come from the server; never send our token anywhere else.
            raise errors.RejectedError(f"{self.system.name}: refusing to follow a link outside {self.base_url}: {url}")
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in (1, 2):
            headers["Authorization"] = f"Bearer {self.access_token()}"
            try:
                # verify per request: requests lets REQUESTS_CA_BUNDLE override the session's own.
                return super().request(method, url, headers=headers, verify=self.verify, **kwargs)
            except errors.AuthError as exc:
                if exc.status_code != 401 or attempt == 2:
                    raise
                # The resource refused the token (expired early, revoked, rotated): fetch a new one once.
                self._provider().invalidate()
        raise AssertionError("unreachable")  # pragma: no cover

    # --- connection check -------------------------------------------------------------------------

    def pages(self, url: str, *, params: dict[str, str], headers: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Rows of a collection, page by page: @odata.nextLink carries the query, so params go on the first only."""
        next_url: str | None = url
        first = True
        while next_url:
            response = self.request("GET", next_url, params=params if first else None, headers=headers)
            first = False
            body = response.json()
            yield from body.get("value", [])
            next_url = body.get("@odata.nextLink")

    def send_batch(self, url: str, changesets: list[list[BatchPart]], headers: dict[str, str]) -> list[BatchResponse]:
        """POST one $batch of change sets; every part's answer in order (a failed change set answers once).

        Classified errors propagate; an answer that cannot be read is a TransientError.
        """
        body, content_type = encode_requests([ChangeSet([part.request() for part in parts]) for parts in changesets])
        response = self.request("POST", url, data=body, headers={**headers, "Content-Type": content_type})
        try:
            return decode_responses(response.content, response.headers.get("Content-Type", ""))
        except ValueError as exc:
            raise errors.TransientError(f"{self.system.name}: unreadable $batch answer: {exc}") from exc

    @staticmethod
    def written(
        target: str, status: int, headers: dict[str, str], body: dict[str, Any], summary: str
    ) -> DeliveryResult:
        """The result of a write the service answered: its ETag from the header, else the body's @odata.etag."""
        etag = next((v for k, v in headers.items() if k.lower() == "etag"), "") or str(body.get("@odata.etag", ""))
        return DeliveryResult(
            target_key=target,
            etag=etag,
            created=status == 201,
            status_code=status,
            request_summary=summary,
            response_excerpt=json.dumps(body)[:500] if body else "",
            body=body or None,
        )

    def check_token(self, report: ConnectionReport) -> bool:
        try:
            self.access_token()
        except errors.ConnectorError as exc:
            return report.add("token", False, exc.message)
        return report.add(
            "token", True, f"Azure AD ({self.system.auth_url}) issued a token to client {self.system.client_id}"
        )


# --- OData v4 $batch, shared by the Dataverse and F&O connectors ---------------------------------------
# Format: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/execute-batch-operations-using-web-api


@dataclass
class BatchPart:
    method: str
    url: str  # absolute
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def request(self) -> BatchRequest:
        """The part as the $batch codec writes it: a JSON entry (Content-IDs are numbered from 1)."""
        return BatchRequest(
            self.method,
            self.url,
            {"Content-Type": "application/json; type=entry", **self.headers},
            json.dumps(self.body).encode() if self.body is not None else b"",
        )
