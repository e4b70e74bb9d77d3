"""How the AX connector signs in: the System's auth_type, one requests auth per connector session.

- basic: client_id = user, secret = password (an IIS site with basic authentication enabled).
- ntlm: Windows authentication, as AIF on IIS uses by default ("Configure the AIF IIS website"): client_id
  = DOMAIN\\user, secret = password, through requests-ntlm (pyspnego).
- client_credentials: an app-only Azure AD token (a resource that accepts app tokens).
- user_password: AX published through Azure AD Application Proxy, whose pre-authentication accepts user
  tokens only: a service account's delegated token through msal's username/password (ROPC) flow of a
  public client: client_id = the app registration, settings["ax_service_account"] = the account's UPN,
  secret = its password; the token goes as Bearer to the App Proxy URL (System.base_url).
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import msal
import requests
from requests_ntlm import HttpNtlmAuth

from integrations import errors
from integrations.protocols.microsoft import TokenProvider, token_provider

if TYPE_CHECKING:
    from integrations.models import System


class NtlmAuth(HttpNtlmAuth):
    """requests-ntlm, with channel binding (CBT) only where there is a TLS certificate to bind to.

    requests-ntlm reads the server certificate from the 401 response's socket; our DeadlineAdapter has
    already read that response whole, so the socket may be gone: then no CBT is sent (as over plain http).
    """

    def _get_server_cert(self, response: requests.Response) -> bytes | None:
        if not response.url.startswith("https://"):
            return None
        try:
            return super()._get_server_cert(response)
        except AttributeError:
            return None


class UserTokenProvider(TokenProvider):
    """A service account's delegated tokens (public client, username + password), cached by msal."""

    def __init__(self, *, username: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.username = username

    def _application(self, authority: str, options: dict[str, Any]) -> msal.ClientApplication:
        http = options["http_client"]
        if http.plain_netloc:
            options = {**options, "http_client": _WithPort(http)}
        return msal.PublicClientApplication(self.client_id, authority=authority, **options)

    def _acquire(self, app: Any, scope: str) -> dict[str, Any]:
        accounts = app.get_accounts(username=self.username)
        if accounts:  # the cached token, or a silent refresh with the refresh token
            result = app.acquire_token_silent([scope], account=accounts[0])
            if result:
                return result
        return app.acquire_token_by_username_password(self.username, self._secret, scopes=[scope])


class _WithPort:
    """msal asks https://<authority host>/common/userrealm/<user> (user realm discovery) without the
    authority's port; a sandbox authority on a loopback port answers it there (404: a managed account)."""

    def __init__(self, http: Any) -> None:
        self.http = http
        self.host = urlsplit(f"//{http.plain_netloc}").hostname

    def _fix(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.netloc == self.host:
            return urlunsplit((parts.scheme, self.http.plain_netloc, *parts[2:]))
        return url

    def get(self, url: str, *args: Any, **kwargs: Any) -> Any:
        return self.http.get(self._fix(url), *args, **kwargs)

    def post(self, url: str, *args: Any, **kwargs: Any) -> Any:
        return self.http.post(self._fix(url), *args, **kwargs)

    def close(self) -> None:
        self.http.close()


_user_providers: dict[tuple[str, str, str, str], UserTokenProvider] = {}
_user_lock = threading.Lock()


def user_token_provider(*, system: System, username: str) -> UserTokenProvider:
    """The process's provider for this account (the password is part of the key, hashed)."""
    verify = system.settings.get("ca_bundle") or True
    key = (system.auth_url.rstrip("/"), system.client_id, username, hashlib.sha256(system.secret.encode()).hexdigest())
    with _user_lock:
        if key not in _user_providers:
            _user_providers[key] = UserTokenProvider(
                username=username,
                authority=key[0],
                client_id=system.client_id,
                secret=system.secret,
                verify=verify,
                timeout=system.timeout_seconds,
            )
        return _user_providers[key]


def clear_user_providers() -> None:
    with _user_lock:
        for provider in _user_providers.values():
            provider.close()
        _user_providers.clear()


class BearerAuth(requests.auth.AuthBase):
    """An Azure AD token per request, from a shared provider: fetched when it expires, never per message."""

    def __init__(self, system: System) -> None:
        missing = [n for n, v in (("auth URL", system.auth_url), ("client id", system.client_id)) if not v]
        if missing or not system.secret:
            raise errors.AuthError(f"{system.name}: {', '.join(missing) or 'secret'} not configured")
        if system.auth_type == "user_password":
            username = system.settings.get("ax_service_account", "")
            if not username:
                raise errors.AuthError(f'{system.name}: settings "ax_service_account" (the UPN) not configured')
            self.provider: TokenProvider = user_token_provider(system=system, username=username)
            default_scope = "user_impersonation"
        else:
            self.provider = token_provider(
                authority=system.auth_url,
                client_id=system.client_id,
                secret=system.secret,
                verify=system.settings.get("ca_bundle") or True,
                timeout=system.timeout_seconds,
            )
            default_scope = ".default"
        resource = system.base_url.rstrip("/").rsplit("/MicrosoftDynamicsAXAif60", 1)[0]
        self.scope = system.scope or f"{resource}/{default_scope}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.provider.token(self.scope)}"
        return request


def session_auth(system: System) -> Any:
    """The requests auth of the System's auth_type (None: anonymous)."""
    if system.auth_type == "basic":
        return (system.client_id, system.secret or "")
    if system.auth_type == "ntlm":
        if "\\" not in system.client_id and "@" not in system.client_id:
            raise errors.AuthError(f"{system.name}: an NTLM user is DOMAIN\\user or user@domain")
        return NtlmAuth(system.client_id, system.secret or "")
    if system.auth_type in ("client_credentials", "user_password"):
        return BearerAuth(system)
    return None
