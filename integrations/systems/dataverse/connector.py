"""Dataverse Web API (OData v4) connector: Dynamics 365 Sales / Customer Engagement.

System: base_url = the environment (https://org.crm4.dynamics.com), auth_url = the Azure AD authority
(https://login.microsoftonline.com/<tenant>), client_id / secret of the app registration that has an
application user in the environment, scope = "<base_url>/.default" (the default when empty).
settings: "ca_bundle" (a private CA), "page_size" (Prefer odata.maxpagesize, default 5000),
"check_entities" (tables Test connection reads, default ["accounts"]), "bulk_tables" (entity sets written
with CreateMultiple / UpsertMultiple in batches, default bulk.BULK_TABLES; [] for $batch only).

DeliveryRequest.entity is the entity set (accounts, salesorders…); key the alternate key values.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import requests

from integrations import errors
from integrations.protocols.microsoft import BatchPart, MicrosoftConnector
from integrations.protocols.odata.keys import format_key, literal
from integrations.protocols.transport import ConnectionReport, DeliveryRequest, DeliveryResult, classify_status
from integrations.systems.dataverse import bulk
from integrations.systems.dataverse.inbound import update_event
from integrations.systems.dataverse.keys import canonical_key

if TYPE_CHECKING:
    from integrations.models import System

API_PATH = "/api/data/v9.2"
MAX_BATCH = 1000  # Dataverse refuses a $batch of more than 1,000 requests
ODATA_HEADERS = {"OData-MaxVersion": "4.0", "OData-Version": "4.0", "Accept": "application/json"}
# Rows read to be stored as webhook messages: each lookup's table and name come as annotations (update_event).
ANNOTATIONS = 'odata.include-annotations="*"'
# Primary id columns that do not follow "<logical name>id".
PRIMARY_IDS = {"tasks": "activityid", "emails": "activityid", "phonecalls": "activityid", "appointments": "activityid"}

# Web API error codes we classify by code rather than by status:
# https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes
DUPLICATE_CODES = {"0x80040237", "0x80060892"}  # duplicate key / alternate key already in use
CONCURRENCY_CODES = {"0x80060882"}  # ConcurrencyVersionMismatch: If-Match ETag is stale


def primary_id(entity_set: str) -> str:
    if entity_set in PRIMARY_IDS:
        return PRIMARY_IDS[entity_set]
    singular = entity_set[:-3] + "y" if entity_set.endswith("ies") else entity_set.removesuffix("s")
    return f"{singular}id"


def is_deleted(record: dict[str, Any]) -> bool:
    """True for a change-tracking entry that says the row was deleted ($deletedEntity)."""
    return record.get("reason") == "deleted" or "$deletedEntity" in str(record.get("@odata.context", ""))


def classify(
    system_name: str, status: int, headers: dict[str, str], text: str, summary: str
) -> errors.ConnectorError | None:
    """Our taxonomy for one Web API answer (also used for each $batch part); None when it succeeded.

    Error shape: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
    Service protection (429, Retry-After): https://learn.microsoft.com/power-apps/developer/data-platform/api-limits
    """
    if status < 400:
        return None
    code, message = "", text[:300]
    try:
        body = json.loads(text) if text.strip() else {}
        code = str(body.get("error", {}).get("code", ""))
        message = str(body.get("error", {}).get("message", "")) or message
    except (ValueError, AttributeError):
        pass
    if not message:
        lowered = {k.lower(): v for k, v in headers.items()}
        why = lowered.get("x-ms-diagnostics", "")
        message = (
            f"HTTP {status}"
            + (f": {why}" if why else "")
            + (f" (challenge: {lowered['www-authenticate']})" if "www-authenticate" in lowered else "")
        )
    vendor_class = (
        errors.DuplicateError
        if code in DUPLICATE_CODES
        else errors.ConflictError
        if code in CONCURRENCY_CODES
        else None
    )
    return classify_status(
        status,
        f"{system_name}: {message}" + (f" ({code})" if code else ""),
        summary=summary,
        excerpt=text,
        retry_after=headers.get("Retry-After") or headers.get("retry-after"),
        retry_default=5.0,
        vendor_class=vendor_class,
        overrides={409: errors.RejectedError},  # a 409 without a duplicate code is no duplicate here
    )


class DataverseConnector(MicrosoftConnector):
    kind = "dataverse"
    default_page_size = 5000

    def __init__(self, system: System) -> None:
        super().__init__(system)
        self.api = f"{self.base_url}{API_PATH}"
        self._tables: dict[str, tuple[str, str]] = {}  # logical name → (entity set, primary id), read once

    # --- classification ---------------------------------------------------------------------------

    classify = staticmethod(classify)

    # --- writes -----------------------------------------------------------------------------------

    def _write_part(self, request: DeliveryRequest) -> BatchPart:
        """The HTTP request that writes one record: PATCH by alternate key (upsert) or POST (create)."""
        headers = {"Prefer": "return=representation", "MSCRM.SuppressDuplicateDetection": "true"}
        if request.correlation_id:
            headers["x-ms-correlation-request-id"] = request.correlation_id
        operation = request.operation
        if request.is_delete:
            return self._delete_part(request, headers)
        if not request.key:
            if operation in ("update", "upsert"):
                raise errors.RejectedError(
                    f"{self.system.name}: {operation} of {request.entity} needs key values (target_key_fields)"
                )
            return BatchPart("POST", f"{self.api}/{request.entity}", self._with_client_id(request), headers)
        if request.etag:
            headers["If-Match"] = request.etag
        elif operation == "update":
            headers["If-Match"] = "*"  # update only: 404 instead of creating
        elif operation == "create" or request.options.create_only:
            headers["If-None-Match"] = "*"  # create only: 412 instead of overwriting
        url = f"{self.api}/{request.entity}({format_key(request.key, url=True)})"
        return BatchPart("PATCH", url, request.payload, headers)

    def _with_client_id(self, request: DeliveryRequest) -> dict[str, Any]:
        """A keyless create names its row: a primary key GUID derived from the flow and idempotency key.

        Dataverse accepts a primary key value on create and refuses a second row with it (duplicate key),
        so a retry after a lost answer finds our first write instead of making another.
        https://learn.microsoft.com/power-apps/developer/data-platform/webapi/create-entity-web-api
        """
        pk = primary_id(request.entity)
        if not request.flow or request.payload.get(pk):
            return request.payload
        return {**request.payload, pk: request.client_id}

    def _delete_part(self, request: DeliveryRequest, headers: dict[str, str]) -> BatchPart:
        """A Delete: DELETE the row, or PATCH the fields that deactivate it (options.on_delete).

        Deactivate is statecode/statuscode, set through an update:
        https://learn.microsoft.com/power-apps/developer/data-platform/webapi/update-delete-entities-using-web-api
        """
        policy = request.options.on_delete
        if request.target_key:
            segment = canonical_key(request.target_key)
        elif request.key:
            segment = format_key(request.key, url=True)
        else:
            raise errors.RejectedError(f"{self.system.name}: no key of the {request.entity} row to {policy.action}")
        url = f"{self.api}/{request.entity}({segment})"
        if policy.action == "delete":
            return BatchPart("DELETE", url, None, {"If-Match": "*"})
        return BatchPart("PATCH", url, dict(policy.set), {**headers, "If-Match": "*"})

    def _result(
        self, request: DeliveryRequest, status: int, headers: dict[str, str], body: Any, summary: str
    ) -> DeliveryResult:
        if request.is_delete:
            target = canonical_key(request.target_key) or format_key(request.key)
            return DeliveryResult(target_key=target, created=False, status_code=status, request_summary=summary)
        body = body if isinstance(body, dict) else {}
        entity_id = next((v for k, v in headers.items() if k.lower() == "odata-entityid"), "")
        target = str(body.get(primary_id(request.entity), ""))
        if not target:
            match = re.search(r"\(([0-9a-fA-F-]{36})\)$", entity_id)
            target = match.group(1) if match else entity_id
        return self.written(canonical_key(target), status, headers, body, summary)

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        part = self._write_part(request)
        summary = f"{part.method} {part.url}"
        try:
            response = self.request(part.method, part.url, json=part.body, headers={**ODATA_HEADERS, **part.headers})
        except errors.RejectedError as exc:
            if request.is_delete and exc.status_code == 404:  # gone already: where the Delete wants it
                return self._result(request, 404, {}, None, summary)
            raise
        except errors.DuplicateError as exc:
            raise self._with_existing(request, exc) from exc
        except errors.ConflictError as exc:
            raise self._with_current(request, exc) from exc
        return self._result(request, response.status_code, dict(response.headers), _json(response), summary)

    def _with_current(self, request: DeliveryRequest, exc: errors.ConflictError) -> errors.ConflictError:
        """The conflict with the target's current version attached, for the flow's conflict policy."""
        return exc.with_current(self.fetch(entity=request.entity, key=request.key) if request.key else None)

    def _with_existing(self, request: DeliveryRequest, exc: errors.DuplicateError) -> errors.DuplicateError:
        if not request.key:  # a keyless create named its row: the duplicate is our own earlier write
            existing = str(self._with_client_id(request).get(primary_id(request.entity), ""))
        else:
            current = self.fetch(entity=request.entity, key=request.key)
            existing = str((current or {}).get(primary_id(request.entity), ""))
        return errors.DuplicateError(
            exc.message,
            existing_key=canonical_key(existing),
            status_code=exc.status_code,
            response_excerpt=exc.response_excerpt,
            request_summary=exc.request_summary,
        )

    def deliver_many(
        self, requests_: Sequence[DeliveryRequest], *, atomic: bool = False
    ) -> list[DeliveryResult | errors.ConnectorError]:
        """Write many records, up to 1,000 per call: bulk messages where they fit, else $batch.

        Keyless creates and upserts of a table that takes bulk messages go as CreateMultiple /
        UpsertMultiple (bulk.py); the rest through $batch, each record its own change set (a bad record
        fails alone) unless atomic=True, when each chunk is one change set: all of it is written or none.
        """
        results: list[DeliveryResult | errors.ConnectorError] = []
        size = max(1, min(self.system.batch_size or MAX_BATCH, MAX_BATCH))
        for start in range(0, len(requests_), size):
            chunk = list(requests_[start : start + size])
            results += self._batch(chunk, atomic) if atomic else self._bulk_or_batch(chunk)
        return results

    def _bulk_or_batch(self, chunk: list[DeliveryRequest]) -> list[DeliveryResult | errors.ConnectorError]:
        """Creates and upserts of one table as one bulk message (bulk.py), everything else as $batch."""
        groups: dict[tuple[str, str], list[int]] = {}
        for n, request in enumerate(chunk):
            if action := bulk.bulk_action(self, request):
                groups.setdefault((request.entity, action), []).append(n)
        outcome: dict[int, DeliveryResult | errors.ConnectorError] = {}
        for (_, action), members in groups.items():
            if len(members) >= bulk.MIN_BULK:
                group = [chunk[n] for n in members]
                outcome.update(
                    zip(
                        members,
                        bulk.deliver_bulk(
                            self, action, group, self._one_by_one, headers=ODATA_HEADERS, pk=primary_id(group[0].entity)
                        ),
                        strict=True,
                    )
                )
        rest = [n for n in range(len(chunk)) if n not in outcome]
        if rest:
            outcome.update(zip(rest, self._batch([chunk[n] for n in rest], False), strict=True))
        return [outcome[n] for n in range(len(chunk))]

    def _one_by_one(self, group: list[DeliveryRequest]) -> list[DeliveryResult | errors.ConnectorError]:
        return self._batch(group, False)

    def _batch(self, chunk: list[DeliveryRequest], atomic: bool) -> list[DeliveryResult | errors.ConnectorError]:
        parts: list[BatchPart] = []
        outcome: list[DeliveryResult | errors.ConnectorError | None] = []
        for request in chunk:
            try:
                parts.append(self._write_part(request))
                outcome.append(None)
            except errors.ConnectorError as exc:
                outcome.append(exc)
        if not parts:
            return [o for o in outcome if o is not None]
        try:
            answers = self.send_batch(
                f"{self.api}/$batch",
                [parts] if atomic else [[p] for p in parts],
                {**ODATA_HEADERS, "Prefer": "odata.continue-on-error"},
            )
        except errors.ConnectorError as exc:
            return [o if o is not None else exc for o in outcome]
        waiting = [(i, request) for i, request in enumerate(chunk) if outcome[i] is None]
        pending = [(i, request, part) for (i, request), part in zip(waiting, parts, strict=True)]
        if atomic and len(answers) == 1 and answers[0].status >= 400 and len(pending) > 1:
            # A failed change set answers with the failing request alone; its Content-ID says which.
            failed_at = int(answers[0].content_id or 1) - 1
            failure = self._part_error(answers[0], pending[failed_at][2])
            for n, (i, _, _) in enumerate(pending):
                outcome[i] = (
                    failure
                    if n == failed_at
                    else errors.RejectedError(
                        f"{self.system.name}: not written, the change set was rolled back "
                        f"because record {failed_at + 1} failed: {failure.message}"
                    )
                )
            return [o for o in outcome if o is not None]
        if len(answers) != len(pending):
            failure = errors.TransientError(
                f"{self.system.name}: $batch answered {len(answers)} responses for {len(pending)} requests"
            )
            return [o if o is not None else failure for o in outcome]
        for (i, request, part), answer in zip(pending, answers, strict=True):
            error = self._part_error(answer, part)
            if request.is_delete and answer.status == 404:
                error = None  # gone already
            elif isinstance(error, errors.DuplicateError) and not request.key:
                error = self._with_existing(request, error)
            if error is None:
                outcome[i] = self._result(
                    request, answer.status, answer.headers, answer.json(), f"{part.method} {part.url}"
                )
            else:
                outcome[i] = error
        return [o for o in outcome if o is not None]

    def _part_error(self, answer: Any, part: BatchPart) -> errors.ConnectorError | None:
        return classify(
            self.system.name, answer.status, answer.headers, answer.text, f"{part.method} {part.url} ($batch)"
        )

    # --- reads ------------------------------------------------------------------------------------

    def table(self, logical_name: str) -> tuple[str, str]:
        """(entity set name, primary id column) of a table by its logical name, read once per connector.

        Events name the table by its logical name (account); the Web API addresses its entity set
        (accounts), which only the table's definition tells reliably:
        https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api
        """
        if logical_name not in self._tables:
            literal = "'" + logical_name.replace("'", "''") + "'"
            url = f"{self.api}/EntityDefinitions(LogicalName={literal})"
            body = self.request(
                "GET", url, params={"$select": "EntitySetName,PrimaryIdAttribute"}, headers=ODATA_HEADERS
            ).json()
            entity_set = str(body.get("EntitySetName") or "")
            if not entity_set:
                raise errors.RejectedError(f"{self.system.name}: table {logical_name} has no entity set name")
            self._tables[logical_name] = (entity_set, str(body.get("PrimaryIdAttribute") or f"{logical_name}id"))
        return self._tables[logical_name]

    def listing(self, logical_name: str) -> tuple[str, tuple[str, ...]]:
        """What an initial load or reconciliation lists of a table: its entity set, keyed by its primary id."""
        entity_set, primary_id = self.table(logical_name)
        return entity_set, (primary_id,)

    loaded_record = staticmethod(update_event)  # a listed row, as the message its flows' mappings read

    def fetch_event_record(self, *, entity: str, record_id: str) -> dict[str, Any] | None:
        """The row an event names (logical name + id), read from its entity set as the event's attributes carry
        it (a lookup as its EntityReference, not _<lookup>_value: update_event); None when it is gone."""
        entity_set, _ = self.table(entity)
        try:
            response = self.request(
                "GET",
                f"{self.api}/{entity_set}({canonical_key(record_id)})",
                headers={**ODATA_HEADERS, "Prefer": ANNOTATIONS},
            )
        except errors.RejectedError as exc:
            if exc.status_code == 404:
                return None
            raise
        return update_event(entity, record_id, response.json())["attributes"]

    def fetch(self, *, entity: str, key: dict[str, Any], company: str = "") -> dict[str, Any] | None:
        """One row by alternate key (or {primary id: guid}); None when it does not exist."""
        pk = primary_id(entity)
        segment = str(key[pk]) if set(key) == {pk} else format_key(key, url=True)
        try:
            response = self.request("GET", f"{self.api}/{entity}({segment})", headers=ODATA_HEADERS)
        except errors.RejectedError as exc:
            if exc.status_code == 404:
                return None
            raise
        return response.json()

    expands = True  # fetch_rows takes $expand: a line's product read with it ("Join tables using the Web API")

    def fetch_rows(
        self, *, entity: str, key: dict[str, Any], company: str = "", expand: str = ""
    ) -> list[dict[str, Any]]:
        """Every row whose columns equal key: an order's lines, {"_salesorderid_value": <order id>}.

        GUIDs are bare literals in a Web API $filter ("Filter rows": _parentaccountid_value eq <guid>).
        """
        clauses = [f"{name} eq {_filter_literal(value)}" for name, value in key.items()]
        return list(self.query(entity, filter=" and ".join(clauses), expand=expand))

    def query(
        self,
        entity: str,
        *,
        filter: str = "",
        select: str = "",
        expand: str = "",
        top: int | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Rows of a table, following @odata.nextLink page by page."""
        params = {k: v for k, v in (("$filter", filter), ("$select", select), ("$expand", expand)) if v}
        if top is not None:
            params["$top"] = str(top)
        headers = {**ODATA_HEADERS, "Prefer": f"odata.maxpagesize={page_size or self.page_size}"}
        yield from self.pages(f"{self.api}/{entity}", params=params, headers=headers)

    def read_changes(
        self, entity: str, cursor: str | None = None, *, select: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """Rows changed since the cursor (a delta link) and the next cursor.

        With no cursor it is the initial load (every row) and starts change tracking. Deleted rows come as
        {"@odata.context": "…/$deletedEntity", "id": <guid>, "reason": "deleted"}; see is_deleted().
        https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems
        """
        headers = {**ODATA_HEADERS, "Prefer": f"odata.track-changes,odata.maxpagesize={self.page_size},{ANNOTATIONS}"}
        url: str | None = cursor or f"{self.api}/{entity}"
        params = {"$select": select} if select and not cursor else None
        records: list[dict[str, Any]] = []
        delta = ""
        while url:
            response = self.request("GET", url, params=params, headers=headers)
            params = None
            body = response.json()
            records += body.get("value", [])
            delta = body.get("@odata.deltaLink", "") or delta
            url = body.get("@odata.nextLink")
        if not delta:
            raise errors.RejectedError(
                f"{self.system.name}: change tracking is not enabled for {entity} (no delta link)"
            )
        return records, delta

    def read_page(
        self, entity: str, cursor: str = "", filters: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of an initial load: the rows at the cursor (an @odata.nextLink) and the next one ("" at the end).

        Paged with Prefer: odata.maxpagesize (at most 5,000), filtered by filters["since"] on modifiedon.
        https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results
        """
        filters = filters or {}
        size = min(5000, int(filters.get("page_size") or self.page_size))
        headers = {**ODATA_HEADERS, "Prefer": f"odata.maxpagesize={size},{ANNOTATIONS}"}
        if cursor:
            response = self.request("GET", cursor, headers=headers)
        else:
            since = filters.get("since")
            params = {"$filter": f"{filters.get('field') or 'modifiedon'} ge {since}"} if since else None
            response = self.request("GET", f"{self.api}/{entity}", params=params, headers=headers)
        body = response.json()
        return body.get("value", []), body.get("@odata.nextLink") or ""

    # --- connection check -------------------------------------------------------------------------

    def check_connection(self) -> ConnectionReport:
        report = ConnectionReport()
        if not self.check_token(report):
            return report
        try:
            who = self.request("GET", f"{self.api}/WhoAmI", headers=ODATA_HEADERS).json()
        except errors.ConnectorError as exc:
            report.add("reachability", False, f"{self.api} did not answer WhoAmI: {exc.message}")
            return report
        report.add("reachability", True, f"{self.api} answers; the application user is {who.get('UserId')}")
        for entity in self.system.settings.get("check_entities") or ["accounts"]:
            try:
                self.request("GET", f"{self.api}/{entity}", params={"$top": "1"}, headers=ODATA_HEADERS)
            except errors.ConnectorError as exc:
                report.add(f"permissions ({entity})", False, f"cannot read {entity}: {exc.message}")
            else:
                report.add(f"permissions ({entity})", True, f"can read {entity}")
        return report


def _json(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _filter_literal(value: Any) -> str:
    """A $filter literal: a GUID bare (lower case, as Dataverse answers it), anything else as OData v4 writes it."""
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value.strip().strip("{}")))
        except ValueError:
            pass
    return literal(value)
