"""F&O record truth: deletes (or their block), and creates F&O numbers itself made effect-once.

Kept beside the connector (which owns the transport and classification); these functions call it.

Keyless creates: a record F&O numbers itself (a sales order from its number sequence) has no key we
could upsert by, so a retry after a lost answer would write a second one. The flow names a field F&O
keeps (options.reference_field, e.g. CustomersOrderReference on SalesOrderHeadersV2); we write our
reference there and, before every POST, look the record up by it ($filter). Found: a duplicate of our
own earlier write, linked to the record F&O holds.
"""

from __future__ import annotations

from typing import Any

from integrations import errors
from integrations.protocols.transport import DeliveryRequest, DeliveryResult
from integrations.systems.finops.keys import canonical_key, format_key

# The connector is passed in (typed Any): importing it here would make a cycle with the connector.
FinOpsConnector = Any

ODATA_HEADERS = {"OData-MaxVersion": "4.0", "OData-Version": "4.0", "Accept": "application/json"}


def keyless(request: DeliveryRequest) -> bool:
    """A create (or upsert) without key values: F&O numbers the record, nothing to upsert by."""
    return request.operation in ("create", "upsert") and not any(
        value not in (None, "") for value in request.key.values()
    )


def _literal(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def create_once(
    connector: FinOpsConnector, request: DeliveryRequest, company: str, payload: dict[str, Any]
) -> DeliveryResult:
    """POST a record F&O numbers, at most once: look it up by our reference first (options.reference_field)."""
    field = request.options.reference_field
    if not field:
        return connector._post(request, company, payload)
    reference = payload.get(field) or request.reference
    clauses = f"dataAreaId eq {_literal(company.lower())} and {field} eq {_literal(reference)}"
    found = next(iter(connector.query(request.entity, filter=clauses, top=1)), None)
    if found is not None:
        key = {name: found.get(name) for name in request.key}
        existing = format_key(str(found.get("dataAreaId") or company), key) if key else ""
        raise errors.DuplicateError(
            f"{connector.system.name}: {request.entity} with {field} {reference} exists (our earlier write)",
            existing_key=existing,
            status_code=200,
            request_summary=f"GET {request.entity}?$filter={field} eq …",
        )
    return connector._post(request, company, {**payload, field: reference})


def delete(connector: FinOpsConnector, request: DeliveryRequest) -> DeliveryResult:
    """Carry a Delete: DELETE the record by its key, or PATCH the fields that block it (options.on_delete).

    A record F&O no longer has is already where the Delete wants it: done, not an error.
    https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/odata (DELETE, If-Match)
    """
    policy = request.options.on_delete
    key = canonical_key(request.target_key)
    if not key and request.company and not keyless(request) and all(v not in (None, "") for v in request.key.values()):
        key = format_key(request.company, request.key)
    if not key:
        raise errors.RejectedError(f"{connector.system.name}: no key of the {request.entity} record to {policy.action}")
    url = f"{connector.data}/{request.entity}({key})?cross-company=true"
    method = "DELETE" if policy.action == "delete" else "PATCH"
    body = None if method == "DELETE" else dict(policy.set)
    try:
        response = connector.request(method, url, json=body, headers={**ODATA_HEADERS, "If-Match": "*"})
    except errors.RejectedError as exc:
        if exc.status_code != 404:
            raise
        return DeliveryResult(target_key=key, created=False, status_code=404, request_summary=f"{method} {url}")
    etag = response.headers.get("ETag", "") if method == "PATCH" else ""
    return DeliveryResult(
        target_key=key, etag=etag, created=False, status_code=response.status_code, request_summary=f"{method} {url}"
    )
