"""WhoAmI and EntityDefinitions: what clients (the Dataverse SDK) read about the caller and the tables."""

from __future__ import annotations

import uuid

from integrations.protocols.odata.filter import V4, parse_filter
from integrations.protocols.odata.keys import parse_key
from sandbox.common.result import Result
from sandbox.common.v4 import select_fields
from sandbox.dataverse.auth import error
from sandbox.dataverse.store import Call, caller_of
from sandbox.dataverse.tables import PRIMARY_NAMES, TABLES


def who_am_i(call: Call) -> Result:
    caller = caller_of(call)
    return Result.json(
        {
            "@odata.context": f"{call.root}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
            "BusinessUnitId": caller.business_unit_id,
            "UserId": caller.user_id,
            "OrganizationId": caller.organization_id,
        }
    )


def entity_definitions(call: Call) -> Result:
    """EntityDefinitions: table metadata clients (the Dataverse SDK) read to find entity set names."""
    rows = [
        {
            "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"dataverse/{table.logical_name}")),
            "LogicalName": table.logical_name,
            "SchemaName": table.logical_name.capitalize(),
            "EntitySetName": set_name,
            "PrimaryIdAttribute": table.primary_id,
            "PrimaryNameAttribute": PRIMARY_NAMES.get(set_name, "name"),
            "IsChangeTrackingEnabled": True,
        }
        for set_name, table in TABLES.items()
    ]
    key = call.path[len("EntityDefinitions") :]
    if key:
        wanted = parse_key(key.strip("()"))
        rows = [
            r
            for r in rows
            if all(
                str(r.get(k)) == str(v)
                for k, v in (wanted.items() if isinstance(wanted, dict) else {"MetadataId": wanted}.items())
            )
        ]
        if not rows:
            return error(404, "0x80040217", f"Could not find an entity with key {key}")
        return Result.json(
            {
                "@odata.context": f"{call.root}/$metadata#EntityDefinitions/$entity",
                **select_fields(rows[0], call.query.get("$select")),
            }
        )
    if "$filter" in call.query:
        matches = parse_filter(call.query["$filter"], V4())
        rows = [r for r in rows if matches(r)]
    return Result.json(
        {
            "@odata.context": f"{call.root}/$metadata#EntityDefinitions",
            "value": [select_fields(r, call.query.get("$select"), always=("MetadataId",)) for r in rows],
        }
    )
