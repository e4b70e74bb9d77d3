"""Azure AD (Microsoft Entra ID) emulator: just enough of login.microsoftonline.com for msal client credentials.

GET  common/discovery/instance                         instance discovery (msal asks it for unknown hosts)
GET  <tenant>/v2.0/.well-known/openid-configuration    tenant OpenID configuration
GET  <tenant>/discovery/v2.0/keys                      JWKS (empty: sandbox tokens are HMAC-signed)
POST <tenant>/oauth2/v2.0/token                        grant_type=client_credentials, scope=<resource>/.default
                                                       grant_type=password (a user's delegated token: scp, upn)

App registrations are EmulatorRecord rows (entity "app", key = "<tenant>/<client id>") holding a
SHA-256 of the secret, never the secret itself; register_app() seeds one. Tokens are JWTs (HS256, key
derived from SECRET_KEY) with aud = the resource, checked by the Dataverse and F&O emulators through
verify_bearer(). Errors follow the real AADSTS shape: error, error_description with Trace/Correlation
ID and timestamp, error_codes, timestamp, trace_id, correlation_id, error_uri.
"""

from __future__ import annotations

from sandbox.azuread.registrations import DEFAULT_TENANT, EMULATOR, register_app, register_user, reset, tokens_issued
from sandbox.azuread.tokens import verify_bearer
from sandbox.registry import Emulator

DESCRIPTOR = Emulator(name=EMULATOR, urls="sandbox.azuread.urls", reset=reset)

__all__ = ["DEFAULT_TENANT", "DESCRIPTOR", "register_app", "register_user", "tokens_issued", "verify_bearer"]
