"""Reading: resource paths (<Set>(<key>)/<navigation>…), $expand and $select, $filter, $orderby, $top, $skip,
$inlinecount and $count."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from django.conf import settings

from integrations.protocols.odata.edm import comparable
from sandbox.models import EmulatorRecord
from sandbox.s4hana.model import EntitySet, Service
from sandbox.s4hana.reply import GatewayError, Reply
from sandbox.s4hana.store import etag_of, get, nav_match, stored
from sandbox.s4hana.values import format_key, initial_value, parse_filter, parse_key


@dataclass
class Context:
    service: Service
    base: str  # the service root URL as the caller sees it
    user: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _segments(resource: str) -> list[tuple[str, str | None]]:
    out = []
    for raw in [s for s in _split_path(resource) if s]:
        name, sep, rest = raw.partition("(")
        if sep and not rest.endswith(")"):
            raise GatewayError(400, "/IWBEP/CM_MGW_RT/021", f"Invalid key predicate in segment '{raw}'")
        out.append((name, rest[:-1] if sep else None))
    return out


def _split_path(resource: str) -> list[str]:
    """Split at '/' outside quoted key values."""
    parts, current, quoted = [], [], False
    for char in resource:
        if char == "'":
            quoted = not quoted
        if char == "/" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


@dataclass
class Target:
    entity_set: EntitySet
    record: EmulatorRecord | None = None  # a single entity
    match: dict[str, Any] = field(default_factory=dict)  # a collection reached through a navigation
    parent: tuple[EntitySet, EmulatorRecord] | None = None
    count: bool = False


def resolve(ctx: Context, resource: str, *, lock: bool = False) -> Target:
    segments = _segments(resource)
    name, key = segments[0]
    entity_set = ctx.service.entity_set(name)
    target = Target(entity_set)
    if key is not None:
        target.record = get(ctx.service.name, entity_set, parse_key(entity_set, key), lock=lock)
    for name, key in segments[1:]:
        if name == "$count" and target.record is None:
            target.count = True
            continue
        if target.record is None:
            raise GatewayError(400, "/IWBEP/CM_MGW_RT/021", f"Segment '{name}' needs a single entity before it")
        nav = target.entity_set.navs.get(name)
        if nav is None:
            raise GatewayError(404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{name}'")
        child = ctx.service.entity_set(nav.target_set)
        match = nav_match(target.entity_set, target.record.data, child, nav.many)
        parent = (target.entity_set, target.record)
        target = Target(child, match=match, parent=parent)
        if key is not None:
            target.record = get(ctx.service.name, child, parse_key(child, key), lock=lock)
        elif not nav.many:
            target.record = stored(ctx.service.name, child, match).first()
            if target.record is None:
                raise GatewayError(404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{name}'")
    return target


def _expand_tree(value: str) -> dict[str, dict]:
    tree: dict[str, dict] = {}
    for item in [v.strip() for v in value.split(",") if v.strip()]:
        node = tree
        for part in item.split("/"):
            node = node.setdefault(part, {})
    return tree


def serialize(
    ctx: Context, entity_set: EntitySet, record: EmulatorRecord, expand: dict, select: set[str] | None
) -> dict:
    uri = f"{ctx.base}/{entity_set.name}({format_key(entity_set, record.data)})"
    metadata = {"id": uri, "uri": uri, "type": entity_set.type_name}
    if etag := etag_of(entity_set, record):
        metadata["etag"] = etag
    out: dict[str, Any] = {"__metadata": metadata}
    for name, prop in entity_set.props.items():
        if select is None or name in select:
            out[name] = record.data.get(name, initial_value(prop))
    for name, nav in entity_set.navs.items():
        if name in expand:
            child = ctx.service.entity_set(nav.target_set)
            rows = stored(ctx.service.name, child, nav_match(entity_set, record.data, child, nav.many)).order_by("key")
            rendered = [serialize(ctx, child, row, expand[name], None) for row in rows]
            out[name] = {"results": rendered} if nav.many else (rendered[0] if rendered else None)
        elif select is None or name in select:
            out[name] = {"__deferred": {"uri": f"{uri}/{name}"}}
    return out


def _sort_key(entity_set: EntitySet, order: list[tuple[str, bool]]):
    def key(record: EmulatorRecord) -> tuple:
        parts = []
        for name, _descending in order:
            value = comparable(entity_set.props[name].type, record.data.get(name))
            parts.append((value is None, value if value is not None else 0))
        return tuple(parts)

    return key


def read(ctx: Context, target: Target, query: dict[str, str]) -> Reply:
    expand = _expand_tree(query.get("$expand", ""))
    for name in expand:
        if name not in target.entity_set.navs:
            raise GatewayError(
                400,
                "/IWBEP/CM_MGW_RT/000",
                f"Property '{name}' is not a navigation property of '{target.entity_set.type_name}'",
            )
    select = {s.strip() for s in query["$select"].split(",")} if query.get("$select") else None
    if target.record is not None:
        reply = Reply(200, {"d": serialize(ctx, target.entity_set, target.record, expand, select)})
        if etag := etag_of(target.entity_set, target.record):
            reply.headers["ETag"] = etag
        return reply
    records = list(stored(ctx.service.name, target.entity_set, target.match).order_by("key"))
    if query.get("$filter"):
        predicate = parse_filter(query["$filter"], target.entity_set)
        records = [r for r in records if predicate(r.data)]
    if query.get("$orderby"):
        order = []
        for item in query["$orderby"].split(","):
            name, _, direction = item.strip().partition(" ")
            if name not in target.entity_set.props:
                raise GatewayError(
                    400, "/IWBEP/CM_MGW_RT/000", f"Property '{name}' not found in type '{target.entity_set.type_name}'"
                )
            order.append((name, direction.strip().lower() == "desc"))
        for name, descending in reversed(order):
            records.sort(key=_sort_key(target.entity_set, [(name, descending)]), reverse=descending)
    total = len(records)
    if target.count:
        return Reply(200, str(total).encode(), content_type="text/plain")
    try:
        skip, top = int(query.get("$skip", 0)), int(query["$top"]) if "$top" in query else None
    except ValueError as exc:
        raise GatewayError(400, "/IWBEP/CM_MGW_RT/000", "$top and $skip must be whole numbers") from exc
    # Server-driven paging, as SAP Gateway does it for OData V2: with no $top, at most SERVER_PAGE_SIZE
    # entities, and a "__next" link carrying a $skiptoken to the rest (OData V2 JSON format §"Partial
    # collections": https://www.odata.org/documentation/odata-version-2-0/json-format/). Here the token
    # is an offset; a real Gateway's token is opaque, which is all a client may assume.
    token = query.get("$skiptoken", "")
    if token and not token.isdigit():
        raise GatewayError(400, "/IWBEP/CM_MGW_RT/000", f"Invalid $skiptoken '{token}'")
    skip += int(token or 0)
    page = getattr(settings, "SANDBOX_S4_PAGE_SIZE", 1000)
    server_cut = top is None and total - skip > page
    records = records[skip : skip + page if server_cut else (None if top is None else skip + top)]
    body: dict[str, Any] = {"results": [serialize(ctx, target.entity_set, r, expand, select) for r in records]}
    if query.get("$inlinecount") == "allpages":
        body["__count"] = str(total)
    if server_cut:
        rest = {k: v for k, v in query.items() if k not in ("$skiptoken", "$skip")}
        query_text = urlencode({**rest, "$skiptoken": str(skip + page)}, safe="$',()")
        body["__next"] = f"{ctx.base}/{target.entity_set.name}?{query_text}"
    return Reply(200, {"d": body})


def json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise GatewayError(400, "/IWBEP/CM_MGW_RT/000", f"Malformed JSON in the request body: {exc}") from exc
    if not isinstance(body, dict):
        raise GatewayError(400, "/IWBEP/CM_MGW_RT/000", "The request body must be a JSON object")
    return body.get("d", body) if isinstance(body.get("d"), dict) else body


def query_params(text: str) -> dict[str, str]:
    """The query options of a URL's query string (the last value of a repeated one)."""
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
