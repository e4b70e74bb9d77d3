"""SAP S/4HANA emulator: OData v2 services as SAP Gateway serves them, from their real $metadata.

GET/HEAD sap/opu/odata/sap/<SERVICE>/                       service document; `x-csrf-token: Fetch` issues a token
GET      sap/opu/odata/sap/<SERVICE>/$metadata              the .edmx from s4hana_metadata/
*        sap/opu/odata/sap/<SERVICE>/<Set>[(<key>)][/<nav>…] GET ($filter $top $skip $orderby $select $expand
                                                            $inlinecount $count), POST (deep insert), PATCH/MERGE/PUT
                                                            (If-Match where the type has an ETag), DELETE
POST     sap/opu/odata/sap/<SERVICE>/$batch                 multipart/mixed with change sets
POST     oauth/token                                        OAuth2 client credentials (SANDBOX_S4HANA_CLIENTS)
POST     emulator/outbound-deliveries, emulator/billing-documents   {"SalesOrder": "1"}: the follow-on documents
                                                            order to cash reads (as posting in SAP would create)

Services: API_SALES_ORDER_SRV, API_BUSINESS_PARTNER (real metadata), API_OUTBOUND_DELIVERY_SRV and
API_BILLING_DOCUMENT_SRV (read-only subsets). CSRF like SAP Gateway: a token bound to the session cookie and
user; a modifying request without both gets 403, `x-csrf-token: Required`, "CSRF token validation failed".
Errors use SAP's JSON (error.code, error.message.value, error.innererror.errordetails). Business events are
CloudEvents pushed after commit to EmulatorSubscription rows (emulator "s4hana") with a bounded timeout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path, re_path
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt

from sandbox.emulators.s4hana_odata import (
    BatchResponse,
    EntitySet,
    ODataError,
    Service,
    available_services,
    comparable,
    format_key,
    initial_value,
    load_service,
    parse_batch,
    parse_filter,
    parse_key,
    render_batch,
    to_wire,
)
from sandbox.faults import with_faults
from sandbox.models import EmulatorRecord, EmulatorSubscription

logger = logging.getLogger(__name__)

EMULATOR = "s4hana"
SYSTEM_ID, CLIENT = "S4D", "100"
SESSION_COOKIE = f"SAP_SESSIONID_{SYSTEM_ID}_{CLIENT}"
EVENT_SOURCE = f"/default/sap.s4.beh/{SYSTEM_ID}CLNT{CLIENT}"
PUSH_TIMEOUT_SECONDS = 3.0
TOKEN_LIFETIME_SECONDS = 3600
MODIFYING = {"POST", "PUT", "PATCH", "MERGE", "DELETE"}
COMPONENTS = {"API_SALES_ORDER_SRV": "SD-SLS-API", "API_BUSINESS_PARTNER": "LO-MD-BP"}

# First number of each internally numbered document (SAP number ranges).
NUMBER_RANGES = {
    ("API_SALES_ORDER_SRV", "A_SalesOrder"): 1,
    ("API_BUSINESS_PARTNER", "A_BusinessPartner"): 1000000,
    ("API_OUTBOUND_DELIVERY_SRV", "A_OutbDeliveryHeader"): 80000000,
    ("API_BILLING_DOCUMENT_SRV", "A_BillingDocument"): 90000000,
}
# Entity sets whose writes raise business events: event type prefix and the data key.
EVENTS = {
    ("API_SALES_ORDER_SRV", "A_SalesOrder"): ("sap.s4.beh.salesorder.v1.SalesOrder", "SalesOrder"),
    ("API_BUSINESS_PARTNER", "A_BusinessPartner"): ("sap.s4.beh.businesspartner.v1.BusinessPartner", "BusinessPartner"),
    ("API_OUTBOUND_DELIVERY_SRV", "A_OutbDeliveryHeader"): (
        "sap.s4.beh.outbounddelivery.v1.OutboundDelivery",
        "OutboundDelivery",
    ),
    ("API_BILLING_DOCUMENT_SRV", "A_BillingDocument"): (
        "sap.s4.beh.billingdocument.v1.BillingDocument",
        "BillingDocument",
    ),
}
SALES_ORDER_TYPES = {"OR", "TA", "CBFD", "ZOR", "CR", "DR", "RE"}


def _users() -> dict[str, str]:
    return getattr(settings, "SANDBOX_S4HANA_USERS", {"ICBRIDGE": "sandbox"})


def _clients() -> dict[str, str]:
    return getattr(settings, "SANDBOX_S4HANA_CLIENTS", {"icbridge-s4": "sandbox"})


# --- errors --------------------------------------------------------------------------------------


def sap_error(
    status: int, code: str, message: str, *, service: str = "", details: list[dict[str, Any]] | None = None
) -> JsonResponse:
    """SAP Gateway's error JSON (see tests/fixtures/s4hana/odata-v2-error-404-resource-not-found.json)."""
    details = details if details is not None else [{"code": code, "message": message, "target": ""}]
    body = {
        "error": {
            "code": code,
            "message": {"lang": "en", "value": message},
            "innererror": {
                "application": {
                    "component_id": COMPONENTS.get(service, ""),
                    "service_namespace": "/SAP/",
                    "service_id": service,
                    "service_version": "0001",
                },
                "transactionid": uuid.uuid4().hex.upper(),
                "timestamp": datetime.now(UTC).strftime("%Y%m%d%H%M%S.%f"),
                "Error_Resolution": {
                    "SAP_Transaction": 'For backend administrators: use ADT feed reader "SAP Gateway Error Log" '
                    "or run transaction /IWFND/ERROR_LOG on SAP Gateway hub system and search for entries with "
                    "the timestamp above for more details",
                    "SAP_Note": "See SAP Note 1797736 for error analysis (https://service.sap.com/sap/support/notes/1797736)",
                },
                "errordetails": [
                    {
                        "ContentID": detail.get("ContentID", ""),
                        "code": detail["code"],
                        "message": detail["message"],
                        "longtext_url": "",
                        "propertyref": detail.get("target", ""),
                        "severity": "error",
                        "transition": False,
                        "target": detail.get("target", ""),
                    }
                    for detail in details
                ],
            },
        }
    }
    return JsonResponse(body, status=status)


def _fault_body(status: int, text: str) -> HttpResponse:
    return sap_error(status, "/IWFND/CM_BEC/026" if status >= 500 else "/IWFND/CM_CONSUMER/429", text)


class BusinessError(ODataError):
    """Several messages from the application, as SAP returns them in errordetails."""

    def __init__(self, details: list[tuple[str, str, str]]) -> None:
        code, message, target = details[0]
        super().__init__(400, code, message, target=target)
        self.details = details


# --- auth and CSRF -------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _authenticate(request: HttpRequest) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        expected = _users().get(user.upper())
        if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
            return user.upper()
        return None
    if scheme.lower() == "bearer" and value:
        record = EmulatorRecord.objects.filter(emulator=EMULATOR, entity="oauth_token", key=_token_hash(value)).first()
        if record and record.data["expires_at"] > time.time():
            return str(record.data["client_id"])
    return None


def _unauthorized() -> HttpResponse:
    response = HttpResponse("Logon failed", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = f'Basic realm="SAP NetWeaver Application Server [{SYSTEM_ID}/{CLIENT}]"'
    return response


def _csrf_session(request: HttpRequest, user: str) -> EmulatorRecord | None:
    session_id = request.COOKIES.get(SESSION_COOKIE, "")
    if not session_id:
        return None
    record = EmulatorRecord.objects.filter(emulator=EMULATOR, entity="csrf_session", key=session_id).first()
    if record is None or record.data.get("user") != user:
        return None  # the token is bound to the user as well as the session
    return record


def _issue_csrf_token(request: HttpRequest, response: HttpResponse, user: str) -> None:
    """Answer `x-csrf-token: Fetch`: the session's token, or a new session and token."""
    session = _csrf_session(request, user)
    if session is None:
        session = EmulatorRecord.objects.create(
            emulator=EMULATOR,
            entity="csrf_session",
            key=secrets.token_urlsafe(24),
            data={"user": user, "token": base64.b64encode(secrets.token_bytes(18)).decode()},
        )
        response.set_cookie(SESSION_COOKIE, session.key, httponly=True, path="/")
        response.set_cookie("sap-usercontext", f"sap-client={CLIENT}", path="/")
    response["x-csrf-token"] = session.data["token"]


def _csrf_valid(request: HttpRequest, user: str) -> bool:
    token = request.headers.get("x-csrf-token", "")
    session = _csrf_session(request, user)
    return bool(token) and session is not None and hmac.compare_digest(session.data["token"], token)


def _csrf_refused() -> HttpResponse:
    response = HttpResponse("CSRF token validation failed", status=403, content_type="text/plain")
    response["x-csrf-token"] = "Required"
    return response


def expire_sessions() -> int:
    """End every CSRF session, as SAP's session timeout does; the next write needs a new token."""
    deleted, _ = EmulatorRecord.objects.filter(emulator=EMULATOR, entity="csrf_session").delete()
    return deleted


@csrf_exempt
@with_faults(EMULATOR, _fault_body)
def oauth_token(request: HttpRequest) -> HttpResponse:
    """OAuth2 client credentials (as the S/4HANA Cloud communication arrangement's token service)."""
    if request.method != "POST":
        return JsonResponse({"error": "invalid_request", "error_description": "use POST"}, status=405)
    client_id, client_secret = request.POST.get("client_id", ""), request.POST.get("client_secret", "")
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, _, client_secret = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            client_id = client_secret = ""
    if request.POST.get("grant_type") != "client_credentials":
        return JsonResponse(
            {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}, status=400
        )
    expected = _clients().get(client_id)
    if expected is None or not hmac.compare_digest(expected.encode(), client_secret.encode()):
        return JsonResponse({"error": "invalid_client", "error_description": "Bad credentials"}, status=401)
    token = secrets.token_urlsafe(32)
    EmulatorRecord.objects.create(
        emulator=EMULATOR,
        entity="oauth_token",
        key=_token_hash(token),
        data={"client_id": client_id, "expires_at": time.time() + TOKEN_LIFETIME_SECONDS},
    )
    return JsonResponse(
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS - 1,
            "scope": " ".join(available_services()),
            "jti": uuid.uuid4().hex,
        }
    )


# --- the store -----------------------------------------------------------------------------------


def _entity(service: str, entity_set: EntitySet) -> str:
    return f"{service}/{entity_set.name}"


def _records(service: str, entity_set: EntitySet, match: dict[str, Any] | None = None):
    queryset = EmulatorRecord.objects.filter(emulator=EMULATOR, entity=_entity(service, entity_set), deleted=False)
    for name, value in (match or {}).items():
        queryset = queryset.filter(**{f"data__{name}": value})
    return queryset


def _get(service: str, entity_set: EntitySet, keys: dict[str, Any], *, lock: bool = False) -> EmulatorRecord:
    queryset = _records(service, entity_set)
    if lock:
        queryset = queryset.select_for_update()
    record = queryset.filter(key=format_key(entity_set, keys)).first()
    if record is None:
        raise ODataError(
            404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{entity_set.type_name.rsplit('.', 1)[-1]}'"
        )
    return record


def _next_number(service: str, entity_set: EntitySet) -> str:
    counter_key = f"{service}/{entity_set.name}"
    try:
        with transaction.atomic():
            EmulatorRecord.objects.get_or_create(
                emulator=EMULATOR,
                entity="number_range",
                key=counter_key,
                defaults={"data": {"next": NUMBER_RANGES[(service, entity_set.name)]}},
            )
    except IntegrityError:
        pass
    counter = EmulatorRecord.objects.select_for_update().get(emulator=EMULATOR, entity="number_range", key=counter_key)
    number = int(counter.data["next"])
    counter.data = {"next": number + 1}
    counter.save(update_fields=["data"])
    return str(number)


def _nav_match(entity_set: EntitySet, data: dict[str, Any], target: EntitySet, many: bool) -> dict[str, Any]:
    """Which target records a navigation reaches: those sharing the parent's key (header → items)."""
    if many:
        names = [k for k in entity_set.keys if k in target.props]
    else:
        names = [k for k in target.keys if k in entity_set.props]
    return {name: data.get(name) for name in names}


def _etag(entity_set: EntitySet, record: EmulatorRecord) -> str:
    if not entity_set.etag_prop:
        return ""
    stamp = datetime.fromisoformat(record.data["__ts"])
    text = f"{stamp:%Y-%m-%dT%H:%M:%S}.{stamp.microsecond:06d}0Z"
    return f"W/\"datetimeoffset'{quote(text, safe='')}'\""


# --- requests ------------------------------------------------------------------------------------


@dataclass
class Context:
    service: Service
    base: str  # the service root URL as the caller sees it
    user: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able, bytes or None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def content(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


def _segments(resource: str) -> list[tuple[str, str | None]]:
    out = []
    for raw in [s for s in _split_path(resource) if s]:
        name, sep, rest = raw.partition("(")
        if sep and not rest.endswith(")"):
            raise ODataError(400, "/IWBEP/CM_MGW_RT/021", f"Invalid key predicate in segment '{raw}'")
        out.append((name, rest[:-1] if sep else None))
    return out


def _split_path(resource: str) -> list[str]:
    """Split at '/' outside quoted key values."""
    parts, current, quoted = [], [], False
    for char in resource:
        if char == "'":
            quoted = not quoted
        if char == "/" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


@dataclass
class Target:
    entity_set: EntitySet
    record: EmulatorRecord | None = None  # a single entity
    match: dict[str, Any] = field(default_factory=dict)  # a collection reached through a navigation
    parent: tuple[EntitySet, EmulatorRecord] | None = None
    count: bool = False


def _resolve(ctx: Context, resource: str, *, lock: bool = False) -> Target:
    segments = _segments(resource)
    name, key = segments[0]
    entity_set = ctx.service.entity_set(name)
    target = Target(entity_set)
    if key is not None:
        target.record = _get(ctx.service.name, entity_set, parse_key(entity_set, key), lock=lock)
    for name, key in segments[1:]:
        if name == "$count" and target.record is None:
            target.count = True
            continue
        if target.record is None:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/021", f"Segment '{name}' needs a single entity before it")
        nav = target.entity_set.navs.get(name)
        if nav is None:
            raise ODataError(404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{name}'")
        child = ctx.service.entity_set(nav.target_set)
        match = _nav_match(target.entity_set, target.record.data, child, nav.many)
        parent = (target.entity_set, target.record)
        target = Target(child, match=match, parent=parent)
        if key is not None:
            target.record = _get(ctx.service.name, child, parse_key(child, key), lock=lock)
        elif not nav.many:
            target.record = _records(ctx.service.name, child, match).first()
            if target.record is None:
                raise ODataError(404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{name}'")
    return target


def _expand_tree(value: str) -> dict[str, dict]:
    tree: dict[str, dict] = {}
    for item in [v.strip() for v in value.split(",") if v.strip()]:
        node = tree
        for part in item.split("/"):
            node = node.setdefault(part, {})
    return tree


def _serialize(
    ctx: Context, entity_set: EntitySet, record: EmulatorRecord, expand: dict, select: set[str] | None
) -> dict:
    uri = f"{ctx.base}/{entity_set.name}({format_key(entity_set, record.data)})"
    metadata = {"id": uri, "uri": uri, "type": entity_set.type_name}
    if etag := _etag(entity_set, record):
        metadata["etag"] = etag
    out: dict[str, Any] = {"__metadata": metadata}
    for name, prop in entity_set.props.items():
        if select is None or name in select:
            out[name] = record.data.get(name, initial_value(prop))
    for name, nav in entity_set.navs.items():
        if name in expand:
            child = ctx.service.entity_set(nav.target_set)
            rows = _records(ctx.service.name, child, _nav_match(entity_set, record.data, child, nav.many)).order_by(
                "key"
            )
            rendered = [_serialize(ctx, child, row, expand[name], None) for row in rows]
            out[name] = {"results": rendered} if nav.many else (rendered[0] if rendered else None)
        elif select is None or name in select:
            out[name] = {"__deferred": {"uri": f"{uri}/{name}"}}
    return out


def _sort_key(entity_set: EntitySet, order: list[tuple[str, bool]]):
    def key(record: EmulatorRecord) -> tuple:
        parts = []
        for name, _descending in order:
            value = comparable(entity_set.props[name], record.data.get(name))
            parts.append((value is None, value if value is not None else 0))
        return tuple(parts)

    return key


def _read(ctx: Context, target: Target, query: dict[str, str]) -> Reply:
    expand = _expand_tree(query.get("$expand", ""))
    for name in expand:
        if name not in target.entity_set.navs:
            raise ODataError(
                400,
                "/IWBEP/CM_MGW_RT/000",
                f"Property '{name}' is not a navigation property of '{target.entity_set.type_name}'",
            )
    select = {s.strip() for s in query["$select"].split(",")} if query.get("$select") else None
    if target.record is not None:
        reply = Reply(200, {"d": _serialize(ctx, target.entity_set, target.record, expand, select)})
        if etag := _etag(target.entity_set, target.record):
            reply.headers["ETag"] = etag
        return reply
    records = list(_records(ctx.service.name, target.entity_set, target.match).order_by("key"))
    if query.get("$filter"):
        predicate = parse_filter(query["$filter"], target.entity_set)
        records = [r for r in records if predicate(r.data)]
    if query.get("$orderby"):
        order = []
        for item in query["$orderby"].split(","):
            name, _, direction = item.strip().partition(" ")
            if name not in target.entity_set.props:
                raise ODataError(
                    400, "/IWBEP/CM_MGW_RT/000", f"Property '{name}' not found in type '{target.entity_set.type_name}'"
                )
            order.append((name, direction.strip().lower() == "desc"))
        for name, descending in reversed(order):
            records.sort(key=_sort_key(target.entity_set, [(name, descending)]), reverse=descending)
    total = len(records)
    if target.count:
        return Reply(200, str(total).encode(), content_type="text/plain")
    try:
        skip, top = int(query.get("$skip", 0)), int(query["$top"]) if "$top" in query else None
    except ValueError as exc:
        raise ODataError(400, "/IWBEP/CM_MGW_RT/000", "$top and $skip must be whole numbers") from exc
    records = records[skip : None if top is None else skip + top]
    body: dict[str, Any] = {"results": [_serialize(ctx, target.entity_set, r, expand, select) for r in records]}
    if query.get("$inlinecount") == "allpages":
        body["__count"] = str(total)
    return Reply(200, {"d": body})


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"Malformed JSON in the request body: {exc}") from exc
    if not isinstance(body, dict):
        raise ODataError(400, "/IWBEP/CM_MGW_RT/000", "The request body must be a JSON object")
    return body.get("d", body) if isinstance(body.get("d"), dict) else body


def _validate(service: str, entity_set: EntitySet, data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Application checks that stand in for the real ones (mandatory fields, order type, quantities)."""
    problems = []
    if (service, entity_set.name) == ("API_SALES_ORDER_SRV", "A_SalesOrder"):
        for name in (
            "SalesOrderType",
            "SalesOrganization",
            "DistributionChannel",
            "OrganizationDivision",
            "SoldToParty",
        ):
            if not data.get(name):
                problems.append(("V1/012", f"Enter a value for field {name}", name))
        order_type = data.get("SalesOrderType")
        if order_type and order_type not in SALES_ORDER_TYPES:
            problems.append(("V1/320", f"Sales document type {order_type} is not defined", "SalesOrderType"))
    if (service, entity_set.name) == ("API_SALES_ORDER_SRV", "A_SalesOrderItem"):
        if not data.get("Material"):
            problems.append(("V1/392", f"Enter a material for item {data.get('SalesOrderItem', '')}", "Material"))
        if Decimal(str(data.get("RequestedQuantity") or 0)) <= 0:
            problems.append(
                ("V1/204", f"Enter a quantity for item {data.get('SalesOrderItem', '')}", "RequestedQuantity")
            )
    if (service, entity_set.name) == ("API_BUSINESS_PARTNER", "A_BusinessPartner"):
        category = data.get("BusinessPartnerCategory")
        if category not in ("1", "2", "3"):
            problems.append(
                (
                    "R11/401",
                    "Business partner category must be 1 (person), 2 (organization) or 3 (group)",
                    "BusinessPartnerCategory",
                )
            )
        elif category == "1" and not data.get("LastName"):
            problems.append(("R11/402", "Enter a last name for a person", "LastName"))
        elif category == "2" and not data.get("OrganizationBPName1"):
            problems.append(("R11/403", "Enter a name for an organization", "OrganizationBPName1"))
    return problems


def _stamp(entity_set: EntitySet, data: dict[str, Any], user: str, *, created: bool) -> None:
    """Fields the server sets itself (creation and change stamps, the ETag's timestamp)."""
    now = datetime.now(UTC)
    today_ms = int(datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp() * 1000)
    data["__ts"] = now.isoformat()
    stamps = {
        "LastChangeDateTime": f"/Date({int(now.timestamp() * 1000)}+0000)/",
        "LastChangeDate": f"/Date({today_ms})/",
        "LastChangedByUser": user,
    }
    if created:
        stamps |= {"CreationDate": f"/Date({today_ms})/", "CreatedByUser": user}
    for name, value in stamps.items():
        if name in entity_set.props:
            data[name] = value


def _create(
    ctx: Context, entity_set: EntitySet, body: dict[str, Any], inherited: dict[str, Any], position: int = 1
) -> EmulatorRecord:
    """Create one entity and, deep insert, the entities under its navigation properties."""
    service = ctx.service.name
    if not entity_set.creatable:
        raise ODataError(405, "/IWBEP/CM_MGW_RT/025", f"Creation of entity set '{entity_set.name}' is not allowed")
    data: dict[str, Any] = {}
    nested: dict[str, list[dict[str, Any]]] = {}
    for name, value in body.items():
        if name == "__metadata":
            continue
        if name in entity_set.navs:
            rows = value.get("results", value) if isinstance(value, dict) else value
            nested[name] = rows if isinstance(rows, list) else [rows]
            continue
        prop = entity_set.props.get(name)
        if prop is None:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"Property '{name}' is invalid", target=name)
        if prop.creatable:
            data[name] = to_wire(prop, value, entity_set.name)
    data.update(inherited)
    missing = [k for k in entity_set.keys if not data.get(k)]
    if missing and (service, entity_set.name) in NUMBER_RANGES and missing == entity_set.keys:
        data[entity_set.keys[0]] = _next_number(service, entity_set)
    elif missing == [entity_set.keys[-1]] and entity_set.keys[-1].endswith("Item"):
        siblings = _records(service, entity_set, {k: data[k] for k in entity_set.keys[:-1]})
        highest = max((int(r.data.get(missing[0]) or 0) for r in siblings), default=0)
        data[missing[0]] = str(max(highest + 10, position * 10))
    missing = [k for k in entity_set.keys if not data.get(k)]
    if missing:
        raise ODataError(
            400,
            "/IWBEP/CM_MGW_RT/000",
            f"Key property '{missing[0]}' of {entity_set.name} is missing",
            target=missing[0],
        )
    if problems := _validate(service, entity_set, data):
        raise BusinessError(problems)
    _stamp(entity_set, data, ctx.user, created=True)
    key = format_key(entity_set, data)
    if _records(service, entity_set).filter(key=key).exists():
        raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"{entity_set.name}({key}) already exists")
    record, _ = EmulatorRecord.objects.update_or_create(
        emulator=EMULATOR,
        entity=_entity(service, entity_set),
        key=key,
        defaults={"data": data, "deleted": False, "version": 1},
    )
    for name, rows in nested.items():
        nav = entity_set.navs[name]
        child = ctx.service.entity_set(nav.target_set)
        match = _nav_match(entity_set, data, child, nav.many)
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"Deep insert '{name}' expects objects")
            _create(ctx, child, row, match, number)
    if (service, entity_set.name) in EVENTS:
        ctx.events.append(("Created", _event_data(service, entity_set, data)))
    return record


def _event_data(service: str, entity_set: EntitySet, data: dict[str, Any]) -> dict[str, Any]:
    prefix, name = EVENTS[(service, entity_set.name)]
    return {"type_prefix": prefix, "data": {name: data[entity_set.keys[0]]}}


def _update(ctx: Context, target: Target, body: dict[str, Any], method: str, headers: dict[str, str]) -> Reply:
    entity_set, record = target.entity_set, target.record
    if not entity_set.updatable:
        raise ODataError(405, "/IWBEP/CM_MGW_RT/025", f"Update of entity set '{entity_set.name}' is not allowed")
    if entity_set.etag_prop:
        if_match = headers.get("if-match", "")
        if not if_match:
            raise ODataError(428, "/IWBEP/CM_MGW_RT/024", "Precondition required: send If-Match with the entity's ETag")
        if if_match != "*" and if_match != _etag(entity_set, record):
            raise ODataError(412, "/IWBEP/CM_MGW_RT/022", "The ETag does not match: the entity was changed meanwhile")
    data = dict(record.data) if method in ("PATCH", "MERGE") else {k: record.data[k] for k in entity_set.keys}
    for name, value in body.items():
        if name == "__metadata":
            continue
        if name in entity_set.navs:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"Deep update of '{name}' is not supported")
        prop = entity_set.props.get(name)
        if prop is None:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"Property '{name}' is invalid", target=name)
        if name in entity_set.keys:
            if to_wire(prop, value, entity_set.name) != record.data.get(name):
                raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"Key property '{name}' cannot be changed", target=name)
            continue
        if prop.updatable:
            data[name] = to_wire(prop, value, entity_set.name)
    if method == "PUT":  # a replace keeps what the server owns
        data |= {
            k: v
            for k, v in record.data.items()
            if k.startswith("__") or not entity_set.props.get(k, None) or not entity_set.props[k].updatable
        }
    if problems := _validate(ctx.service.name, entity_set, data):
        raise BusinessError(problems)
    _stamp(entity_set, data, ctx.user, created=False)
    record.data = data
    record.version += 1
    record.save()
    if (ctx.service.name, entity_set.name) in EVENTS:
        ctx.events.append(("Changed", _event_data(ctx.service.name, entity_set, data)))
    reply = Reply(204)
    if etag := _etag(entity_set, record):
        reply.headers["ETag"] = etag
    return reply


def _delete(ctx: Context, target: Target) -> Reply:
    entity_set, record = target.entity_set, target.record
    if not entity_set.deletable:
        raise ODataError(405, "/IWBEP/CM_MGW_RT/025", f"Deletion of entity set '{entity_set.name}' is not allowed")
    for nav in entity_set.navs.values():  # the items of a deleted order go with it
        child = ctx.service.entity_set(nav.target_set)
        if nav.many and child.keys[: len(entity_set.keys)] == entity_set.keys:
            _records(ctx.service.name, child, _nav_match(entity_set, record.data, child, True)).update(deleted=True)
    record.deleted = True
    record.save(update_fields=["deleted"])
    return Reply(204)


def handle(
    ctx: Context, method: str, resource: str, query: dict[str, str], headers: dict[str, str], body: bytes
) -> Reply:
    """One OData request against the service (also each part of a $batch). Writes run in a transaction."""
    if method == "POST" and headers.get("x-http-method", "").upper() in ("MERGE", "PATCH", "PUT", "DELETE"):
        method = headers["x-http-method"].upper()
    if method in ("GET", "HEAD"):
        return _read(ctx, _resolve(ctx, resource), query)
    with transaction.atomic():
        target = _resolve(ctx, resource, lock=method != "POST")
        if method == "POST":
            if target.record is not None:
                raise ODataError(405, "/IWBEP/CM_MGW_RT/025", "POST is only allowed on an entity set or navigation")
            record = _create(ctx, target.entity_set, _json_body(body), target.match)
            expand = {name: {} for name, value in _json_body(body).items() if name in target.entity_set.navs}
            reply = Reply(201, {"d": _serialize(ctx, target.entity_set, record, expand, None)})
            reply.headers["Location"] = reply.body["d"]["__metadata"]["uri"]
            if etag := _etag(target.entity_set, record):
                reply.headers["ETag"] = etag
        elif target.record is None:
            raise ODataError(405, "/IWBEP/CM_MGW_RT/025", f"{method} needs a single entity, not a collection")
        elif method in ("PATCH", "MERGE", "PUT"):
            reply = _update(ctx, target, _json_body(body), method, headers)
        elif method == "DELETE":
            reply = _delete(ctx, target)
        else:
            raise ODataError(405, "/IWBEP/CM_MGW_RT/025", f"Method {method} is not supported")
        events, ctx.events = ctx.events, []
        if events:
            transaction.on_commit(lambda: _push_events(events))
    return reply


def _error_reply(service: str, error: ODataError, content_id: str = "") -> Reply:
    details = getattr(error, "details", None) or [(error.code, error.message, error.target)]
    response = sap_error(
        error.status,
        error.code,
        error.message,
        service=service,
        details=[{"code": c, "message": m, "target": t, "ContentID": content_id} for c, m, t in details],
    )
    return Reply(error.status, response.content)


# --- events --------------------------------------------------------------------------------------


def _push_events(events: list[tuple[str, dict[str, Any]]]) -> None:
    """After commit: send each event to its subscribers, in a thread so the OData answer is not held up."""
    cloud_events = []
    for action, event in events:
        cloud_events.append(
            {
                "type": f"{event['type_prefix']}.{action}.v1",
                "specversion": "1.0",
                "source": EVENT_SOURCE,
                "id": str(uuid.uuid4()),
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "datacontenttype": "application/json",
                "data": event["data"],
            }
        )
    subscriptions = list(EmulatorSubscription.objects.filter(emulator=EMULATOR, enabled=True))
    deliveries = [
        (s.url, s.headers, ce)
        for ce in cloud_events
        for s in subscriptions
        if not s.event_type or s.event_type == ce["type"]
    ]
    if deliveries:
        threading.Thread(target=_send, args=(deliveries,), daemon=True, name="s4hana-events").start()


def _send(deliveries: list[tuple[str, dict[str, str], dict[str, Any]]]) -> None:
    with requests.Session() as session:
        for url, headers, cloud_event in deliveries:
            try:
                response = session.post(
                    url,
                    data=json.dumps(cloud_event),
                    headers={"Content-Type": "application/cloudevents+json", **headers},
                    timeout=PUSH_TIMEOUT_SECONDS,
                )
                if response.status_code >= 300:
                    logger.warning(
                        "s4hana event %s refused by subscriber: HTTP %s", cloud_event["type"], response.status_code
                    )
            except requests.RequestException as exc:
                logger.warning("s4hana event %s not delivered: %s", cloud_event["type"], type(exc).__name__)


# --- views ---------------------------------------------------------------------------------------


def _to_response(reply: Reply) -> HttpResponse:
    response = HttpResponse(reply.content(), status=reply.status, content_type=reply.content_type)
    for name, value in reply.headers.items():
        response[name] = value
    response["dataserviceversion"] = "2.0"
    return response


def _service_root(request: HttpRequest, service: str) -> str:
    return request.build_absolute_uri(f"/sandbox/s4hana/sap/opu/odata/sap/{service}")


@csrf_exempt
@with_faults(EMULATOR, _fault_body)
def odata(request: HttpRequest, service: str, resource: str = "") -> HttpResponse:
    user = _authenticate(request)
    if user is None:
        return _unauthorized()
    method = request.method.upper()
    if method in MODIFYING and not _csrf_valid(request, user):
        return _csrf_refused()
    try:
        model = load_service(service)
    except ODataError as error:
        return _to_response(_error_reply(service, error))
    ctx = Context(service=model, base=_service_root(request, service), user=user)
    if resource in ("", "/"):
        response = JsonResponse({"d": {"EntitySets": list(model.sets)}})
    elif resource == "$metadata":
        response = HttpResponse(model.metadata, content_type="application/xml")
        response["Last-Modified"] = http_date(0)
    elif resource == "$batch":
        if method != "POST":
            return _to_response(_error_reply(service, ODataError(405, "/IWBEP/CM_MGW_RT/025", "$batch needs POST")))
        response = _batch(ctx, request)
    else:
        query = {k: v[-1] for k, v in parse_qs(request.META.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            response = _to_response(handle(ctx, method, resource, query, headers, request.body))
        except ODataError as error:
            response = _to_response(_error_reply(service, error))
        delay = request.sandbox_faults.slow_after_commit_ms
        if delay and method in MODIFYING and response.status_code < 300:
            time.sleep(delay / 1000)  # committed; the caller times out and never hears of it (a lost response)
    if method in ("GET", "HEAD") and request.headers.get("x-csrf-token", "").lower() == "fetch":
        _issue_csrf_token(request, response, user)
    return response


def _batch(ctx: Context, request: HttpRequest) -> HttpResponse:
    """Run each part; a change set is one transaction whose failure is answered by its first error."""
    try:
        parts = parse_batch(request.body, request.headers.get("Content-Type", ""))
    except ODataError as error:
        return _to_response(_error_reply(ctx.service.name, error))
    results = []
    for part in parts:
        responses: list[BatchResponse] = []
        try:
            with transaction.atomic():
                locations: dict[str, str] = {}
                for sub in part.requests:
                    url = sub.url
                    if url.startswith("$") and url[1:].split("/", 1)[0] in locations:
                        cid, _, rest = url[1:].partition("/")
                        url = locations[cid] + (f"/{rest}" if rest else "")
                    url = url.removeprefix(ctx.base + "/")
                    split = urlsplit(url)
                    query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
                    try:
                        reply = handle(ctx, sub.method, split.path.lstrip("/"), query, sub.headers, sub.body)
                    except ODataError as error:
                        if part.changeset:
                            raise _ChangeSetFailed(_error_reply(ctx.service.name, error, sub.content_id)) from error
                        reply = _error_reply(ctx.service.name, error, sub.content_id)
                    if sub.content_id and "Location" in reply.headers:
                        locations[sub.content_id] = reply.headers["Location"].removeprefix(ctx.base + "/")
                    headers = (
                        {"Content-Type": reply.content_type, **reply.headers}
                        if reply.body is not None
                        else dict(reply.headers)
                    )
                    responses.append(BatchResponse(reply.status, headers, reply.content()))
        except _ChangeSetFailed as failed:
            reply = failed.reply
            responses = [BatchResponse(reply.status, {"Content-Type": "application/json"}, reply.content())]
        results.append((part.changeset, responses))
    body, content_type = render_batch(results)
    return HttpResponse(body, status=202, content_type=content_type)


class _ChangeSetFailed(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


# --- emulator operations: follow-on documents of an order ----------------------------------------


def _order_and_items(sales_order: str) -> tuple[EmulatorRecord, list[EmulatorRecord]]:
    service = load_service("API_SALES_ORDER_SRV")
    order = _get(service.name, service.sets["A_SalesOrder"], {"SalesOrder": sales_order})
    items = list(_records(service.name, service.sets["A_SalesOrderItem"], {"SalesOrder": sales_order}).order_by("key"))
    return order, items


def create_outbound_delivery(*, sales_order: str, user: str = "ICBRIDGE") -> EmulatorRecord:
    """A delivery for every item of the order, goods issue posted (as VL01N + PGI would)."""
    order, items = _order_and_items(sales_order)
    service = load_service("API_OUTBOUND_DELIVERY_SRV")
    header_set, item_set = service.sets["A_OutbDeliveryHeader"], service.sets["A_OutbDeliveryItem"]
    today = f"/Date({int(datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)})/"
    with transaction.atomic():
        number = _next_number(service.name, header_set)
        data = {
            "DeliveryDocument": number,
            "DeliveryDocumentType": "LF",
            "SalesOrganization": order.data.get("SalesOrganization"),
            "SoldToParty": order.data.get("SoldToParty"),
            "ShipToParty": order.data.get("SoldToParty"),
            "DeliveryDate": today,
            "ActualGoodsMovementDate": today,
            "OverallGoodsMovementStatus": "C",
            "OverallSDProcessStatus": "C",
        }
        _stamp(header_set, data, user, created=True)
        header = EmulatorRecord.objects.create(
            emulator=EMULATOR, entity=_entity(service.name, header_set), key=format_key(header_set, data), data=data
        )
        for position, item in enumerate(items, start=1):
            row = {
                "DeliveryDocument": number,
                "DeliveryDocumentItem": str(position * 10),
                "Material": item.data.get("Material"),
                "ActualDeliveryQuantity": item.data.get("RequestedQuantity"),
                "DeliveryQuantityUnit": item.data.get("RequestedQuantityUnit", ""),
                "ReferenceSDDocument": sales_order,
                "ReferenceSDDocumentItem": item.data.get("SalesOrderItem"),
            }
            EmulatorRecord.objects.create(
                emulator=EMULATOR, entity=_entity(service.name, item_set), key=format_key(item_set, row), data=row
            )
        events = [("Created", _event_data(service.name, header_set, data))]
        transaction.on_commit(lambda: _push_events(events))
    return header


def create_billing_document(*, sales_order: str, user: str = "ICBRIDGE") -> EmulatorRecord:
    """An invoice (F2) for the order's items, posted to accounting."""
    order, items = _order_and_items(sales_order)
    service = load_service("API_BILLING_DOCUMENT_SRV")
    header_set, item_set = service.sets["A_BillingDocument"], service.sets["A_BillingDocumentItem"]
    today = f"/Date({int(datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)})/"
    with transaction.atomic():
        number = _next_number(service.name, header_set)
        total = sum((Decimal(str(i.data.get("NetAmount") or 0)) for i in items), Decimal(0))
        data = {
            "BillingDocument": number,
            "SDDocumentCategory": "M",
            "BillingDocumentCategory": "L",
            "BillingDocumentType": "F2",
            "BillingDocumentDate": today,
            "SalesOrganization": order.data.get("SalesOrganization"),
            "SoldToParty": order.data.get("SoldToParty"),
            "TotalNetAmount": format(total, "f"),
            "TransactionCurrency": order.data.get("TransactionCurrency", ""),
            "AccountingDocument": number,
            "AccountingPostingStatus": "C",
            "OverallBillingStatus": "C",
        }
        _stamp(header_set, data, user, created=True)
        header = EmulatorRecord.objects.create(
            emulator=EMULATOR, entity=_entity(service.name, header_set), key=format_key(header_set, data), data=data
        )
        for position, item in enumerate(items, start=1):
            row = {
                "BillingDocument": number,
                "BillingDocumentItem": str(position * 10),
                "Material": item.data.get("Material"),
                "BillingQuantity": item.data.get("RequestedQuantity"),
                "BillingQuantityUnit": item.data.get("RequestedQuantityUnit", ""),
                "NetAmount": item.data.get("NetAmount", "0"),
                "TransactionCurrency": order.data.get("TransactionCurrency", ""),
                "ReferenceSDDocument": sales_order,
                "ReferenceSDDocumentItem": item.data.get("SalesOrderItem"),
                "SalesDocument": sales_order,
                "SalesDocumentItem": item.data.get("SalesOrderItem"),
            }
            EmulatorRecord.objects.create(
                emulator=EMULATOR, entity=_entity(service.name, item_set), key=format_key(item_set, row), data=row
            )
        events = [("Created", _event_data(service.name, header_set, data))]
        transaction.on_commit(lambda: _push_events(events))
    return header


@csrf_exempt
@with_faults(EMULATOR, _fault_body)
def emulator_operation(request: HttpRequest, operation: str) -> HttpResponse:
    user = _authenticate(request)
    if user is None:
        return _unauthorized()
    if request.method != "POST":
        return sap_error(405, "/IWBEP/CM_MGW_RT/025", "use POST")
    try:
        sales_order = str(_json_body(request.body).get("SalesOrder") or "")
        if not sales_order:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/000", "field 'SalesOrder' is missing")
        create = create_outbound_delivery if operation == "outbound-deliveries" else create_billing_document
        record = create(sales_order=sales_order, user=user)
    except ODataError as error:
        return sap_error(error.status, error.code, error.message)
    return JsonResponse({"d": {k: v for k, v in record.data.items() if not k.startswith("__")}}, status=201)


urlpatterns = [
    path("oauth/token", oauth_token, name="s4hana-oauth-token"),
    re_path(
        r"^emulator/(?P<operation>outbound-deliveries|billing-documents)$", emulator_operation, name="s4hana-emulator"
    ),
    re_path(r"^sap/opu/odata/sap/(?P<service>\w+)/?$", odata, name="s4hana-service"),
    re_path(r"^sap/opu/odata/sap/(?P<service>\w+)/(?P<resource>.+)$", odata, name="s4hana-odata"),
]


def reset() -> None:
    EmulatorRecord.objects.filter(emulator=EMULATOR).delete()
    EmulatorSubscription.objects.filter(emulator=EMULATOR).delete()
