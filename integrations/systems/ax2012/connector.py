"""Dynamics AX 2012 AIF connector: document services over SOAP with zeep.

System.base_url is the AIF HTTP adapter root, e.g. http://aos/MicrosoftDynamicsAXAif60; each service sits on
an integration port at <base>/<Port>/xppservice.svc (port name = service name unless System.settings
"ax_ports" maps it). Flow.target_entity names the service (SalesOrderService); DeliveryRequest.company is the
AX company sent in the CallContext header. Sign-in (basic, NTLM, Azure AD app or user token): auth.py.

Redelivery is safe through AIF itself: every write carries a MessageId derived from our idempotency key
(UUID5), and AIF refuses a MessageId it has processed with a DuplicateMessage fault, which becomes
DuplicateError. Faults: https://learn.microsoft.com/dynamicsax-2012/developer/aif-faults (AifFault detail with
FaultMessageList / InfologMessageList) → RejectedError with AX's own text.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import requests
from zeep import Client, Settings
from zeep.cache import InMemoryCache
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError
from zeep.helpers import serialize_object
from zeep.transports import Transport

from integrations import errors
from integrations.egress import egress_refusal
from integrations.protocols import deadline
from integrations.protocols.transport import (
    ConnectionReport,
    Connector,
    DeliveryRequest,
    DeliveryResult,
    classify_status,
)
from integrations.systems.ax2012.auth import BearerAuth, session_auth
from integrations.systems.ax2012.services import KEY_FIELDS, service_of

if TYPE_CHECKING:
    from integrations.models import System

logger = logging.getLogger(__name__)

NS_SVC = "http://schemas.microsoft.com/dynamics/2008/01/services"
NS_CTX = "http://schemas.microsoft.com/dynamics/2010/01/datacontracts"
NS_FAULT = "http://schemas.microsoft.com/dynamics/2008/01/documents/Fault"
NS_PAGING = "http://schemas.microsoft.com/dynamics/2006/02/documents/DocumentPaging"
MAX_PAGES = 10_000  # a paging context that never ends is a fault, not a loop
MESSAGE_ID_NAMESPACE = uuid.UUID("5b0c7e8e-2d1a-4f55-9a51-5f7f1d3c0a12")

_META_FIELDS = ("_DocumentHash", "RecId", "RecVersion")

# Parsed WSDL/XSD documents, shared by every connector of the process (zeep keys it by URL).
_DOCUMENT_CACHE = InMemoryCache(timeout=3600)


def message_id_for(idempotency_key: str, *, service: str, operation: str, company: str) -> str:
    """AIF MessageId for one write: the same message always gets the same id, so AIF can refuse a repeat."""
    value = uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{service}/{operation}/{company.upper()}/{idempotency_key}")
    return "{" + str(value).upper() + "}"


class _AifTransport(Transport):
    """zeep's transport under the target's governor, with our classification of HTTP answers that are not SOAP.

    Every AIF call is a POST through here (the WSDL, loaded once per service, is not governed).
    """

    def __init__(self, *, connector: Connector, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connector = connector

    def load(self, url: str) -> bytes:
        """The WSDL and every schema it imports, each from a host the egress allow-list admits."""
        if url.startswith(("http://", "https://")) and (refusal := egress_refusal(url)):
            raise errors.RejectedError(f"{self.connector.system.name}: {refusal}", request_summary=f"GET {url}")
        return super().load(url)

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        summary = f"POST {address}"
        left = deadline.remaining()
        if left is not None and left <= 0:
            raise errors.TransientError(
                f"{self.connector.system.name}: the delivery's deadline passed before this call",
                request_summary=f"{summary} (not sent)",
            )
        with self.connector.governor.slot(summary, max_wait=left):
            response = super().post(address, message, headers)  # bounded in total by the session's DeadlineAdapter
            try:
                _raise_for_http(response, summary)
            except errors.ThrottledError as failure:
                # Every worker waits out the Retry-After; stored before the slot goes to the next sender.
                self.connector.note_throttled(failure)
                raise
        return response


def _raise_for_http(response: requests.Response, summary: str) -> None:
    """Auth, throttling and outages arrive as plain HTTP (IIS, Application Proxy); a fault is HTTP 500 + XML."""
    status = response.status_code
    if status < 400:
        return
    is_soap = "xml" in response.headers.get("Content-Type", "") and b"Envelope" in response.content[:500]
    if status == 500 and is_soap:
        return  # a SOAP fault: zeep raises Fault and we classify it there
    text = f"AX answered HTTP {status}: {response.text[:200]}"
    if status in (401, 403):
        text = f"AX refused the credentials (HTTP {status})"
    failure = classify_status(
        status,
        text,
        summary=summary,
        excerpt=response.text,
        retry_after=response.headers.get("Retry-After"),
        # IIS answers these for the transport, not for a record: AIF reports duplicates and conflicts as faults.
        overrides={409: errors.RejectedError, 412: errors.RejectedError},
    )
    raise failure


def _plain(value: Any) -> Any:
    """zeep objects → JSON-safe values (Decimal and dates as text, as the documents carry them)."""
    if isinstance(value, dict):
        # "class" and "action" are the entity's XML attributes, not fields.
        return {k: _plain(v) for k, v in value.items() if v is not None and k not in ("class", "action")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


class Ax2012Connector(Connector):
    kind = "ax2012"
    one_company = True  # every AIF call runs in one company (CallContext): a load or listing reads one

    def __init__(self, system: System) -> None:
        super().__init__(system)
        self.base_url = system.base_url.rstrip("/")
        self.session = requests.Session()
        # Every call (the WSDL too) is bounded in total, and by the delivery's deadline (protocols.deadline).
        deadline.mount(self.session, pool_connections=4, pool_maxsize=16, max_retries=0)
        self.session.auth = session_auth(system)  # basic, NTLM, or an Azure AD token (auth.py)
        self.transport = _AifTransport(
            connector=self,
            session=self.session,
            cache=_DOCUMENT_CACHE,
            timeout=self.timeout,
            operation_timeout=self.timeout,
        )
        self._clients: dict[str, tuple[Client, Any]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    # --- plumbing ------------------------------------------------------------------------------

    def endpoint(self, service: str) -> str:
        port = self.system.settings.get("ax_ports", {}).get(service, service)
        return f"{self.base_url}/{port}/xppservice.svc"

    def listing(self, entity: str) -> tuple[str, tuple[str, ...]]:
        """What a load lists of a flow's entity or service: its service (find), keyed by its document's key."""
        service = service_of(entity)
        return service, (self.key_field(service),)

    def key_field(self, service: str) -> str:
        key = {**KEY_FIELDS, **self.system.settings.get("ax_key_fields", {})}.get(service)
        if not key:
            raise errors.RejectedError(
                f"{self.system.name}: no key field known for AX service '{service}'; set System.settings "
                f'"ax_key_fields" {{"{service}": "<field>"}}'
            )
        return key

    def _service(self, service: str) -> tuple[Client, Any]:
        """The zeep client of one service, built once: the WSDL is fetched and parsed on first use only."""
        with self._lock:
            if service in self._clients:
                return self._clients[service]
            wsdl = f"{self.endpoint(service)}?wsdl"
            try:
                client = Client(wsdl, transport=self.transport, settings=Settings(strict=True, xml_huge_tree=False))
            except errors.ConnectorError:
                raise
            except TransportError as exc:
                raise self._transport_error(exc, f"GET {wsdl}") from exc
            except requests.RequestException as exc:
                raise errors.TransientError(
                    f"{self.system.name}: cannot load the WSDL of {service} ({type(exc).__name__})",
                    request_summary=f"GET {wsdl}",
                ) from exc
            except (ZeepError, ValueError) as exc:
                raise errors.RejectedError(
                    f"{self.system.name}: the WSDL of {service} is not usable: {exc}", request_summary=f"GET {wsdl}"
                ) from exc
            # The WSDL's soap:address often names an internal AOS host; always call the configured URL.
            binding = next(iter(client.wsdl.bindings))
            proxy = client.create_service(binding, self.endpoint(service))
            self._clients[service] = (client, proxy)
            return client, proxy

    def _transport_error(self, exc: TransportError, summary: str) -> errors.ConnectorError:
        kwargs = {
            "status_code": exc.status_code,
            "response_excerpt": str(exc.content or "")[:2000],
            "request_summary": summary,
        }
        if exc.status_code in (401, 403):
            return errors.AuthError(
                f"{self.system.name}: AX refused the credentials (HTTP {exc.status_code})", **kwargs
            )
        if exc.status_code == 404:
            return errors.RejectedError(f"{self.system.name}: no AIF port at {summary}", **kwargs)
        return errors.TransientError(f"{self.system.name}: AX answered HTTP {exc.status_code}", **kwargs)

    def _call(self, service: str, operation: str, *, company: str, message_id: str | None = None, **body: Any) -> Any:
        try:
            return self._call_once(service, operation, company=company, message_id=message_id, **body)
        except errors.AuthError as exc:
            auth = self.session.auth
            if not isinstance(auth, BearerAuth) or exc.status_code != 401:
                raise
            # The proxy refused a cached token (revoked, clock skew): one fresh token, then give up.
            auth.provider.invalidate()
            return self._call_once(service, operation, company=company, message_id=message_id, **body)

    def _call_once(
        self, service: str, operation: str, *, company: str, message_id: str | None = None, **body: Any
    ) -> Any:
        client, proxy = self._service(service)
        context = client.get_element(f"{{{NS_CTX}}}CallContext")(
            Company=company or None,
            MessageId=message_id,
            LogonAsUser=self.system.settings.get("ax_logon_as_user") or None,
        )
        summary = f"AIF {service}.{operation} company={company or '(default)'}"
        try:
            return getattr(proxy, operation)(_soapheaders=[context], **body)
        except errors.ConnectorError as exc:
            exc.request_summary = exc.request_summary or summary
            raise
        except Fault as fault:
            raise self._fault_error(fault, summary) from fault
        except TransportError as exc:
            raise self._transport_error(exc, summary) from exc
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise self.transport_error(exc, summary) from exc
        except (ZeepError, ValueError) as exc:  # an answer that is not the service's XML (a proxy page)
            raise errors.TransientError(
                f"{self.system.name}: unreadable answer to {operation}: {exc}", request_summary=summary
            ) from exc

    def _fault_error(self, fault: Fault, summary: str) -> errors.ConnectorError:
        """AifFault detail → our taxonomy; the text is AX's infolog, which is what an operator needs."""
        codes, texts = [], []
        if fault.detail is not None:
            for message in fault.detail.iter(f"{{{NS_FAULT}}}FaultMessage"):
                codes.append(message.findtext(f"{{{NS_FAULT}}}Code") or "")
                texts.append((message.findtext(f"{{{NS_FAULT}}}Message") or "").strip())
            if not texts:
                texts = [
                    (m.text or "").strip()
                    for m in fault.detail.iter(f"{{{NS_FAULT}}}Message")
                    if (m.text or "").strip()
                ]
        text = "; ".join(t for t in texts if t) or str(fault.message)
        kwargs = {"status_code": 500, "response_excerpt": text, "request_summary": summary}
        if "DuplicateMessage" in codes:
            return errors.DuplicateError(f"AX: {text}", **kwargs)
        if "DocumentHashMismatch" in codes:
            return errors.ConflictError(f"AX: {text}", **kwargs)
        error = errors.RejectedError(f"AX: {text}", **kwargs)
        error.aif_codes = codes
        return error

    # --- documents -----------------------------------------------------------------------------

    def document_shape(self, service: str) -> tuple[str, str, str]:
        """(document element, root table, namespace) read from the service's own schema."""
        client, _ = self._service(service)
        request = client.get_element(f"{{{NS_SVC}}}{service}CreateRequest")
        document = request.type.elements[0][1]
        doc_name = document.qname.localname
        table = next(
            name
            for name, element in document.type.elements
            if element.max_occurs == "unbounded" or element.max_occurs > 1
        )
        return doc_name, table, document.qname.namespace

    def _wrap(self, service: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A mapped payload is the root table's fields (lines as a list under the line table's name)."""
        _, table, _ = self.document_shape(service)
        entities = payload.get(table, payload)
        return {table: entities if isinstance(entities, list) else [entities]}

    @staticmethod
    def _keys_of(result: Any) -> list[str]:
        """Key values of an EntityKeyList (zeep unwraps a lone EntityKeyList to its list of EntityKey)."""
        if result is not None and not isinstance(result, list):
            result = result.EntityKey
        return ["|".join(str(f.Value) for f in entity_key.KeyData.KeyField) for entity_key in result or []]

    def find_keys(self, service: str, *, company: str, criteria: dict[str, Any]) -> list[str]:
        _, table, _ = self.document_shape(service)
        elements = [
            {"DataSourceName": table, "FieldName": name, "Operator": "Equal", "Value1": str(value)}
            for name, value in criteria.items()
        ]
        return self._keys_of(
            self._call(service, "findKeys", company=company, QueryCriteria={"CriteriaElement": elements})
        )

    def read_documents(self, service: str, *, company: str, keys: list[str]) -> list[dict[str, Any]]:
        """The root-table records of the documents with these keys (lines included), as plain dicts."""
        if not keys:
            return []
        key_field = self.key_field(service)
        key_list = {"EntityKey": [{"KeyData": {"KeyField": [{"Field": key_field, "Value": key}]}} for key in keys]}
        document = self._call(service, "read", company=company, EntityKeyList=key_list)
        _, table, _ = self.document_shape(service)
        return [_plain(serialize_object(entity, dict)) for entity in getattr(document, table, None) or []]

    def paged_keys(self, service: str, operation: str, *, company: str, **body: Any) -> list[str]:
        """Every key of getKeys / getChangedKeys, page by page (AifDocumentPaging, batch_size per page).

        Each EntityKeyPage that has a successor carries a PageStatusContext, sent back for the next page.
        https://learn.microsoft.com/dynamicsax-2012/developer/document-service-operations
        """
        client, _ = self._service(service)
        paging = client.get_element(f"{{{NS_PAGING}}}DocumentPaging")
        keys: list[str] = []
        context = None
        for _page in range(MAX_PAGES):
            page = self._call(
                service,
                operation,
                company=company,
                DocumentPaging=paging(NumberOfDocuments=max(1, self.system.batch_size), PageStatusContext=context),
                **body,
            )
            keys += self._keys_of(page.EntityKeyList if page is not None else None)
            context = getattr(page, "PageStatusContext", None)
            if not context:
                return keys
        raise errors.TransientError(f"{self.system.name}: {service}.{operation} gave more than {MAX_PAGES} pages")

    def changed_keys(self, service: str, *, company: str, since: dt.datetime) -> list[str]:
        """Keys changed since `since`; AIF answers none unless the port has a document filter."""
        return self.paged_keys(service, "getChangedKeys", company=company, ChangedDateTime=since)

    def read_page(
        self, service: str, cursor: str = "", filters: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of an initial load of an AIF document service: its documents and the next cursor.

        The keys come from getKeys (getChangedKeys with filters["since"]), read page by page through
        AifDocumentPaging (paged_keys). The cursor is the offset into that key
        list, and each page reads filters["page_size"] documents with `read`.
        https://learn.microsoft.com/dynamicsax-2012/developer/document-service-operations
        """
        filters = filters or {}
        company = str(filters.get("company") or "")
        if not company:
            raise errors.RejectedError(f"{self.system.name}: an AX load needs the company (filters company)")
        if filters.get("since"):
            since = dt.datetime.fromisoformat(str(filters["since"]).replace("Z", "+00:00"))
            all_keys = self.changed_keys(service, company=company, since=since)
        else:
            all_keys = self.paged_keys(service, "getKeys", company=company)
        all_keys = sorted(set(all_keys))  # a stable order, so an offset means the same thing on every page
        start, size = int(cursor or 0), int(filters.get("page_size") or 100)
        page = all_keys[start : start + size]
        documents = self.read_documents(service, company=company, keys=page)
        for document in documents:
            document.setdefault("dataAreaId", company.lower())
        return documents, str(start + size) if start + size < len(all_keys) else ""

    # --- Connector interface -------------------------------------------------------------------

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        service, company = request.entity, request.company
        existing = ""
        if request.operation in ("upsert", "update") and request.key:
            found = self.find_keys(service, company=company, criteria=request.key)
            if len(found) > 1:
                raise errors.RejectedError(f"AX: {len(found)} {service} documents match {request.key}; expected one")
            existing = found[0] if found else ""
            if request.operation == "update" and not existing:
                raise errors.RejectedError(f"AX: no {service} document matches {request.key} in company {company}")
        if existing:
            return self._update(request, existing)
        return self._create(request)

    def _create(self, request: DeliveryRequest) -> DeliveryResult:
        service, company = request.entity, request.company
        doc_name, _, _ = self.document_shape(service)
        message_id = message_id_for(request.idempotency_key, service=service, operation="create", company=company)
        try:
            result = self._call(
                service,
                "create",
                company=company,
                message_id=message_id,
                **{doc_name: self._wrap(service, request.payload)},
            )
        except errors.DuplicateError as exc:
            # AIF processed this very message before (our earlier attempt's answer was lost): find its record.
            if request.key:
                found = self.find_keys(service, company=company, criteria=request.key)
                exc.existing_key = found[0] if len(found) == 1 else ""
            raise
        keys = self._keys_of(result)
        return DeliveryResult(
            target_key=keys[0] if keys else "",
            created=True,
            status_code=200,
            request_summary=f"AIF {service}.create company={company} MessageId={message_id}",
            response_excerpt=f"EntityKeyList: {', '.join(keys)}",
        )

    def _update(self, request: DeliveryRequest, key: str) -> DeliveryResult:
        service, company = request.entity, request.company
        doc_name, table, _ = self.document_shape(service)
        current = self.read_documents(service, company=company, keys=[key])[0]
        current_hash = current.get("_DocumentHash", "")
        if request.etag and request.etag != current_hash:
            raise errors.ConflictError(
                f"AX: {service} {key} changed since it was last read", current=current, current_etag=current_hash
            )
        wrapped = self._wrap(service, request.payload)
        for entity in wrapped[table]:
            entity.setdefault("_DocumentHash", request.etag or current_hash)
            entity.setdefault(self.key_field(service), key)
        key_list = {
            "EntityKeyList": {
                "EntityKey": [{"KeyData": {"KeyField": [{"Field": self.key_field(service), "Value": key}]}}]
            }
        }
        message_id = message_id_for(request.idempotency_key, service=service, operation="update", company=company)
        try:
            self._call(service, "update", company=company, message_id=message_id, **key_list, **{doc_name: wrapped})
        except errors.DuplicateError as exc:
            exc.existing_key = key
            raise
        return DeliveryResult(
            target_key=key,
            created=False,
            status_code=200,
            request_summary=f"AIF {service}.update company={company} MessageId={message_id}",
        )

    def fetch(self, *, entity: str, key: dict[str, Any], company: str = "") -> dict[str, Any] | None:
        key_field = self.key_field(entity)
        if set(key) == {key_field}:
            keys = [str(key[key_field])]
        else:
            keys = self.find_keys(entity, company=company, criteria=key)
            if not keys:
                return None
        try:
            documents = self.read_documents(entity, company=company, keys=keys[:1])
        except errors.RejectedError as exc:
            if "InvalidEntityKey" in getattr(exc, "aif_codes", []):
                return None
            raise
        return documents[0] if documents else None

    def check_connection(self) -> ConnectionReport:
        report = ConnectionReport()
        services = self.system.settings.get("ax_services") or ["SalesOrderService"]
        company = self.system.settings.get("ax_company", "")
        for service in services:
            try:
                self._service(service)
            except errors.ConnectorError as exc:
                report.add(f"{service} WSDL", False, exc.message)
                continue
            report.add(f"{service} WSDL", True, f"loaded from {self.endpoint(service)}?wsdl")
            try:
                keys = self._keys_of(self._call(service, "getKeys", company=company, DocumentPaging=None).EntityKeyList)
            except errors.ConnectorError as exc:
                report.add(f"{service} call", False, exc.message)
            else:
                report.add(f"{service} call", True, f"getKeys answered ({len(keys)} keys)")
        return report
