"""Bulk operation messages for batched writes: CreateMultiple for keyless creates, UpsertMultiple for upserts
by alternate key, one request per table instead of one $batch part per record.

On standard tables a bulk message is one transaction: one bad record fails them all. So a refused bulk
request is sent again as $batch, a change set per record, and only the bad record fails; a throttled or
transient one fails the group, to be retried as a whole.
"Use bulk operation messages" https://learn.microsoft.com/power-apps/developer/data-platform/bulk-operations
"Optimize performance for bulk operations"
https://learn.microsoft.com/power-apps/developer/data-platform/optimize-performance-create-update
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from integrations import errors
from integrations.protocols.odata.keys import format_key, literal
from integrations.protocols.transport import DeliveryRequest, DeliveryResult
from integrations.systems.dataverse.keys import canonical_key


class DataverseConnector(Protocol):
    """What the bulk writes use of the connector (connector.DataverseConnector)."""

    system: Any
    api: str
    _tables: dict[str, tuple[str, str]]

    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...
    def query(self, entity: str, *, filter: str = "", select: str = "") -> Any: ...
    def _with_client_id(self, request: DeliveryRequest) -> dict[str, Any]: ...


# Standard tables that take CreateMultiple and UpsertMultiple (the sdkmessagefilter rows of those messages);
# settings["bulk_tables"] names another list, [] turns bulk writes off.
BULK_TABLES = ("accounts", "contacts", "products", "quotes", "salesorders", "invoices", "leads", "opportunities")
MIN_BULK = 2  # one record goes as a plain request: nothing to gain
READ_BACK = 50
Outcome = DeliveryResult | errors.ConnectorError
# Errors that say something about the records: send them again one by one to find the bad one.
_RECORD_ERRORS = (errors.RejectedError, errors.DuplicateError, errors.ConflictError)


def bulk_action(connector: DataverseConnector, request: DeliveryRequest) -> str:
    """The bulk message that can carry this write, "" when it must go as its own request."""
    tables = connector.system.settings.get("bulk_tables")
    if request.entity not in (BULK_TABLES if tables is None else tables):
        return ""
    if request.is_delete or request.etag or request.options.create_only:
        return ""  # bulk messages take no If-Match / If-None-Match
    if not request.key:
        return "CreateMultiple" if request.operation == "create" else ""  # a keyless upsert is refused
    return "UpsertMultiple" if request.operation == "upsert" else ""


def _target(connector: DataverseConnector, request: DeliveryRequest, action: str, logical_name: str) -> dict:
    body = connector._with_client_id(request) if action == "CreateMultiple" else dict(request.payload)
    target: dict[str, Any] = {"@odata.type": f"Microsoft.Dynamics.CRM.{logical_name}", **body}
    if action == "UpsertMultiple":
        target["@odata.id"] = f"{request.entity}({format_key(request.key, url=True)})"
    return target


def deliver_bulk(
    connector: DataverseConnector,
    action: str,
    group: list[DeliveryRequest],
    one_by_one: Callable[[list[DeliveryRequest]], list[Outcome]],
    *,
    headers: dict[str, str],
    pk: str,
) -> list[Outcome]:
    """Write one table's records with one bulk message; a refused message goes again through one_by_one.

    headers are the connector's OData headers, pk the table's primary id column.
    """
    entity = group[0].entity
    logical_name = entity_logical_name(connector, entity)
    url = f"{connector.api}/{entity}/Microsoft.Dynamics.CRM.{action}"
    body = {"Targets": [_target(connector, r, action, logical_name) for r in group]}
    summary = f"POST {url} ({len(group)} targets)"
    headers = {**headers, "MSCRM.SuppressDuplicateDetection": "true"}
    if group[0].correlation_id:
        headers["x-ms-correlation-request-id"] = group[0].correlation_id
    try:
        response = connector.request("POST", url, json=body, headers=headers)
    except _RECORD_ERRORS:
        return one_by_one(group)
    except errors.ConnectorError as exc:
        return [exc] * len(group)
    if action == "CreateMultiple":
        ids = [str(i) for i in (response.json() or {}).get("Ids", [])]
        if len(ids) != len(group):
            failure = errors.TransientError(
                f"{connector.system.name}: {action} answered {len(ids)} ids for {len(group)}"
            )
            return [failure] * len(group)
        return [
            DeliveryResult(
                target_key=canonical_key(i), created=True, status_code=response.status_code, request_summary=summary
            )
            for i in ids
        ]
    # UpsertMultiple answers 204 without ids (UpsertMultiple Action): read the rows' ids by their keys,
    # READ_BACK rows per query so the URL stays short.
    rows: dict[tuple, dict[str, Any]] = {}
    names = sorted({name for r in group for name in r.key})
    for start in range(0, len(group), READ_BACK):
        part = group[start : start + READ_BACK]
        expression = " or ".join(
            "(" + " and ".join(f"{k} eq {literal(v)}" for k, v in sorted(r.key.items())) + ")" for r in part
        )
        for row in connector.query(entity, filter=expression, select=",".join([pk, *names])):
            rows[tuple(str(row.get(k)) for k in names)] = row
    outcomes: list[Outcome] = []
    for request in group:
        row = rows.get(tuple(str(request.key.get(k)) for k in names)) or {}
        if not row.get(pk):
            outcomes.append(
                errors.TransientError(f"{connector.system.name}: {entity} {request.key} not found after {action}")
            )
            continue
        outcomes.append(
            DeliveryResult(
                target_key=canonical_key(str(row[pk])),
                etag=str(row.get("@odata.etag", "")),
                created=False,  # UpsertMultiple does not say which targets it created
                status_code=response.status_code,
                request_summary=summary,
            )
        )
    return outcomes


def entity_logical_name(connector: DataverseConnector, entity_set: str) -> str:
    """The logical name behind an entity set (accounts → account), for the targets' @odata.type."""
    for logical, (known_set, _) in connector._tables.items():
        if known_set == entity_set:
            return logical
    singular = entity_set[:-3] + "y" if entity_set.endswith("ies") else entity_set.removesuffix("s")
    return singular
