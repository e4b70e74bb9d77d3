"""Rows of the Dataverse tables (EmulatorRecord) as the Web API reads, checks and writes them."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from integrations.protocols.odata import ODataError
from integrations.protocols.odata.keys import parse_key
from sandbox.common import v4
from sandbox.common.result import Result
from sandbox.common.v4 import select_fields
from sandbox.dataverse.auth import error
from sandbox.dataverse.context import Caller
from sandbox.dataverse.tables import (
    _ATTRIBUTE,
    EMULATOR,
    LOOKUP_VALUE,
    LOOKUPS,
    ORGANIZATION,
    SYSTEM_COLUMNS,
    TABLES,
    Table,
    lookup_name,
)
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
        # Preferences are comma-separated; a quoted value may hold commas (include-annotations="a,b").
        found = _PREFERENCE.findall(self.headers.get("prefer", ""))
        return {name.lower(): value.strip().strip('"') for name, value in found}


_PREFERENCE = re.compile(r'([\w.-]+)\s*(?:=\s*("[^"]*"|[^,]*))?')


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


def _value(value: Any) -> str:
    """A column value as JSON compares it (1 and 1.0 are one number), to key the index by."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True)


ROW_INDEX = "bulk-row-index"  # call.cache key (with the entity set) of a bulk request's RowIndex


class RowIndex:
    """The rows one bulk request names, by the values of each alternate key, read in one query per key.

    UpsertMultiple finds each target's row by its alternate key and checks every alternate key for a
    duplicate: row by row that is a scan of the table per target and per check. The index answers both
    for the values the request's targets carry; a value it did not read (a write that changes a key to
    another one) is looked up in the table as before. Built inside the request's transaction, after
    taking a transaction lock per key value (PostgreSQL), so two bulk requests naming the same
    alternate key value cannot both create it: the second reads the first's row once it has committed.
    """

    def __init__(self, table: Table, set_name: str, targets: list[dict[str, Any]]) -> None:
        self.keys = table.alternate_keys
        self.pending: dict[str, EmulatorRecord] = {}  # rows created by the request, by primary id, not yet inserted
        self.rows: dict[tuple[str, ...], dict[tuple[str, ...], list[EmulatorRecord]]] = {k: {} for k in self.keys}
        wanted: dict[tuple[str, ...], dict[tuple[str, ...], tuple[Any, ...]]] = {k: {} for k in self.keys}
        for values in targets:
            for names in self.keys:
                if all(values.get(name) not in (None, "") for name in names):
                    raw = tuple(values[name] for name in names)
                    wanted[names][tuple(_value(v) for v in raw)] = raw
        self._lock(set_name, wanted)
        for names, by_value in wanted.items():
            if not by_value:
                continue
            known = self.rows[names]
            for found in by_value:
                known[found] = []
            if len(names) == 1:
                rows = live(set_name).filter(**{f"data__{names[0]}__in": [raw[0] for raw in by_value.values()]})
            else:
                condition = Q()
                for raw in by_value.values():
                    condition |= Q(**{f"data__{name}": value for name, value in zip(names, raw, strict=True)})
                rows = live(set_name).filter(condition)
            for record in rows.order_by("pk"):
                self._add(names, record)

    @staticmethod
    def _lock(set_name: str, wanted: dict[tuple[str, ...], dict[tuple[str, ...], tuple[Any, ...]]]) -> None:
        if connection.vendor != "postgresql":
            return  # SQLite runs one writer at a time
        locks = sorted(  # in one order, so two requests never wait on each other's locks
            {
                int.from_bytes(
                    hashlib.blake2b(f"{EMULATOR}:{set_name}:{names}:{found}".encode(), digest_size=8).digest(),
                    "big",
                    signed=True,
                )
                for names, by_value in wanted.items()
                for found in by_value
            }
        )
        if locks:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", [locks])

    def _add(self, names: tuple[str, ...], record: EmulatorRecord) -> None:
        if not all(name in record.data for name in names):
            return
        rows = self.rows[names].get(tuple(_value(record.data[name]) for name in names))
        if rows is not None and not any(_same_row(row, record) for row in rows):
            rows.append(record)

    def flush(self) -> None:
        """Insert the rows the request created, with one INSERT (in the request's transaction)."""
        if self.pending:
            EmulatorRecord.objects.bulk_create(self.pending.values())
            self.pending = {}

    def get(self, names: tuple[str, ...], values: dict[str, Any]) -> list[EmulatorRecord] | None:
        """The live rows with these values of the key, None when the index did not read them."""
        known = self.rows.get(tuple(names))
        if known is None:
            return None
        return known.get(tuple(_value(values[name]) for name in names))

    def written(self, record: EmulatorRecord) -> None:
        """Keep the index true after a write: the row under the key values it now holds."""
        for names, known in self.rows.items():
            for rows in known.values():
                rows[:] = [row for row in rows if not _same_row(row, record)]
            if not record.deleted:
                self._add(names, record)


def _same_row(one: EmulatorRecord, other: EmulatorRecord) -> bool:
    return one is other or (one.pk is not None and one.pk == other.pk)


def find(
    table: Table, set_name: str, key: dict[str, Any] | str, index: RowIndex | None = None
) -> tuple[EmulatorRecord | None, Result | None]:
    """The row a key names (primary id or a declared alternate key), or the error for a bad key."""
    if isinstance(key, str):
        try:
            uuid.UUID(key)
        except ValueError:
            return None, error(400, "0x80060888", f"Unrecognized key '{key}': expected a GUID or name='value' pairs.")
        if index is not None and key in index.pending:
            return index.pending[key], None
        return live(set_name).filter(key=key).first(), None
    if tuple(sorted(key)) not in {tuple(sorted(k)) for k in table.alternate_keys}:
        declared = " or ".join("(" + ",".join(k) + ")" for k in table.alternate_keys)
        return None, error(
            400,
            "0x80060888",
            f"The key attribute(s) {','.join(key)} do not match an alternate key defined on entity "
            f"'{table.logical_name}'; declared keys: {declared}.",
        )
    names = next(k for k in table.alternate_keys if sorted(k) == sorted(key))
    known = index.get(names, key) if index is not None else None
    if known is not None:
        return (known[0] if known else None), None
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
        if failure := _lookup_failure(table, name, value, lookups) or _unbound(name, value):
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
        return line_product_failure(table, body)
    return None


def line_product_failure(table: Table, row: dict[str, Any]) -> Result | None:
    """An order or quote line names a catalogue product or is a write-in product, never neither: a new line
    as its body says, an updated one as the row it leaves (stored columns with the update's over them).

    "salesorderdetail EntityType" / "quotedetail EntityType": productid is the catalogue product, and
    isproductoverridden says the line is a write-in product described by productdescription. The wording of
    the refusal is the sandbox's own (docs/sandbox.md).
    """
    if table.logical_name not in ("salesorderdetail", "quotedetail"):
        return None
    catalogue = bool(row.get("productid@odata.bind") or row.get("_productid_value"))
    write_in = row.get("isproductoverridden") is True and bool(row.get("productdescription"))
    if catalogue or write_in:
        return None
    return error(
        400,
        "0x80040203",
        f"A {table.logical_name} needs a product: bind productid@odata.bind to a catalogue product, or set "
        "isproductoverridden to true with a productdescription for a write-in product.",
    )


def _declared(table: Table, name: str, lookups: tuple[str, ...]) -> bool:
    """Whether a table with declared columns has this one (a column, its primary id or a lookup)."""
    if table.columns is None:
        return True
    return name in table.columns or name == table.primary_id or lookup_name(name) in lookups


def unknown_selected(table: Table, set_name: str, select: str | None) -> Result | None:
    """The 400 for a $select naming a column that a table with declared columns lacks, None otherwise.

    Dataverse refuses the query ("Could not find a property named …", as for a write) rather than answering
    the column as null; a lookup is selected as _<lookup>_value. "Select columns" in "Query data using the
    Web API": https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/select-columns
    """
    if not select or table.columns is None:
        return None
    lookups = LOOKUPS.get(set_name, ())
    for name in filter(None, (part.strip() for part in select.split(","))):
        lookup = match.group("lookup") if (match := LOOKUP_VALUE.match(name)) else None
        known = name in table.columns or name in table.computed or name in SYSTEM_COLUMNS
        if known or name == table.primary_id or lookup in lookups:
            continue
        return error(
            400,
            "0x80060888",
            f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{table.logical_name}'.",
        )
    return None


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


_BOUND_ROW = re.compile(r"^(?:.*/)?(\w+)\((.+)\)$")  # /set(<id>) or /set(<alternate key>), relative or absolute
_GUID = re.compile(r"^\{?([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})\}?$")


def _bound_row(value: Any) -> tuple[str, str, str | None] | None:
    """(entity set, the bind's key text, the bound row's id or None when no row has it) for a bind to a table
    the sandbox holds; None for any other bind (uoms, pricelevels, …), which is not checked."""
    match = _BOUND_ROW.match(value.strip()) if isinstance(value, str) else None
    if not match or match.group(1) not in TABLES:
        return None
    set_name, key_text = match.groups()
    if guid := _GUID.match(key_text):
        record_id = guid.group(1).lower()
        return set_name, record_id, record_id if live(set_name).filter(key=record_id).exists() else None
    try:
        fields = parse_key(key_text)
    except (ValueError, ODataError):
        return None
    if not isinstance(fields, dict):
        return None
    found = live(set_name).filter(**{f"data__{name}": field_value for name, field_value in fields.items()})
    return set_name, key_text, found.values_list("key", flat=True).first()


def _unbound(name: str, value: Any) -> Result | None:
    """A bind to a row of an emulated table that does not exist: 404, as Dataverse answers it."""
    bound = _bound_row(value) if name.endswith("@odata.bind") else None
    if bound is None or bound[2] is not None:
        return None
    set_name, key_text, _ = bound
    if _GUID.match(key_text):
        return error(404, "0x80040217", f"{TABLES[set_name].logical_name} With Id = {key_text} Does Not Exist")
    return not_found(TABLES[set_name], {"key": key_text})


def stored_values(body: dict[str, Any]) -> dict[str, Any]:
    """Attributes as Dataverse stores them: lookups set via @odata.bind become _<lookup>_value."""
    values: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@"):
            continue
        if name.endswith("@odata.bind"):
            # The bound row's id (a GUID in lower case, an alternate key resolved), as Dataverse stores a lookup.
            bound = _bound_row(value)
            match = re.search(r"\(([^)]*)\)\s*$", str(value))
            stored = bound[2] if bound and bound[2] else (match.group(1) if match else value)
            values[f"_{lookup_name(name.removesuffix('@odata.bind'))}_value"] = stored
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
    index: RowIndex | None = None,
) -> tuple[EmulatorRecord, bool]:
    """Create or update one row; every write gets a new version (the ETag) and change sequence.

    With a bulk request's index, a new row is kept in the index and inserted with the request's others
    (RowIndex.flush, in the same transaction), not with an INSERT of its own.
    """
    now = timezone.now().isoformat(timespec="seconds").replace("+00:00", "Z")
    seq = next_change_seq()
    if record is None:
        record_id = primary or str(uuid.uuid4())
        data = {**values, **key_values, table.primary_id: record_id, "createdon": now, "modifiedon": now}
        data["versionnumber"] = seq // 1000
        fields = {"emulator": EMULATOR, "entity": set_name, "key": record_id, "data": data}
        if index is not None:
            record = EmulatorRecord(**fields, version=seq // 1000, change_seq=seq)
            index.pending[record_id] = record
            return record, True
        return EmulatorRecord.objects.create(**fields, version=seq // 1000, change_seq=seq), True
    record.data = {**record.data, **values, "modifiedon": now, "versionnumber": seq // 1000}
    record.version = seq // 1000
    record.change_seq = seq
    if not record._state.adding:  # a row created earlier in this bulk request is inserted by flush()
        record.save(update_fields=["data", "version", "change_seq", "modified_at"])
    return record, False


def duplicate_key(
    table: Table, set_name: str, values: dict[str, Any], exclude: str = "", index: RowIndex | None = None
) -> Result | None:
    for key in table.alternate_keys:
        if all(values.get(name) not in (None, "") for name in key):
            known = index.get(key, values) if index is not None else None
            if known is not None:
                taken = any(row.key != exclude for row in known)
            else:
                rows = live(set_name)
                for name in key:
                    rows = rows.filter(**{f"data__{name}": values[name]})
                taken = rows.exclude(key=exclude).exists()
            if taken:
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
