"""Who may post events: the InboundEndpoint of a flow (or of its source system) says how a sender proves itself.

Modes are the ones senders can use: a shared secret header (Dataverse HttpHeader), a query key
(Dataverse WebhookKey, ?code=), an HMAC-SHA256 signature over timestamp + body, basic auth, or
an OAuth2 bearer JWT (RS256 from a JWKS URL, e.g. the Azure AD emulator, or HS256 with the
shared secret). Every secret is compared in constant time; none is ever logged.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from integrations.api.counters import CACHE_DOWN, window, window_count
from integrations.egress import egress_refusal
from integrations.models import Flow, InboundEndpoint, System

logger = logging.getLogger(__name__)

AuthType = InboundEndpoint.AuthType
DEFAULT_NAMES = {
    AuthType.HEADER: "x-icbridge-key",
    AuthType.QUERY_KEY: "code",
    AuthType.HMAC: "x-icbridge-signature",
}
HMAC_TIMESTAMP_HEADER = "x-icbridge-timestamp"
JWT_ALGORITHMS_JWKS = ["RS256", "RS384", "RS512", "ES256", "PS256"]


class InputError(exceptions.APIException):
    """A request we refuse, with the one error shape: what is wrong, and the field where."""

    def __init__(self, text: str, *, field: str | None = None, status_code: int = status.HTTP_400_BAD_REQUEST) -> None:
        super().__init__(detail=text)
        self.status_code = status_code
        self.field = field


class InboundAuthFailed(exceptions.AuthenticationFailed):
    def __init__(self, text: str, *, challenge: str) -> None:
        super().__init__(detail=text)
        self.challenge = challenge


@dataclass
class InboundTarget:
    """Where a request is going (a flow, or a system that routes to flows) and what it carries."""

    flow: Flow | None
    system: System | None
    endpoint: InboundEndpoint | None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"flow '{self.flow.slug}'" if self.flow else f"system '{self.system.slug}'"

    @property
    def throttle_key(self) -> str:
        return f"flow:{self.flow.pk}" if self.flow else f"system:{self.system.pk}"

    @property
    def enabled(self) -> bool:
        return self.flow.enabled if self.flow else self.system.enabled


@dataclass(frozen=True)
class InboundSender:
    """request.user of a webhook call: not a Django user, only the mode that admitted it."""

    auth_type: str
    is_authenticated: bool = True
    is_anonymous: bool = False


def _endpoint_of(owner: Flow | System | None) -> InboundEndpoint | None:
    try:
        return owner.inbound if owner is not None else None
    except InboundEndpoint.DoesNotExist:
        return None


# Resolved flows and systems with their inbound settings, per process: the select_related lookup (and
# the secret's decryption) costs more than the rest of a webhook call. Each entry keeps the updated_at
# stamps of the rows it was built from and is used only while one small query finds them unchanged, so
# a save in any process is seen by the next request everywhere; ICBRIDGE_INGRESS_CONFIG_TTL bounds its
# age besides (a bulk update() moves no stamp). Saves in this process clear it at once (signals).
_resolved: dict[tuple[str, str], tuple[float, tuple[Any, ...], Flow | System, InboundEndpoint | None]] = {}
_RESOLVED_MAX = 2000


def _forget_resolved(**kwargs: Any) -> None:
    _resolved.clear()


for _model in (Flow, System, InboundEndpoint):
    post_save.connect(_forget_resolved, sender=_model, dispatch_uid=f"inbound-forget-save-{_model.__name__}")
    post_delete.connect(_forget_resolved, sender=_model, dispatch_uid=f"inbound-forget-delete-{_model.__name__}")


def target_resolve(kwargs: dict[str, Any]) -> InboundTarget:
    """The flow (or system) named in the URL, with its inbound settings; 404 if none."""
    by_flow = "flow_slug" in kwargs
    slug = str(kwargs.get("flow_slug" if by_flow else "system_slug", ""))
    cache_key = ("flow" if by_flow else "system", slug)
    now = time.monotonic()
    cached = _resolved.get(cache_key)
    stamp = _stamp(by_flow, slug)
    if cached and cached[0] > now and cached[1] == stamp and stamp is not None:
        owner, endpoint = cached[2], cached[3]
    else:
        if by_flow:
            owner = (
                Flow.objects.select_related("source__inbound", "inbound", "source", "target").filter(slug=slug).first()
            )
            endpoint = (_endpoint_of(owner) or _endpoint_of(owner.source)) if owner else None
        else:
            owner = System.objects.select_related("inbound").filter(slug=slug).first()
            endpoint = _endpoint_of(owner)
        if owner is None:
            kind = "flow" if by_flow else "system"
            raise InputError(f"no {kind} '{slug}'", field=f"{kind}_slug", status_code=404)
        if len(_resolved) >= _RESOLVED_MAX:
            _resolved.clear()
        _resolved[cache_key] = (now + settings.ICBRIDGE_INGRESS_CONFIG_TTL, stamp, owner, endpoint)
    if by_flow:
        return InboundTarget(flow=owner, system=None, endpoint=endpoint)
    return InboundTarget(flow=None, system=owner, endpoint=endpoint)


def _stamp(by_flow: bool, slug: str) -> tuple[Any, ...] | None:
    """When the rows a resolution reads last changed (read before them, so a change in between is seen).

    Read with the query's SQL compiled once per process: building the four-table query cost more CPU
    than running it, on every webhook call. The values are only compared with each other.
    """
    sql = _STAMP_SQL.get(by_flow) or _STAMP_SQL.setdefault(by_flow, _stamp_sql(by_flow))
    with connection.cursor() as cursor:
        cursor.execute(sql, [slug])
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


_STAMP_SQL: dict[bool, str] = {}


def _stamp_sql(by_flow: bool) -> str:
    if by_flow:
        fields = ("updated_at", "source__updated_at", "inbound__updated_at", "source__inbound__updated_at")
        query = Flow.objects.filter(slug="").values_list(*fields)[:1]
    else:
        query = System.objects.filter(slug="").values_list("updated_at", "inbound__updated_at")[:1]
    sql, params = query.query.sql_with_params()
    if params != ("",):  # _stamp passes the slug as the query's one parameter
        raise RuntimeError(f"unexpected parameters of the stamp query: {params!r}")
    return sql


def _read_body(request: HttpRequest, limit: int) -> bytes:
    """The body, refusing it before reading when the declared length is over the limit.

    A chunked body declares no length, and Django reads it as empty (it reads CONTENT_LENGTH
    bytes): read it from the server's stream instead, stopping one byte past the limit.
    """
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise InputError(f"the body is {int(declared)} bytes; the limit is {limit}", status_code=413)
    if not declared and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return _read_chunked(request.META["wsgi.input"], limit)
    try:
        body = request.body
    except RequestDataTooBig:
        raise InputError(f"the body is over the limit of {limit} bytes", status_code=413) from None
    if len(body) > limit:
        raise InputError(f"the body is {len(body)} bytes; the limit is {limit}", status_code=413)
    return body


def _read_chunked(stream: Any, limit: int) -> bytes:
    """A chunked body as gunicorn's wsgi.input decodes it; 413 as soon as it passes the limit."""
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        part = stream.read(min(65_536, limit + 1 - size))
        if not part:
            return b"".join(parts)
        parts.append(part)
        size += len(part)
    raise InputError(f"the body is over the limit of {limit} bytes", status_code=413)


def _same(given: str | bytes, expected: str | bytes) -> bool:
    given_bytes = given.encode() if isinstance(given, str) else given
    expected_bytes = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(given_bytes, expected_bytes)


def challenge_for(endpoint: InboundEndpoint | None) -> str:
    """The WWW-Authenticate value that tells a sender what to send."""
    if endpoint is None:
        return 'ApiKey realm="icbridge"'
    mode = endpoint.auth_type
    name = endpoint.credential_name or DEFAULT_NAMES.get(mode, "")
    if mode == AuthType.BASIC:
        return 'Basic realm="icbridge", charset="UTF-8"'
    if mode == AuthType.BEARER:
        return 'Bearer realm="icbridge"'
    if mode == AuthType.HMAC:
        return f'HMAC-SHA256 realm="icbridge", headers="{HMAC_TIMESTAMP_HEADER} {name}"'
    if mode == AuthType.QUERY_KEY:
        return f'ApiKey realm="icbridge", in="query", name="{name}"'
    return f'ApiKey realm="icbridge", in="header", name="{name}"'


@functools.lru_cache(maxsize=32)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    if refusal := egress_refusal(url):  # set before the allow-list was; not cached, so refused every time
        raise jwt.PyJWKClientError(refusal)
    # One client per JWKS URL per process: it caches the keys, so a token is not a fetch per request.
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=5)


def bearer_verify(*, token: str, endpoint: InboundEndpoint) -> dict[str, Any]:
    """Check a bearer JWT's signature, expiry, issuer and audience; return its claims."""
    options = {"require": ["exp"], "verify_aud": bool(endpoint.jwt_audience)}
    kwargs: dict[str, Any] = {"options": options, "leeway": 30}
    if endpoint.jwt_audience:
        kwargs["audience"] = endpoint.jwt_audience
    if endpoint.jwt_issuer:
        kwargs["issuer"] = endpoint.jwt_issuer
    if endpoint.jwks_url:
        signing_key = _jwks_client(endpoint.jwks_url).get_signing_key_from_jwt(token).key
        return jwt.decode(token, signing_key, algorithms=JWT_ALGORITHMS_JWKS, **kwargs)
    if not endpoint.secret:
        raise jwt.InvalidTokenError("no key configured")
    return jwt.decode(token, hs256_key(endpoint.secret), algorithms=["HS256"], **kwargs)


def hs256_key(secret: str) -> bytes:
    """The HS256 key: the secret's text, or raw bytes given as "base64:<...>" (e.g. the sandbox Azure AD key)."""
    if secret.startswith("base64:"):
        try:
            return base64.b64decode(secret.removeprefix("base64:"), validate=True)
        except binascii.Error:
            raise jwt.InvalidTokenError("the configured base64 key is not base64") from None
    return secret.encode()


def credentials_check(*, endpoint: InboundEndpoint | None, request: HttpRequest, body: bytes, label: str) -> None:
    """Raise InboundAuthFailed unless the request carries the endpoint's credentials."""
    challenge = challenge_for(endpoint)

    def fail(text: str) -> InboundAuthFailed:
        return InboundAuthFailed(text, challenge=challenge)

    if endpoint is None:
        raise fail(f"{label} has no inbound credentials configured; it accepts no events")
    mode = endpoint.auth_type
    if mode == AuthType.NONE:
        return
    secret = endpoint.secret or ""
    if not secret and mode != AuthType.BEARER:
        raise fail(f"{label} has no inbound secret configured; it accepts no events")
    name = endpoint.credential_name or DEFAULT_NAMES.get(mode, "")
    if mode in (AuthType.HEADER, AuthType.QUERY_KEY):
        if mode == AuthType.HEADER:
            where, given = f"header '{name}'", request.headers.get(name)
        else:
            where, given = f"query parameter '{name}'", request.GET.get(name)
        if not given:
            raise fail(f"{where} is missing")
        if not _same(given, secret):
            raise fail(f"{where} does not hold the right key")
    elif mode == AuthType.BASIC:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise fail("basic credentials are missing")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise fail("basic credentials are not base64 of user:password") from None
        # Both compared, always, so the time taken says nothing about which one was wrong.
        user_ok = _same(user, endpoint.username)
        password_ok = _same(password, secret)
        if not (user_ok and password_ok):
            raise fail("basic credentials are wrong")
    elif mode == AuthType.HMAC:
        _hmac_check(endpoint=endpoint, request=request, body=body, name=name, secret=secret, fail=fail)
    elif mode == AuthType.BEARER:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise fail("bearer token is missing")
        try:
            bearer_verify(token=token.strip(), endpoint=endpoint)
        except jwt.PyJWKClientError as exc:
            logger.warning("cannot read the JWKS for %s: %s", label, type(exc).__name__)
            raise fail("bearer token cannot be checked: the issuer's keys are unavailable") from None
        except jwt.InvalidTokenError as exc:
            raise fail(f"bearer token is not valid: {exc}") from None
    else:
        raise fail(f"{label} has an unknown inbound auth type {mode!r}")


def _hmac_check(
    *, endpoint: InboundEndpoint, request: HttpRequest, body: bytes, name: str, secret: str, fail: Any
) -> None:
    """HMAC-SHA256 of "<timestamp>." + body with the secret; hex, optionally "sha256="-prefixed."""
    stamp = request.headers.get(HMAC_TIMESTAMP_HEADER, "").strip()
    signature = request.headers.get(name, "").strip()
    if not stamp:
        raise fail(f"header '{HMAC_TIMESTAMP_HEADER}' is missing")
    if not signature:
        raise fail(f"header '{name}' is missing")
    # isdigit() alone takes "²" and other Unicode digits that int() refuses or reads otherwise.
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        raise fail(f"header '{HMAC_TIMESTAMP_HEADER}' must be Unix seconds")
    # A captured request replayed later is refused: the timestamp is signed, and must be recent.
    skew = abs(time.time() - int(stamp))
    if skew > endpoint.timestamp_tolerance_seconds:
        raise fail(
            f"header '{HMAC_TIMESTAMP_HEADER}' is {int(skew)} s away from now; "
            f"the tolerance is {endpoint.timestamp_tolerance_seconds} s"
        )
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    given = signature.removeprefix("sha256=").lower()
    if not _same(given, expected):
        raise fail(f"header '{name}' does not match the body")


def hmac_sign(*, secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers a sender adds for HMAC mode (used by tests, the bench and the docs' example)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {HMAC_TIMESTAMP_HEADER: stamp, DEFAULT_NAMES[AuthType.HMAC]: f"sha256={digest}"}


class InboundAuthentication(BaseAuthentication):
    """Resolve the flow or system from the URL, bound the body, then check the sender's credentials.

    request.auth becomes the InboundTarget (with the body read once); request.user an InboundSender.
    """

    def authenticate(self, request: Request) -> tuple[InboundSender, InboundTarget]:
        django_request = request._request
        target = target_resolve(request.parser_context.get("kwargs", {}))
        request.inbound_challenge = challenge_for(target.endpoint)
        target.headers = {name.lower(): value for name, value in django_request.headers.items()}
        if request.method == "OPTIONS":
            # The CloudEvents webhook handshake is not an authorisation step (http-webhook.md §4).
            return InboundSender(auth_type="handshake"), target
        limit = (target.endpoint.max_body_bytes if target.endpoint else None) or (
            settings.ICBRIDGE_INGRESS_MAX_BODY_BYTES
        )
        target.body = _read_body(django_request, limit)
        auth_failures_guard(django_request)
        try:
            credentials_check(endpoint=target.endpoint, request=django_request, body=target.body, label=target.label)
        except InboundAuthFailed:
            auth_failure_count(django_request)  # raises Throttled once the address is over its limit
            raise
        return InboundSender(auth_type=target.endpoint.auth_type), target

    def authenticate_header(self, request: Request) -> str:
        return getattr(request, "inbound_challenge", challenge_for(None))


class InboundTargetEnabled(BasePermission):
    """A disabled flow or system takes no events; the sender hears so rather than a silent drop."""

    def has_permission(self, request: Request, view: Any) -> bool:
        target = request.auth
        if not isinstance(target, InboundTarget):
            return False
        if request.method != "OPTIONS" and not target.enabled:
            field_name = "flow_slug" if target.flow else "system_slug"
            raise InputError(f"{target.label} is disabled; it takes no events now", field=field_name, status_code=409)
        return True


def parse_rate(rate: str) -> tuple[int, int] | None:
    """ "100/s", "5000/min" → (100, 1), (5000, 60); None for anything else."""
    try:
        count, period = rate.split("/", 1)
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[:1].lower()]
        number = int(count)
    except (ValueError, KeyError, IndexError):
        return None
    return (number, seconds) if number > 0 else None


class IngressThrottle(BaseThrottle):
    """Per endpoint (flow or system), at the endpoint's rate or the global one.

    A fixed window counted in the shared cache, so every gunicorn worker (and host) counts the same
    requests; DRF's history list is read-modify-write and lets concurrent workers overshoot.
    """

    def get_rate(self) -> str:
        return settings.ICBRIDGE_INGRESS_THROTTLE_RATE

    def allow_request(self, request: Request, view: Any) -> bool:
        target = request.auth
        if not isinstance(target, InboundTarget):
            return True
        own = target.endpoint.throttle_rate if target.endpoint else ""
        parsed = parse_rate(own) if own else None
        if own and parsed is None:
            logger.warning("%s has an unreadable throttle rate; using the global rate", target.label)
        limit, period = parsed or parse_rate(settings.ICBRIDGE_INGRESS_THROTTLE_RATE) or (200, 1)
        key, self._wait = window(f"throttle_ingress:{target.throttle_key}", period)
        return window_count(key, period) <= limit

    def wait(self) -> float | None:
        return self._wait


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or X-Forwarded-For only through ICBRIDGE_NUM_PROXIES trusted proxies.

    DRF's get_ident, so the webhook guard, the API throttles and django-axes (AXES_CLIENT_IP_CALLABLE)
    all see the same address.
    """
    return BaseThrottle().get_ident(request)


def _auth_failure_window(request: HttpRequest) -> tuple[str, int, int, float]:
    limit, period = parse_rate(settings.ICBRIDGE_AUTH_FAILURE_RATE) or (20, 60)
    key, left = window(f"auth_failures:{client_address(request)}", period)
    return key, limit, period, left


def auth_failures_guard(request: HttpRequest) -> None:
    """429 for an address that failed authentication too often in this window: no more key guessing."""
    key, limit, _, left = _auth_failure_window(request)
    try:
        failures = cache.get(key) or 0
    except CACHE_DOWN:
        return
    if failures >= limit:
        raise exceptions.Throttled(wait=left)


def auth_failure_count(request: HttpRequest) -> None:
    """Count a failure; past the limit it is answered 429 too, so concurrent guesses cannot overshoot it."""
    key, limit, period, left = _auth_failure_window(request)
    if window_count(key, period) > limit:
        raise exceptions.Throttled(wait=left)


class InboundAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "integrations.api.auth.InboundAuthentication"
    name = "inboundKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": DEFAULT_NAMES[AuthType.HEADER],
            "description": (
                "Per flow or system (InboundEndpoint): a shared secret header, a query key (?code=), an "
                "HMAC-SHA256 signature (x-icbridge-timestamp + x-icbridge-signature), basic auth or a bearer JWT."
            ),
        }
