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
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from integrations import errors
from integrations.connectors.base import ConnectionReport, DeliveryRequest, DeliveryResult
from integrations.connectors.msal_auth import BatchPart, MicrosoftConnector, build_batch, parse_batch_response

if TYPE_CHECKING:
    from integrations.models import System

ODATA_HEADERS = {"OData-MaxVersion": "4.0", "OData-Version": "4.0", "Accept": "application/json"}
CROSS_COMPANY = {"cross-company": "true"}
# Server-side failures that are about the data, not the service: never worth a retry.
BUSINESS_ERROR_TYPES = ("AxODataWriteException", "XppServicesException", "ODataException")


def format_key(company: str, key: dict[str, Any]) -> str:
    """dataAreaId='se01',SalesOrderNumber='SO-1' (quotes doubled, numbers bare)."""
    parts = []
    for name, value in {"dataAreaId": company, **key}.items():
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, int | float):
            rendered = str(value)
        else:
            rendered = "'" + str(value).replace("'", "''") + "'"
        parts.append(f"{name}={quote(rendered, safe=chr(39) + '=,')}")
    return ",".join(parts)


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
    kwargs = {"status_code": status, "response_excerpt": text[:2000], "request_summary": summary}
    text_out = f"{system_name}: {detail}"
    if status == 429:
        retry_after = errors.parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"), 5.0)
        return errors.ThrottledError(text_out, retry_after=retry_after, **kwargs)
    if status in (401, 403):
        return errors.AuthError(text_out, **kwargs)
    if "already exists" in detail.lower():
        return errors.DuplicateError(text_out, **kwargs)
    if status == 412:
        return errors.ConflictError(text_out, **kwargs)
    if status >= 500 and not any(t in kind for t in BUSINESS_ERROR_TYPES) and "Write failed" not in detail:
        return errors.TransientError(text_out, **kwargs)
    if status == 408:
        return errors.TransientError(text_out, **kwargs)
    return errors.RejectedError(text_out, **kwargs)


class FinOpsConnector(MicrosoftConnector):
    kind = "finops"
    batch_capable = True  # deliver_many: one $batch, a change set per record

    def __init__(self, system: System) -> None:
        super().__init__(system)
        self.data = f"{self.base_url}/data"
        self.page_size = int(system.settings.get("page_size") or 10_000)

    classify = staticmethod(classify)

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
        target = format_key(str(body.get("dataAreaId", company)).lower(), key)
        location = next((v for k, v in headers.items() if k.lower() == "location"), "")
        if not request.key and (match := re.search(r"\((.*)\)$", location)):
            target = unquote(match.group(1))  # F&O numbered the record: its key is in the Location
        etag = next((v for k, v in headers.items() if k.lower() == "etag"), "") or str(body.get("@odata.etag", ""))
        return DeliveryResult(
            target_key=target,
            etag=etag,
            created=status == 201,
            status_code=status,
            request_summary=summary,
            response_excerpt=json.dumps(body)[:500] if body else "",
            body=body or None,
        )

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        if request.operation == "action":
            body = self.call_service(request.entity, request.payload)
            return DeliveryResult(target_key=request.idempotency_key, created=False, status_code=200, body=body)
        company = self._company(request)
        payload = {k: v for k, v in request.payload.items() if k != "dataAreaId"}
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
            current = self.fetch(entity=request.entity, key=request.key, company=company)
            raise errors.ConflictError(
                exc.message,
                current=current,
                current_etag=str((current or {}).get("@odata.etag", "")),
                status_code=exc.status_code,
                response_excerpt=exc.response_excerpt,
                request_summary=exc.request_summary,
            ) from exc
        return self._result(request, company, response.status_code, dict(response.headers), None, f"PATCH {url}")

    def _post(self, request: DeliveryRequest, company: str, payload: dict[str, Any]) -> DeliveryResult:
        url = f"{self.data}/{request.entity}?cross-company=true"
        body = {**payload, **request.key, "dataAreaId": company}
        try:
            response = self.request("POST", url, json=body, headers=ODATA_HEADERS)
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
        results: list[DeliveryResult | errors.ConnectorError] = []
        size = max(1, self.system.batch_size or 100)
        for start in range(0, len(requests_), size):
            results += self._batch(list(requests_[start : start + size]))
        return results

    def _batch(self, chunk: list[DeliveryRequest]) -> list[DeliveryResult | errors.ConnectorError]:
        outcome: list[DeliveryResult | errors.ConnectorError | None] = [None] * len(chunk)
        first: list[tuple[int, BatchPart, str]] = []
        for i, request in enumerate(chunk):
            try:
                company = self._company(request)
            except errors.ConnectorError as exc:
                outcome[i] = exc
                continue
            payload = {k: v for k, v in request.payload.items() if k != "dataAreaId"}
            if request.operation == "action":
                outcome[i] = self._safe(lambda r=request: self.deliver(r))
            elif request.operation == "create" or not request.key or self._create_first(request):
                part = BatchPart(
                    "POST",
                    f"{self.data}/{request.entity}?cross-company=true",
                    {**payload, **request.key, "dataAreaId": company},
                )
                first.append((i, part, company))
            else:
                part = BatchPart(
                    "PATCH",
                    self._entity_url(request.entity, company, request.key),
                    payload,
                    {"If-Match": request.etag or "*"},
                )
                first.append((i, part, company))
        second: list[tuple[int, BatchPart, str]] = []  # upserts that guessed wrong: the other write
        for (i, part, company), answer in self._send([p for _, p, _ in first], first):
            request = chunk[i]
            if isinstance(answer, errors.ConnectorError):
                outcome[i] = answer
                continue
            failure = classify(
                self.system.name, answer.status, answer.headers, answer.text, f"{part.method} {part.url}"
            )
            if (
                failure
                and answer.status == 404
                and part.method == "PATCH"
                and request.operation == "upsert"
                and not request.etag
            ):
                body = {
                    **{k: v for k, v in request.payload.items() if k != "dataAreaId"},
                    **request.key,
                    "dataAreaId": company,
                }
                second.append((i, BatchPart("POST", f"{self.data}/{request.entity}?cross-company=true", body), company))
                continue
            if isinstance(failure, errors.DuplicateError) and self._create_first(request):
                patch = BatchPart(
                    "PATCH",
                    self._entity_url(request.entity, company, request.key),
                    {k: v for k, v in request.payload.items() if k != "dataAreaId"},
                    {"If-Match": "*"},
                )
                second.append((i, patch, company))
                continue
            outcome[i] = failure or self._result(
                request, company, answer.status, answer.headers, answer.json(), f"{part.method} {part.url}"
            )
        for (i, part, company), answer in self._send([p for _, p, _ in second], second):
            if isinstance(answer, errors.ConnectorError):
                outcome[i] = answer
                continue
            summary = f"{part.method} {part.url}"
            failure = classify(self.system.name, answer.status, answer.headers, answer.text, summary)
            outcome[i] = failure or self._result(
                chunk[i], company, answer.status, answer.headers, answer.json(), summary
            )
        return [o if o is not None else errors.TransientError("no answer in the $batch") for o in outcome]

    def _send(self, parts: list[BatchPart], tags: list[Any]) -> list[tuple[Any, Any]]:
        """POST one $batch of parts (one change set each); pairs each tag with its answer or error."""
        if not parts:
            return []
        body, content_type = build_batch([[p] for p in parts])
        try:
            response = self.request(
                "POST", f"{self.data}/$batch", data=body, headers={**ODATA_HEADERS, "Content-Type": content_type}
            )
            answers = parse_batch_response(response.content, response.headers.get("Content-Type", ""))
        except errors.ConnectorError as exc:
            return [(tag, exc) for tag in tags]
        except ValueError as exc:
            failure = errors.TransientError(f"{self.system.name}: unreadable $batch answer: {exc}")
            return [(tag, failure) for tag in tags]
        if len(answers) != len(parts):
            failure = errors.TransientError(
                f"{self.system.name}: $batch answered {len(answers)} responses for {len(parts)} requests"
            )
            return [(tag, failure) for tag in tags]
        return list(zip(tags, answers, strict=True))

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
        url: str | None = f"{self.data}/{entity}"
        first = True
        while url:
            response = self.request("GET", url, params=params if first else None, headers=headers)
            first = False
            body = response.json()
            yield from body.get("value", [])
            url = body.get("@odata.nextLink")

    def read_changes(
        self, entity: str, cursor: str | None = None, *, company: str = "", field: str = "ModifiedDateTime"
    ) -> tuple[list[dict[str, Any]], str]:
        """Rows modified after the cursor (a timestamp) and the next cursor (the newest timestamp seen).

        F&O has no delta links on OData; entities that carry a modified date/time are read with
        $filter=<field> gt <cursor>, oldest first. With no cursor it is the initial load.
        """
        clauses = []
        if cursor:
            clauses.append(f"{field} gt {cursor}")
        if company:
            clauses.append(f"dataAreaId eq '{company.replace(chr(39), chr(39) * 2)}'")
        records = list(self.query(entity, filter=" and ".join(clauses), orderby=field))
        newest = max((str(r.get(field) or "") for r in records), default="") or (cursor or "")
        return records, newest

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
