"""One Web API call on a table: read, create, upsert, delete, and collection-valued navigation."""

from __future__ import annotations

import json
from typing import Any

from django.db import IntegrityError

from integrations.protocols.odata import ODataError
from integrations.protocols.odata.keys import format_key, parse_key
from sandbox.common.result import Result
from sandbox.dataverse.annotations import annotate
from sandbox.dataverse.auth import error
from sandbox.dataverse.bulk import BULK_PATH, bulk
from sandbox.dataverse.events import raise_webhooks
from sandbox.dataverse.metadata import entity_definitions, who_am_i
from sandbox.dataverse.query import ROW_OPTIONS, read_list, unsupported_option
from sandbox.dataverse.store import (
    ROW_INDEX,
    Call,
    RowIndex,
    context_url,
    duplicate_key,
    entity_json,
    etag,
    find,
    line_product_failure,
    live,
    not_found,
    stored_values,
    unknown_selected,
    validate,
    write,
    written,
)
from sandbox.dataverse.tables import _ENTITY_PATH, NAVIGATION, TABLES, Table
from sandbox.models import EmulatorRecord
from sandbox.models.store import next_change_seq


def _create(call: Call, table: Table, set_name: str, body: dict[str, Any]) -> Result:
    return create_row(call, table, set_name, body)[0]


def create_row(call: Call, table: Table, set_name: str, body: dict[str, Any]) -> tuple[Result, str]:
    """Create one row (and the related rows nested under it): the answer, and the new row's id ("" when refused)."""
    body, nested = _split_nested(set_name, body)
    if failure := validate(table, set_name, body, creating=True):
        return failure, ""
    for related_set, rows in nested:
        for row in rows:
            if failure := validate(TABLES[related_set], related_set, row, creating=True):
                return failure, ""
    values = stored_values(body)
    # Dataverse keeps a GUID as a value, answered in lower case whatever case it was sent in.
    primary = str(values.pop(table.primary_id, "") or "").strip("{}").lower() or None
    if primary and live(set_name).filter(key=primary).exists():
        return error(412, "0x80040237", "Cannot insert duplicate key."), ""
    if failure := duplicate_key(table, set_name, values):
        return failure, ""
    record, _ = write(table, set_name, None, values, {}, primary)
    raise_webhooks(call, table, "Create", record, body)
    for related_set, rows in nested:
        lookup = next(
            column for (owner, _n), (rs, column) in NAVIGATION.items() if owner == set_name and rs == related_set
        )
        bind = f"{lookup.removeprefix('_').removesuffix('_value')}@odata.bind"
        for row in rows:
            create_row(call, TABLES[related_set], related_set, {**row, bind: f"/{set_name}({record.key})"})
    return written(call, table, set_name, record, True, record.key), record.key


def _split_nested(set_name: str, body: Any) -> tuple[Any, list[tuple[str, list[dict[str, Any]]]]]:
    """The row's own values, and the related rows a deep insert nests under its collection navigation properties.

    "Create related table rows in one operation" (Web API): {"name": …, "order_details": [{…}, …]}.
    """
    if not isinstance(body, dict):
        return body, []
    own, nested = {}, []
    for name, value in body.items():
        target = NAVIGATION.get((set_name, name))
        if target and isinstance(value, list) and all(isinstance(row, dict) for row in value):
            nested.append((target[0], value))
        else:
            own[name] = value
    return own, nested


def _upsert(call: Call, table: Table, set_name: str, key: dict[str, Any] | str, body: dict[str, Any]) -> Result:
    return upsert_row(call, table, set_name, key, body)[0]


def upsert_row(
    call: Call, table: Table, set_name: str, key: dict[str, Any] | str, body: dict[str, Any]
) -> tuple[Result, str]:
    """Create or update one row by key: the answer, and the row's id ("" when refused).

    Within a bulk message the request's RowIndex (call.cache, bulk.py) answers the key lookups.
    """
    index: RowIndex | None = call.cache.get((ROW_INDEX, set_name))
    record, failure = find(table, set_name, key, index)
    if failure:
        return failure, ""
    result, record = _upsert_found(call, table, set_name, key, body, record, index)
    return result, record.key if record is not None and result.status < 400 else ""


def _upsert_found(
    call: Call,
    table: Table,
    set_name: str,
    key: dict[str, Any] | str,
    body: dict[str, Any],
    record: Any,
    index: RowIndex | None = None,
) -> tuple[Result, EmulatorRecord | None]:
    if_match = call.headers.get("if-match", "")
    if_none_match = call.headers.get("if-none-match", "")
    if if_none_match == "*" and record is not None:
        return error(412, "0x80040237", "A record with matching key values already exists."), None
    if if_match and record is None:
        return not_found(table, key), None
    if if_match and if_match != "*" and if_match != etag(record.version):
        return error(
            412, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided."
        ), None
    if failure := validate(table, set_name, body, creating=record is None):
        return failure, None
    values = stored_values(body)
    key_values = key if isinstance(key, dict) else {}
    if isinstance(key, str) and values.get(table.primary_id, key) != key:
        return error(400, "0x80060888", f"The {table.primary_id} in the body does not match the key in the URL."), None
    values.pop(table.primary_id, None)
    if record is not None and (failure := line_product_failure(table, {**record.data, **values})):
        return failure, None
    exclude = record.key if record else ""
    if failure := duplicate_key(table, set_name, {**values, **key_values}, exclude=exclude, index=index):
        return failure, None
    before = dict(record.data) if record is not None else None
    record, created = write(
        table, set_name, record, values, key_values, key if isinstance(key, str) else None, index=index
    )
    if index is not None:
        index.written(record)
    message = "Create" if created else "Update"
    raise_webhooks(call, table, message, record, body, before=before, key_values=key_values)
    key_text = format_key(key) if isinstance(key, dict) else record.key
    return written(call, table, set_name, record, created, key_text), record


def _related(call: Call, table: Table, set_name: str, raw_key: str, navigation: str) -> Result:
    """GET <set>(<key>)/<collection navigation>: the related rows whose lookup points at this one."""
    target = NAVIGATION.get((set_name, navigation))
    if call.method != "GET" or target is None:
        return error(
            400,
            "0x80060888",
            f"Could not find a property named '{navigation}' on type 'Microsoft.Dynamics.CRM.{table.logical_name}'.",
        )
    try:
        record, failure = find(table, set_name, parse_key(raw_key))
    except ODataError as exc:
        return error(400, "0x80060888", str(exc))
    if failure or record is None:
        return failure or not_found(table, raw_key)
    if failure := unsupported_option(call, ROW_OPTIONS):  # refused, never silently ignored
        return failure
    related_set, column = target
    related_table = TABLES[related_set]
    select = call.query.get("$select")
    if failure := unknown_selected(related_table, related_set, select):
        return failure
    rows = live(related_set).filter(**{f"data__{column}": record.key}).order_by("key")
    value = [entity_json(related_table, r, select) for r in rows]
    applied = annotate(call, value)
    return Result.json(
        {"@odata.context": context_url(call, related_set, select), "value": value},
        **({"Preference-Applied": applied} if applied else {}),
    )


def dispatch(call: Call) -> Result:
    """Answer one Web API call (not $batch)."""
    if call.path in ("WhoAmI", "WhoAmI()"):
        return who_am_i(call) if call.method == "GET" else error(405, "0x80060888", "WhoAmI is a function: use GET")
    if call.path.startswith("EntityDefinitions(") and "/Attributes" in call.path and call.method == "GET":
        # Column metadata: the sandbox declares no option sets; casts like
        # /Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata answer an empty collection.
        return Result.json({"@odata.context": f"{call.root}/$metadata#EntityDefinitions/Attributes", "value": []})
    if call.path.startswith("EntityDefinitions") and "/" not in call.path:
        if call.method != "GET":
            return error(405, "0x80060888", "The sandbox serves table metadata read-only.")
        try:
            return entity_definitions(call)
        except ODataError as exc:
            return error(400, "0x80060888", str(exc))
    if bulk_match := BULK_PATH.match(call.path):
        return bulk(
            call, bulk_match.group("set"), bulk_match.group("action"), create_row=create_row, upsert_row=upsert_row
        )
    match = _ENTITY_PATH.match(call.path)
    table = TABLES.get(match.group("set")) if match else None
    if match is None or table is None:
        return error(404, "0x80060888", f"Resource not found for the segment '{call.path.split('(')[0]}'.")
    set_name, raw_key = match.group("set"), match.group("key")
    if match.group("navigation"):
        return _related(call, table, set_name, raw_key or "", match.group("navigation"))
    if failure := unknown_selected(table, set_name, call.query.get("$select")):  # before any read or write
        return failure
    try:
        key = parse_key(raw_key) if raw_key is not None else None
        body: Any = None
        if call.method in ("POST", "PATCH"):
            try:
                body = json.loads(call.body or b"{}")
            except ValueError:
                return error(
                    400,
                    "0x80048d19",
                    f"Error identified in Payload provided by the user for Entity :'{set_name}': the body is not JSON.",
                )
        if key is None:
            if call.method == "GET":
                return read_list(call, table, set_name)
            if call.method == "POST":
                return _create(call, table, set_name, body)
            return error(405, "0x80060888", f"{call.method} is not allowed on the collection '{set_name}'.")
        if call.method == "GET":
            if failure := unsupported_option(call, ROW_OPTIONS):
                return failure
            record, failure = find(table, set_name, key)
            if failure or record is None:
                return failure or not_found(table, key)
            select = call.query.get("$select")
            row = entity_json(table, record, select)
            applied = annotate(call, [row])
            return Result.json(
                {"@odata.context": context_url(call, set_name, select, entity=True), **row},
                ETag=etag(record.version),
                **({"Preference-Applied": applied} if applied else {}),
            )
        if call.method == "PATCH":
            return _upsert(call, table, set_name, key, body)
        if call.method == "DELETE":
            record, failure = find(table, set_name, key)
            if failure or record is None:
                return failure or not_found(table, key)
            if_match = call.headers.get("if-match", "")
            if if_match and if_match not in ("*", etag(record.version)):
                return error(
                    412,
                    "0x80060882",
                    "The version of the existing record doesn't match the RowVersion property provided.",
                )
            record.deleted = True
            record.change_seq = next_change_seq()
            record.save(update_fields=["deleted", "change_seq", "modified_at"])
            raise_webhooks(call, table, "Delete", record, None, before=record.data)
            return Result(204, {"OData-Version": "4.0"})
        return error(405, "0x80060888", f"{call.method} is not allowed on '{set_name}({raw_key})'.")
    except ODataError as exc:
        return error(400, "0x80060888", str(exc))
    except IntegrityError:
        return error(412, "0x80040237", "Cannot insert duplicate key.")
