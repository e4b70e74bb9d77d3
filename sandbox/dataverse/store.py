"""Rows of the Dataverse tables (EmulatorRecord) as the Web API reads, checks and writes them."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.utils import timezone

from sandbox.common import v4
from sandbox.common.result import Result
from sandbox.common.v4 import select_fields
from sandbox.dataverse.auth import error
from sandbox.dataverse.context import Caller
from sandbox.dataverse.tables import _ATTRIBUTE, EMULATOR, LOOKUPS, ORGANIZATION, Table, lookup_name
from sandbox.models import EmulatorRecord
from sandbox.models.store import next_change_seq


@dataclass
class Call(v4.Call):
    """A Web API call; path is after api/data/v9.2/, root https://host/sandbox/dataverse/api/data/v9.2."""

    claims: dict[str, Any]
    # One operation per HTTP request (a $batch included): its webhooks share the CorrelationId.
    correlation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    cache: dict[str, Any] = field(default_factory=dict)  # per request, shared by a $batch's parts

    def prefer(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for item in self.headers.get("prefer", "").split(","):
            name, _, value = item.strip().partition("=")
            if name:
                values[name.strip().lower()] = value.strip().strip('"')
        return values


def etag(version: int) -> str:
    return f'W/"{version}"'


def entity_json(table: Table, record: EmulatorRecord, select: str | None) -> dict[str, Any]:
    row = {"@odata.etag": etag(record.version), **record.data}
    return select_fields(row, select, always=(table.primary_id,))


def context_url(call: Call, set_name: str, select: str | None, entity: bool = False) -> str:
    columns = f"({select})" if select else ""
    return f"{call.root}/$metadata#{set_name}{columns}{'/$entity' if entity else ''}"


def live(set_name: str):
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity=set_name, deleted=False)


def find(table: Table, set_name: str, key: dict[str, Any] | str) -> tuple[EmulatorRecord | None, Result | None]:
    """The row a key names (primary id or a declared alternate key), or the error for a bad key."""
    if isinstance(key, str):
        try:
            uuid.UUID(key)
        except ValueError:
            return None, error(400, "0x80060888", f"Unrecognized key '{key}': expected a GUID or name='value' pairs.")
        return live(set_name).filter(key=key).first(), None
    if tuple(sorted(key)) not in {tuple(sorted(k)) for k in table.alternate_keys}:
        declared = " or ".join("(" + ",".join(k) + ")" for k in table.alternate_keys)
        return None, error(
            400,
            "0x80060888",
            f"The key attribute(s) {','.join(key)} do not match an alternate key defined on entity "
            f"'{table.logical_name}'; declared keys: {declared}.",
        )
    rows = live(set_name)
    for name, value in key.items():
        rows = rows.filter(**{f"data__{name}": value})
    return rows.first(), None


def not_found(table: Table, key: dict[str, Any] | str) -> Result:
    if isinstance(key, str):
        return error(404, "0x80040217", f"{table.logical_name} With Id = {key} Does Not Exist")
    return error(
        404, "0x80040217", f"A record with the specified key values does not exist in {table.logical_name} entity"
    )


def validate(table: Table, set_name: str, body: Any, *, creating: bool) -> Result | None:
    if not isinstance(body, dict):
        return error(
            400,
            "0x80048d19",
            f"Error identified in Payload provided by the user for Entity :'{set_name}', For more information on "
            "this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> "
            "InnerException : Microsoft.OData.ODataException: The body must be a JSON object.",
        )
    lookups = LOOKUPS.get(set_name, ())
    for name, value in body.items():
        if name.startswith("@"):
            continue
        if failure := _lookup_failure(table, name, value, lookups):
            return failure
        bare = name.removesuffix("@odata.bind")
        if not _ATTRIBUTE.match(bare) or not _declared(table, bare, lookups):
            return error(
                400,
                "0x80060888",
                f"Could not find a property named '{bare}' on type 'Microsoft.Dynamics.CRM.{table.logical_name}'.",
            )
        limit = table.max_lengths.get(name)
        if limit and isinstance(value, str) and len(value) > limit:
            return error(
                400,
                "0x80044331",
                f"A validation error occurred. The length of the '{name}' attribute of the '{table.logical_name}' "
                f"entity exceeded the maximum allowed length of '{limit}'.",
            )
    if creating:
        for name in table.required:
            if body.get(name) in (None, ""):
                return error(
                    400,
                    "0x80040203",
                    f"Required field '{name}' is missing or empty for entity '{table.logical_name}'.",
                )
    return None


def _declared(table: Table, name: str, lookups: tuple[str, ...]) -> bool:
    """Whether a table with declared columns has this one (a column, its primary id or a lookup)."""
    if table.columns is None:
        return True
    return name in table.columns or name == table.primary_id or lookup_name(name) in lookups


_BIND = re.compile(r"^(?:.*/)?\w+\((?:[0-9A-Fa-f-]{36}|\w+=.+)\)$")


def _lookup_failure(table: Table, name: str, value: Any, lookups: tuple[str, ...]) -> Result | None:
    """A lookup set as text, a _<lookup>_value written, or a bind that names no row: what Dataverse refuses."""
    if name.endswith("@odata.bind"):
        if value is not None and not (isinstance(value, str) and _BIND.match(value)):
            return error(
                400,
                "0x80048d19",
                f"Error identified in Payload provided by the user for Entity :'{table.logical_name}' ----> "
                f"InnerException : Microsoft.OData.ODataException: The value '{value}' of '{name}' is not a "
                "reference to a row: expected '/<entity set>(<id>)'.",
            )
        return None
    if name.startswith("_") and name.endswith("_value"):
        return error(
            400,
            "0x80060888",
            "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead.",
        )
    if name in lookups and value is not None:
        return error(
            400,
            "0x80048d19",
            f"Error identified in Payload provided by the user for Entity :'{table.logical_name}' ----> "
            "InnerException : Microsoft.OData.ODataException: A 'PrimitiveValue' node with non-null value was "
            f"found when trying to read the value of the navigation property '{name}'; however, a 'StartArray' "
            "node, a 'StartObject' node, or a 'PrimitiveValue' node with null value was expected.",
        )
    return None


def stored_values(body: dict[str, Any]) -> dict[str, Any]:
    """Attributes as Dataverse stores them: lookups set via @odata.bind become _<lookup>_value."""
    values: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@"):
            continue
        if name.endswith("@odata.bind"):
            match = re.search(r"\(([^)]*)\)\s*$", str(value))
            values[f"_{lookup_name(name.removesuffix('@odata.bind'))}_value"] = match.group(1) if match else value
        else:
            values[name] = value
    return values


def write(
    table: Table,
    set_name: str,
    record: EmulatorRecord | None,
    values: dict[str, Any],
    key_values: dict[str, Any],
    primary: str | None = None,
) -> tuple[EmulatorRecord, bool]:
    """Create or update one row; every write gets a new version (the ETag) and change sequence."""
    now = timezone.now().isoformat(timespec="seconds").replace("+00:00", "Z")
    seq = next_change_seq()
    if record is None:
        record_id = primary or str(uuid.uuid4())
        data = {**values, **key_values, table.primary_id: record_id, "createdon": now, "modifiedon": now}
        data["versionnumber"] = seq // 1000
        record = EmulatorRecord.objects.create(
            emulator=EMULATOR, entity=set_name, key=record_id, data=data, version=seq // 1000, change_seq=seq
        )
        return record, True
    record.data = {**record.data, **values, "modifiedon": now, "versionnumber": seq // 1000}
    record.version = seq // 1000
    record.change_seq = seq
    record.save(update_fields=["data", "version", "change_seq", "modified_at"])
    return record, False


def duplicate_key(table: Table, set_name: str, values: dict[str, Any], exclude: str = "") -> Result | None:
    for key in table.alternate_keys:
        if all(values.get(name) not in (None, "") for name in key):
            rows = live(set_name)
            for name in key:
                rows = rows.filter(**{f"data__{name}": values[name]})
            if rows.exclude(key=exclude).exists():
                shown = ", ".join(str(values[name]) for name in key)
                return error(
                    412,
                    "0x80040237",
                    f"A record that has the attribute values '{shown}' already exists. The entity key "
                    f"'{table.logical_name}_{'_'.join(key)}' requires that this set of attributes contains unique "
                    "values. Select unique values and try again.",
                )
    return None


def written(call: Call, table: Table, set_name: str, record: EmulatorRecord, created: bool, key_text: str) -> Result:
    entity_id = f"{call.root}/{set_name}({key_text})"
    if call.prefer().get("return") == "representation":
        select = call.query.get("$select")
        body = {
            "@odata.context": context_url(call, set_name, select, entity=True),
            **entity_json(table, record, select),
        }
        return Result.json(
            body,
            201 if created else 200,
            ETag=etag(record.version),
            **{"Preference-Applied": "return=representation", "OData-EntityId": entity_id},
        )
    return Result(204, {"OData-Version": "4.0", "OData-EntityId": entity_id, "Location": entity_id})


def caller_of(call: Call) -> Caller:
    """Who makes the call, in which organization (its token's application user and tenant)."""
    tenant = call.claims.get("tid")
    return Caller(
        user_id=str(call.claims.get("oid", "")),
        business_unit_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"bu/{tenant}")),
        organization_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"org/{tenant}")),
        organization_name=ORGANIZATION,
        organization_host=urlsplit(call.root).netloc,
    )
