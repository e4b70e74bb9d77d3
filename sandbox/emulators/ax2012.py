"""Dynamics AX 2012 AIF emulator: document services over SOAP, as the AIF HTTP adapter serves them.

GET  MicrosoftDynamicsAXAif60/<Port>/xppservice.svc?wsdl       the port's WSDL (zeep loads it)
GET  MicrosoftDynamicsAXAif60/<Port>/xppservice.svc?xsd=<name> its schemas (Service, CallContext, Fault, …)
POST MicrosoftDynamicsAXAif60/<Port>/xppservice.svc            SOAP 1.1; SOAPAction names the operation

Operations: create, read, find, findKeys, update, delete, getKeys, getChangedKeys (ax2012_schema.OPERATIONS).
The CallContext header is honoured: Company selects the legal entity's data (default DAT, as AX does for
a user without one), MessageId is remembered and a repeat is answered with AIF's DuplicateMessage fault,
LogonAsUser must be a domain\\user name and is recorded as the acting user. Bad documents get a SOAP fault
whose detail is an AifFault carrying the infolog, as AX does.

Auth: basic (SANDBOX_AX2012_USERS, default icbridge/sandbox) or a bearer token from the Azure AD emulator,
as when AX sits behind Azure AD Application Proxy (see _bearer_user).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from lxml import etree

from sandbox.emulators.ax2012_schema import (
    NS_CTX,
    NS_EK,
    NS_EKL,
    NS_EKP,
    NS_FAULT,
    NS_PAGING,
    NS_QC,
    NS_SOAP,
    NS_SVC,
    OPERATIONS,
    SERVICES,
    DocumentSpec,
    document_namespace,
    render_wsdl,
    render_xsd,
    request_element,
    response_element,
)
from sandbox.faults import with_faults
from sandbox.models import EmulatorRecord
from sandbox.models.store import next_change_seq

EMULATOR = "ax2012"
DEFAULT_COMPANY = "DAT"
MESSAGE_LOG = "AifMessageLog"
NUMBER_SEQUENCE = "NumberSequence"
FIRST_RECID = 5637144576  # AX hands out RecIds from here
REQUEST_FAILED = "Request Failed. See the Exception Log for details."
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _users() -> dict[str, str]:
    return getattr(settings, "SANDBOX_AX2012_USERS", {"icbridge": "sandbox"})


class AifFault(Exception):
    """A failed request, answered as a SOAP fault whose detail is AIF's AifFault."""

    def __init__(self, messages: list[str], *, code: str = "", faultstring: str = REQUEST_FAILED) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages
        self.code = code
        self.faultstring = faultstring


# --- HTTP ----------------------------------------------------------------------------------------


def _iis_error(status: int, text: str) -> HttpResponse:
    # IIS / Application Proxy answer outages and throttling with a plain page, not a SOAP fault.
    return HttpResponse(
        f"<html><body><h1>{status}</h1><p>{text}</p></body></html>", status=status, content_type="text/html"
    )


def _unauthorized() -> HttpResponse:
    response = HttpResponse("401 - Unauthorized: Access is denied due to invalid credentials.", status=401)
    response["WWW-Authenticate"] = 'Basic realm="MicrosoftDynamicsAXAif60", Bearer'
    return response


def _bearer_user(request: HttpRequest) -> str | None:
    """The application named by an Azure AD access token for this resource, or None.

    The one seam to the Azure AD emulator: AX behind Azure AD Application Proxy trusts what Azure AD issued
    for the audience <host>/sandbox/ax2012. Its own verify_bearer() checks the token; none is minted here.
    """
    try:
        from sandbox.emulators import azuread
    except ImportError:  # the Azure AD emulator is optional: basic auth still works
        return None
    claims, _why = azuread.verify_bearer(request, EMULATOR)
    if not claims or claims.get("denied"):
        return None
    return str(claims.get("appid") or claims.get("sub") or "application")


def _authenticate(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        expected = _users().get(user)
        if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
            return user
        return None
    if scheme.lower() == "bearer" and value:
        return _bearer_user(request)
    return None


@csrf_exempt
@with_faults(EMULATOR, error_body=_iis_error)
def port_view(request: HttpRequest, port: str) -> HttpResponse:
    spec = SERVICES.get(port)
    if spec is None:
        return HttpResponse(f"The port '{port}' does not exist or is not active.", status=404)
    user = _authenticate(request)
    if user is None:
        return _unauthorized()
    endpoint = request.build_absolute_uri(request.path)
    if request.method == "GET":
        if "wsdl" in request.GET:
            return HttpResponse(render_wsdl(spec, endpoint), content_type="text/xml; charset=utf-8")
        if "xsd" in request.GET:
            xsd = render_xsd(request.GET["xsd"], spec, endpoint)
            if xsd is None:
                return HttpResponse(f"No schema named '{request.GET['xsd']}' on this port.", status=404)
            return HttpResponse(xsd, content_type="text/xml; charset=utf-8")
        return HttpResponse(f"{spec.service}: add ?wsdl for the service description.", content_type="text/plain")
    if request.method != "POST":
        return HttpResponse("Use POST for SOAP or GET ?wsdl.", status=405)
    try:
        body = _handle(spec, request.body, request.headers.get("SOAPAction", ""), user)
    except AifFault as fault:
        return _fault_response(fault, spec)
    return HttpResponse(body, content_type="text/xml; charset=utf-8")


def _fault_response(fault: AifFault, spec: DocumentSpec) -> HttpResponse:
    """SOAP 1.1 fault with the AifFault detail (FaultMessageList + InfologMessageList), HTTP 500 as WCF."""
    s, f = f"{{{NS_SOAP}}}", f"{{{NS_FAULT}}}"
    envelope = etree.Element(f"{s}Envelope", nsmap={"s": NS_SOAP})
    soap_fault = etree.SubElement(etree.SubElement(envelope, f"{s}Body"), f"{s}Fault")
    etree.SubElement(soap_fault, "faultcode").text = "s:Client"
    faultstring = etree.SubElement(soap_fault, "faultstring")
    faultstring.text = fault.faultstring
    faultstring.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    detail = etree.SubElement(etree.SubElement(soap_fault, "detail"), f"{f}AifFault", nsmap={None: NS_FAULT})
    etree.SubElement(detail, f"{f}CustomDetailXml").set(XSI_NIL, "true")
    lists = etree.SubElement(detail, f"{f}FaultMessageListArray")
    fault_list = etree.SubElement(lists, f"{f}FaultMessageList")
    etree.SubElement(fault_list, f"{f}Document").text = spec.document
    etree.SubElement(fault_list, f"{f}DocumentOperation")
    messages = etree.SubElement(fault_list, f"{f}FaultMessageArray")
    for text in fault.messages:
        message = etree.SubElement(messages, f"{f}FaultMessage")
        etree.SubElement(message, f"{f}Code").text = fault.code or "InvalidDocument"
        etree.SubElement(message, f"{f}Message").text = text
    etree.SubElement(fault_list, f"{f}Service").text = spec.service
    infolog = etree.SubElement(detail, f"{f}InfologMessageList")
    for text in fault.messages:
        entry = etree.SubElement(infolog, f"{f}InfologMessage")
        etree.SubElement(entry, f"{f}InfologMessageType").text = "Error"
        etree.SubElement(entry, f"{f}Message").text = text
    return HttpResponse(
        etree.tostring(envelope, xml_declaration=True, encoding="utf-8"),
        status=500,
        content_type="text/xml; charset=utf-8",
    )


# --- SOAP dispatch -------------------------------------------------------------------------------


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _child(parent: etree._Element, namespace: str, name: str) -> etree._Element | None:
    return parent.find(f"{{{namespace}}}{name}")


def _text(element: etree._Element | None) -> str | None:
    if element is None or element.get(XSI_NIL) == "true":
        return None
    return (element.text or "").strip()


def _handle(spec: DocumentSpec, raw: bytes, soap_action: str, user: str) -> bytes:
    """Parse the envelope, check the CallContext, run the operation once per MessageId."""
    try:
        envelope = etree.fromstring(raw, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise AifFault([f"The message is not well-formed XML: {exc}"], faultstring=f"Bad request: {exc}") from exc
    body = _child(envelope, NS_SOAP, "Body")
    if _local(envelope) != "Envelope" or body is None or not len(body):
        raise AifFault(["The message is not a SOAP 1.1 envelope with a Body."])
    payload = body[0]
    operation = soap_action.strip('"').rsplit("/", 1)[-1]
    if operation not in OPERATIONS or request_element(spec.service, operation) != _local(payload):
        raise AifFault(
            [
                f"The action '{soap_action}' with body element '{_local(payload)}' is not an operation of "
                f"{spec.service}."
            ],
            code="InvalidAction",
        )
    header = _child(envelope, NS_SOAP, "Header")
    context = _child(header, NS_CTX, "CallContext") if header is not None else None
    company = (_text(_child(context, NS_CTX, "Company")) if context is not None else None) or DEFAULT_COMPANY
    message_id = _text(_child(context, NS_CTX, "MessageId")) if context is not None else None
    logon_as = _text(_child(context, NS_CTX, "LogonAsUser")) if context is not None else None
    if logon_as and "\\" not in logon_as:
        raise AifFault([f"LogonAsUser '{logon_as}' must be a Windows user name as domain\\user."], code="InvalidUser")
    company = company.upper()
    handler = _OPERATIONS[operation]
    try:
        with transaction.atomic():
            if message_id:
                _remember_message(message_id, spec, operation, company, logon_as or user)
            result = handler(spec, payload, company)
    except IntegrityError as exc:  # a concurrent request with the same MessageId won
        raise AifFault(
            ["Duplicate message. Message has already been processed."],
            code="DuplicateMessage",
            faultstring="Duplicate message. Message has already been processed.",
        ) from exc
    envelope_out = etree.Element(f"{{{NS_SOAP}}}Envelope", nsmap={"s": NS_SOAP})
    out_body = etree.SubElement(envelope_out, f"{{{NS_SOAP}}}Body")
    response = etree.SubElement(
        out_body, f"{{{NS_SVC}}}{response_element(spec.service, operation)}", nsmap={None: NS_SVC}
    )
    for element in result:
        response.append(element)
    return etree.tostring(envelope_out, xml_declaration=True, encoding="utf-8")


def _remember_message(message_id: str, spec: DocumentSpec, operation: str, company: str, user: str) -> None:
    """AIF keeps every processed MessageId; a repeat is refused, whatever the document says."""
    if EmulatorRecord.objects.filter(emulator=EMULATOR, entity=MESSAGE_LOG, company="", key=message_id).exists():
        raise AifFault(
            ["Duplicate message. Message has already been processed."],
            code="DuplicateMessage",
            faultstring="Duplicate message. Message has already been processed.",
        )
    EmulatorRecord.objects.create(
        emulator=EMULATOR,
        entity=MESSAGE_LOG,
        company="",
        key=message_id,
        data={"service": spec.service, "operation": operation, "company": company, "user": user},
    )


# --- documents -----------------------------------------------------------------------------------


def _normalise(value: str, kind: str, field: str, table: str) -> str:
    """Check a value against the field's schema type, as AIF's schema validation does."""
    try:
        if kind == "decimal":
            return str(Decimal(value))
        if kind == "int":
            return str(int(value))
        if kind == "date":
            return datetime.strptime(value[:10], "%Y-%m-%d").date().isoformat()  # noqa: DTZ007 - a date
        if kind == "datetime":
            return datetime.fromisoformat(value).isoformat()
    except (InvalidOperation, ValueError) as exc:
        raise AifFault(
            [f"The value '{value}' of field '{table}.{field}' is not a valid {kind}."], code="SchemaValidation"
        ) from exc
    return value


def _parse_entity(spec: DocumentSpec, element: etree._Element, *, line: bool) -> tuple[dict[str, Any], list]:
    table = spec.line_table if line else spec.table
    ns = document_namespace(spec.document)
    values: dict[str, Any] = {}
    lines: list[dict[str, Any]] = []
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = _local(child)
        if etree.QName(child).namespace != ns:
            raise AifFault([f"The element '{name}' of {table} is not in namespace '{ns}'."], code="SchemaValidation")
        if name in ("_DocumentHash", "RecId", "RecVersion"):
            values[name] = _text(child)
            continue
        if not line and spec.line_table and name == spec.line_table:
            lines.append(_parse_entity(spec, child, line=True)[0])
            continue
        field = spec.field(name, line=line)
        if field is None:
            raise AifFault(
                [f"The document is not valid according to the schema: '{table}' has invalid child element '{name}'."],
                code="SchemaValidation",
            )
        value = _text(child)
        values[name] = None if value is None else _normalise(value, field.type, name, table)
    return values, lines


def _parse_document(spec: DocumentSpec, parent: etree._Element) -> list[tuple[dict[str, Any], list]]:
    ns = document_namespace(spec.document)
    document = _child(parent, ns, spec.document)
    if document is None:
        raise AifFault([f"The request has no {spec.document} document in namespace '{ns}'."], code="SchemaValidation")
    entities = document.findall(f"{{{ns}}}{spec.table}")
    if not entities:
        raise AifFault([f"The {spec.document} document has no {spec.table} record."], code="SchemaValidation")
    return [_parse_entity(spec, entity, line=False) for entity in entities]


def _document_hash(record: EmulatorRecord) -> str:
    canonical = json.dumps([record.data, record.version], sort_keys=True).encode()
    return hashlib.md5(canonical, usedforsecurity=False).hexdigest()


def _render_document(spec: DocumentSpec, records: list[EmulatorRecord], company: str) -> etree._Element:
    ns = document_namespace(spec.document)
    document = etree.Element(f"{{{ns}}}{spec.document}", nsmap={None: ns})
    etree.SubElement(document, f"{{{ns}}}DocPurpose").text = "Original"
    etree.SubElement(document, f"{{{ns}}}SenderId").text = company
    for record in records:
        entity = etree.SubElement(document, f"{{{ns}}}{spec.table}", {"class": "entity"})
        etree.SubElement(entity, f"{{{ns}}}_DocumentHash").text = _document_hash(record)
        _render_fields(entity, ns, spec.fields, record.data["fields"])
        etree.SubElement(entity, f"{{{ns}}}RecId").text = str(FIRST_RECID + record.pk)
        etree.SubElement(entity, f"{{{ns}}}RecVersion").text = str(record.version)
        for line_values in record.data.get("lines", []):
            line = etree.SubElement(entity, f"{{{ns}}}{spec.line_table}", {"class": "entity"})
            _render_fields(line, ns, spec.line_fields, line_values)
    return document


def _render_fields(parent: etree._Element, ns: str, fields: tuple, values: dict[str, Any]) -> None:
    for field in fields:  # schema order: xs:sequence
        value = values.get(field.name)
        if value is not None:
            etree.SubElement(parent, f"{{{ns}}}{field.name}").text = str(value)


def _key_list(spec: DocumentSpec, keys: list[str]) -> etree._Element:
    key_list = etree.Element(f"{{{NS_EKL}}}EntityKeyList", nsmap={None: NS_EKL})
    for key in keys:
        entity_key = etree.SubElement(key_list, f"{{{NS_EK}}}EntityKey", nsmap={None: NS_EK})
        field = etree.SubElement(etree.SubElement(entity_key, f"{{{NS_EK}}}KeyData"), f"{{{NS_EK}}}KeyField")
        etree.SubElement(field, f"{{{NS_EK}}}Field").text = spec.key_field
        etree.SubElement(field, f"{{{NS_EK}}}Value").text = key
    return key_list


def _parse_keys(spec: DocumentSpec, parent: etree._Element) -> list[str]:
    key_list = _child(parent, NS_EKL, "EntityKeyList")
    if key_list is None:
        raise AifFault(["The request has no EntityKeyList."], code="SchemaValidation")
    keys = []
    for field in key_list.iter(f"{{{NS_EK}}}KeyField"):
        name, value = _text(_child(field, NS_EK, "Field")), _text(_child(field, NS_EK, "Value"))
        if name != spec.key_field or not value:
            raise AifFault(
                [f"The entity key field '{name}' is not the key of {spec.table} (expected {spec.key_field})."],
                code="InvalidEntityKey",
            )
        keys.append(value)
    return keys


def _records(spec: DocumentSpec, company: str):
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity=spec.document, company=company, deleted=False)


def _load(spec: DocumentSpec, company: str, keys: list[str], *, lock: bool = False) -> list[EmulatorRecord]:
    queryset = _records(spec, company)
    if lock:
        queryset = queryset.select_for_update()
    found = {record.key: record for record in queryset.filter(key__in=keys)}
    missing = [key for key in keys if key not in found]
    if missing:
        raise AifFault(
            [
                f"No valid document identified from the entity key: {spec.key_field}={key} in company {company}."
                for key in missing
            ],
            code="InvalidEntityKey",
        )
    return [found[key] for key in keys]


def _validate(spec: DocumentSpec, company: str, fields: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    """Mandatory fields and relations, collected into one infolog as AX reports them."""
    errors = [
        f"Field '{name}' in table '{spec.table}' must be filled in." for name in spec.required if not fields.get(name)
    ]
    for number, line in enumerate(lines, start=1):
        errors += [
            f"Field '{name}' in table '{spec.line_table}' (line {number}) must be filled in."
            for name in spec.line_required
            if not line.get(name)
        ]
    for reference in spec.references:
        value = fields.get(reference.field)
        if (
            value
            and not EmulatorRecord.objects.filter(
                emulator=EMULATOR, entity=reference.document, company=company, key=value, deleted=False
            ).exists()
        ):
            errors.append(
                f"The value '{value}' in field '{reference.field}' is not found in the relating table "
                f"'{reference.label}'."
            )
    if errors:
        raise AifFault(errors)


def _next_number(spec: DocumentSpec, company: str) -> str:
    try:
        with transaction.atomic():  # savepoint: the first caller in a company creates the sequence
            EmulatorRecord.objects.get_or_create(
                emulator=EMULATOR,
                entity=NUMBER_SEQUENCE,
                company=company,
                key=spec.document,
                defaults={"data": {"next": 1}},
            )
    except IntegrityError:
        pass
    sequence = EmulatorRecord.objects.select_for_update().get(
        emulator=EMULATOR, entity=NUMBER_SEQUENCE, company=company, key=spec.document
    )
    number = int(sequence.data["next"])
    sequence.data = {"next": number + 1}
    sequence.save(update_fields=["data"])
    return f"{spec.number_prefix}{number:06d}"


def _create(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    keys = []
    for fields, lines in _parse_document(spec, payload):
        fields = {
            k: v for k, v in fields.items() if k not in ("_DocumentHash", "RecId", "RecVersion") and v is not None
        }
        _validate(spec, company, fields, lines)
        key = fields.get(spec.key_field)
        if not key:
            if spec.number_prefix is None:
                raise AifFault([f"Field '{spec.key_field}' in table '{spec.table}' must be filled in."])
            key = fields[spec.key_field] = _next_number(spec, company)
        if _records(spec, company).filter(key=key).exists():
            raise AifFault(
                [f"Cannot create a record in {spec.table}. The record already exists: {spec.key_field}={key}."],
                code="RecordExists",
            )
        EmulatorRecord.objects.update_or_create(  # a deleted record's key may be used again
            emulator=EMULATOR,
            entity=spec.document,
            company=company,
            key=key,
            defaults={
                "data": {"fields": fields, "lines": lines},
                "version": 1,
                "deleted": False,
                "change_seq": next_change_seq(),
            },
        )
        keys.append(key)
    return [_key_list(spec, keys)]


def _read(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    return [_render_document(spec, _load(spec, company, _parse_keys(spec, payload)), company)]


def _update(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    keys = _parse_keys(spec, payload)
    entities = _parse_document(spec, payload)
    if len(keys) != len(entities):
        raise AifFault([f"The request has {len(keys)} entity keys but {len(entities)} {spec.table} records."])
    for record, (fields, lines) in zip(_load(spec, company, keys, lock=True), entities, strict=True):
        sent_hash = fields.pop("_DocumentHash", None)
        fields.pop("RecId", None)
        fields.pop("RecVersion", None)
        if sent_hash and sent_hash != _document_hash(record):
            raise AifFault(
                [
                    f"The document hash does not match the hash of {spec.table} {record.key}: the record was changed "
                    "by another user. Read the document again and repeat the update."
                ],
                code="DocumentHashMismatch",
            )
        if fields.get(spec.key_field, record.key) != record.key:
            raise AifFault([f"Field '{spec.key_field}' of {spec.table} {record.key} cannot be changed."])
        merged = {**record.data["fields"], **{k: v for k, v in fields.items() if v is not None}}
        merged_lines = lines or record.data.get("lines", [])
        _validate(spec, company, merged, merged_lines)
        record.data = {"fields": merged, "lines": merged_lines}
        record.version += 1
        record.change_seq = next_change_seq()
        record.save()
    return []


def _delete(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    for record in _load(spec, company, _parse_keys(spec, payload), lock=True):
        record.deleted = True
        record.change_seq = next_change_seq()
        record.save(update_fields=["deleted", "change_seq"])
    return []


_OPERATORS = {
    "Equal": lambda a, b, _: a == b,
    "NotEqual": lambda a, b, _: a != b,
    "Greater": lambda a, b, _: a > b,
    "GreaterOrEqual": lambda a, b, _: a >= b,
    "Less": lambda a, b, _: a < b,
    "LessOrEqual": lambda a, b, _: a <= b,
    "Range": lambda a, b, c: b <= a <= c,
}


def _comparable(value: Any, kind: str) -> Any:
    if kind in ("decimal", "int"):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None
    return "" if value is None else str(value)


def _matching(spec: DocumentSpec, payload: etree._Element, company: str) -> list[EmulatorRecord]:
    criteria = _child(payload, NS_QC, "QueryCriteria")
    if criteria is None:
        raise AifFault(["The request has no QueryCriteria."], code="SchemaValidation")
    tests = []
    for element in criteria.findall(f"{{{NS_QC}}}CriteriaElement"):
        source = _text(_child(element, NS_QC, "DataSourceName"))
        name = _text(_child(element, NS_QC, "FieldName")) or ""
        operator = _text(_child(element, NS_QC, "Operator")) or ""
        line = source == spec.line_table and bool(spec.line_table)
        if source != spec.table and not line:
            raise AifFault(
                [f"The data source '{source}' is not part of the {spec.document} document."], code="InvalidQuery"
            )
        field = spec.field(name, line=line)
        if field is None:
            raise AifFault([f"The field '{name}' does not exist in data source '{source}'."], code="InvalidQuery")
        if operator not in _OPERATORS:
            raise AifFault([f"The operator '{operator}' is not valid."], code="InvalidQuery")
        value1 = _comparable(_text(_child(element, NS_QC, "Value1")), field.type)
        value2 = _comparable(_text(_child(element, NS_QC, "Value2")), field.type)
        tests.append((line, name, field.type, _OPERATORS[operator], value1, value2))

    def matches(record: EmulatorRecord) -> bool:
        for line, name, kind, op, value1, value2 in tests:
            rows = record.data.get("lines", []) if line else [record.data["fields"]]
            hits = []
            for row in rows:
                actual = _comparable(row.get(name), kind)
                hits.append(actual is not None and value1 is not None and op(actual, value1, value2))
            if not any(hits):
                return False
        return True

    return [record for record in _records(spec, company).order_by("key") if matches(record)]


def _find(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    return [_render_document(spec, _matching(spec, payload, company), company)]


def _find_keys(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    return [_key_list(spec, [record.key for record in _matching(spec, payload, company)])]


def _key_page(spec: DocumentSpec, keys: list[str]) -> list[etree._Element]:
    page = etree.Element(f"{{{NS_EKP}}}EntityKeyPage", nsmap={None: NS_EKP})
    page.append(_key_list(spec, keys))
    etree.SubElement(page, f"{{{NS_EKP}}}PageStatus").text = "Success"
    return [page]


def _get_keys(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    _child(payload, NS_PAGING, "DocumentPaging")  # paging is accepted; every key fits one page here
    return _key_page(spec, list(_records(spec, company).order_by("change_seq").values_list("key", flat=True)))


def _get_changed_keys(spec: DocumentSpec, payload: etree._Element, company: str) -> list[etree._Element]:
    raw = _text(_child(payload, NS_SVC, "ChangedDateTime"))
    try:
        since = datetime.fromisoformat(raw or "")
    except ValueError as exc:
        raise AifFault([f"ChangedDateTime '{raw}' is not a valid date and time."], code="SchemaValidation") from exc
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # AX utcdatetime: UTC unless an offset is given
    since_ns = int(since.timestamp() * 1_000_000) * 1000
    changed = _records(spec, company).filter(Q(change_seq__gte=since_ns)).order_by("change_seq")
    return _key_page(spec, list(changed.values_list("key", flat=True)))


_OPERATIONS = {
    "create": _create,
    "read": _read,
    "find": _find,
    "findKeys": _find_keys,
    "update": _update,
    "delete": _delete,
    "getKeys": _get_keys,
    "getChangedKeys": _get_changed_keys,
}

urlpatterns = [
    path("MicrosoftDynamicsAXAif60/<str:port>/xppservice.svc", port_view, name="ax2012-port"),
]


def reset() -> None:
    EmulatorRecord.objects.filter(emulator=EMULATOR).delete()
