"""Reading a table: $filter, $orderby, $top, $expand of lookups, server-driven paging ($skiptoken) and change
tracking (delta links)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote, urlencode

from django.utils import timezone

from integrations.protocols.odata import ODataError
from integrations.protocols.odata.filter import V4, parse_filter
from sandbox.common.result import Result
from sandbox.common.v4 import order_by
from sandbox.dataverse.annotations import annotate
from sandbox.dataverse.auth import error
from sandbox.dataverse.store import Call, context_url, entity_json, live, unknown_selected
from sandbox.dataverse.tables import EMULATOR, LOOKUP_TARGETS, LOOKUPS, MAX_PAGE_SIZE, TABLES, Table
from sandbox.models import EmulatorRecord
from sandbox.models.store import equal_rows, equality_groups, next_change_seq


def _skiptoken(page: int, last: str, extra: str = "") -> str:
    inner = quote(quote(f'<cookie page="{page - 1}"><key last="{{{last.upper()}}}" /></cookie>', safe=""), safe="")
    return f'<cookie pagenumber="{page}" pagingcookie="{inner}" {extra}/>'


def _read_skiptoken(token: str) -> tuple[int, str, int | None]:
    """Page number, last primary id and (for change tracking) the snapshot sequence from a $skiptoken."""
    text = token
    for _ in range(3):  # the paging cookie sits URL-encoded inside the (encoded) skiptoken
        text = unquote(text)
    page = re.search(r'pagenumber="(\d+)"', text)
    last = re.search(r'last="\{([0-9A-Fa-f-]{36})\}"', text)
    snapshot = re.search(r'snapshot="(\d+)"', text)
    if not page or not last:
        raise ODataError(f"$skiptoken '{token[:80]}' is not a paging cookie this service issued")
    return int(page.group(1)), last.group(1).lower(), int(snapshot.group(1)) if snapshot else None


def _page_size(call: Call) -> int | None:
    raw = call.prefer().get("odata.maxpagesize")
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ODataError(f"Prefer: odata.maxpagesize must be a positive number, got '{raw}'")
    return min(int(raw), MAX_PAGE_SIZE)


def _link(call: Call, set_name: str, **params: str) -> str:
    query = {k: v for k, v in call.query.items() if k not in ("$skiptoken", "$deltatoken")}
    query.update(params)
    return f"{call.root}/{set_name}?{urlencode(query, quote_via=quote, safe='$,()')}"


def _delta_token(seq: int) -> str:
    return f"{seq}!{timezone.now().strftime('%m/%d/%Y %H:%M:%S')}"


# What the emulator implements. Dataverse answers 400 to a query option it does not know; the options it
# knows but the sandbox does not implement ($apply, $count, $search, fetchXml, savedQuery, userQuery,
# parameter aliases; $expand beyond a table read's simple lookups) are refused too rather than silently
# ignored, which would return the whole table. "Query data using the Web API"
# https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-data-web-api
LIST_OPTIONS = frozenset({"$select", "$filter", "$orderby", "$top", "$skiptoken", "$deltatoken", "$expand"})
ROW_OPTIONS = frozenset({"$select"})
NOT_EMULATED = frozenset({"$expand", "$apply", "$count", "$search", "fetchXml", "savedQuery", "userQuery"})
# $expand of a simple lookup with a nested $select, as in "Join tables using the Web API" (GET
# accounts?$select=name&$expand=primarycontactid($select=fullname) → "primarycontactid": {…}, or null):
# https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/join-tables
_EXPAND = re.compile(r"^(\w+)(?:\(\$select=(\w+(?:,\w+)*)\))?$")


def expansions(set_name: str, text: str) -> list[tuple[str, str, str | None]] | Result:
    """(navigation, its table's entity set, nested $select) per $expand item, or the 400 for one not taken."""
    found = []
    for item in _items(text):
        match = _EXPAND.match(item)
        name = match.group(1) if match else item
        if not match or name not in LOOKUPS.get(set_name, ()) or name not in LOOKUP_TARGETS:
            return error(
                400,
                "0x80060888",
                f"The query parameter '$expand' ('{item}'): the icbridge sandbox expands a simple lookup of {set_name} "
                f"({', '.join(n for n in LOOKUPS.get(set_name, ()) if n in LOOKUP_TARGETS) or 'none'}), "
                "optionally with a nested $select; Dataverse takes more (docs/sandbox.md).",
            )
        target = LOOKUP_TARGETS[name]
        if failure := unknown_selected(TABLES[target], target, match.group(2)):
            return failure
        found.append((name, target, match.group(2)))
    return found


def _items(text: str) -> list[str]:
    """$expand items split at the commas outside parentheses."""
    items, depth, start = [], 0, 0
    for at, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(text[start:at].strip())
            start = at + 1
    return [*items, text[start:].strip()]


def expanded(
    values: list[dict[str, Any]], records: list[EmulatorRecord], wanted: list[tuple[str, str, str | None]]
) -> None:
    """Each answered row's expanded lookups, in place: the related row (its $select) or null, whatever the
    row's own $select; one query per lookup."""
    for name, target, select in wanted:
        ids = [str(record.data.get(f"_{name}_value") or "").lower() for record in records]
        related = {r.key: r for r in live(target).filter(key__in=set(ids) - {""})}
        for value, record_id in zip(values, ids, strict=True):
            found = related.get(record_id)
            value[name] = entity_json(TABLES[target], found, select) if found else None


def unsupported_option(call: Call, allowed: frozenset[str]) -> Result | None:
    """The 400 for the first query option this read does not take, None when all are known."""
    for name in call.query:
        if name in allowed:
            continue
        if name in NOT_EMULATED or name.startswith("@"):
            return error(
                400,
                "0x80060888",
                f"The query parameter '{name}' is not supported by the icbridge sandbox (Dataverse implements it; "
                "see docs/sandbox.md).",
            )
        return error(400, "0x80060888", f"The query parameter '{name}' is not supported.")
    return None


def read_list(call: Call, table: Table, set_name: str) -> Result:
    if failure := unsupported_option(call, LIST_OPTIONS):
        return failure
    wanted = expansions(set_name, call.query["$expand"]) if "$expand" in call.query else []
    if isinstance(wanted, Result):
        return wanted
    select = call.query.get("$select")
    tracking = "odata.track-changes" in call.prefer()
    delta = call.query.get("$deltatoken")
    if (tracking or delta) and any(p in call.query for p in ("$filter", "$orderby", "$top", "$expand")):
        return error(
            400, "0x80060888", "Change tracking supports only $select; remove $filter, $orderby, $top and $expand."
        )
    if delta is not None:
        return read_changes(call, table, set_name, delta)
    page_size = _page_size(call) or MAX_PAGE_SIZE
    order = call.query.get("$orderby")
    snapshot: int | None = None
    page, last = 1, ""
    if token := call.query.get("$skiptoken"):
        page, last, snapshot = _read_skiptoken(token)
    rows = live(set_name)
    if not order and last:
        rows = rows.filter(key__gt=last)  # the paging cookie's last id: the unique key index, not the table
    if "$filter" in call.query:
        matches = parse_filter(call.query["$filter"], V4())
        # Reads by key (the written rows' ids read back) are narrowed in SQL; the whole $filter still decides.
        groups = equality_groups(call.query["$filter"])
        if groups is not None:
            rows = rows.filter(equal_rows(groups))
        records = [r for r in rows.order_by("key").iterator(chunk_size=2000) if matches(r.data)]
    elif order:
        records = list(rows.order_by("key"))
    else:
        # No filter, no order: one page (and one row to tell whether another follows) in primary id order.
        top = call.query.get("$top", "")
        limit = int(top) if top.isdigit() else page_size + 1  # $top answers its rows unpaged
        records = list(rows.order_by("key")[:limit])
    if order:
        order_by(records, order, lambda value: (value is None, value if value is not None else ""))
        if token:
            records = records[(page - 1) * page_size :]
    if tracking and snapshot is None:
        snapshot = next_change_seq()  # taken before reading: a change made meanwhile comes again in the delta
    body: dict[str, Any] = {"@odata.context": context_url(call, set_name, select)}
    headers: dict[str, str] = {}
    if "$top" in call.query:
        top = call.query["$top"]
        if not top.isdigit():
            return error(400, "0x80060888", f"$top must be a non-negative integer, got '{top}'")
        records = records[: int(top)]
    elif len(records) > page_size:
        records = records[:page_size]
        extra = f'snapshot="{snapshot}" istracking="True" ' if tracking else 'istracking="False" '
        body["@odata.nextLink"] = _link(call, set_name, **{"$skiptoken": _skiptoken(page + 1, records[-1].key, extra)})
    elif tracking:
        body["@odata.deltaLink"] = _link(call, set_name, **{"$deltatoken": _delta_token(snapshot)})
    body["value"] = [entity_json(table, r, select) for r in records]
    expanded(body["value"], records, wanted)
    applied = [
        f"odata.maxpagesize={_page_size(call)}" if _page_size(call) else "",
        "odata.track-changes" if tracking else "",
        annotate(call, body["value"]),
    ]
    if any(applied):
        headers["Preference-Applied"] = ",".join(filter(None, applied))
    return Result.json(body, **headers)


def read_changes(call: Call, table: Table, set_name: str, delta: str) -> Result:
    """Rows changed or deleted since the delta token, oldest change first."""
    match = re.match(r"^(\d+)", unquote(delta))
    if not match:
        return error(400, "0x80060888", f"$deltatoken '{delta[:40]}' is not a token this service issued")
    since = int(match.group(1))
    snapshot = next_change_seq()
    changed = list(
        EmulatorRecord.objects.filter(
            emulator=EMULATOR, entity=set_name, change_seq__gt=since, change_seq__lte=snapshot
        ).order_by("change_seq")
    )
    select = call.query.get("$select")
    value: list[dict[str, Any]] = []
    for record in changed:
        if record.deleted:
            value.append(
                {
                    "@odata.context": f"{call.root}/$metadata#{set_name}/$deletedEntity",
                    "id": record.key,
                    "reason": "deleted",
                }
            )
        else:
            value.append(entity_json(table, record, select))
    applied = annotate(call, value)
    body = {
        "@odata.context": f"{context_url(call, set_name, select)}/$delta",
        "value": value,
        "@odata.deltaLink": _link(call, set_name, **{"$deltatoken": _delta_token(snapshot)}),
    }
    return Result.json(body, **({"Preference-Applied": applied} if applied else {}))
