"""The body Dataverse posts to a webhook: the RemoteExecutionContext of one write, with its entities typed as
the SDK's DataContract JSON writes them."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

MAX_BODY_BYTES = 256 * 1024  # over this Dataverse drops the context's big parts (x-ms-dynamics-msg-size-exceeded)
CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
# Columns the SDK types as OptionSetValue / Money (the sandbox keeps no column metadata; these are the ones
# the scenarios use). Anything else goes as the JSON value it was written with.
OPTION_SETS = frozenset({"statecode", "statuscode", "prioritycode", "paymenttermscode", "msdyn_onholdstatus"})
MONEY = frozenset({"creditlimit", "totalamount", "price", "priceperunit", "revenue"})


def wcf_date(moment: datetime) -> str:
    """/Date(ms)/, as the context's DataContract JSON writes a DateTime."""
    return f"/Date({int(moment.timestamp() * 1000)})/"


def sdk_value(name: str, value: Any) -> Any:
    """A column's value as the execution context carries it: dates as /Date(ms)/, option sets and money typed."""
    if isinstance(value, str) and len(value) > 10 and value[4:5] == "-" and value[10:11] == "T":
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return wcf_date(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    if isinstance(value, bool) or value is None:
        return value
    if name in OPTION_SETS and isinstance(value, int):
        return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": value}
    if name in MONEY and isinstance(value, int | float):
        return {"__type": f"Money:{CONTRACTS}", "Value": value}
    return value


def entity_reference(logical_name: str | None, record_id: str, name: str | None = None) -> dict[str, Any]:
    """A lookup value, or a Delete's Target."""
    return {
        "__type": f"EntityReference:{CONTRACTS}",
        "Id": record_id,
        "KeyAttributes": [],
        "LogicalName": logical_name,
        "Name": name,
        "RowVersion": None,
    }


def entity(
    logical_name: str,
    record_id: str,
    attributes: dict[str, Any],
    *,
    key_attributes: dict[str, Any] | None = None,
    row_version: str | None = None,
) -> dict[str, Any]:
    """An Entity (a Target or an image): attributes as [{"key", "value"}] pairs, typed by sdk_value."""
    return {
        "__type": f"Entity:{CONTRACTS}",
        "Attributes": [{"key": key, "value": sdk_value(key, value)} for key, value in attributes.items()],
        "EntityState": None,
        "FormattedValues": [],
        "Id": record_id,
        "KeyAttributes": [{"key": key, "value": value} for key, value in (key_attributes or {}).items()],
        "LogicalName": logical_name,
        "RelatedEntities": [],
        "RowVersion": row_version,
    }


@dataclass(frozen=True)
class Caller:
    """Who made the request, and in which organization (the Web API caller's token)."""

    user_id: str
    business_unit_id: str
    organization_id: str
    organization_name: str
    organization_host: str


def remote_execution_context(
    *,
    message: str,
    logical_name: str,
    record_id: str,
    target: dict[str, Any],
    caller: Caller,
    correlation_id: str,
    pre_image: dict[str, Any] | None = None,
    post_image: dict[str, Any] | None = None,
    step_id: str = "",
    operation_id: str = "",
    created_on: datetime | None = None,
) -> dict[str, Any]:
    """The RemoteExecutionContext an asynchronous post-operation webhook step posts for one write.

    target: an entity() on Create/Update, an entity_reference() on Delete. Images go under the names
    "PreImage" / "PostImage", as a step registers them.
    """
    output = [{"key": "id", "value": record_id}] if message == "Create" else []
    return {
        "BusinessUnitId": caller.business_unit_id,
        "CorrelationId": correlation_id,
        "Depth": 1,
        "InitiatingUserId": caller.user_id,
        "InputParameters": [{"key": "Target", "value": target}],
        "IsExecutingOffline": False,
        "IsInTransaction": False,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "MessageName": message,
        "Mode": 1,
        "OperationCreatedOn": wcf_date(created_on or timezone.now()),
        "OperationId": operation_id or str(uuid.uuid4()),
        "OrganizationId": caller.organization_id,
        "OrganizationName": caller.organization_name,
        "OutputParameters": output,
        "OwningExtension": {
            "Id": step_id or str(uuid.uuid4()),
            "KeyAttributes": [],
            "LogicalName": "sdkmessageprocessingstep",
            "Name": None,
            "RowVersion": None,
        },
        "ParentContext": None,
        "PostEntityImages": [{"key": "PostImage", "value": post_image}] if post_image else [],
        "PreEntityImages": [{"key": "PreImage", "value": pre_image}] if pre_image else [],
        "PrimaryEntityId": record_id,
        "PrimaryEntityName": logical_name,
        "RequestId": None,
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": 40,
        "UserId": caller.user_id,
    }


def request_headers(context: dict[str, Any], organization_host: str) -> dict[str, str]:
    """The headers Dataverse sends with a webhook (the docs' "Header Data"), less x-request-id (per attempt)."""
    return {
        "Content-Type": "application/json",
        "x-ms-dynamics-organization": organization_host,
        "x-ms-dynamics-entity-name": context["PrimaryEntityName"],
        "x-ms-dynamics-request-name": context["MessageName"],
        "x-ms-correlation-request-id": context["CorrelationId"],
    }


def fit(context: dict[str, Any], headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    data = json.dumps(context).encode()
    if len(data) <= MAX_BODY_BYTES:
        return data, headers
    trimmed = {
        k: v
        for k, v in context.items()
        if k not in ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages")
    }
    return json.dumps(trimmed).encode(), {**headers, "x-ms-dynamics-msg-size-exceeded": "true"}
