"""SAP S/4HANA connector: OData v2 APIs (API_SALES_ORDER_SRV, API_BUSINESS_PARTNER, …) through SAP Gateway.

System.base_url is the OData root, e.g. https://host/sap/opu/odata/sap; Flow.target_entity is
"<SERVICE>/<EntitySet>", e.g. API_SALES_ORDER_SRV/A_SalesOrder. A payload with navigation properties
(to_Item, to_Partner) is sent as one deep insert.

CSRF (https://help.sap.com/docs/SAP_NETWEAVER_750/68bf513362174d54b58cddec28794093/b35c22518bc72214e10000000a44176d.html):
a token is fetched once with `x-csrf-token: Fetch` and kept together with the session cookies it belongs to
(the requests session holds them); a 403 whose x-csrf-token header says "Required" fetches a new one and
repeats the write once. Errors: SAP's error JSON (error.message.value, innererror.errordetails) is the
operator's text; 400/404 → rejected, 401/403 → auth, 412 → conflict, 429 → throttled, 5xx → transient.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import requests

from integrations import errors
from integrations.protocols.odata import keys
from integrations.protocols.odata.batch import BatchRequest, ChangeSet, decode_responses, encode_requests
from integrations.protocols.transport import (
    ConnectionReport,
    DeliveryRequest,
    DeliveryResult,
    HttpConnector,
    classify_status,
    summary_of,
)
from integrations.systems.s4hana.keys import canonical_key, key_of_uri

if TYPE_CHECKING:
    from integrations.models import System


def sap_error_text(body: Any) -> str:
    """SAP's own message plus the further details it lists, without repeats."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return ""
    error = body["error"]
    message = error.get("message")
    texts = [message.get("value", "") if isinstance(message, dict) else str(message or "")]
    for detail in (error.get("innererror") or {}).get("errordetails") or []:
        text = detail.get("message", "") if isinstance(detail, dict) else ""
        if text and text not in texts:
            texts.append(text)
    code = error.get("code", "")
    joined = "; ".join(t for t in texts if t)
    return f"{joined} [{code}]" if code else joined


def _target_key(entity: dict[str, Any]) -> str:
    """The key an entity's URI carries, in the normal form (integrations.systems.s4hana.keys)."""
    return key_of_uri(entity.get("__metadata", {}).get("uri", ""))


def _plain(entity: dict[str, Any]) -> dict[str, Any]:
    """An entity without OData bookkeeping: __metadata and unexpanded navigation links go."""
    out = {}
    for name, value in entity.items():
        if name == "__metadata" or (isinstance(value, dict) and "__deferred" in value):
            continue
        if isinstance(value, dict) and "results" in value:
            value = [_plain(v) for v in value["results"]]
        elif isinstance(value, dict) and "__metadata" in value:  # an expanded to-one navigation (to_Customer)
            value = _plain(value)
        out[name] = value
    return out


class S4HanaConnector(HttpConnector):
    kind = "s4hana"
    # S/4's business events name the object and carry no document (CloudEvents data: the key fields), so an
    # event flow's first fetch rule reads the document the event announces (bulk.load lists that entity).
    key_only_events = True

    def __init__(self, system: System) -> None:
        super().__init__(system)
        if system.auth_type == "basic":
            self.session.auth = (system.client_id, system.secret or "")
        self._csrf_token = ""
        self._oauth_token = ""
        self._oauth_expires = 0.0
        self._lock = threading.Lock()
        self.csrf_fetches = 0  # how often a token was fetched; read by check_connection and tests
        self._last_response_csrf = ""

    # --- transport -----------------------------------------------------------------------------

    def raise_for_response(self, response: requests.Response, summary: str) -> None:
        status = response.status_code
        if status < 400:
            return
        try:
            text = sap_error_text(response.json())
        except ValueError:
            text = ""
        text = text or response.text[:300] or response.reason
        failure = classify_status(
            status,
            f"S/4HANA: {text}",
            summary=summary,
            excerpt=response.text,
            retry_after=response.headers.get("Retry-After"),
        )
        if failure:
            raise failure

    def _auth_headers(self, *, refresh: bool = False) -> dict[str, str]:
        if self.system.auth_type != "client_credentials":
            return {}
        with self._lock:
            if refresh or not self._oauth_token or time.time() > self._oauth_expires - 60:
                self._oauth_token, self._oauth_expires = self._fetch_oauth_token()
            return {"Authorization": f"Bearer {self._oauth_token}"}

    def _fetch_oauth_token(self) -> tuple[str, float]:
        data = {"grant_type": "client_credentials"}
        if self.system.scope:
            data["scope"] = self.system.scope
        try:
            response = self.session.post(
                self.system.auth_url,
                data=data,
                auth=(self.system.client_id, self.system.secret or ""),
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise errors.TransientError(
                f"{self.system.name}: token endpoint unreachable ({type(exc).__name__})"
            ) from exc
        if response.status_code in (400, 401):
            raise errors.AuthError(
                f"{self.system.name}: token refused: {response.text[:200]}", status_code=response.status_code
            )
        self.raise_for_response(response, f"POST {self.system.auth_url}")
        body = response.json()
        return body["access_token"], time.time() + float(body.get("expires_in", 300))

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One request with auth; an expired OAuth token is refreshed once."""
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        try:
            return self.request(method, url, headers={**headers, **self._auth_headers()}, **kwargs)
        except errors.AuthError as exc:
            if self.system.auth_type != "client_credentials" or exc.status_code != 401:
                raise
            return self.request(method, url, headers={**headers, **self._auth_headers(refresh=True)}, **kwargs)

    def fetch_csrf_token(self, service: str) -> str:
        """GET the service document with `x-csrf-token: Fetch`; the session keeps the cookies that go with it."""
        response = self._send("GET", f"{self.base_url}/{service}/", headers={"x-csrf-token": "Fetch"})
        token = response.headers.get("x-csrf-token", "")
        if not token:
            raise errors.AuthError(f"{self.system.name}: no CSRF token in the answer of {service}")
        self._csrf_token = token
        self.csrf_fetches += 1
        return token

    def _write(self, method: str, service: str, path: str, **kwargs: Any) -> requests.Response:
        """A modifying request with the CSRF token; a refused token is fetched again and the write repeated once."""
        url = f"{self.base_url}/{service}/{path}"
        if not self._csrf_token:
            self.fetch_csrf_token(service)
        headers = kwargs.pop("headers", {})
        try:
            return self._send(method, url, headers={**headers, "x-csrf-token": self._csrf_token}, **kwargs)
        except errors.AuthError as exc:
            if exc.status_code != 403 or self._last_response_csrf.lower() != "required":
                raise
        self.fetch_csrf_token(service)
        return self._send(method, url, headers={**headers, "x-csrf-token": self._csrf_token}, **kwargs)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        if client := str(self.system.settings.get("sap_client") or ""):
            # The logon client (SAP Help "SAP URL Parameters": sap-client first, else the system's default).
            kwargs["params"] = {**(kwargs.get("params") or {}), "sap-client": client}
        response = self.send(method, url, **kwargs)
        summary = summary_of(method, url)
        # SAP marks a refused CSRF token only in a header; remember it for _write's one retry.
        self._last_response_csrf = response.headers.get("x-csrf-token", "") if response.status_code == 403 else ""
        self.raise_for_response(response, summary)
        return response

    # --- OData ---------------------------------------------------------------------------------

    @staticmethod
    def _split_entity(entity: str) -> tuple[str, str]:
        service, sep, entity_set = entity.partition("/")
        if not sep or not service or not entity_set:
            raise errors.RejectedError(f"S/4HANA target entity must be '<SERVICE>/<EntitySet>', got '{entity}'")
        return service, entity_set

    def find(self, service: str, entity_set: str, key: dict[str, Any]) -> list[dict[str, Any]]:
        """Entities whose fields equal the given values ($filter), with their __metadata (etag)."""
        clauses = " and ".join(f"{name} eq {keys.v2_literal(value)}" for name, value in key.items())
        response = self._send(
            "GET", f"{self.base_url}/{service}/{entity_set}", params={"$filter": clauses, "$top": "2"}
        )
        return response.json()["d"]["results"]

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        service, entity_set = self._split_entity(request.entity)
        if request.is_delete:
            return self._delete(service, entity_set, request)
        request = self._with_reference(request)
        existing = self.find(service, entity_set, request.key) if request.key else []
        if len(existing) > 1:
            raise errors.RejectedError(f"S/4HANA: more than one {entity_set} matches {request.key}")
        if existing and request.operation == "create":
            # A redelivered create whose first answer was lost: the record is there already.
            raise errors.DuplicateError(
                f"S/4HANA: {entity_set} matching {request.key} exists", existing_key=_target_key(existing[0])
            )
        if existing:
            return self._update(service, entity_set, request, existing[0])
        if request.operation == "update":
            raise errors.RejectedError(f"S/4HANA: no {entity_set} matches {request.key}")
        response = self._write(
            "POST", service, entity_set, json=request.payload, headers={"Content-Type": "application/json"}
        )
        entity = response.json()["d"]
        return DeliveryResult(
            target_key=_target_key(entity),
            etag=response.headers.get("ETag", entity.get("__metadata", {}).get("etag", "")),
            created=True,
            status_code=response.status_code,
            request_summary=f"POST {service}/{entity_set}",
            response_excerpt=response.text[:500],
            body=_plain(entity),
        )

    @staticmethod
    def _with_reference(request: DeliveryRequest) -> DeliveryRequest:
        """A create without key values, keyed by our reference in the field S/4 keeps (options.reference_field).

        PurchaseOrderByCustomer on API_SALES_ORDER_SRV/A_SalesOrder is filterable and kept on the order
        (https://api.sap.com/api/API_SALES_ORDER_SRV/resource): the find before the POST then finds the
        order an earlier try wrote whose answer was lost, and the retry writes no second one.
        """
        field = request.options.reference_field
        if not field or any(value not in (None, "") for value in request.key.values()):
            return request
        if request.operation not in ("create", "upsert"):
            return request
        reference = request.payload.get(field) or request.reference
        return replace(
            request, payload={**request.payload, field: reference}, key={field: reference}, operation="create"
        )

    def _delete(self, service: str, entity_set: str, request: DeliveryRequest) -> DeliveryResult:
        """A Delete: DELETE the entity by its key, or PATCH the fields that block it (options.on_delete).

        An entity S/4 no longer has is where the Delete wants it: done.
        """
        policy = request.options.on_delete
        key = canonical_key(request.target_key)
        if key:
            predicate = f"{entity_set}({key})" if "=" in key else f"{entity_set}({keys.string_literal(key)})"
        elif request.key:
            predicate = f"{entity_set}({keys.format_v2_key(request.key)})"
            key = canonical_key(keys.format_v2_key(request.key))
        else:
            raise errors.RejectedError(f"S/4HANA: no key of the {entity_set} entity to {policy.action}")
        method = "DELETE" if policy.action == "delete" else "PATCH"
        headers = {"If-Match": "*", **({"Content-Type": "application/json"} if method == "PATCH" else {})}
        extra = {"json": dict(policy.set)} if method == "PATCH" else {}
        try:
            response = self._write(method, service, predicate, headers=headers, **extra)
        except errors.RejectedError as exc:
            if exc.status_code != 404:
                raise
            return DeliveryResult(
                target_key=key, created=False, status_code=404, request_summary=f"{method} {service}/{predicate}"
            )
        return DeliveryResult(
            target_key=key,
            etag=response.headers.get("ETag", "") if method == "PATCH" else "",
            created=False,
            status_code=response.status_code,
            request_summary=f"{method} {service}/{predicate}",
        )

    def _update(
        self, service: str, entity_set: str, request: DeliveryRequest, current: dict[str, Any]
    ) -> DeliveryResult:
        key = _target_key(current)
        predicate = current["__metadata"]["uri"].rsplit("/", 1)[-1]
        current_etag = current.get("__metadata", {}).get("etag", "")
        headers = {"Content-Type": "application/json"}
        if request.etag or current_etag:
            headers["If-Match"] = "*" if request.options.force else (request.etag or current_etag)
        payload = {k: v for k, v in request.payload.items() if not (isinstance(v, list | dict))}  # no deep update in v2
        try:
            response = self._write("PATCH", service, predicate, json=payload, headers=headers)
        except errors.ConflictError as exc:
            fresh = self.find(service, entity_set, request.key)
            exc.current = _plain(fresh[0]) if fresh else None
            exc.current_etag = fresh[0].get("__metadata", {}).get("etag", "") if fresh else ""
            raise
        children = self._update_children(service, predicate, request)
        return DeliveryResult(
            target_key=key,
            etag=response.headers.get("ETag", ""),
            created=False,
            status_code=response.status_code,
            request_summary=f"PATCH {service}/{predicate}" + (f" + {children} item request(s)" if children else ""),
        )

    def _update_children(self, service: str, predicate: str, request: DeliveryRequest) -> int:
        """An update's items (to_Item): OData v2 has no deep update, so each item is written on its own.

        Items pair with the existing ones by their key field (SalesOrderItem, the first field of the item
        entity's key the payload carries); a changed one is PATCHed by its URI, a new one POSTed to the
        navigation (A_SalesOrder('1')/to_Item, https://api.sap.com/api/API_SALES_ORDER_SRV/resource).
        Items the payload no longer carries are left alone (deleting order items is a business decision).
        """
        written = 0
        for nav, rows in request.payload.items():
            if not (isinstance(rows, list) and rows and all(isinstance(row, dict) for row in rows)):
                continue
            pair = next((name for name in rows[0] if all(name in row for row in rows) and name.endswith("Item")), "")
            if not pair:
                continue  # not items (e.g. a partner's roles): written on create only
            existing = self._send("GET", f"{self.base_url}/{service}/{predicate}/{nav}").json()["d"]["results"]
            by_key = {str(row.get(pair)): row for row in existing}
            for row in rows:
                current = by_key.get(str(row.get(pair)))
                if current is None:
                    self._write(
                        "POST", service, f"{predicate}/{nav}", json=row, headers={"Content-Type": "application/json"}
                    )
                    written += 1
                    continue
                changes = {k: v for k, v in row.items() if k != pair and _plain(current).get(k) != v}
                if not changes:
                    continue
                uri = current["__metadata"]["uri"].rsplit("/", 1)[-1]
                headers = {"Content-Type": "application/json", "If-Match": current["__metadata"].get("etag") or "*"}
                self._write("PATCH", service, uri, json=changes, headers=headers)
                written += 1
        return written

    def deliver_many(self, requests_: Sequence[DeliveryRequest]) -> list[DeliveryResult | errors.ConnectorError]:
        """Creates into one service go as one $batch, one change set each (one bad record fails alone)."""
        services = {self._split_entity(r.entity)[0] for r in requests_}
        if (
            len(requests_) < 2
            or len(services) != 1
            or any(r.operation != "create" or r.key or r.options.reference_field for r in requests_)
        ):
            return super().deliver_many(requests_)
        service = services.pop()
        changesets = []
        for request in requests_:
            body = json.dumps(request.payload).encode()
            headers = {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Content-Length": str(len(body)),
            }
            post = BatchRequest("POST", self._split_entity(request.entity)[1], headers, body)
            changesets.append(ChangeSet([post]))
        data, content_type = encode_requests(changesets)
        response = self._write("POST", service, "$batch", data=data, headers={"Content-Type": content_type})
        try:
            parts = decode_responses(response.content, response.headers.get("Content-Type", ""))
        except ValueError as exc:
            raise errors.TransientError(f"S/4HANA: unreadable $batch answer: {exc}") from exc
        answers = [(part.status, part.text) for part in parts]
        if len(answers) != len(requests_):
            raise errors.TransientError(f"S/4HANA: $batch answered {len(answers)} parts for {len(requests_)} requests")
        results: list[DeliveryResult | errors.ConnectorError] = []
        for request, (status, body) in zip(requests_, answers, strict=True):
            if status >= 400:
                fake = requests.Response()
                fake.status_code, fake._content = status, body.encode()
                try:
                    self.raise_for_response(fake, f"$batch POST {request.entity}")
                except errors.ConnectorError as exc:
                    results.append(exc)
                continue
            entity = json.loads(body)["d"]
            results.append(
                DeliveryResult(
                    target_key=_target_key(entity),
                    etag=entity.get("__metadata", {}).get("etag", ""),
                    status_code=status,
                    request_summary=f"$batch POST {request.entity}",
                    body=_plain(entity),
                )
            )
        return results

    def read_page(
        self, entity: str, cursor: str = "", filters: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of an initial load of <SERVICE>/<EntitySet>: its entities and the next cursor ("" at the end).

        The Gateway pages on the server: a partial collection ends with "__next", a link carrying a
        $skiptoken, followed as is. filters: "since" (on LastChangeDateTime, or filters["field"]), "company"
        (on CompanyCode, or filters["company_field"]).
        https://help.sap.com/docs/SAP_NETWEAVER_750/68bf513362174d54b58cddec28794093/6ee2fd5ad5e044c0ae6a2da5b9c8a0f3.html
        """
        filters = filters or {}
        if cursor:
            response = self._send("GET", cursor)
        else:
            service, entity_set = self._split_entity(entity)
            clauses = []
            if filters.get("since"):
                moment = str(filters["since"]).rstrip("Z")
                clauses.append(f"{filters.get('field') or 'LastChangeDateTime'} ge datetimeoffset'{moment}Z'")
            if filters.get("company"):
                clauses.append(
                    f"{filters.get('company_field') or 'CompanyCode'} eq {keys.v2_literal(filters['company'])}"
                )
            params = {"$filter": " and ".join(clauses)} if clauses else None
            response = self._send("GET", f"{self.base_url}/{service}/{entity_set}", params=params)
        body = response.json()["d"]
        return [_plain(entity) for entity in body.get("results", [])], body.get("__next") or ""

    def fetch(self, *, entity: str, key: dict[str, Any], company: str = "") -> dict[str, Any] | None:
        service, entity_set = self._split_entity(entity)
        try:
            response = self._send("GET", f"{self.base_url}/{service}/{entity_set}({keys.format_v2_key(key)})")
        except errors.RejectedError as exc:
            if exc.status_code == 404:
                return None
            raise
        return _plain(response.json()["d"])

    def fetch_document(
        self, *, entity: str, key: dict[str, Any], company: str = "", lines: Any = (), options: Any = None
    ) -> dict[str, Any] | None:
        """The record found by the flow's key fields ($filter: they need not be the entity's key, e.g.
        PurchaseOrderByCustomer), with the navigation properties named in lines expanded (to_Item)."""
        service, entity_set = self._split_entity(entity)
        clauses = " and ".join(f"{name} eq {keys.v2_literal(value)}" for name, value in key.items())
        params = {"$filter": clauses, "$top": "2"}
        if lines:
            params["$expand"] = ",".join(lines)
        rows = self._send("GET", f"{self.base_url}/{service}/{entity_set}", params=params).json()["d"]["results"]
        if len(rows) > 1:
            raise errors.RejectedError(f"S/4HANA: more than one {entity_set} matches {key}")
        return _plain(rows[0]) if rows else None

    def check_connection(self) -> ConnectionReport:
        report = ConnectionReport()
        for service in self.system.settings.get("s4_services") or ["API_SALES_ORDER_SRV"]:
            try:
                self.fetch_csrf_token(service)
            except errors.ConnectorError as exc:
                report.add(f"{service} CSRF token", False, exc.message)
                continue
            report.add(f"{service} CSRF token", True, "fetched with the session cookie")
            try:
                self._send("GET", f"{self.base_url}/{service}/$metadata", headers={"Accept": "application/xml"})
            except errors.ConnectorError as exc:
                report.add(f"{service} $metadata", False, exc.message)
            else:
                report.add(f"{service} $metadata", True, "readable")
        return report
