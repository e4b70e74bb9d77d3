"""Inbound events: turn what a sender posts into what message_ingest stores.

Inbound events, shared by every sender format: the InboundEvent each parser returns, EventError naming the
field that is wrong, the JSON body reader and the small field helpers. The parsers of each
system's own format live with that system (integrations/systems/<kind>/inbound.py); the
generic JSON parser is here. Parsers are pure: no database, no network.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from integrations.models import InboundEndpoint

TRUNCATED_FLAG = "truncated"
# The event carries only what changed (a Dataverse Update step registered without a PostImage): the
# prepare stage reads the record from the source when the mapping needs more than the event has.
PARTIAL_FLAG = "partial"
MAX_INT_DIGITS = 100  # far beyond any key or amount; Python refuses 4,300, and nothing needs more than 38
BIGINT = (-(2**63), 2**63 - 1)  # a record version is stored in a PostgreSQL bigint
_WCF_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


class EventError(ValueError):
    """The body is not an event we can take; the text says what is wrong and field where."""

    def __init__(self, text: str, field: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.field = field


def key_fit(key: str, limit: int = 255) -> str:
    """A key that fits the column: a long one keeps its head and gains a hash of the whole, so two stay two."""
    if len(key) <= limit:
        return key
    return f"{key[: limit - 65]}#{hashlib.sha256(key.encode()).hexdigest()}"


@dataclass(frozen=True)
class InboundFormat:
    """One sender format, as a system package registers it: routes, parser and routing field.

    The API serves /api/<prefix>/<flow_slug> and, unless per_flow_only, /api/<prefix>/systems/<system_slug>
    (routed to every enabled flow of the source whose entity or event_types match). A format states only
    what its defaults do not say: the URL name follows the prefix, the per-system summary the routing field.
    """

    prefix: str  # "events/finops"
    summary: str  # OpenAPI summary of the per-flow route
    parse: Callable[..., InboundEvent]  # parse(document, *, headers, endpoint) -> InboundEvent
    entity_field: str = ""  # the field naming what the event is about, for routing errors
    url_name: str = ""  # default "events-finops" (the prefix); the system route is "<url_name>-system"
    system_summary: str = ""  # … of the per-system route; default "<summary> routed by <entity_field>"
    # True where that field is the flow's own entity (a Dataverse table's logical name), so a flow's
    # endpoint can refuse another entity's events; elsewhere only a flow listing event_types can.
    entity_is_flow_entity: bool = False
    # Reads the raw body into the document to parse; default: JSON (body_parse).
    document: Callable[[bytes, dict[str, str]], Any] | None = None
    per_flow_only: bool = False
    # Whether the request's content type is one this format reads; default: JSON only.
    accepts: Callable[[dict[str, str]], bool] | None = None

    def __post_init__(self) -> None:
        # A frozen dataclass sets its derived defaults through object.__setattr__ (as dataclasses do).
        if not self.url_name:
            object.__setattr__(self, "url_name", self.prefix.replace("/", "-"))
        if not self.system_summary and self.entity_field:
            object.__setattr__(self, "system_summary", f"{self.summary} routed by {self.entity_field}")

    def takes_content_type(self, headers: dict[str, str]) -> bool:
        return self.accepts(headers) if self.accepts else is_json_type(headers.get("content-type", ""))


def is_json_type(content_type: str) -> bool:
    """application/json, or any application/*+json (cloudevents+json), with or without parameters."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


@dataclass
class InboundEvent:
    payload: dict[str, Any]
    idempotency_key: str
    entity: str = ""  # what the event is about, for routing a system-level endpoint to flows
    event_type: str = ""
    source_record_key: str = ""
    source_version: int | None = None
    correlation_id: str = ""
    headers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source_version is not None and not BIGINT[0] <= self.source_version <= BIGINT[1]:
            raise EventError(f"the record version {self.source_version} is beyond a 64-bit integer", "version")


def body_parse(body: bytes) -> Any:
    """JSON from the raw body, or an EventError that says where it broke."""
    if not body.strip():
        raise EventError("the body is empty; expected a JSON object")
    try:
        document = json.loads(body, parse_constant=_no_constant, parse_float=_finite, parse_int=_bounded_int)
    except UnicodeDecodeError:
        raise EventError("the body is not UTF-8 text; expected a JSON object") from None
    except json.JSONDecodeError as exc:
        raise EventError(f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if b"\\u" in body:
        # JSON may escape what PostgreSQL cannot store (a NUL, half a surrogate pair); refuse it here, as
        # bad input, rather than fail at the INSERT. Only escaped bodies can hold them, so most skip this.
        check_storable(document)
    return document


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: JSON allows it, a float (and PostgreSQL's jsonb) cannot hold it
        raise EventError(f"the body holds the number {text[:40]}, which is too large to store")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise EventError(f"the body holds an integer of {len(text)} digits; at most {MAX_INT_DIGITS} are taken")
    return int(text)


def _no_constant(name: str) -> Any:
    # Python's json takes NaN and Infinity; JSON (and PostgreSQL) do not.
    raise EventError(f"the body is not JSON: {name} is not a JSON number")


def check_storable(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise EventError("the body holds a NUL character (\\u0000), which cannot be stored")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise EventError("the body holds an unpaired UTF-16 surrogate escape, which is not text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key)
            check_storable(item)
    elif isinstance(value, list):
        for item in value:
            check_storable(item)


def require(data: dict[str, Any], name: str, kind: type | tuple[type, ...] = str, where: str = "") -> Any:
    label = f"{where}{name}"
    if name not in data or data[name] is None:
        raise EventError(f"field '{label}' is missing", label)
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise EventError(f"field '{label}' must be a {json_type(names)}, got {json_type(type(value).__name__)}", label)
    if isinstance(value, str) and not value.strip():
        raise EventError(f"field '{label}' is empty", label)
    return value


def json_type(python_name: str) -> str:
    names = {"str": "string", "dict": "object", "list": "array", "int": "integer", "float": "number"}
    return " or ".join(names.get(n, n) for n in python_name.split(" or "))


def object_of(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise EventError(f"the body must be a JSON object, got {json_type(type(body).__name__)}")
    return body


def wcf_date(value: str) -> datetime | None:
    """/Date(1506384247000)/ or /Date(1506409448000-0700)/ → aware datetime (the ms are UTC)."""
    match = _WCF_DATE.match(value)
    if not match:
        return None
    try:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def iso_to_micros(value: Any, field: str = "") -> int | None:
    """An ISO 8601 time (or a WCF /Date()/) as µs since the epoch: a version that sorts like time.

    A time later than now plus ICBRIDGE_MAX_CLOCK_SKEW_SECONDS is refused (EventError naming the field):
    as a version it would outrank every real event of the record, and each later one would be skipped
    as stale, for ever (a 9999-12-31 event freezes its record).
    """
    if not isinstance(value, str):
        return None
    moment = wcf_date(value)
    if moment is None:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    check_not_future(moment, field)
    return int(moment.timestamp() * 1_000_000)


def check_not_future(moment: datetime, field: str = "") -> None:
    """EventError when an event's time is later than now plus the allowed clock skew."""
    from django.conf import settings

    skew = float(getattr(settings, "ICBRIDGE_MAX_CLOCK_SKEW_SECONDS", 300.0))
    latest = datetime.now(UTC) + timedelta(seconds=skew)
    if moment > latest:
        where = f"field '{field}'" if field else "the event time"
        raise EventError(
            f"{where} is {moment.isoformat()}, later than now plus the allowed clock skew of {skew:g} s; "
            "a version from the future would make every later event of the record look stale",
            field or None,
        )


def pointer(document: Any, pointer: str) -> Any:
    """RFC 6901 JSON pointer lookup; None when any step is absent."""
    if pointer in ("", "/"):
        return document if pointer == "" else None
    if not pointer.startswith("/"):
        pointer = "/" + pointer.replace(".", "/")  # also accept a dotted path: order.id
    value = document
    for raw in pointer[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdecimal() and len(part) < 10 and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def scalar_text(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return ""
    return str(value)


KEY_SEPARATOR = "|"


def pointer_key(document: Any, endpoint: InboundEndpoint | None) -> str:
    """The source record key the endpoint's record key pointer names; several comma-separated pointers
    (/SalesOrderNumber,/HoldCode) make a composite key, their values joined by "|" (SO-1|Credit)."""
    if endpoint is None or not endpoint.record_key_pointer:
        return ""
    values = []
    for path in (part.strip() for part in endpoint.record_key_pointer.split(",")):
        value = scalar_text(pointer(document, path))
        if not value:
            raise EventError(f"field '{path}' is missing", path)
        values.append(value)
    return KEY_SEPARATOR.join(values)


# --- generic JSON ------------------------------------------------------------------------------

DEFAULT_ID_HEADER = "idempotency-key"
DEFAULT_ID_POINTER = "/id"


def generic_event(body: Any, *, headers: dict[str, str], endpoint: InboundEndpoint | None = None) -> InboundEvent:
    """Any JSON object; its id from the configured header or JSON pointer (default: Idempotency-Key, then /id)."""
    document = object_of(body)
    id_header = (endpoint.id_header if endpoint and endpoint.id_header else DEFAULT_ID_HEADER).lower()
    id_pointer = endpoint.id_pointer if endpoint and endpoint.id_pointer else DEFAULT_ID_POINTER
    event_id = headers.get(id_header, "").strip() or scalar_text(pointer(document, id_pointer)).strip()
    if not event_id:
        also = "" if endpoint and endpoint.id_pointer else f", nor header '{id_header}'"
        raise EventError(f"field '{id_pointer}' is missing{also}", id_pointer)
    version = None
    if endpoint and endpoint.version_pointer:
        raw = pointer(document, endpoint.version_pointer)
        if isinstance(raw, int) and not isinstance(raw, bool):
            version = raw
        elif isinstance(raw, float | Decimal):
            version = int(raw)
        else:
            version = iso_to_micros(raw, endpoint.version_pointer)
            if version is None and isinstance(raw, str) and raw.isdecimal() and len(raw) <= 19:
                version = int(raw)
        if raw is not None and version is None:
            raise EventError(f"field '{endpoint.version_pointer}' must be a number or a time", endpoint.version_pointer)
    return InboundEvent(
        payload=document,
        idempotency_key=event_id,
        source_record_key=pointer_key(document, endpoint) or event_id,
        source_version=version,
        correlation_id=headers.get("x-correlation-id", "")[:100],
    )


GENERIC = InboundFormat(
    prefix="ingest",
    url_name="ingest-generic",
    summary="Any JSON object; id from a header or JSON pointer",
    parse=generic_event,
    per_flow_only=True,
)
