"""Dataverse Web API v9.2 emulator (Dynamics 365 Sales), served under /sandbox/dataverse/api/data/v9.2/.

Tables: accounts, contacts, products, quotes, salesorders, invoices, tasks (EmulatorRecord rows keyed by
the primary id; alternate keys below). What it answers, as Dataverse does:

GET    <set>?$select&$filter&$orderby&$top      Prefer: odata.maxpagesize=N → @odata.nextLink ($skiptoken cookie)
GET    <set>  Prefer: odata.track-changes       → @odata.deltaLink; <set>?$deltatoken=… → changes and deletions
GET    <set>(<id>) | <set>(<altkey>='v')        one row with @odata.etag
POST   <set>                                    create (204 + OData-EntityId; 201 with Prefer: return=representation)
PATCH  <set>(<key>)                             upsert; If-Match (update only, 412 on a stale ETag) /
                                                If-None-Match: * (create only, 412 when it exists)
DELETE <set>(<key>)                             tombstone kept for change tracking
POST   $batch                                   multipart/mixed with change sets (atomic), CRLF or LF
GET    WhoAmI                                   the calling application user

After a Create, Update (POST, PATCH, upsert) or Delete commits, the webhook steps registered as
EmulatorSubscription(emulator="dataverse") get the RemoteExecutionContext Dataverse posts, from a thread
pool, with retries (sandbox.emulators.dataverse_webhooks; delivery log: EmulatorRecord entity "$webhook").

Every call needs a Bearer token from the Azure AD emulator with aud = this resource. Service protection
limits are kept per application user and per process (Dataverse evaluates them per web server):
configure_service_protection() changes them; default 6,000 requests / 300 s, 1,200,000 ms execution
time, 52 concurrent. Errors use the Web API shape {"error": {"code": "0x…", "message": …}}; see
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from sandbox.emulators import _odata4 as odata
from sandbox.emulators import azuread
from sandbox.emulators import dataverse_webhooks as webhooks
from sandbox.emulators._odata4 import Result
from sandbox.emulators._odata4_limits import DEFAULT_LIMITS, ServiceProtection, checked_limits
from sandbox.faults import with_faults
from sandbox.models import EmulatorRecord, EmulatorSubscription
from sandbox.models.store import next_change_seq

EMULATOR = "dataverse"
ORGANIZATION = "icbridgesandbox"  # the environment's unique name (OrganizationName in webhooks)
API = "api/data/v9.2"
MAX_PAGE_SIZE = 5000
MAX_BATCH_REQUESTS = 1000


@dataclass(frozen=True)
class Table:
    logical_name: str
    primary_id: str
    alternate_keys: tuple[tuple[str, ...], ...]
    required: tuple[str, ...]
    max_lengths: dict[str, int] = field(default_factory=dict)


TABLES: dict[str, Table] = {
    "accounts": Table("account", "accountid", (("accountnumber",),), ("name",), {"name": 160, "accountnumber": 20}),
    "contacts": Table(
        "contact", "contactid", (("emailaddress1",), ("msdyn_contactpersonid",)), ("lastname",), {"lastname": 50}
    ),
    "products": Table("product", "productid", (("productnumber",),), ("name",), {"name": 100, "productnumber": 100}),
    "quotes": Table("quote", "quoteid", (("quotenumber",),), ("name",), {"name": 300}),
    "salesorders": Table("salesorder", "salesorderid", (("ordernumber",),), ("name",), {"name": 300}),
    "invoices": Table("invoice", "invoiceid", (("invoicenumber",),), ("name",), {"name": 300}),
    # Tasks have no standard alternate key; icb_externalkey is the custom one the hub writes holds by.
    "tasks": Table("task", "activityid", (("icb_externalkey",),), ("subject",), {"subject": 200}),
}

_ATTRIBUTE = re.compile(r"^[a-z_][a-z0-9_]*$")
# Greedy key: a ")" inside a quoted key value still belongs to the key.
_ENTITY_PATH = re.compile(r"^(?P<set>\w+)(?:\((?P<key>.*)\))?(?:/(?P<navigation>\w+))?$")
# Collection-valued navigation properties: (table, property) → (related table, its lookup column).
NAVIGATION = {
    ("accounts", "Account_Tasks"): ("tasks", "_regardingobjectid_value"),
    ("accounts", "contact_customer_accounts"): ("contacts", "_parentcustomerid_value"),
    ("accounts", "order_customer_accounts"): ("salesorders", "_customerid_value"),
    ("accounts", "quote_customer_accounts"): ("quotes", "_customerid_value"),
    ("accounts", "invoice_customer_accounts"): ("invoices", "_customerid_value"),
    ("salesorders", "SalesOrder_Tasks"): ("tasks", "_regardingobjectid_value"),
}


# --- responses ----------------------------------------------------------------------------------


def error(status: int, code: str, message: str, **headers: str) -> Result:
    """The Web API error body: {"error": {"code": "0x…", "message": "…"}}."""
    return Result.json({"error": {"code": code, "message": message}}, status, **headers)


def _fault_body(status: int, text: str) -> HttpResponse:
    if status == 429:
        return error(429, "0x80072322", f"Number of requests exceeded the limit. {text}").to_http()
    return error(status, "0x80040216", f"An unexpected error occurred. {text}").to_http()


# --- service protection -------------------------------------------------------------------------

_limits = ServiceProtection()


def _throttled(limit: str, retry_after: int, limits: dict[str, int]) -> Result:
    """429 with the Web API code of the exceeded limit (fixtures/dataverse/service-protection-error-codes.md)."""
    window = limits["window_seconds"]
    code, message = {
        "requests": (
            "0x80072322",
            f"Number of requests exceeded the limit of {limits['requests']} over time window of {window} seconds.",
        ),
        "execution_ms": (
            "0x80072321",
            f"Combined execution time of incoming requests exceeded limit of {limits['execution_ms']:,}  "
            f"milliseconds over time window of {window} seconds. Decrease number of concurrent requests or "
            "reduce the duration of requests and try again later.",
        ),
        "concurrent": ("0x80072326", f"Number of concurrent requests exceeded the limit of {limits['concurrent']}."),
    }[limit]
    return error(429, code, message, **{"Retry-After": str(retry_after)})


def configure_service_protection(**changes: int) -> dict[str, int]:
    """Change the limits (requests, window_seconds, execution_ms, concurrent) and restart the counters."""
    limits = checked_limits(service_protection_limits(), changes)
    EmulatorRecord.objects.update_or_create(
        emulator=EMULATOR, entity="$config", company="", key="service-protection", defaults={"data": limits}
    )
    _limits.reset()
    return limits


def service_protection_limits() -> dict[str, int]:
    row = EmulatorRecord.objects.filter(emulator=EMULATOR, entity="$config", key="service-protection").first()
    return {**DEFAULT_LIMITS, **(row.data if row else {})}


# --- a call, from HTTP or from a $batch part -------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str  # after api/data/v9.2/
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    root: str  # https://host/sandbox/dataverse/api/data/v9.2
    claims: dict[str, Any]
    # One operation per HTTP request (a $batch included): its webhooks share the CorrelationId.
    correlation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    cache: dict[str, Any] = field(default_factory=dict)  # per request, shared by a $batch's parts

    def prefer(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for item in self.headers.get("prefer", "").split(","):
            name, _, value = item.strip().partition("=")
            if name:
                values[name.strip().lower()] = value.strip().strip('"')
        return values


def _etag(version: int) -> str:
    return f'W/"{version}"'


def _entity_json(table: Table, record: EmulatorRecord, select: str | None) -> dict[str, Any]:
    row = {"@odata.etag": _etag(record.version), **record.data}
    return odata.select_fields(row, select, always=(table.primary_id,))


def _context(call: Call, set_name: str, select: str | None, entity: bool = False) -> str:
    columns = f"({select})" if select else ""
    return f"{call.root}/$metadata#{set_name}{columns}{'/$entity' if entity else ''}"


def _live(set_name: str):
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity=set_name, deleted=False)


def _find(table: Table, set_name: str, key: dict[str, Any] | str) -> tuple[EmulatorRecord | None, Result | None]:
    """The row a key names (primary id or a declared alternate key), or the error for a bad key."""
    if isinstance(key, str):
        try:
            uuid.UUID(key)
        except ValueError:
            return None, error(400, "0x80060888", f"Unrecognized key '{key}': expected a GUID or name='value' pairs.")
        return _live(set_name).filter(key=key).first(), None
    if tuple(sorted(key)) not in {tuple(sorted(k)) for k in table.alternate_keys}:
        declared = " or ".join("(" + ",".join(k) + ")" for k in table.alternate_keys)
        return None, error(
            400,
            "0x80060888",
            f"The key attribute(s) {','.join(key)} do not match an alternate key defined on entity "
            f"'{table.logical_name}'; declared keys: {declared}.",
        )
    rows = _live(set_name)
    for name, value in key.items():
        rows = rows.filter(**{f"data__{name}": value})
    return rows.first(), None


def _not_found(table: Table, key: dict[str, Any] | str) -> Result:
    if isinstance(key, str):
        return error(404, "0x80040217", f"{table.logical_name} With Id = {key} Does Not Exist")
    return error(
        404, "0x80040217", f"A record with the specified key values does not exist in {table.logical_name} entity"
    )


def _validate(table: Table, set_name: str, body: Any, *, creating: bool) -> Result | None:
    if not isinstance(body, dict):
        return error(
            400,
            "0x80048d19",
            f"Error identified in Payload provided by the user for Entity :'{set_name}', For more information on "
            "this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> "
            "InnerException : Microsoft.OData.ODataException: The body must be a JSON object.",
        )
    for name, value in body.items():
        if name.startswith("@"):
            continue
        bare = name.removesuffix("@odata.bind")
        if not _ATTRIBUTE.match(bare):
            return error(
                400,
                "0x80060888",
                f"Could not find a property named '{bare}' on type 'Microsoft.Dynamics.CRM.{table.logical_name}'.",
            )
        limit = table.max_lengths.get(name)
        if limit and isinstance(value, str) and len(value) > limit:
            return error(
                400,
                "0x80044331",
                f"A validation error occurred. The length of the '{name}' attribute of the '{table.logical_name}' "
                f"entity exceeded the maximum allowed length of '{limit}'.",
            )
    if creating:
        for name in table.required:
            if body.get(name) in (None, ""):
                return error(
                    400,
                    "0x80040203",
                    f"Required field '{name}' is missing or empty for entity '{table.logical_name}'.",
                )
    return None


def _lookup_name(navigation: str) -> str:
    """The lookup column behind a single-valued navigation property.

    Polymorphic lookups name their navigation <lookup>_<target table>[_<source table>]
    (regardingobjectid_account_task, parentcustomerid_account): the column is the part before the target.
    """
    for table in TABLES.values():
        marker = f"_{table.logical_name}"
        if marker in navigation:
            return navigation.split(marker, 1)[0]
    return navigation


def _stored_values(body: dict[str, Any]) -> dict[str, Any]:
    """Attributes as Dataverse stores them: lookups set via @odata.bind become _<lookup>_value."""
    values: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@"):
            continue
        if name.endswith("@odata.bind"):
            match = re.search(r"\(([^)]*)\)\s*$", str(value))
            values[f"_{_lookup_name(name.removesuffix('@odata.bind'))}_value"] = match.group(1) if match else value
        else:
            values[name] = value
    return values


def _write(
    table: Table,
    set_name: str,
    record: EmulatorRecord | None,
    values: dict[str, Any],
    key_values: dict[str, Any],
    primary: str | None = None,
) -> tuple[EmulatorRecord, bool]:
    """Create or update one row; every write gets a new version (the ETag) and change sequence."""
    now = timezone.now().isoformat(timespec="seconds").replace("+00:00", "Z")
    seq = next_change_seq()
    if record is None:
        record_id = primary or str(uuid.uuid4())
        data = {**values, **key_values, table.primary_id: record_id, "createdon": now, "modifiedon": now}
        data["versionnumber"] = seq // 1000
        record = EmulatorRecord.objects.create(
            emulator=EMULATOR, entity=set_name, key=record_id, data=data, version=seq // 1000, change_seq=seq
        )
        return record, True
    record.data = {**record.data, **values, "modifiedon": now, "versionnumber": seq // 1000}
    record.version = seq // 1000
    record.change_seq = seq
    record.save(update_fields=["data", "version", "change_seq", "modified_at"])
    return record, False


def _duplicate_key(table: Table, set_name: str, values: dict[str, Any], exclude: str = "") -> Result | None:
    for key in table.alternate_keys:
        if all(values.get(name) not in (None, "") for name in key):
            rows = _live(set_name)
            for name in key:
                rows = rows.filter(**{f"data__{name}": values[name]})
            if rows.exclude(key=exclude).exists():
                shown = ", ".join(str(values[name]) for name in key)
                return error(
                    412,
                    "0x80040237",
                    f"A record that has the attribute values '{shown}' already exists. The entity key "
                    f"'{table.logical_name}_{'_'.join(key)}' requires that this set of attributes contains unique "
                    "values. Select unique values and try again.",
                )
    return None


def _written(call: Call, table: Table, set_name: str, record: EmulatorRecord, created: bool, key_text: str) -> Result:
    entity_id = f"{call.root}/{set_name}({key_text})"
    if call.prefer().get("return") == "representation":
        select = call.query.get("$select")
        body = {"@odata.context": _context(call, set_name, select, entity=True), **_entity_json(table, record, select)}
        return Result.json(
            body,
            201 if created else 200,
            ETag=_etag(record.version),
            **{"Preference-Applied": "return=representation", "OData-EntityId": entity_id},
        )
    return Result(204, {"OData-Version": "4.0", "OData-EntityId": entity_id, "Location": entity_id})


# --- operations ---------------------------------------------------------------------------------


def _create(call: Call, table: Table, set_name: str, body: dict[str, Any]) -> Result:
    if failure := _validate(table, set_name, body, creating=True):
        return failure
    values = _stored_values(body)
    primary = str(values.pop(table.primary_id, "") or "") or None
    if primary and _live(set_name).filter(key=primary).exists():
        return error(412, "0x80040237", "Cannot insert duplicate key.")
    if failure := _duplicate_key(table, set_name, values):
        return failure
    record, _ = _write(table, set_name, None, values, {}, primary)
    _raise_webhooks(call, table, "Create", record, body)
    return _written(call, table, set_name, record, True, record.key)


def _upsert(call: Call, table: Table, set_name: str, key: dict[str, Any] | str, body: dict[str, Any]) -> Result:
    record, failure = _find(table, set_name, key)
    if failure:
        return failure
    if_match = call.headers.get("if-match", "")
    if_none_match = call.headers.get("if-none-match", "")
    if if_none_match == "*" and record is not None:
        return error(412, "0x80040237", "A record with matching key values already exists.")
    if if_match and record is None:
        return _not_found(table, key)
    if if_match and if_match != "*" and if_match != _etag(record.version):
        return error(
            412, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided."
        )
    if failure := _validate(table, set_name, body, creating=record is None):
        return failure
    values = _stored_values(body)
    key_values = key if isinstance(key, dict) else {}
    if isinstance(key, str) and values.get(table.primary_id, key) != key:
        return error(400, "0x80060888", f"The {table.primary_id} in the body does not match the key in the URL.")
    values.pop(table.primary_id, None)
    if failure := _duplicate_key(table, set_name, {**values, **key_values}, exclude=record.key if record else ""):
        return failure
    before = dict(record.data) if record is not None else None
    record, created = _write(table, set_name, record, values, key_values, key if isinstance(key, str) else None)
    message = "Create" if created else "Update"
    _raise_webhooks(call, table, message, record, body, before=before, key_values=key_values)
    key_text = odata.format_key(key) if isinstance(key, dict) else record.key
    return _written(call, table, set_name, record, created, key_text)


# --- webhooks -----------------------------------------------------------------------------------

_BOUND = re.compile(r"(?:^|/)(?P<set>\w+)\((?P<key>[^)]*)\)\s*$")
_LOOKUP_VALUE = re.compile(r"^_(?P<lookup>\w+)_value$")


def _primary_name(set_name: str, data: dict[str, Any]) -> str | None:
    name = data.get(PRIMARY_NAMES.get(set_name, "name"))
    if name is None and set_name == "contacts":  # fullname is composed from the name parts
        name = " ".join(str(data[part]) for part in ("firstname", "lastname") if data.get(part)) or None
    return name if isinstance(name, str) else None


def _bound_reference(value: Any) -> Any:
    """The EntityReference an @odata.bind value names, with the row's primary name when the row is here."""
    match = _BOUND.search(str(value))
    if match is None or match.group("set") not in TABLES:
        return value
    set_name = match.group("set")
    table = TABLES[set_name]
    try:
        key = odata.parse_key(match.group("key"))
        record, _ = _find(table, set_name, key)
    except odata.ODataError:
        record = None
    if record is None:
        return webhooks.entity_reference(table.logical_name, match.group("key"))
    return webhooks.entity_reference(table.logical_name, record.key, _primary_name(set_name, record.data))


def _stored_reference(record_id: Any) -> Any:
    """A stored lookup (_<lookup>_value, a bare id) as an EntityReference: the id says which table it is in."""
    if not isinstance(record_id, str):
        return record_id
    row = EmulatorRecord.objects.filter(emulator=EMULATOR, entity__in=list(TABLES), key=record_id).first()
    if row is None:
        return webhooks.entity_reference(None, record_id)
    return webhooks.entity_reference(TABLES[row.entity].logical_name, record_id, _primary_name(row.entity, row.data))


def _image(table: Table, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """An entity image: every stored column, lookups under their own names as EntityReference."""
    attributes: dict[str, Any] = {}
    for name, value in data.items():
        lookup = _LOOKUP_VALUE.match(name)
        if lookup:
            attributes[lookup.group("lookup")] = _stored_reference(value)
        else:
            attributes[name] = value
    version = data.get("versionnumber")
    return webhooks.entity(
        table.logical_name, record_id, attributes, row_version=str(version) if version is not None else None
    )


def _target(
    call: Call, table: Table, message: str, record: EmulatorRecord, body: dict[str, Any], key_values: dict[str, Any]
) -> dict[str, Any]:
    """The Target of a Create/Update: what the request set (lookups as EntityReference), the id, and the
    columns the platform sets on the way (the captured Target carries modifiedon, modifiedby…)."""
    user = webhooks.entity_reference("systemuser", str(call.claims.get("oid", "")))
    attributes: dict[str, Any] = dict(key_values)
    for name, value in body.items():
        if name.endswith("@odata.bind"):
            attributes[_lookup_name(name.removesuffix("@odata.bind"))] = _bound_reference(value)
        elif "@" not in name:
            attributes[name] = value
    attributes[table.primary_id] = record.key
    if message == "Create":
        attributes.update(createdon=record.data.get("createdon"), createdby=user, ownerid=user)
    attributes.update(modifiedon=record.data.get("modifiedon"), modifiedby=user, modifiedonbehalfby=None)
    return webhooks.entity(table.logical_name, record.key, attributes, key_attributes=key_values)


def _raise_webhooks(
    call: Call,
    table: Table,
    message: str,
    record: EmulatorRecord,
    body: dict[str, Any] | None,
    *,
    before: dict[str, Any] | None = None,
    key_values: dict[str, Any] | None = None,
) -> None:
    """Queue the webhook steps registered for this write; they are sent once its transaction commits."""
    if "steps" not in call.cache:
        call.cache["steps"] = webhooks.registered_steps()
    steps = webhooks.steps_for(table.logical_name, message, call.cache["steps"])
    if not steps:
        return
    if message == "Delete":
        target = webhooks.entity_reference(table.logical_name, record.key)
    else:
        target = _target(call, table, message, record, body or {}, key_values or {})
    pre = _image(table, record.key, before) if before is not None and message != "Create" else None
    post = _image(table, record.key, record.data) if message != "Delete" else None
    caller = _caller(call)
    created_on = timezone.now()

    def context(step: EmulatorSubscription, operation_id: str) -> dict[str, Any]:
        return webhooks.remote_execution_context(
            message=message,
            logical_name=table.logical_name,
            record_id=record.key,
            target=target,
            caller=caller,
            correlation_id=call.correlation_id,
            pre_image=pre,
            post_image=post,
            step_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"dataverse/step/{step.pk}")),
            operation_id=operation_id,
            created_on=created_on,
        )

    webhooks.queue_steps(
        steps, context, organization_host=caller.organization_host, message=message, logical_name=table.logical_name
    )


def _skiptoken(page: int, last: str, extra: str = "") -> str:
    inner = quote(quote(f'<cookie page="{page - 1}"><key last="{{{last.upper()}}}" /></cookie>', safe=""), safe="")
    return f'<cookie pagenumber="{page}" pagingcookie="{inner}" {extra}/>'


def _read_skiptoken(token: str) -> tuple[int, str, int | None]:
    """Page number, last primary id and (for change tracking) the snapshot sequence from a $skiptoken."""
    text = token
    for _ in range(3):  # the paging cookie sits URL-encoded inside the (encoded) skiptoken
        text = unquote(text)
    page = re.search(r'pagenumber="(\d+)"', text)
    last = re.search(r'last="\{([0-9A-Fa-f-]{36})\}"', text)
    snapshot = re.search(r'snapshot="(\d+)"', text)
    if not page or not last:
        raise odata.ODataError(f"$skiptoken '{token[:80]}' is not a paging cookie this service issued")
    return int(page.group(1)), last.group(1).lower(), int(snapshot.group(1)) if snapshot else None


def _page_size(call: Call) -> int | None:
    raw = call.prefer().get("odata.maxpagesize")
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise odata.ODataError(f"Prefer: odata.maxpagesize must be a positive number, got '{raw}'")
    return min(int(raw), MAX_PAGE_SIZE)


def _link(call: Call, set_name: str, **params: str) -> str:
    query = {k: v for k, v in call.query.items() if k not in ("$skiptoken", "$deltatoken")}
    query.update(params)
    return f"{call.root}/{set_name}?{urlencode(query, quote_via=quote, safe='$,()')}"


def _delta_token(seq: int) -> str:
    return f"{seq}!{timezone.now().strftime('%m/%d/%Y %H:%M:%S')}"


def _list(call: Call, table: Table, set_name: str) -> Result:
    select = call.query.get("$select")
    tracking = "odata.track-changes" in call.prefer()
    delta = call.query.get("$deltatoken")
    if (tracking or delta) and any(p in call.query for p in ("$filter", "$orderby", "$top", "$expand")):
        return error(
            400, "0x80060888", "Change tracking supports only $select; remove $filter, $orderby, $top and $expand."
        )
    if delta is not None:
        return _changes(call, table, set_name, delta)
    page_size = _page_size(call) or MAX_PAGE_SIZE
    records = list(_live(set_name).order_by("key"))  # Dataverse pages in primary id order
    if "$filter" in call.query:
        node = odata.parse_filter(call.query["$filter"])
        records = [r for r in records if odata.evaluate(node, r.data)]
    if order := call.query.get("$orderby"):
        for clause in reversed([c.strip() for c in order.split(",") if c.strip()]):
            name, _, direction = clause.partition(" ")
            records.sort(
                key=lambda r, n=name: (r.data.get(n) is None, r.data.get(n) if r.data.get(n) is not None else ""),
                reverse=direction.strip().lower() == "desc",
            )
    snapshot: int | None = None
    page = 1
    if token := call.query.get("$skiptoken"):
        page, last, snapshot = _read_skiptoken(token)
        if order:
            records = records[(page - 1) * page_size :]
        else:
            records = [r for r in records if r.key > last]
    if tracking and snapshot is None:
        snapshot = next_change_seq()  # taken before reading: a change made meanwhile comes again in the delta
    body: dict[str, Any] = {"@odata.context": _context(call, set_name, select)}
    headers: dict[str, str] = {}
    if "$top" in call.query:
        top = call.query["$top"]
        if not top.isdigit():
            return error(400, "0x80060888", f"$top must be a non-negative integer, got '{top}'")
        records = records[: int(top)]
    elif len(records) > page_size:
        records = records[:page_size]
        extra = f'snapshot="{snapshot}" istracking="True" ' if tracking else 'istracking="False" '
        body["@odata.nextLink"] = _link(call, set_name, **{"$skiptoken": _skiptoken(page + 1, records[-1].key, extra)})
    elif tracking:
        body["@odata.deltaLink"] = _link(call, set_name, **{"$deltatoken": _delta_token(snapshot)})
    if _page_size(call):
        headers["Preference-Applied"] = f"odata.maxpagesize={_page_size(call)}"
    if tracking:
        headers["Preference-Applied"] = ",".join(
            filter(None, [headers.get("Preference-Applied"), "odata.track-changes"])
        )
    body["value"] = [_entity_json(table, r, select) for r in records]
    return Result.json(body, **headers)


def _changes(call: Call, table: Table, set_name: str, delta: str) -> Result:
    """Rows changed or deleted since the delta token, oldest change first."""
    match = re.match(r"^(\d+)", unquote(delta))
    if not match:
        return error(400, "0x80060888", f"$deltatoken '{delta[:40]}' is not a token this service issued")
    since = int(match.group(1))
    snapshot = next_change_seq()
    changed = list(
        EmulatorRecord.objects.filter(
            emulator=EMULATOR, entity=set_name, change_seq__gt=since, change_seq__lte=snapshot
        ).order_by("change_seq")
    )
    select = call.query.get("$select")
    value: list[dict[str, Any]] = []
    for record in changed:
        if record.deleted:
            value.append(
                {
                    "@odata.context": f"{call.root}/$metadata#{set_name}/$deletedEntity",
                    "id": record.key,
                    "reason": "deleted",
                }
            )
        else:
            value.append(_entity_json(table, record, select))
    body = {
        "@odata.context": f"{_context(call, set_name, select)}/$delta",
        "value": value,
        "@odata.deltaLink": _link(call, set_name, **{"$deltatoken": _delta_token(snapshot)}),
    }
    return Result.json(body)


def _related(call: Call, table: Table, set_name: str, raw_key: str, navigation: str) -> Result:
    """GET <set>(<key>)/<collection navigation>: the related rows whose lookup points at this one."""
    target = NAVIGATION.get((set_name, navigation))
    if call.method != "GET" or target is None:
        return error(
            400,
            "0x80060888",
            f"Could not find a property named '{navigation}' on type 'Microsoft.Dynamics.CRM.{table.logical_name}'.",
        )
    try:
        record, failure = _find(table, set_name, odata.parse_key(raw_key))
    except odata.ODataError as exc:
        return error(400, "0x80060888", str(exc))
    if failure or record is None:
        return failure or _not_found(table, raw_key)
    related_set, column = target
    related_table = TABLES[related_set]
    select = call.query.get("$select")
    rows = _live(related_set).filter(**{f"data__{column}": record.key}).order_by("key")
    return Result.json(
        {
            "@odata.context": _context(call, related_set, select),
            "value": [_entity_json(related_table, r, select) for r in rows],
        }
    )


def _caller(call: Call) -> webhooks.Caller:
    tenant = call.claims.get("tid")
    return webhooks.Caller(
        user_id=str(call.claims.get("oid", "")),
        business_unit_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"bu/{tenant}")),
        organization_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"org/{tenant}")),
        organization_name=ORGANIZATION,
        organization_host=urlsplit(call.root).netloc,
    )


def _who_am_i(call: Call) -> Result:
    caller = _caller(call)
    return Result.json(
        {
            "@odata.context": f"{call.root}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
            "BusinessUnitId": caller.business_unit_id,
            "UserId": caller.user_id,
            "OrganizationId": caller.organization_id,
        }
    )


PRIMARY_NAMES = {"contacts": "fullname", "tasks": "subject"}


def _entity_definitions(call: Call) -> Result:
    """EntityDefinitions: table metadata clients (the Dataverse SDK) read to find entity set names."""
    rows = [
        {
            "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"dataverse/{table.logical_name}")),
            "LogicalName": table.logical_name,
            "SchemaName": table.logical_name.capitalize(),
            "EntitySetName": set_name,
            "PrimaryIdAttribute": table.primary_id,
            "PrimaryNameAttribute": PRIMARY_NAMES.get(set_name, "name"),
            "IsChangeTrackingEnabled": True,
        }
        for set_name, table in TABLES.items()
    ]
    key = call.path[len("EntityDefinitions") :]
    if key:
        wanted = odata.parse_key(key.strip("()"))
        rows = [
            r
            for r in rows
            if all(
                str(r.get(k)) == str(v)
                for k, v in (wanted.items() if isinstance(wanted, dict) else {"MetadataId": wanted}.items())
            )
        ]
        if not rows:
            return error(404, "0x80040217", f"Could not find an entity with key {key}")
        return Result.json(
            {
                "@odata.context": f"{call.root}/$metadata#EntityDefinitions/$entity",
                **odata.select_fields(rows[0], call.query.get("$select")),
            }
        )
    if "$filter" in call.query:
        node = odata.parse_filter(call.query["$filter"])
        rows = [r for r in rows if odata.evaluate(node, r)]
    return Result.json(
        {
            "@odata.context": f"{call.root}/$metadata#EntityDefinitions",
            "value": [odata.select_fields(r, call.query.get("$select"), always=("MetadataId",)) for r in rows],
        }
    )


def dispatch(call: Call) -> Result:
    """Answer one Web API call (not $batch)."""
    if call.path in ("WhoAmI", "WhoAmI()"):
        return _who_am_i(call) if call.method == "GET" else error(405, "0x80060888", "WhoAmI is a function: use GET")
    if call.path.startswith("EntityDefinitions(") and "/Attributes" in call.path and call.method == "GET":
        # Column metadata: the sandbox declares no option sets; casts like
        # /Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata answer an empty collection.
        return Result.json({"@odata.context": f"{call.root}/$metadata#EntityDefinitions/Attributes", "value": []})
    if call.path.startswith("EntityDefinitions") and "/" not in call.path:
        if call.method != "GET":
            return error(405, "0x80060888", "The sandbox serves table metadata read-only.")
        try:
            return _entity_definitions(call)
        except odata.ODataError as exc:
            return error(400, "0x80060888", str(exc))
    match = _ENTITY_PATH.match(call.path)
    table = TABLES.get(match.group("set")) if match else None
    if match is None or table is None:
        return error(404, "0x80060888", f"Resource not found for the segment '{call.path.split('(')[0]}'.")
    set_name, raw_key = match.group("set"), match.group("key")
    if match.group("navigation"):
        return _related(call, table, set_name, raw_key or "", match.group("navigation"))
    try:
        key = odata.parse_key(raw_key) if raw_key is not None else None
        body: Any = None
        if call.method in ("POST", "PATCH"):
            try:
                body = json.loads(call.body or b"{}")
            except ValueError:
                return error(
                    400,
                    "0x80048d19",
                    f"Error identified in Payload provided by the user for Entity :'{set_name}': the body is not JSON.",
                )
        if key is None:
            if call.method == "GET":
                return _list(call, table, set_name)
            if call.method == "POST":
                return _create(call, table, set_name, body)
            return error(405, "0x80060888", f"{call.method} is not allowed on the collection '{set_name}'.")
        if call.method == "GET":
            record, failure = _find(table, set_name, key)
            if failure or record is None:
                return failure or _not_found(table, key)
            select = call.query.get("$select")
            return Result.json(
                {
                    "@odata.context": _context(call, set_name, select, entity=True),
                    **_entity_json(table, record, select),
                },
                ETag=_etag(record.version),
            )
        if call.method == "PATCH":
            return _upsert(call, table, set_name, key, body)
        if call.method == "DELETE":
            record, failure = _find(table, set_name, key)
            if failure or record is None:
                return failure or _not_found(table, key)
            if_match = call.headers.get("if-match", "")
            if if_match and if_match not in ("*", _etag(record.version)):
                return error(
                    412,
                    "0x80060882",
                    "The version of the existing record doesn't match the RowVersion property provided.",
                )
            record.deleted = True
            record.change_seq = next_change_seq()
            record.save(update_fields=["deleted", "change_seq", "modified_at"])
            _raise_webhooks(call, table, "Delete", record, None, before=record.data)
            return Result(204, {"OData-Version": "4.0"})
        return error(405, "0x80060888", f"{call.method} is not allowed on '{set_name}({raw_key})'.")
    except odata.ODataError as exc:
        return error(400, "0x80060888", str(exc))
    except IntegrityError:
        return error(412, "0x80040237", "Cannot insert duplicate key.")


# --- $batch -------------------------------------------------------------------------------------


def _part_call(part: odata.BatchRequest, outer: Call, locations: dict[str, str]) -> Call:
    url = part.url
    if url.startswith("$") and url[1:].split("/")[0] in locations:
        ref = url[1:].split("/")[0]
        url = locations[ref] + url[1 + len(ref) :]
    parts = urlsplit(url)
    relative = parts.path
    marker = f"/{API}/"
    relative = relative.split(marker, 1)[1] if marker in relative else relative.lstrip("/")
    headers = {**{k: v for k, v in outer.headers.items() if k == "prefer"}, **part.headers}
    return Call(
        method=part.method,
        path=unquote(relative),
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers=headers,
        body=part.body,
        root=outer.root,
        claims=outer.claims,
        correlation_id=outer.correlation_id,
        cache=outer.cache,
    )


def _as_batch_response(result: Result, content_id: str) -> odata.BatchResponse:
    return odata.BatchResponse(result.status, dict(result.headers), result.body, content_id)


class _ChangeSetFailed(Exception):
    def __init__(self, response: odata.BatchResponse) -> None:
        self.response = response


def batch(call: Call) -> Result:
    """Run a $batch: change sets all-or-nothing; stop at the first failure unless odata.continue-on-error."""
    try:
        items = odata.parse_batch(call.body, call.headers.get("content-type", ""))
    except (odata.ODataError, UnicodeDecodeError) as exc:
        return error(400, "0x80048d19", f"The $batch body could not be read: {exc}")
    count = sum(len(i.requests) if isinstance(i, odata.BatchChangeSet) else 1 for i in items)
    if count > MAX_BATCH_REQUESTS:
        return error(
            400,
            "0x8005f103",
            f"The number of requests in the batch ({count}) exceeds the limit of {MAX_BATCH_REQUESTS}.",
        )
    continue_on_error = "odata.continue-on-error" in call.prefer()
    results: list[odata.BatchResponse | list[odata.BatchResponse]] = []
    for item in items:
        if isinstance(item, odata.BatchChangeSet):
            locations: dict[str, str] = {}
            responses: list[odata.BatchResponse] = []
            try:
                with transaction.atomic():
                    for part in item.requests:
                        result = dispatch(_part_call(part, call, locations))
                        response = _as_batch_response(result, part.content_id)
                        if result.status >= 400:
                            raise _ChangeSetFailed(response)
                        if part.content_id and "OData-EntityId" in result.headers:
                            locations[part.content_id] = result.headers["OData-EntityId"]
                        responses.append(response)
            except _ChangeSetFailed as failed:
                # A failed change set is rolled back and answered by the one failing response.
                results.append(failed.response)
                if not continue_on_error:
                    break
                continue
            results.append(responses)
        else:
            result = dispatch(_part_call(item, call, {}))
            results.append(_as_batch_response(result, item.content_id))
            if result.status >= 400 and not continue_on_error:
                break
    text, content_type = odata.render_batch(results)
    return Result(200, {"Content-Type": content_type, "OData-Version": "4.0"}, text.encode())


# --- the view -----------------------------------------------------------------------------------


def _root(request: HttpRequest) -> str:
    scheme = "https" if request.is_secure() else "http"
    return f"{scheme}://{request.get_host()}/sandbox/{EMULATOR}/{API}"


@csrf_exempt
@with_faults(EMULATOR, _fault_body)
def api(request: HttpRequest, rest: str) -> HttpResponse:
    claims, why = azuread.verify_bearer(request, EMULATOR)
    if claims is None:
        return azuread.unauthorized(request, EMULATOR, why)
    if claims["denied"]:
        return Result.to_http(
            error(
                403,
                "0x80072560",
                f"The user is not a member of the organization. No application user exists for application id "
                f"{claims.get('appid')}.",
            )
        )
    user = str(claims.get("oid", ""))
    limits = service_protection_limits()
    exceeded, retry_after, remaining = _limits.enter(user, limits)
    if exceeded:
        return _throttled(exceeded, retry_after, limits).to_http()
    started = time.monotonic()
    try:
        call = Call(
            method=request.method or "GET",
            path=rest,
            query={k: v for k, v in request.GET.items()},
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.body,
            root=_root(request),
            claims=claims,
        )
        if rest == "$batch":
            result = batch(call) if call.method == "POST" else error(405, "0x80060888", "$batch takes POST")
        else:
            with transaction.atomic():
                result = dispatch(call)
            _slow_after_commit(request, result)
        response = result.to_http()
        response["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(remaining)
        return response
    finally:
        _limits.leave(user, started)


def _slow_after_commit(request: HttpRequest, result: Result) -> None:
    """Fault slow_after_commit_ms: the write is committed, the answer comes late (the caller's lost response)."""
    delay = request.sandbox_faults.slow_after_commit_ms
    if delay and request.method in ("POST", "PATCH", "DELETE") and result.status < 300:
        time.sleep(delay / 1000)


urlpatterns = [path(f"{API}/<path:rest>", api, name="dataverse-api")]


def reset() -> None:
    """Drop every row, tombstone, setting and webhook log, cancel webhooks not yet sent, forget the counters.

    The webhook steps (EmulatorSubscription rows) stay: they are the environment's registrations, which
    templates_install makes, not its data.
    """
    webhooks.reset()
    EmulatorRecord.objects.filter(emulator=EMULATOR).delete()
    _limits.reset()
