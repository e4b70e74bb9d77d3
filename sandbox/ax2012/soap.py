"""The AIF HTTP adapter: auth (sandbox.ax2012.auth), WSDL and XSDs, the SOAP envelope and CallContext, faults."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from lxml import etree

from sandbox.ax2012.aif import DEFAULT_COMPANY, EMULATOR, MESSAGE_LOG, XSI_NIL, AifFault, child_of, local_name, text_of
from sandbox.ax2012.auth import authenticate
from sandbox.ax2012.documents import DOCUMENT_OPERATIONS
from sandbox.ax2012.schema import (
    NS_CTX,
    NS_FAULT,
    NS_SOAP,
    NS_SVC,
    OPERATIONS,
    SERVICES,
    DocumentSpec,
    render_wsdl,
    render_xsd,
    request_element,
    response_element,
)
from sandbox.common.faults import with_faults
from sandbox.models import EmulatorRecord

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


# --- HTTP ----------------------------------------------------------------------------------------


def _iis_error(status: int, text: str) -> HttpResponse:
    # IIS / Application Proxy answer outages and throttling with a plain page, not a SOAP fault.
    return HttpResponse(
        f"<html><body><h1>{status}</h1><p>{text}</p></body></html>", status=status, content_type="text/html"
    )


@csrf_exempt
@with_faults(EMULATOR, error_body=_iis_error)
def port_view(request: HttpRequest, port: str) -> HttpResponse:
    spec = SERVICES.get(port)
    if spec is None:
        return HttpResponse(f"The port '{port}' does not exist or is not active.", status=404)
    answer = authenticate(request)
    if answer.user is None:
        return answer.response
    user = answer.user
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


def _handle(spec: DocumentSpec, raw: bytes, soap_action: str, user: str) -> bytes:
    """Parse the envelope, check the CallContext, run the operation once per MessageId."""
    try:
        envelope = etree.fromstring(raw, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise AifFault([f"The message is not well-formed XML: {exc}"], faultstring=f"Bad request: {exc}") from exc
    body = child_of(envelope, NS_SOAP, "Body")
    if local_name(envelope) != "Envelope" or body is None or not len(body):
        raise AifFault(["The message is not a SOAP 1.1 envelope with a Body."])
    payload = body[0]
    operation = soap_action.strip('"').rsplit("/", 1)[-1]
    if operation not in OPERATIONS or request_element(spec.service, operation) != local_name(payload):
        element = local_name(payload)
        raise AifFault(
            [f"The action '{soap_action}' with body element '{element}' is not an operation of {spec.service}."],
            code="InvalidAction",
        )
    header = child_of(envelope, NS_SOAP, "Header")
    context = child_of(header, NS_CTX, "CallContext") if header is not None else None
    company = (text_of(child_of(context, NS_CTX, "Company")) if context is not None else None) or DEFAULT_COMPANY
    message_id = text_of(child_of(context, NS_CTX, "MessageId")) if context is not None else None
    logon_as = text_of(child_of(context, NS_CTX, "LogonAsUser")) if context is not None else None
    if logon_as and "\\" not in logon_as:
        raise AifFault([f"LogonAsUser '{logon_as}' must be a Windows user name as domain\\user."], code="InvalidUser")
    company = company.upper()
    handler = DOCUMENT_OPERATIONS[operation]
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
