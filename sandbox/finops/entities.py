"""One call on a data entity: create, read, list, update, delete."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import quote, urlencode

from integrations.protocols.odata import ODataError
from integrations.protocols.odata.filter import V4, Field, parse_filter
from integrations.protocols.odata.keys import format_key
from sandbox.common.result import Result
from sandbox.common.v4 import order_by
from sandbox.finops.auth import error, write_failed
from sandbox.finops.config import next_number
from sandbox.finops.lines import line_check
from sandbox.finops.model import _ENTITY_PATH, ENTITIES, LINE_PARENTS, PAGE_SIZE, Entity
from sandbox.finops.store import (
    ABSENT_PROPERTIES,
    Call,
    entity_json,
    etag,
    key_of,
    not_found,
    record_key,
    rows,
    unknown_property,
    validate,
    write,
)
from sandbox.models.store import equal_rows, equality_groups, next_change_seq

# Properties the store keeps in a column of its own, in lower case: read through the unique key index.
_COLUMNS = {"dataAreaId": "company"}


def _create(call: Call, name: str, entity: Entity, body: Any) -> Result:
    if failure := validate(entity, body, creating=True):
        return failure
    # Without cross-company=true F&O writes into the caller's default company whatever dataAreaId says.
    company = entity.company_of(
        str(body.get("dataAreaId") or call.default_company).lower() if call.cross_company else call.default_company
    )
    values = dict(body)
    numbered = entity.generated and not values.get(entity.generated)
    if numbered and name in LINE_PARENTS:
        # Lot ids only need to be unique; a counter row would serialise every order's lines.
        values[entity.generated] = f"IL{uuid.uuid4().hex[:16].upper()}"
    elif numbered:
        values[entity.generated] = f"{entity.generated[:2].upper()}{next_number(f'{name}:{company}'):06d}"
    missing = [k for k in entity.keys if values.get(k) in (None, "")]
    if missing:
        return write_failed(entity, f"Field '{missing[0]}' must be filled in.")
    if failure := line_check(name, company, values):
        return failure
    if not numbered and rows(name).filter(company=company, key=record_key(entity, values)).exists():
        return write_failed(entity, "The record already exists.")
    record = write(name, entity, company, None, values)
    own = {} if entity.shared else {"dataAreaId": company}
    location = f"{call.root}/{name}({format_key({**own, **{k: values[k] for k in entity.keys}})})"
    body_out = {"@odata.context": f"{call.root}/$metadata#{name}/$entity", **entity_json(record, None)}
    return Result.json(body_out, 201, ETag=etag(record), Location=location)


class _EntityFields(V4):
    """$filter over an entity: a property the entity type lacks (ABSENT_PROPERTIES) is refused, not null."""

    def field(self, name: str) -> Field:
        if name in ABSENT_PROPERTIES:
            raise _Absent(name)
        return super().field(name)


class _Absent(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _absent_in(text: str) -> str:
    """The first property of a $select / $orderby list the entity type lacks ("" if none)."""
    for part in text.split(","):
        name = part.strip().split(" ")[0].split("/")[0]
        if name in ABSENT_PROPERTIES:
            return name
    return ""


def read_list(call: Call, name: str) -> Result:
    for option in ("$select", "$orderby"):
        if absent := _absent_in(call.query.get(option, "")):
            return unknown_property(ENTITIES[name], absent)
    queryset = rows(name)
    if not call.cross_company and not ENTITIES[name].shared:
        queryset = queryset.filter(company=call.default_company)
    skip = call.query.get("$skip", "0")
    top = call.query.get("$top")
    for param, value in (("$skip", skip), ("$top", top)):
        if value is not None and not value.isdigit():
            return error(400, f"The query parameter '{param}' is not valid: '{value}' is not a non-negative integer.")
    page_size = PAGE_SIZE
    prefer = call.headers.get("prefer", "")
    if match := re.search(r"odata\.maxpagesize=(\d+)", prefer):
        page_size = min(PAGE_SIZE, max(1, int(match.group(1))))
    text = call.query.get("$filter")
    try:
        matches = parse_filter(text, _EntityFields()) if text is not None else None
    except _Absent as exc:
        return unknown_property(ENTITIES[name], exc.name)
    groups = equality_groups(text) if text is not None else None
    if groups is not None:  # reads by key or company: narrowed in SQL (sandbox.models.store lookups)
        queryset = queryset.filter(equal_rows(groups, _COLUMNS))
    order = call.query.get("$orderby")
    if not order and (text is None or (groups is not None and all(n in _COLUMNS for g in groups for n, _ in g))):
        # Answered by SQL alone (the company column is dataAreaId): the page, in the unique key index's order.
        total = queryset.count() if call.query.get("$count") == "true" else 0
        wanted = min(int(top), page_size + 1) if top is not None else page_size + 1
        records = list(queryset.order_by("company", "key")[int(skip) : int(skip) + wanted])
    else:
        records = list(queryset.order_by("company", "key"))
        if matches is not None:
            records = [r for r in records if matches(r.data)]
        if order:
            order_by(records, order, lambda value: (value is None, str(value or "")))
        total = len(records)  # $count=true counts every match, before $skip/$top (OData 4.01 §11.2.5.5)
        records = records[int(skip) :]
    body: dict[str, Any] = {"@odata.context": f"{call.root}/$metadata#{name}"}
    # F&O supports $count among its query options:
    # https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/odata#query-options
    if call.query.get("$count") == "true":
        body["@odata.count"] = total
    if top is not None:
        records = records[: int(top)]
    if len(records) > page_size:
        records = records[:page_size]
        query = {**call.query, "$skip": str(int(skip) + page_size)}
        body["@odata.nextLink"] = f"{call.root}/{name}?{urlencode(query, quote_via=quote, safe='$,()')}"
    body["value"] = [entity_json(r, call.query.get("$select")) for r in records]
    return Result.json(body)


def dispatch(call: Call) -> Result:
    match = _ENTITY_PATH.match(call.path)
    entity = ENTITIES.get(match.group("set")) if match else None
    if match is None or entity is None:
        return error(404, f"No HTTP resource was found that matches the request URI '{call.root}/{call.path}'.")
    name, raw_key = match.group("set"), match.group("key")
    try:
        body: Any = None
        if call.method in ("POST", "PATCH"):
            try:
                body = json.loads(call.body or b"{}")
            except ValueError:
                return error(400, "The request body is not valid JSON.")
        if raw_key is None:
            if call.method == "GET":
                return read_list(call, name)
            if call.method == "POST":
                return _create(call, name, entity, body)
            return error(405, f"The requested resource does not support http method '{call.method}'.")
        located = key_of(call, name, entity, raw_key)
        if isinstance(located, Result):
            return located
        company, key = located
        record = rows(name).filter(company=company, key=key).first()
        if record is None:
            return not_found()
        if call.method == "GET":
            body_out = {
                "@odata.context": f"{call.root}/$metadata#{name}/$entity",
                **entity_json(record, call.query.get("$select")),
            }
            return Result.json(body_out, ETag=etag(record))
        if_match = call.headers.get("if-match", "")
        if if_match and if_match not in ("*", etag(record)):
            return error(
                412,
                "An error has occurred.",
                inner="The ETag value in the request header does not match with the current ETag value of the object.",
                kind="Microsoft.OData.ODataException",
            )
        if call.method == "PATCH":
            if failure := validate(entity, body, creating=False):
                return failure
            changed_keys = [
                k
                for k in ("dataAreaId", *entity.keys)
                if k in body and str(body[k]).lower() != str(record.data.get(k)).lower()
            ]
            if changed_keys:
                return write_failed(entity, f"Key field '{changed_keys[0]}' cannot be changed.")
            # A line is checked as the update leaves it: a changed item or unit as on create, required ones kept.
            if failure := line_check(name, company, body, current=record.data):
                return failure
            record = write(name, entity, company, record, body)
            return Result(204, {"OData-Version": "4.0", "ETag": etag(record)})
        if call.method == "DELETE":
            record.deleted = True
            record.change_seq = next_change_seq()
            record.save(update_fields=["deleted", "change_seq", "modified_at"])
            return Result(204, {"OData-Version": "4.0"})
        return error(405, f"The requested resource does not support http method '{call.method}'.")
    except ODataError as exc:
        return error(400, f"The query specified in the URI is not valid. {exc}")
