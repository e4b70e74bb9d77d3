"""Who is calling the AIF site: Windows authentication (NTLM), basic, or an Azure AD token (App Proxy).

AIF on IIS uses Windows authentication ("Configure the AIF IIS website", AX 2012): IIS answers an anonymous
request 401 with `WWW-Authenticate: NTLM` (and Negotiate), the client sends an NTLM NEGOTIATE (type 1),
IIS answers 401 with a CHALLENGE (type 2), the client repeats the request with an AUTHENTICATE (type 3)
whose NTLMv2 response proves it knows the password (MS-NLMP 3.3.2). The check is our own, with pyspnego's
NTLM primitives: pyspnego's acceptor reads its users from a file named by the NTLM_USER_FILE environment
variable of the process, and keeps the handshake in one in-memory context, which a multi-process server
cannot share between the type 1 and type 3 requests. So the challenge is stored (EmulatorRecord, single use,
two minutes), and a type 3 is accepted when its NTProofStr matches one pending challenge for a known user.
Simplified: the handshake is not bound to the TCP connection, and the MIC and session keys are not checked.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import struct
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from spnego._ntlm_raw.crypto import hmac_md5, ntowfv1, ntowfv2
from spnego._ntlm_raw.messages import (
    AvId,
    Challenge,
    FileTime,
    MessageType,
    NegotiateFlags,
    NTLMMessage,
    TargetInfo,
    Version,
)

from sandbox.ax2012 import ports
from sandbox.ax2012.aif import EMULATOR
from sandbox.models import EmulatorRecord

NTLM_CHALLENGE = "NtlmChallenge"
CHALLENGE_SECONDS = 120
DOMAIN = "CONTOSO"  # the NetBIOS domain the AOS host answers with
_PENDING_CHECKED = 50  # a type 3 is tried against at most this many recent challenges


def _users() -> dict[str, str]:
    return getattr(settings, "SANDBOX_AX2012_USERS", {"icbridge": "sandbox"})


class Answer:
    """The outcome of authentication: a user, or the 401 to send (a challenge or a refusal)."""

    def __init__(self, user: str | None = None, response: HttpResponse | None = None) -> None:
        self.user = user
        self.response = response


def unauthorized(why: str = "") -> HttpResponse:
    response = HttpResponse("401 - Unauthorized: Access is denied due to invalid credentials.", status=401)
    if ports.behind_app_proxy():
        # Application Proxy pre-authentication: only Azure AD answers here.
        response["WWW-Authenticate"] = "Bearer"
    else:
        # IIS with Windows authentication offers Negotiate and NTLM; basic is enabled too on this site.
        response["WWW-Authenticate"] = 'Negotiate, NTLM, Basic realm="MicrosoftDynamicsAXAif60", Bearer'
    if why:
        response["x-ms-diagnostics"] = why
    return response


def authenticate(request: HttpRequest) -> Answer:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if ports.behind_app_proxy():
        if scheme != "bearer" or not value:
            return Answer(response=unauthorized("Application Proxy pre-authentication needs an Azure AD token"))
        return _bearer(request, user_token_required=True)
    if scheme == "basic":
        user = _basic(value)
        return Answer(user=user) if user else Answer(response=unauthorized())
    if scheme in ("ntlm", "negotiate") and value:
        return _ntlm(value, "Negotiate" if scheme == "negotiate" else "NTLM")
    if scheme == "bearer" and value:
        return _bearer(request, user_token_required=False)
    return Answer(response=unauthorized())


def _basic(value: str) -> str | None:
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    expected = _users().get(user)
    if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
        return user
    return None


def _bearer(request: HttpRequest, *, user_token_required: bool) -> Answer:
    """An Azure AD access token for this resource (audience <host>/sandbox/ax2012).

    Behind App Proxy only a delegated user token (scp + upn) passes: App Proxy pre-authentication signs in
    users, and an app-only client-credentials token (roles, no scp) is refused with 401.
    """
    from sandbox import azuread

    claims, why = azuread.verify_bearer(request, EMULATOR)
    if not claims or claims.get("denied"):
        return Answer(response=unauthorized(why or "the application has no access"))
    if user_token_required:
        if not claims.get("scp") or not claims.get("upn"):
            return Answer(response=unauthorized("an app-only token is not accepted: sign in a user"))
        return Answer(user=str(claims["upn"]))
    return Answer(user=str(claims.get("upn") or claims.get("appid") or claims.get("sub") or "application"))


def _ntlm(value: str, scheme: str) -> Answer:
    try:
        raw = base64.b64decode(value, validate=True)
        if not raw.startswith(b"NTLMSSP\0"):
            raise ValueError("not an NTLMSSP message")
        message = NTLMMessage.unpack(raw)
    except (binascii.Error, ValueError, KeyError, IndexError, OSError, struct.error):
        return Answer(response=unauthorized("the NTLM message is not valid"))
    if message.MESSAGE_TYPE == MessageType.negotiate:
        return Answer(response=_challenge(message.flags, scheme))
    if message.MESSAGE_TYPE == MessageType.authenticate:
        user = _verify(message)
        return Answer(user=user) if user else Answer(response=unauthorized("NTLM logon failed"))
    return Answer(response=unauthorized("unexpected NTLM message"))


def _challenge(client_flags: int, scheme: str) -> HttpResponse:
    """NTLM CHALLENGE (type 2): a fresh server challenge, kept for the AUTHENTICATE that answers it."""
    server_challenge = os.urandom(8)
    wanted = (
        NegotiateFlags.unicode
        | NegotiateFlags.request_target
        | NegotiateFlags.ntlm
        | NegotiateFlags.always_sign
        | NegotiateFlags.target_type_domain
        | NegotiateFlags.extended_session_security
        | NegotiateFlags.target_info
        | NegotiateFlags.version
        | NegotiateFlags.key_128
        | NegotiateFlags.key_56
    )
    flags = wanted | (client_flags & (NegotiateFlags.sign | NegotiateFlags.seal | NegotiateFlags.key_exch))
    info = TargetInfo()
    info[AvId.nb_domain_name] = DOMAIN
    info[AvId.nb_computer_name] = "AOS01"
    info[AvId.dns_domain_name] = "contoso.local"
    info[AvId.dns_computer_name] = "aos01.contoso.local"
    info[AvId.timestamp] = FileTime.now()
    challenge = Challenge(
        flags=flags,
        server_challenge=server_challenge,
        target_name=DOMAIN,
        target_info=info,
        version=Version(10, 0, 17763),
    )
    EmulatorRecord.objects.create(
        emulator=EMULATOR,
        entity=NTLM_CHALLENGE,
        company="",
        key=server_challenge.hex(),
        data={"issued": time.time()},
    )
    response = HttpResponse("401 - Unauthorized: Access is denied due to invalid credentials.", status=401)
    response["WWW-Authenticate"] = f"{scheme} {base64.b64encode(challenge.pack()).decode()}"
    return response


def _verify(message) -> str | None:
    """DOMAIN\\user when the NTLMv2 response answers a pending challenge with the user's password."""
    user, domain = message.user_name or "", message.domain_name or ""
    password = _users().get(user) or _users().get(user.lower())
    response = message.nt_challenge_response or b""
    if password is None or len(response) <= 24:  # 24 bytes: NTLMv1, which IIS refuses by default
        return None
    proof, blob = response[:16], response[16:]
    key = ntowfv2(user, ntowfv1(password), domain)
    cutoff = time.time() - CHALLENGE_SECONDS
    pending = EmulatorRecord.objects.filter(emulator=EMULATOR, entity=NTLM_CHALLENGE).order_by("-pk")
    for record in pending[:_PENDING_CHECKED]:
        if record.data.get("issued", 0) < cutoff:
            continue
        if hmac.compare_digest(hmac_md5(key, bytes.fromhex(record.key) + blob), proof):
            # Single use: the same AUTHENTICATE replayed later finds no challenge.
            if EmulatorRecord.objects.filter(pk=record.pk).delete()[0] != 1:
                return None
            return f"{domain}\\{user}" if domain else user
    stale = datetime.now(tz=UTC) - timedelta(seconds=CHALLENGE_SECONDS)
    EmulatorRecord.objects.filter(emulator=EMULATOR, entity=NTLM_CHALLENGE, created_at__lt=stale).delete()
    return None
