"""Rows of the data entities (EmulatorRecord, keyed by company and key) as the OData endpoint reads and writes them."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from integrations.protocols.odata.keys import parse_key
from sandbox.common import v4
from sandbox.common.result import Result
from sandbox.common.v4 import select_fields
from sandbox.finops.auth import error, write_failed
from sandbox.finops.model import _FIELD, COUNTRIES, CURRENCIES, EMULATOR, Entity
from sandbox.models import EmulatorRecord
from sandbox.models.store import next_change_seq


@dataclass
class Call(v4.Call):
    """A data entity call; path is after data/, root https://host/sandbox/finops/data."""

    default_company: str

    @property
    def cross_company(self) -> bool:
        return self.query.get("cross-company", "").lower() == "true"


# Fields the standard data entities do not expose, though their tables hold them: CustomersV3,
# ReleasedProductsV2 and the others carry no ModifiedDateTime ("Enable change tracking for entities": an
# incremental export goes through change tracking in data management, sandbox.finops.packages). A $filter,
# $orderby, $select or write naming one is refused as an unknown property.
ABSENT_PROPERTIES = frozenset({"ModifiedDateTime"})


def etag(record: EmulatorRecord) -> str:
    # F&O ETags are W/"<base64 of '1,<RecVersion>'>".
    return 'W/"' + base64.b64encode(f"'1,{record.version}'".encode()).decode() + '"'


def now_iso() -> str:
    return timezone.now().isoformat(timespec="microseconds").replace("+00:00", "Z")


def folded(value: Any) -> str:
    """A key value as F&O compares it: its SQL Server collation is case-insensitive, so 'c-1' is 'C-1'."""
    return str(value).upper()


def record_key(entity: Entity, values: dict[str, Any]) -> str:
    """The row's identity in the store: its key fields, case folded (the row keeps the case it was written in)."""
    return "|".join(folded(values[name]) for name in entity.keys)


def entity_json(record: EmulatorRecord, select: str | None) -> dict[str, Any]:
    return select_fields({"@odata.etag": etag(record), **record.data}, select)


def rows(name: str):
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity=name, deleted=False)


def key_of(call: Call, entity_name: str, entity: Entity, raw: str) -> tuple[str, str] | Result:
    """(company, record key) from dataAreaId='x',K='v'; a key outside the default company needs cross-company."""
    key = parse_key(raw)
    expected = set(entity.keys) if entity.shared else {"dataAreaId", *entity.keys}
    if not isinstance(key, dict) or set(key) != expected:
        return error(
            400,
            f"The key of {entity_name} is ({', '.join(sorted(expected))}); got ({raw}).",
        )
    if entity.shared:
        return "", record_key(entity, key)
    company = str(key["dataAreaId"]).lower()
    if company != call.default_company and not call.cross_company:
        return not_found()
    return company, record_key(entity, key)


def not_found() -> Result:
    return error(404, "An error has occurred.", inner="Requested resource not found.")


def type_name(entity: Entity) -> str:
    return f"Microsoft.Dynamics.DataEntities.{entity.table.removesuffix('Entity')}"


def unknown_property(entity: Entity, name: str) -> Result:
    """400 for a property the entity type does not define, in the words of the OData library F&O runs on."""
    text = f"Could not find a property named '{name}' on type '{type_name(entity)}'."
    return error(
        400, f"The query specified in the URI is not valid. {text}", inner=text, kind="Microsoft.OData.ODataException"
    )


QUANTITIES = ("OrderedSalesQuantity", "OrderedPurchaseQuantity", "RequestedSalesQuantity")


def validate(entity: Entity, body: Any, *, creating: bool) -> Result | None:
    if not isinstance(body, dict):
        return error(400, "The request body must be a JSON object.")
    for name in body:
        absent = name in ABSENT_PROPERTIES or (entity.shared and name == "dataAreaId")
        if (not name.startswith("@") and not _FIELD.match(name)) or absent:
            return error(
                400,
                f"The property '{name}' does not exist on type '{type_name(entity)}'. Make sure to only use "
                "property names that are defined by the type.",
            )
    for name, value in body.items():
        if isinstance(value, list | dict):
            # F&O data entities take no deep insert: lines are written through their own entity.
            return error(
                400,
                f"The property '{name}' of '{entity.table}' is a navigation property or holds a structured "
                "value; deep insert and nested values are not supported. Create the header, then write "
                "related records (lines) through their own entity.",
                inner=f"Deep insert is not supported on {entity.table}.",
                kind="Microsoft.OData.ODataException",
            )
    if creating:
        for name in entity.required:
            if body.get(name) in (None, ""):
                return write_failed(entity, f"Field '{name}' must be filled in.")
    if failure := _code_failure(entity, body):
        return failure
    for name in QUANTITIES:
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or value <= 0):
            return write_failed(entity, f"{name} must be a positive number, got {value!r}.")
    return None


def _code_failure(entity: Entity, body: dict[str, Any]) -> Result | None:
    """A currency or country/region given by name (or an unknown code): not found in the relating table."""
    for name, value in body.items():
        if value in (None, ""):
            continue
        if name.endswith("CurrencyCode") and value not in CURRENCIES:
            table = "Currency"
        elif name.endswith("CountryRegionISOCode") and value not in COUNTRIES:
            table = "Country/region"
        elif name.endswith("CountryRegionId") and value not in COUNTRIES.values():
            table = "Country/region"
        else:
            continue
        return write_failed(
            entity, f"The value '{value}' in field '{name}' is not found in the relating table '{table}'."
        )
    return None


def write(
    name: str, entity: Entity, company: str, record: EmulatorRecord | None, values: dict[str, Any]
) -> EmulatorRecord:
    seq = next_change_seq()
    version = seq % 2_000_000_000  # RecVersion is an int32 in F&O
    values = {k: v for k, v in values.items() if not k.startswith("@")}
    own = {} if entity.shared else {"dataAreaId": company}
    if record is None:
        data = {**values, **own}
        # A key deleted before may be created again (F&O keeps no tombstone): the emulator's row is reused.
        record, _ = EmulatorRecord.objects.update_or_create(
            emulator=EMULATOR,
            entity=name,
            company=company,
            key=record_key(entity, data),
            defaults={"data": data, "version": version, "change_seq": seq, "deleted": False},
        )
        return record
    record.data = {**record.data, **values, **own}
    record.version = version
    record.change_seq = seq
    record.save(update_fields=["data", "version", "change_seq", "modified_at"])
    return record
