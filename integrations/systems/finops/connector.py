"""Dynamics 365 Finance & Operations connector: OData data entities and custom services.

System: base_url = the environment (https://contoso.operations.dynamics.com), auth_url = the Azure AD
authority (https://login.microsoftonline.com/<tenant>), client_id / secret of an app registered in
F&O (System administration > Microsoft Entra applications), scope = "<base_url>/.default" (the default).
settings: "ca_bundle", "page_size" (default 10000), "check_entities" (default ["CustomersV3"]).

DeliveryRequest.entity is the public collection name (CustomersV3, SalesOrderHeadersV2…) or, for
operation "action", the custom service path <group>/<service>/<operation>; request.company is the
dataAreaId. Every data call carries cross-company=true so the key's dataAreaId is honoured (without it
F&O silently reads and writes the app user's default company).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from integrations import errors
from integrations.protocols.microsoft import BatchPart, MicrosoftConnector
from integrations.protocols.odata import keys
from integrations.protocols.transport import ConnectionReport, DeliveryRequest, DeliveryResult, classify_status
from integrations.systems.finops import records
from integrations.systems.finops.inbound import listed_event
from integrations.systems.finops.keys import canonical_key, company_filter, format_key
from integrations.systems.finops.lines import HeaderLinesMixin
from integrations.systems.finops.packages import DataPackages, package_deliver, package_page

if TYPE_CHECKING:
    from integrations.models import System

ODATA_HEADERS = {"OData-MaxVersion": "4.0", "OData-Version": "4.0", "Accept": "application/json"}
CROSS_COMPANY = {"cross-company": "true"}
READ_BACK = 50  # keys a query when the rows of a change-tracked export are read back by key
# Server-side failures that are about the data, not the service: never worth a retry.
BUSINESS_ERROR_TYPES = ("AxODataWriteException", "XppServicesException", "ODataException")


def _error_texts(text: str) -> tuple[str, str, str]:
    """(message, inner message, inner/exception type) from an F&O error body, whatever its shape."""
    try:
        body = json.loads(text) if text.strip() else {}
    except ValueError:
        return text[:300], "", ""
    if not isinstance(body, dict):
        return text[:300], "", ""
    if "error" in body and isinstance(body["error"], dict):
        inner = body["error"].get("innererror") or {}
        return str(body["error"].get("message", "")), str(inner.get("message", "")), str(inner.get("type", ""))
    # Custom services answer {"Message": …, "ExceptionType": …, "ExceptionMessage": …}.
    return str(body.get("Message", "")), str(body.get("ExceptionMessage", "")), str(body.get("ExceptionType", ""))


def classify(
    system_name: str, status: int, headers: dict[str, str], text: str, summary: str
) -> errors.ConnectorError | None:
    """Our taxonomy for one F&O answer; None when it succeeded.

    Service protection (429 + Retry-After):
    https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/service-protection-api-limits
    OData errors: https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/odata
    """
    if status < 400:
        return None
    message, inner, kind = _error_texts(text)
    detail = inner or message or headers.get("WWW-Authenticate", "") or f"HTTP {status}"
    vendor_class = None
    if "already exists" in detail.lower():
        vendor_class = errors.DuplicateError
    elif status >= 500 and (any(t in kind for t in BUSINESS_ERROR_TYPES) or "Write failed" in detail):
        vendor_class = errors.RejectedError  # X++ validation surfaces as a 500: the data, not the service
    return classify_status(
        status,
        f"{system_name}: {detail}",
        summary=summary,
        excerpt=text,
        retry_after=headers.get("Retry-After") or headers.get("retry-after"),
        retry_default=5.0,
        vendor_class=vendor_class,
        overrides={409: errors.RejectedError},
    )


# Why an initial load of F&O takes no `since` (integrations.bulk.load refuses it up front).
SINCE_REFUSED = (
    "F&O data entities have no modified date/time to read changes since a moment; load everything, or let "
    "the flow's poll read the changes (a change-tracked data project, options.package_project)"
)


def _load_params(filters: dict[str, Any]) -> dict[str, str]:
    """Query options of an initial load: every company, or one (dataAreaId)."""
    if filters.get("since"):
        raise errors.RejectedError(f"since: {SINCE_REFUSED}")
    clauses = []
    if filters.get("company"):
        clauses.append(f"dataAreaId eq {keys.string_literal(str(filters['company']).lower())}")
    return {**CROSS_COMPANY, **({"$filter": " and ".join(clauses)} if clauses else {})}


class FinOpsConnector(HeaderLinesMixin, MicrosoftConnector):
    kind = "finops"
    default_page_size = 10_000
    load_since_refused = SINCE_REFUSED  # read by integrations.bulk.load before a load starts

    def __init__(self, system: System) -> None:
        super().__init__(system)
        self.data = f"{self.base_url}/data"

    classify = staticmethod(classify)
    listed_event = staticmethod(listed_event)  # a listed row as its business event (options.listing)

    # --- writes -----------------------------------------------------------------------------------

    def _company(self, request: DeliveryRequest) -> str:
        company = request.company or str(request.payload.get("dataAreaId", ""))
        if not company:
            raise errors.RejectedError(
                f"{self.system.name}: no company (dataAreaId) for {request.entity}; set the flow's company link"
            )
        return company

    def _entity_url(self, entity: str, company: str, key: dict[str, Any]) -> str:
        return f"{self.data}/{entity}({format_key(company, key)})?cross-company=true"

    def _result(
        self, request: DeliveryRequest, company: str, status: int, headers: dict[str, str], body: Any, summary: str
    ) -> DeliveryResult:
        body = body if isinstance(body, dict) else {}
        key = {name: body.get(name, value) for name, value in request.key.items()}
        # The key as F&O answers it (dataAreaId lower case), whatever case the mapping sent: one normal form.
        target = format_key(str(body.get("dataAreaId", company)), key)
        location = next((v for k, v in headers.items() if k.lower() == "location"), "")
        if records.keyless(request) and (match := re.search(r"\((.*)\)$", location)):
            target = canonical_key(unquote(match.group(1)))  # F&O numbered the record: its key is in the Location
        return self.written(target, status, headers, body, summary)

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        if request.operation == "action":
            body = self.call_service(request.entity, request.payload)
            return DeliveryResult(target_key=request.idempotency_key, created=False, status_code=200, body=body)
        if request.is_delete:
            return records.delete(self, request)
        company = self._company(request)
        payload, lines = self._split_lines(request)
        if lines is not None:
            return self._deliver_with_lines(request, company, payload, lines)
        if records.keyless(request):
            return records.create_once(self, request, company, payload)
        if request.operation == "create" or not request.key:
            return self._post(request, company, payload)
        if request.operation == "upsert" and request.exists is False:
            # Never written by us: create first, one round trip in the usual case.
            try:
                return self._post(request, company, payload)
            except errors.DuplicateError:
                pass  # there after all (our own lost response, or made in F&O): update it
        url = self._entity_url(request.entity, company, request.key)
        headers = {**ODATA_HEADERS, "If-Match": request.etag or "*"}
        try:
            response = self.request("PATCH", url, json=payload, headers=headers)
        except errors.RejectedError as exc:
            if exc.status_code != 404:
                raise
            if request.etag:
                # We held an ETag, so the record existed: someone deleted it since.
                raise errors.ConflictError(
                    f"{self.system.name}: {request.entity} {format_key(company, request.key)} was deleted",
                    current=None,
                    status_code=404,
                    request_summary=f"PATCH {url}",
                ) from exc
            if request.operation == "update":
                raise
            return self._post(request, company, payload)  # upsert: F&O PATCH does not create
        except errors.ConflictError as exc:
            raise self._with_current(exc, request, company) from exc
        return self._result(request, company, response.status_code, dict(response.headers), None, f"PATCH {url}")

    def _with_current(self, exc: errors.ConflictError, request: DeliveryRequest, company: str) -> errors.ConflictError:
        """The 412 with the record as F&O holds it now, for the operator's side-by-side view."""
        return exc.with_current(self.fetch(entity=request.entity, key=request.key, company=company))

    # --- headers with lines -------------------------------------------------------------------------

    def _post(self, request: DeliveryRequest, company: str, payload: dict[str, Any]) -> DeliveryResult:
        part = self._post_part(request, company, payload)
        url = part.url
        try:
            response = self.request("POST", url, json=part.body, headers=ODATA_HEADERS)
        except errors.DuplicateError as exc:
            raise errors.DuplicateError(
                exc.message,
                existing_key=format_key(company.lower(), request.key) if request.key else "",
                status_code=exc.status_code,
                response_excerpt=exc.response_excerpt,
                request_summary=exc.request_summary,
            ) from exc
        return self._result(
            request, company, response.status_code, dict(response.headers), response.json(), f"POST {url}"
        )

    def deliver_many(self, requests_: Sequence[DeliveryRequest]) -> list[DeliveryResult | errors.ConnectorError]:
        """Creates and updates through $batch (one change set per record); upserts fall back to POST on 404."""
        if requests_ and all(r.options.transport == "package" and not r.is_delete for r in requests_):
            return package_deliver(self, list(requests_))  # bulk: one ImportFromPackage per company
        results: list[DeliveryResult | errors.ConnectorError] = []
        size = max(1, self.system.batch_size or 100)
        for start in range(0, len(requests_), size):
            results += self._batch(list(requests_[start : start + size]))
        return results

    def _batch(self, chunk: list[DeliveryRequest]) -> list[DeliveryResult | errors.ConnectorError]:
        outcome: list[DeliveryResult | errors.ConnectorError | None] = [None] * len(chunk)
        first: list[tuple[int, list[BatchPart], str]] = []
        for i, request in enumerate(chunk):
            try:
                company = self._company(request)
                payload, lines = self._split_lines(request)
            except errors.ConnectorError as exc:
                outcome[i] = exc
                continue
            new = request.operation == "create" or self._create_first(request)
            if (
                request.operation == "action"
                or request.is_delete
                or records.keyless(request)
                or (lines is not None and not new)
            ):
                # Actions, deletes, keyless creates (looked up by our reference first) and lines of a header
                # that exists: their own calls (the lines must be read first).
                outcome[i] = self._safe(lambda r=request: self.deliver(r))
            elif lines is not None:
                first.append((i, self._create_parts(request, company, payload, lines), company))
            elif new or not request.key:
                first.append((i, [self._post_part(request, company, payload)], company))
            else:
                part = BatchPart(
                    "PATCH",
                    self._entity_url(request.entity, company, request.key),
                    payload,
                    {"If-Match": request.etag or "*"},
                )
                first.append((i, [part], company))
        second: list[tuple[int, list[BatchPart], str]] = []  # upserts that guessed wrong: the other write
        for (i, parts, company), answer in self._send([p for _, p, _ in first], first):
            request, part = chunk[i], parts[0]
            if isinstance(answer, errors.ConnectorError):
                outcome[i] = answer
                continue
            summary = f"{part.method} {part.url}"
            failure = classify(self.system.name, answer[0].status, answer[0].headers, answer[0].text, summary)
            if isinstance(failure, errors.DuplicateError) and len(parts) > 1 and self._create_first(request):
                # The header exists after all: update it and match its lines, on its own.
                outcome[i] = self._safe(lambda r=request: self.deliver(replace(r, exists=True)))
                continue
            payload = {k: v for k, v in request.payload.items() if k != "dataAreaId"}
            if (
                failure
                and answer[0].status == 404
                and part.method == "PATCH"
                and request.operation == "upsert"
                and not request.etag
            ):
                second.append((i, [self._post_part(request, company, payload)], company))
                continue
            if isinstance(failure, errors.DuplicateError) and self._create_first(request):
                patch = BatchPart("PATCH", self._entity_url(request.entity, company, request.key), payload)
                patch.headers["If-Match"] = "*"
                second.append((i, [patch], company))
                continue
            outcome[i] = failure or self._result(
                request, company, answer[0].status, answer[0].headers, answer[0].json(), summary
            )
        for (i, [part], company), answer in self._send([p for _, p, _ in second], second):
            if isinstance(answer, errors.ConnectorError):
                outcome[i] = answer
                continue
            summary = f"{part.method} {part.url}"
            failure = classify(self.system.name, answer[0].status, answer[0].headers, answer[0].text, summary)
            outcome[i] = failure or self._result(
                chunk[i], company, answer[0].status, answer[0].headers, answer[0].json(), summary
            )
        return [o if o is not None else errors.TransientError("no answer in the $batch") for o in outcome]

    def _send(self, changesets: list[list[BatchPart]], tags: list[Any]) -> list[tuple[Any, Any]]:
        """POST one $batch (a change set per entry); pairs each tag with its change set's answers or an error.

        A change set that failed is answered by its one failing request, so the answers are regrouped: a
        failure (status ≥ 400) stands for its whole change set, else the change set's requests follow in order.
        """
        if not changesets:
            return []
        try:
            answers = self.send_batch(f"{self.data}/$batch", changesets, ODATA_HEADERS)
        except errors.ConnectorError as exc:
            return [(tag, exc) for tag in tags]
        grouped: list[tuple[Any, Any]] = []
        position = 0
        for changeset, tag in zip(changesets, tags, strict=True):
            first = answers[position] if position < len(answers) else None
            taken = 1 if first is not None and first.status >= 400 else len(changeset)
            group = answers[position : position + taken]
            position += taken
            if len(group) != taken:
                failure = errors.TransientError(
                    f"{self.system.name}: $batch answered {len(answers)} responses, too few for its change sets"
                )
                return [(t, failure) for t in tags]
            grouped.append((tag, group))
        return grouped

    @staticmethod
    def _create_first(request: DeliveryRequest) -> bool:
        return request.operation == "upsert" and bool(request.key) and request.exists is False

    @staticmethod
    def _safe(call: Any) -> DeliveryResult | errors.ConnectorError:
        try:
            return call()
        except errors.ConnectorError as exc:
            return exc

    # --- reads ------------------------------------------------------------------------------------

    def fetch(self, *, entity: str, key: dict[str, Any], company: str = "") -> dict[str, Any] | None:
        if not company:
            raise errors.RejectedError(f"{self.system.name}: fetching {entity} needs the company (dataAreaId)")
        try:
            return self.request("GET", self._entity_url(entity, company, key), headers=ODATA_HEADERS).json()
        except errors.RejectedError as exc:
            if exc.status_code == 404:
                return None
            raise

    def fetch_document(
        self, *, entity: str, key: dict[str, Any], company: str = "", lines: Any = (), options: Any = None
    ) -> dict[str, Any] | None:
        """The header, and its lines read from their own entity (options.lines) under the header's field."""
        record = self.fetch(entity=entity, key=key, company=company)
        spec = getattr(options, "lines", None)
        if record is None or spec is None or spec.field not in lines:
            return record
        return {**record, spec.field: self.fetch_rows(entity=spec.entity, key=key, company=company, orderby=spec.match)}

    def fetch_rows(
        self, *, entity: str, key: dict[str, Any], company: str = "", orderby: str = ""
    ) -> list[dict[str, Any]]:
        """Every row of one company whose fields equal key (an order's lines, by its SalesOrderNumber).

        Cross-company with a dataAreaId clause: without cross-company=true F&O reads only the app user's
        default company, whatever the filter says ("Open Data Protocol (OData)", cross-company).
        """
        if not company:
            raise errors.RejectedError(f"{self.system.name}: reading {entity} needs the company (dataAreaId)")
        return list(self.query(entity, filter=company_filter(company, key), orderby=orderby))

    def query(
        self, entity: str, *, filter: str = "", select: str = "", orderby: str = "", top: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Rows across companies, following @odata.nextLink."""
        params = {
            **CROSS_COMPANY,
            **{k: v for k, v in (("$filter", filter), ("$select", select), ("$orderby", orderby)) if v},
        }
        if top is not None:
            params["$top"] = str(top)
        headers = {**ODATA_HEADERS, "Prefer": f"odata.maxpagesize={self.page_size}"}
        yield from self.pages(f"{self.data}/{entity}", params=params, headers=headers)

    def read_changes(
        self, entity: str, execution_id: str, *, project: str, company: str, key: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The entity's rows changed since the previous successful export of the change-tracked data project,
        as OData answers them now (typed values and the row's @odata.etag).

        F&O's OData has no delta links and its entities no modified date/time: incremental export is change
        tracking in data management ("Enable change tracking for entities"). The project's entity is
        "Incremental push only", so ExportToPackage of it holds the rows changed since its previous successful
        export, all of them the first time. execution_id is the caller's, stored before the call, so a crash
        re-reads the same package (DataPackages.export_once). The package's CSV holds text and no version, so
        the changed keys are read back by key (READ_BACK a query): the ETag tells our own write from a later
        one (echo screening). A row deleted since is not there; non-BYOD exports do not track deletions.
        """
        status = self.packages.export_once(project=project, company=company, execution_id=execution_id)
        if status not in ("Succeeded", "PartiallySucceeded"):
            raise errors.RejectedError(
                f"{self.system.name}: export {execution_id} of data project {project} ended {status}: "
                f"{self.packages.execution_errors(execution_id)}"
            )
        entities = self.packages.package_rows(execution_id)
        if entity not in entities:
            raise errors.RejectedError(
                f"{self.system.name}: data project {project} does not export {entity} (it has {', '.join(entities)})"
            )
        wanted: dict[tuple[str, ...], dict[str, str]] = {}
        for row in entities[entity]:
            if missing := [name for name in key if not row.get(name)]:
                raise errors.RejectedError(
                    f"{self.system.name}: a row of {entity} in export {execution_id} has no {', '.join(missing)}"
                )
            wanted.setdefault(tuple(row[name] for name in key), {name: row[name] for name in key})
        found: list[dict[str, Any]] = []
        chunk = list(wanted.values())
        for start in range(0, len(chunk), READ_BACK):
            clauses = " or ".join(f"({company_filter(company, k)})" for k in chunk[start : start + READ_BACK])
            found += self.query(entity, filter=clauses)
        return found

    def read_page(
        self, entity: str, cursor: str = "", filters: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of an initial load: the rows at the cursor (an @odata.nextLink) and the next one ("" at the end).

        Cross-company, filtered by filters["company"] (dataAreaId); filters["since"] is refused (SINCE_REFUSED);
        the page size is filters["page_size"] or the system's, sent as Prefer: odata.maxpagesize.
        https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/odata#paging
        """
        filters = filters or {}
        if filters.get("transport") == "package":
            return package_page(self, entity, cursor, filters)
        headers = {**ODATA_HEADERS, "Prefer": f"odata.maxpagesize={int(filters.get('page_size') or self.page_size)}"}
        if cursor:
            response = self.request("GET", cursor, headers=headers)
        else:
            response = self.request("GET", f"{self.data}/{entity}", params=_load_params(filters), headers=headers)
        body = response.json()
        return body.get("value", []), body.get("@odata.nextLink") or ""

    @property
    def packages(self) -> DataPackages:
        """The Data management package API and recurring integrations of this environment."""
        return DataPackages(self)

    def count(self, entity: str, filters: dict[str, Any] | None = None) -> int | None:
        """How many rows a load would read ($count), for the preview; None if the entity cannot count."""
        params = {**_load_params(filters or {}), "$count": "true", "$top": "0"}
        body = self.request("GET", f"{self.data}/{entity}", params=params, headers=ODATA_HEADERS).json()
        count = body.get("@odata.count")
        return int(count) if count is not None else None

    def call_service(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """POST to a custom service operation /api/services/<group>/<service>/<operation>."""
        if path.count("/") != 2:
            raise errors.RejectedError(
                f"{self.system.name}: service path must be <group>/<service>/<operation>, got {path!r}"
            )
        response = self.request(
            "POST", f"{self.base_url}/api/services/{path}", json=params, headers={"Accept": "application/json"}
        )
        try:
            return response.json()
        except ValueError as exc:
            raise errors.TransientError(
                f"{self.system.name}: {path} answered something that is not JSON", status_code=response.status_code
            ) from exc

    # --- connection check -------------------------------------------------------------------------

    def check_connection(self) -> ConnectionReport:
        report = ConnectionReport()
        if not self.check_token(report):
            return report
        try:
            groups = self.request("GET", f"{self.base_url}/api/services", headers={"Accept": "application/json"}).json()
        except errors.ConnectorError as exc:
            report.add("reachability", False, f"{self.base_url} did not answer: {exc.message}")
            return report
        report.add(
            "reachability", True, f"{self.base_url} answers; {len(groups.get('ServiceGroups', []))} service group(s)"
        )
        for entity in self.system.settings.get("check_entities") or ["CustomersV3"]:
            try:
                self.request(
                    "GET", f"{self.data}/{entity}", params={**CROSS_COMPANY, "$top": "1"}, headers=ODATA_HEADERS
                )
            except errors.ConnectorError as exc:
                report.add(f"permissions ({entity})", False, f"cannot read {entity}: {exc.message}")
            else:
                report.add(f"permissions ({entity})", True, f"can read {entity} in every company")
        return report
