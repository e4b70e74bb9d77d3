"""Dynamics 365 Finance & Operations emulator, served under /sandbox/finops/.

data/<Entity>                          OData v4 data entities keyed with dataAreaId; reads return only the
                                       caller's default company unless ?cross-company=true (as F&O does)
data/<Entity>(dataAreaId='x',K='v')    GET / PATCH (update, If-Match → 412) / DELETE; POST on the collection
data/$batch                            multipart/mixed with change sets
api/services                           custom services: groups, services, operations (GET lists, POST calls)
  IcbAvailabilityServices/IcbAvailabilityService/checkAvailability   availability and price of an item
  IcbSandboxServices/IcbSalesOrderService/{confirm,postPackingSlip,postInvoice,placeHold}
                                       drive a sales order's documents and holds; each raises a business event
  IcbOrderHoldServices/IcbOrderHoldService/clearHold                 clear an order hold (idempotent)

Lines are written through their own entity after their header (SalesOrderLines, SalesQuotationLines): a
list or object in a request body is refused, as F&O data entities take no deep insert.

Business events go to every enabled EmulatorSubscription(emulator="finops") whose event_type is blank or the
BusinessEventId, as the real JSON envelope (BusinessEventId, ControlNumber, EventId, EventTime /Date(ms)/,
MajorVersion, MinorVersion, BusinessEventLegalEntity, …), after the transaction commits, from a small thread
pool with a bounded timeout; each delivery is logged as an EmulatorRecord (entity "$event").

Server-managed fields the real entities lack: ModifiedDateTime (UTC, for modified-since reads). dataAreaId is
answered lower-case, as F&O does. Errors use the F&O OData shape
{"error": {"code": "", "message": "An error has occurred.", "innererror": {"message": …, "type": …}}}.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import requests
from django.db import close_old_connections, connection, transaction
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from sandbox.emulators import _odata4 as odata
from sandbox.emulators import azuread
from sandbox.emulators._odata4 import Result
from sandbox.emulators._odata4_limits import DEFAULT_LIMITS, ServiceProtection, checked_limits
from sandbox.faults import with_faults
from sandbox.models import EmulatorRecord, EmulatorSubscription
from sandbox.models.store import next_change_seq

logger = logging.getLogger(__name__)

EMULATOR = "finops"
DEFAULT_COMPANY = "usmf"
PAGE_SIZE = 10_000  # F&O answers at most 10,000 rows per page
EVENT_TIMEOUT = (2.0, 5.0)  # connect, read: a slow subscriber never holds a worker for long


@dataclass(frozen=True)
class Entity:
    keys: tuple[str, ...]  # besides dataAreaId
    table: str  # the AOT entity, named in write errors
    required: tuple[str, ...] = ()
    generated: str = ""  # a key F&O numbers itself when a POST leaves it out


ENTITIES: dict[str, Entity] = {
    "CustomersV3": Entity(("CustomerAccount",), "CustCustomerV3Entity", ("CustomerGroupId",)),
    "ReleasedProductsV2": Entity(("ItemNumber",), "EcoResReleasedProductV2Entity"),
    "WarehousesOnHandV2": Entity(
        ("ItemNumber", "InventorySiteId", "InventoryWarehouseId"), "InventWarehouseOnHandV2Entity"
    ),
    "SalesOrderHeadersV2": Entity(
        ("SalesOrderNumber",), "SalesOrderHeaderV2Entity", ("OrderingCustomerAccountNumber",), "SalesOrderNumber"
    ),
    "SalesOrderLines": Entity(
        ("InventoryLotId",), "SalesOrderLineEntity", ("SalesOrderNumber", "ItemNumber"), "InventoryLotId"
    ),
    "PurchaseOrderHeadersV2": Entity(
        ("PurchaseOrderNumber",),
        "PurchPurchaseOrderHeaderV2Entity",
        ("OrderVendorAccountNumber",),
        "PurchaseOrderNumber",
    ),
    "PurchaseOrderLinesV2": Entity(
        ("PurchaseOrderNumber", "LineNumber"), "PurchPurchaseOrderLineV2Entity", ("ItemNumber",)
    ),
    "SalesInvoiceHeadersV2": Entity(("InvoiceNumber",), "SalesInvoiceHeaderV2Entity"),
    "ContactPersonsV2": Entity(("ContactPersonId",), "ContactPersonV2Entity", (), "ContactPersonId"),
    "SalesQuotationHeadersV2": Entity(
        ("SalesQuotationNumber",),
        "SalesQuotationHeaderV2Entity",
        ("RequestingCustomerAccountNumber",),
        "SalesQuotationNumber",
    ),
    "SalesQuotationLines": Entity(
        ("InventoryLotId",), "SalesQuotationLineEntity", ("SalesQuotationNumber", "ItemNumber"), "InventoryLotId"
    ),
    # Order holds (MCRHoldCodeTrans); placed and cleared through the services below, readable here.
    "SalesOrderHolds": Entity(("SalesOrderNumber", "HoldCode"), "MCRHoldCodeTransEntity"),
    "VendorInvoiceHeaders": Entity(("HeaderReference",), "VendorInvoiceHeaderEntity", ("InvoiceAccount",)),
}
# Lines need their header first (no deep insert on F&O entities): header → line entity, parent key.
LINE_PARENTS: dict[str, tuple[str, str]] = {
    "SalesOrderLines": ("SalesOrderHeadersV2", "SalesOrderNumber"),
    "SalesQuotationLines": ("SalesQuotationHeadersV2", "SalesQuotationNumber"),
}
_ENTITY_PATH = re.compile(r"^(?P<set>\w+)(?:\((?P<key>.*)\))?$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


# --- responses ----------------------------------------------------------------------------------


def error(status: int, message: str, *, inner: str = "", kind: str = "", **headers: str) -> Result:
    body: dict[str, Any] = {"code": "", "message": message}
    if inner:
        body["innererror"] = {"message": inner, "type": kind or "System.Exception", "stacktrace": ""}
    return Result.json({"error": body}, status, **headers)


def write_failed(entity: Entity, text: str, status: int = 400) -> Result:
    return error(
        status,
        "An error has occurred.",
        inner=f"Write failed for table row of type '{entity.table}'. Infolog: Error: {text}",
        kind="Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException",
    )


def _fault_body(status: int, text: str) -> HttpResponse:
    if status == 429:
        return Result.to_http(
            error(
                429,
                "This request could not be processed at this time due to system experiencing high resource "
                f"utilization. ({text})",
            )
        )
    return Result.to_http(error(status, f"The service is unavailable. ({text})"))


# --- settings, counters, service protection ----------------------------------------------------

_limits = ServiceProtection()
_THROTTLE_MESSAGES = {
    # Verbatim from Microsoft Learn (fixtures/finops/service-protection-429-messages.md), "exeeded" included.
    "requests": "Number of requests exeeded the limit of {requests} over the time window of {window_seconds} seconds.",
    "execution_ms": "Combined execution time of incoming requests exceeded limit of {execution_s} seconds over time "
    "window of {window_seconds} seconds. Decrease number of concurrent requests or reduce the duration of requests "
    "and try again later.",
    "concurrent": "Number of concurrent requests exceeded the limit of {concurrent}.",
}


def _config_row(name: str) -> EmulatorRecord | None:
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity="$config", company="", key=name).first()


def settings_get() -> dict[str, Any]:
    row = _config_row("settings")
    return {"default_company": DEFAULT_COMPANY, "currency": "EUR", **(row.data if row else {})}


def configure(*, default_company: str | None = None, currency: str | None = None) -> dict[str, Any]:
    """Set the application user's default company (reads without cross-company see only it) and currency."""
    values = settings_get()
    if default_company is not None:
        values["default_company"] = default_company.lower()
    if currency is not None:
        values["currency"] = currency
    EmulatorRecord.objects.update_or_create(
        emulator=EMULATOR, entity="$config", company="", key="settings", defaults={"data": values}
    )
    return values


def configure_service_protection(**changes: int) -> dict[str, int]:
    """Change the user-based limits (requests, window_seconds, execution_ms, concurrent); counters restart."""
    row = _config_row("service-protection")
    limits = checked_limits(row.data if row else {}, changes)
    EmulatorRecord.objects.update_or_create(
        emulator=EMULATOR, entity="$config", company="", key="service-protection", defaults={"data": limits}
    )
    _limits.reset()
    return limits


def _service_protection_limits() -> dict[str, int]:
    row = _config_row("service-protection")
    return {**DEFAULT_LIMITS, **(row.data if row else {})}


def _next_number(counter: str) -> int:
    """A per-emulator number sequence (control numbers, packing slips, invoices), safe under concurrency."""
    row, _ = EmulatorRecord.objects.select_for_update().get_or_create(
        emulator=EMULATOR, entity="$config", company="", key="counters", defaults={"data": {}}
    )
    value = int(row.data.get(counter, 0)) + 1
    row.data[counter] = value
    row.save(update_fields=["data", "modified_at"])
    return value


# --- a call -------------------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str  # after data/
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    root: str  # https://host/sandbox/finops/data
    default_company: str
    # Headers written earlier in the same change set: their lines need not look them up again.
    created: set[tuple[str, str, str]] = field(default_factory=set)

    @property
    def cross_company(self) -> bool:
        return self.query.get("cross-company", "").lower() == "true"


def _etag(record: EmulatorRecord) -> str:
    # F&O ETags are W/"<base64 of '1,<RecVersion>'>".
    return 'W/"' + base64.b64encode(f"'1,{record.version}'".encode()).decode() + '"'


def _now_iso() -> str:
    return timezone.now().isoformat(timespec="microseconds").replace("+00:00", "Z")


def _record_key(entity: Entity, values: dict[str, Any]) -> str:
    return "|".join(str(values[name]) for name in entity.keys)


def _entity_json(record: EmulatorRecord, select: str | None) -> dict[str, Any]:
    return odata.select_fields({"@odata.etag": _etag(record), **record.data}, select)


def _rows(name: str):
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity=name, deleted=False)


def _key_of(call: Call, entity_name: str, entity: Entity, raw: str) -> tuple[str, str] | Result:
    """(company, record key) from dataAreaId='x',K='v'; a key outside the default company needs cross-company."""
    key = odata.parse_key(raw)
    expected = {"dataAreaId", *entity.keys}
    if not isinstance(key, dict) or set(key) != expected:
        return error(
            400,
            f"The key of {entity_name} is ({', '.join(sorted(expected))}); got ({raw}).",
        )
    company = str(key["dataAreaId"]).lower()
    if company != call.default_company and not call.cross_company:
        return _not_found()
    return company, _record_key(entity, key)


def _not_found() -> Result:
    return error(404, "An error has occurred.", inner="Requested resource not found.")


def _validate(entity: Entity, body: Any, *, creating: bool) -> Result | None:
    if not isinstance(body, dict):
        return error(400, "The request body must be a JSON object.")
    for name in body:
        if not name.startswith("@") and not _FIELD.match(name):
            return error(
                400,
                f"The property '{name}' does not exist on type "
                f"'Microsoft.Dynamics.DataEntities.{entity.table.removesuffix('Entity')}'. Make sure to only use "
                "property names that are defined by the type.",
            )
    for name, value in body.items():
        if isinstance(value, list | dict):
            # F&O data entities take no deep insert: lines are written through their own entity.
            return error(
                400,
                f"The property '{name}' of '{entity.table}' is a navigation property or holds a structured "
                "value; deep insert and nested values are not supported. Create the header, then write "
                "related records (lines) through their own entity.",
                inner=f"Deep insert is not supported on {entity.table}.",
                kind="Microsoft.OData.ODataException",
            )
    if creating:
        for name in entity.required:
            if body.get(name) in (None, ""):
                return write_failed(entity, f"Field '{name}' must be filled in.")
    for name in ("OrderedSalesQuantity", "OrderedPurchaseQuantity", "RequestedSalesQuantity"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or value <= 0):
            return write_failed(entity, f"{name} must be a positive number, got {value!r}.")
    return None


def _write(
    name: str, entity: Entity, company: str, record: EmulatorRecord | None, values: dict[str, Any]
) -> EmulatorRecord:
    seq = next_change_seq()
    version = seq % 2_000_000_000  # RecVersion is an int32 in F&O
    values = {k: v for k, v in values.items() if not k.startswith("@")}
    if record is None:
        data = {**values, "dataAreaId": company, "ModifiedDateTime": _now_iso()}
        return EmulatorRecord.objects.create(
            emulator=EMULATOR,
            entity=name,
            company=company,
            key=_record_key(entity, data),
            data=data,
            version=version,
            change_seq=seq,
        )
    record.data = {**record.data, **values, "dataAreaId": company, "ModifiedDateTime": _now_iso()}
    record.version = version
    record.change_seq = seq
    record.save(update_fields=["data", "version", "change_seq", "modified_at"])
    return record


def _create(call: Call, name: str, entity: Entity, body: Any) -> Result:
    if failure := _validate(entity, body, creating=True):
        return failure
    # Without cross-company=true F&O writes into the caller's default company whatever dataAreaId says.
    company = (
        str(body.get("dataAreaId") or call.default_company).lower() if call.cross_company else call.default_company
    )
    values = dict(body)
    numbered = entity.generated and not values.get(entity.generated)
    if numbered and name in LINE_PARENTS:
        # Lot ids only need to be unique; a counter row would serialise every order's lines.
        values[entity.generated] = f"IL{uuid.uuid4().hex[:16].upper()}"
    elif numbered:
        values[entity.generated] = f"{entity.generated[:2].upper()}{_next_number(f'{name}:{company}'):06d}"
    missing = [k for k in entity.keys if values.get(k) in (None, "")]
    if missing:
        return write_failed(entity, f"Field '{missing[0]}' must be filled in.")
    if name in LINE_PARENTS:
        header, parent_key = LINE_PARENTS[name]
        parent = (header, company, str(values[parent_key]))
        if parent not in call.created and not _rows(header).filter(company=company, key=parent[2]).exists():
            what = "Sales order" if header == "SalesOrderHeadersV2" else "Sales quotation"
            return write_failed(entity, f"{what} {values[parent_key]} does not exist.")
    if not numbered and _rows(name).filter(company=company, key=_record_key(entity, values)).exists():
        return write_failed(entity, "The record already exists.")
    record = _write(name, entity, company, None, values)
    call.created.add((name, company, record.key))
    location = f"{call.root}/{name}({odata.format_key({'dataAreaId': company, **{k: values[k] for k in entity.keys}})})"
    body_out = {"@odata.context": f"{call.root}/$metadata#{name}/$entity", **_entity_json(record, None)}
    return Result.json(body_out, 201, ETag=_etag(record), Location=location)


def _list(call: Call, name: str) -> Result:
    rows = _rows(name)
    if not call.cross_company:
        rows = rows.filter(company=call.default_company)
    records = list(rows.order_by("company", "key"))
    if "$filter" in call.query:
        node = odata.parse_filter(call.query["$filter"])
        records = [r for r in records if odata.evaluate(node, r.data)]
    if order := call.query.get("$orderby"):
        for clause in reversed([c.strip() for c in order.split(",") if c.strip()]):
            field_name, _, direction = clause.partition(" ")
            records.sort(
                key=lambda r, n=field_name: (r.data.get(n) is None, str(r.data.get(n) or "")),
                reverse=direction.strip().lower() == "desc",
            )
    skip = call.query.get("$skip", "0")
    top = call.query.get("$top")
    for param, value in (("$skip", skip), ("$top", top)):
        if value is not None and not value.isdigit():
            return error(400, f"The query parameter '{param}' is not valid: '{value}' is not a non-negative integer.")
    records = records[int(skip) :]
    page_size = PAGE_SIZE
    prefer = call.headers.get("prefer", "")
    if match := re.search(r"odata\.maxpagesize=(\d+)", prefer):
        page_size = min(PAGE_SIZE, max(1, int(match.group(1))))
    body: dict[str, Any] = {"@odata.context": f"{call.root}/$metadata#{name}"}
    if top is not None:
        records = records[: int(top)]
    if len(records) > page_size:
        records = records[:page_size]
        query = {**call.query, "$skip": str(int(skip) + page_size)}
        body["@odata.nextLink"] = f"{call.root}/{name}?{urlencode(query, quote_via=quote, safe='$,()')}"
    body["value"] = [_entity_json(r, call.query.get("$select")) for r in records]
    return Result.json(body)


def dispatch(call: Call) -> Result:
    match = _ENTITY_PATH.match(call.path)
    entity = ENTITIES.get(match.group("set")) if match else None
    if match is None or entity is None:
        return error(404, f"No HTTP resource was found that matches the request URI '{call.root}/{call.path}'.")
    name, raw_key = match.group("set"), match.group("key")
    try:
        body: Any = None
        if call.method in ("POST", "PATCH"):
            try:
                body = json.loads(call.body or b"{}")
            except ValueError:
                return error(400, "The request body is not valid JSON.")
        if raw_key is None:
            if call.method == "GET":
                return _list(call, name)
            if call.method == "POST":
                return _create(call, name, entity, body)
            return error(405, f"The requested resource does not support http method '{call.method}'.")
        located = _key_of(call, name, entity, raw_key)
        if isinstance(located, Result):
            return located
        company, key = located
        record = _rows(name).filter(company=company, key=key).first()
        if record is None:
            return _not_found()
        if call.method == "GET":
            body_out = {
                "@odata.context": f"{call.root}/$metadata#{name}/$entity",
                **_entity_json(record, call.query.get("$select")),
            }
            return Result.json(body_out, ETag=_etag(record))
        if_match = call.headers.get("if-match", "")
        if if_match and if_match not in ("*", _etag(record)):
            return error(
                412,
                "An error has occurred.",
                inner="The ETag value in the request header does not match with the current ETag value of the object.",
                kind="Microsoft.OData.ODataException",
            )
        if call.method == "PATCH":
            if failure := _validate(entity, body, creating=False):
                return failure
            changed_keys = [
                k
                for k in ("dataAreaId", *entity.keys)
                if k in body and str(body[k]).lower() != str(record.data.get(k)).lower()
            ]
            if changed_keys:
                return write_failed(entity, f"Key field '{changed_keys[0]}' cannot be changed.")
            record = _write(name, entity, company, record, body)
            return Result(204, {"OData-Version": "4.0", "ETag": _etag(record)})
        if call.method == "DELETE":
            record.deleted = True
            record.change_seq = next_change_seq()
            record.save(update_fields=["deleted", "change_seq", "modified_at"])
            return Result(204, {"OData-Version": "4.0"})
        return error(405, f"The requested resource does not support http method '{call.method}'.")
    except odata.ODataError as exc:
        return error(400, f"The query specified in the URI is not valid. {exc}")


class _ChangeSetFailed(Exception):
    def __init__(self, response: odata.BatchResponse) -> None:
        self.response = response


def _part_call(part: odata.BatchRequest, outer: Call, created: set[tuple[str, str, str]]) -> Call:
    parts = urlsplit(part.url)
    relative = parts.path.split("/data/", 1)[1] if "/data/" in parts.path else parts.path.lstrip("/")
    return Call(
        method=part.method,
        path=unquote(relative),
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers=part.headers,
        body=part.body,
        root=outer.root,
        default_company=outer.default_company,
        created=created,
    )


def batch(call: Call) -> Result:
    """$batch: change sets all-or-nothing; independent requests each on their own."""
    try:
        items = odata.parse_batch(call.body, call.headers.get("content-type", ""))
    except (odata.ODataError, UnicodeDecodeError) as exc:
        return error(400, f"The $batch request could not be read: {exc}")
    results: list[odata.BatchResponse | list[odata.BatchResponse]] = []
    for item in items:
        if isinstance(item, odata.BatchChangeSet):
            responses: list[odata.BatchResponse] = []
            try:
                with transaction.atomic():
                    created: set[tuple[str, str, str]] = set()
                    for part in item.requests:
                        result = dispatch(_part_call(part, call, created))
                        response = odata.BatchResponse(result.status, result.headers, result.body, part.content_id)
                        if result.status >= 400:
                            raise _ChangeSetFailed(response)
                        responses.append(response)
            except _ChangeSetFailed as failed:
                results.append(failed.response)
                continue
            results.append(responses)
        else:
            result = dispatch(_part_call(item, call, set()))
            results.append(odata.BatchResponse(result.status, result.headers, result.body, item.content_id))
    text, content_type = odata.render_batch(results)
    return Result(200, {"Content-Type": content_type, "OData-Version": "4.0"}, text.encode())


# --- business events ----------------------------------------------------------------------------

_pusher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="finops-events")


def _date_ms(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)})/"


def business_event(event_id: str, company: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The envelope F&O sends: the standard header fields, then the event's own."""
    moment = timezone.now()
    return {
        "BusinessEventId": event_id,
        "BusinessEventLegalEntity": company.upper(),
        "ContextRecordSubject": "",
        "ControlNumber": 5637144576 + _next_number("control"),
        "EventId": str(uuid.uuid4()).upper(),
        "EventTime": _date_ms(moment),
        "EventTimeIso8601": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "InitiatingUserAADObjectId": "{00000000-0000-0000-0000-000000000000}",
        "MajorVersion": 0,
        "MinorVersion": 0,
        "ParentContextRecordSubjects": [],
        **fields,
    }


def raise_event(envelope: dict[str, Any]) -> None:
    """Push the event to its subscribers once the surrounding transaction has committed."""
    subscriptions = [
        (s.url, dict(s.headers or {}))
        for s in EmulatorSubscription.objects.filter(emulator=EMULATOR, enabled=True)
        if not s.event_type or s.event_type == envelope["BusinessEventId"]
    ]
    EmulatorRecord.objects.create(
        emulator=EMULATOR,
        entity="$event",
        company=envelope["BusinessEventLegalEntity"].lower(),
        key=envelope["EventId"],
        data={"envelope": envelope, "deliveries": []},
    )
    if subscriptions:
        transaction.on_commit(lambda: _pusher.submit(_push, envelope, subscriptions))


def _push(envelope: dict[str, Any], subscriptions: list[tuple[str, dict[str, str]]]) -> None:
    close_old_connections()
    try:
        deliveries = []
        for url, headers in subscriptions:
            started = time.monotonic()
            try:
                response = requests.post(url, json=envelope, headers=headers, timeout=EVENT_TIMEOUT)
                outcome = {"status": response.status_code}
            except requests.RequestException as exc:
                outcome = {"error": type(exc).__name__}
            deliveries.append({"url": url, "ms": round((time.monotonic() - started) * 1000), **outcome})
        EmulatorRecord.objects.filter(emulator=EMULATOR, entity="$event", key=envelope["EventId"]).update(
            data={"envelope": envelope, "deliveries": deliveries}
        )
    except Exception:  # a background thread must log, not die silently
        logger.exception("finops emulator: pushing business event %s failed", envelope.get("BusinessEventId"))
    finally:
        connection.close()


# --- custom services ----------------------------------------------------------------------------


class ServiceFault(Exception):
    """An X++ exception inside a custom service operation: 500 with the XppServicesException body."""


def _param(params: dict[str, Any], name: str, kind: type = str) -> Any:
    if name not in params or params[name] in (None, ""):
        raise ServiceFault(f"Parameter '{name}' is missing.")
    value = params[name]
    if kind is Decimal:
        try:
            return Decimal(str(value))
        except ArithmeticError as exc:
            raise ServiceFault(f"Parameter '{name}' must be a number, got {value!r}.") from exc
    return str(value)


def check_availability(params: dict[str, Any]) -> dict[str, Any]:
    """Available quantity (WarehousesOnHandV2) and sales price (ReleasedProductsV2) of one item."""
    company = _param(params, "_dataAreaId").lower()
    item = _param(params, "_itemNumber")
    quantity = _param(params, "_quantity", Decimal)
    product = _rows("ReleasedProductsV2").filter(company=company, key=item).first()
    if product is None:
        raise ServiceFault(f"Item number {item} does not exist in company {company}.")
    on_hand = sum(
        Decimal(str(r.data.get("AvailableOnHandQuantity") or 0))
        for r in _rows("WarehousesOnHandV2").filter(company=company, data__ItemNumber=item)
    )
    price = Decimal(str(product.data.get("SalesPrice") or 0))
    return {
        "$id": "1",
        "dataAreaId": company,
        "ItemNumber": item,
        "RequestedQuantity": float(quantity),
        "AvailableQuantity": float(on_hand),
        "IsAvailable": on_hand >= quantity,
        "UnitPrice": float(price),
        "NetAmount": float(price * quantity),
        "CurrencyCode": product.data.get("SalesCurrencyCode") or settings_get()["currency"],
    }


def _sales_order(params: dict[str, Any]) -> tuple[str, EmulatorRecord]:
    company = _param(params, "_dataAreaId").lower()
    number = _param(params, "_salesOrderNumber")
    header = _rows("SalesOrderHeadersV2").select_for_update().filter(company=company, key=number).first()
    if header is None:
        raise ServiceFault(f"Sales order {number} does not exist in company {company}.")
    return company, header


def _order_fields(company: str, header: EmulatorRecord) -> dict[str, Any]:
    return {
        "SalesOrderNumber": header.key,
        "LegalEntity": company.upper(),
        "CustomerAccount": header.data.get("OrderingCustomerAccountNumber", ""),
        "CustomerRequisitionNumber": header.data.get("CustomerRequisitionNumber", ""),
        "CustomersOrderReference": header.data.get("CustomersOrderReference", ""),
    }


def _set_status(company: str, header: EmulatorRecord, **values: Any) -> None:
    _write("SalesOrderHeadersV2", ENTITIES["SalesOrderHeadersV2"], company, header, values)


def confirm_sales_order(params: dict[str, Any]) -> dict[str, Any]:
    company, header = _sales_order(params)
    number = f"{header.key}-{_next_number(f'confirmation:{company}:{header.key}')}"
    _set_status(company, header, DocumentStatus="Confirmation")
    event = business_event(
        "SalesOrderConfirmedBusinessEvent", company, {**_order_fields(company, header), "ConfirmationNumber": number}
    )
    raise_event(event)
    return {"$id": "1", "SalesOrderNumber": header.key, "DocumentNumber": number, "EventId": event["EventId"]}


def post_packing_slip(params: dict[str, Any]) -> dict[str, Any]:
    company, header = _sales_order(params)
    number = f"PS{_next_number(f'packingslip:{company}'):06d}"
    lines = list(_rows("SalesOrderLines").filter(company=company, data__SalesOrderNumber=header.key))
    _set_status(company, header, SalesOrderStatus="Delivered", DocumentStatus="PackingSlip")
    event = business_event(
        "SalesPackingSlipPostedBusinessEvent",
        company,
        {
            **_order_fields(company, header),
            "PackingSlipNumber": number,
            "PackingSlipDate": _date_ms(timezone.now()),
            "Lines": [
                {
                    "ItemNumber": line.data.get("ItemNumber"),
                    "Quantity": line.data.get("OrderedSalesQuantity"),
                    "InventoryLotId": line.key,
                }
                for line in lines
            ],
        },
    )
    raise_event(event)
    return {"$id": "1", "SalesOrderNumber": header.key, "DocumentNumber": number, "EventId": event["EventId"]}


def post_invoice(params: dict[str, Any]) -> dict[str, Any]:
    company, header = _sales_order(params)
    number = f"CIV{_next_number(f'invoice:{company}'):06d}"
    lines = list(_rows("SalesOrderLines").filter(company=company, data__SalesOrderNumber=header.key))
    amount = sum(
        Decimal(str(line.data.get("OrderedSalesQuantity") or 0)) * Decimal(str(line.data.get("SalesPrice") or 0))
        for line in lines
    )
    currency = header.data.get("CurrencyCode") or settings_get()["currency"]
    invoice_date = timezone.now().date().isoformat()
    _write(
        "SalesInvoiceHeadersV2",
        ENTITIES["SalesInvoiceHeadersV2"],
        company,
        None,
        {
            "InvoiceNumber": number,
            "SalesOrderNumber": header.key,
            "InvoiceCustomerAccountNumber": header.data.get("OrderingCustomerAccountNumber", ""),
            "InvoiceDate": f"{invoice_date}T12:00:00Z",
            "TotalInvoiceAmount": float(amount),
            "CurrencyCode": currency,
        },
    )
    _set_status(company, header, SalesOrderStatus="Invoiced", DocumentStatus="Invoice")
    event = business_event(
        "SalesOrderInvoicedBusinessEvent",
        company,
        {
            **_order_fields(company, header),
            "InvoiceNumber": number,
            "InvoiceDate": _date_ms(timezone.now()),
            "InvoiceAmount": float(amount),
            "CurrencyCode": currency,
        },
    )
    raise_event(event)
    return {"$id": "1", "SalesOrderNumber": header.key, "DocumentNumber": number, "EventId": event["EventId"]}


def _hold_key(params: dict[str, Any]) -> tuple[str, EmulatorRecord, str]:
    company, header = _sales_order(params)
    return company, header, _param(params, "_holdCode")


def place_hold(params: dict[str, Any]) -> dict[str, Any]:
    """An F&O user puts the order on hold (Sales order > Order holds); raises SalesOrderHoldPlacedBusinessEvent."""
    company, header, code = _hold_key(params)
    reason = str(params.get("_holdReason") or "")
    entity = ENTITIES["SalesOrderHolds"]
    existing = _rows("SalesOrderHolds").filter(company=company, key=f"{header.key}|{code}").first()
    if existing is not None and not existing.data.get("IsCleared"):
        raise ServiceFault(f"Sales order {header.key} is already on hold {code}.")
    placed = _now_iso()
    _write(
        "SalesOrderHolds",
        entity,
        company,
        existing,
        {
            "SalesOrderNumber": header.key,
            "HoldCode": code,
            "HoldReason": reason,
            "IsCleared": False,
            "PlacedDateTime": placed,
            "ClearedBy": "",
            "ClearedDateTime": None,
        },
    )
    _set_status(company, header, OrderHoldCode=code)
    event = business_event(
        "SalesOrderHoldPlacedBusinessEvent",
        company,
        {**_order_fields(company, header), "HoldCode": code, "HoldReason": reason},
    )
    raise_event(event)
    return {"$id": "1", "SalesOrderNumber": header.key, "HoldCode": code, "EventId": event["EventId"]}


def clear_hold(params: dict[str, Any]) -> dict[str, Any]:
    """The customer's X++ service behind "clear hold": clears one hold; clearing a cleared hold changes nothing."""
    company, header, code = _hold_key(params)
    hold = _rows("SalesOrderHolds").select_for_update().filter(company=company, key=f"{header.key}|{code}").first()
    if hold is None:
        raise ServiceFault(f"Sales order {header.key} has no hold {code}.")
    answer = {"$id": "1", "SalesOrderNumber": header.key, "HoldCode": code}
    if hold.data.get("IsCleared"):
        return {**answer, "Cleared": True, "AlreadyCleared": True, "ClearedBy": hold.data.get("ClearedBy", "")}
    cleared_by = str(params.get("_clearedBy") or "")
    _write(
        "SalesOrderHolds",
        ENTITIES["SalesOrderHolds"],
        company,
        hold,
        {"IsCleared": True, "ClearedBy": cleared_by, "ClearedDateTime": _now_iso()},
    )
    still_held = _rows("SalesOrderHolds").filter(
        company=company, data__SalesOrderNumber=header.key, data__IsCleared=False
    )
    _set_status(company, header, OrderHoldCode=still_held.values_list("data__HoldCode", flat=True).first() or "")
    return {**answer, "Cleared": True, "AlreadyCleared": False, "ClearedBy": cleared_by}


ORDER = [("_dataAreaId", "String"), ("_salesOrderNumber", "String")]
SERVICES: dict[str, dict[str, dict[str, tuple[Any, list[tuple[str, str]], str]]]] = {
    "IcbAvailabilityServices": {
        "IcbAvailabilityService": {
            "checkAvailability": (
                check_availability,
                [("_dataAreaId", "String"), ("_itemNumber", "String"), ("_quantity", "Real")],
                "IcbAvailabilityContract",
            ),
        }
    },
    "IcbSandboxServices": {
        "IcbSalesOrderService": {
            **{
                op: (fn, ORDER, "IcbDocumentContract")
                for op, fn in (
                    ("confirm", confirm_sales_order),
                    ("postPackingSlip", post_packing_slip),
                    ("postInvoice", post_invoice),
                )
            },
            "placeHold": (place_hold, [*ORDER, ("_holdCode", "String"), ("_holdReason", "String")], "IcbHoldContract"),
        }
    },
    "IcbOrderHoldServices": {
        "IcbOrderHoldService": {
            "clearHold": (
                clear_hold,
                [*ORDER, ("_holdCode", "String"), ("_clearedBy", "String")],
                "IcbHoldContract",
            ),
        }
    },
}


def _service_fault(text: str) -> Result:
    return Result.json(
        {
            "Message": f"An exception occured when invoking the operation - {text}",
            "ExceptionType": "XppServicesException",
            "ExceptionMessage": text,
            "StackTrace": "",
        },
        500,
    )


def services(request: HttpRequest, rest: str) -> Result:
    parts = [p for p in rest.split("/") if p]
    if request.method == "GET" or not parts:
        if not parts:
            return Result.json({"ServiceGroups": [{"Name": g} for g in SERVICES]})
        group = SERVICES.get(parts[0])
        if group is None:
            return error(404, f"Service group '{parts[0]}' not found.")
        if len(parts) == 1:
            return Result.json({"Services": [{"Name": s} for s in group]})
        operations = group.get(parts[1])
        if operations is None:
            return error(404, f"Service '{parts[1]}' not found in group '{parts[0]}'.")
        if len(parts) == 2:
            return Result.json({"Operations": [{"Name": o} for o in operations]})
        operation = operations.get(parts[2])
        if operation is None:
            return error(404, f"Operation '{parts[2]}' not found in service '{parts[1]}'.")
        return Result.json(
            {
                "Parameters": [{"Name": n, "Type": t} for n, t in operation[1]],
                "Return": {"Name": "return", "Type": operation[2]},
            }
        )
    if len(parts) != 3:
        return error(404, "Call an operation as /api/services/<group>/<service>/<operation>.")
    operation = SERVICES.get(parts[0], {}).get(parts[1], {}).get(parts[2])
    if operation is None:
        return error(404, f"Operation '{'/'.join(parts)}' not found.")
    try:
        params = json.loads(request.body or b"{}")
    except ValueError:
        return _service_fault("The request body is not valid JSON.")
    if not isinstance(params, dict):
        return _service_fault("The request body must be a JSON object of parameters.")
    try:
        with transaction.atomic():
            return Result.json(operation[0](params))
    except ServiceFault as exc:
        return _service_fault(str(exc))


# --- views --------------------------------------------------------------------------------------


def _guarded(request: HttpRequest, handler: Any) -> HttpResponse:
    """Token, service protection, then the handler."""
    claims, why = azuread.verify_bearer(request, EMULATOR)
    if claims is None:
        return azuread.unauthorized(request, EMULATOR, why)
    if claims["denied"]:
        return Result.to_http(
            error(403, f"The application {claims.get('appid')} is not registered as a user of this environment.")
        )
    user = str(claims.get("oid", ""))
    limits = _service_protection_limits()
    exceeded, retry_after, _ = _limits.enter(user, limits)
    if exceeded:
        text = _THROTTLE_MESSAGES[exceeded].format(execution_s=limits["execution_ms"] // 1000, **limits)
        return Result.to_http(error(429, text, **{"Retry-After": str(retry_after)}))
    started = time.monotonic()
    try:
        return handler().to_http()
    finally:
        _limits.leave(user, started)


def _data_call(request: HttpRequest, rest: str) -> Call:
    scheme = "https" if request.is_secure() else "http"
    return Call(
        method=request.method or "GET",
        path=rest,
        query={k: v for k, v in request.GET.items()},
        headers={k.lower(): v for k, v in request.headers.items()},
        body=request.body,
        root=f"{scheme}://{request.get_host()}/sandbox/{EMULATOR}/data",
        default_company=settings_get()["default_company"],
    )


@csrf_exempt
@with_faults(EMULATOR, _fault_body)
def data(request: HttpRequest, rest: str) -> HttpResponse:
    def handle() -> Result:
        call = _data_call(request, rest)
        if rest == "$batch":
            return batch(call) if call.method == "POST" else error(405, "$batch takes POST")
        with transaction.atomic():
            result = dispatch(call)
        delay = request.sandbox_faults.slow_after_commit_ms
        if delay and call.method in ("POST", "PATCH", "DELETE") and result.status < 300:
            time.sleep(delay / 1000)  # committed; the caller times out and never hears of it (a lost response)
        return result

    return _guarded(request, handle)


@csrf_exempt
@with_faults(EMULATOR, _fault_body)
def api_services(request: HttpRequest, rest: str = "") -> HttpResponse:
    return _guarded(request, lambda: services(request, rest))


urlpatterns = [
    path("data/<path:rest>", data, name="finops-data"),
    path("api/services", api_services, name="finops-services-root"),
    path("api/services/<path:rest>", api_services, name="finops-services"),
]


def reset() -> None:
    """Drop every record, event log, counter and setting, and forget the service protection counters."""
    EmulatorRecord.objects.filter(emulator=EMULATOR).delete()
    _limits.reset()
