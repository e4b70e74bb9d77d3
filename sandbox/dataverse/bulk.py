"""Bulk operation messages: CreateMultiple, UpdateMultiple and UpsertMultiple, bound to an entity set.

POST <set>/Microsoft.Dynamics.CRM.CreateMultiple {"Targets": [...]} → 200 CreateMultipleResponse {"Ids": [...]}
POST <set>/Microsoft.Dynamics.CRM.UpdateMultiple {"Targets": [...]} → 204
POST <set>/Microsoft.Dynamics.CRM.UpsertMultiple {"Targets": [...]} → 204 (UpsertMultipleResponse is not returned)

Every target names its type with @odata.type; UpsertMultiple identifies a row by @odata.id
("<set>(<key>)") or its primary id, UpdateMultiple by its primary id. On standard tables the operation is
one transaction: the first failing target fails the request and nothing is written. One bulk request
counts as one request against service protection, its execution time counts in full (the view's guard).
"Use bulk operation messages" https://learn.microsoft.com/power-apps/developer/data-platform/bulk-operations
"UpsertMultiple Action" https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/upsertmultiple
"CreateMultipleResponse ComplexType"
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/createmultipleresponse
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from django.db import transaction

from integrations.protocols.odata import ODataError
from integrations.protocols.odata.keys import parse_key
from sandbox.common.result import Result
from sandbox.dataverse.auth import error
from sandbox.dataverse.store import ROW_INDEX, Call, RowIndex, stored_values
from sandbox.dataverse.tables import TABLES, Table

ACTIONS = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
BULK_PATH = re.compile(r"^(?P<set>\w+)/Microsoft\.Dynamics\.CRM\.(?P<action>\w+)$")
_ID = re.compile(r"^(?:.*/)?(?P<set>\w+)\((?P<key>.*)\)$")


class _Failed(Exception):
    """A target failed: roll the whole request back and answer with its error."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.status)
        self.result = result


def _bad(message: str) -> Result:
    return error(400, "0x80048d19", message)


Writer = Callable[..., tuple[Result, str]]


def _key_values(table: Table, set_name: str, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alternate key values each target names or writes, for the request's RowIndex.

    A target whose @odata.id does not parse is left out here; the write loop refuses it in its turn.
    """
    found: list[dict[str, Any]] = []
    for target in targets:
        values = stored_values({k: v for k, v in target.items() if k not in ("@odata.type", "@odata.id")})
        match = _ID.match(str(target.get("@odata.id", "")))
        if match and match.group("set") == set_name:
            try:
                key = parse_key(match.group("key"))
            except ODataError:
                key = None
            if isinstance(key, dict):
                values = {**values, **key}
        found.append(values)
    return found


def bulk(call: Call, set_name: str, action: str, *, create_row: Writer, upsert_row: Writer) -> Result:
    """Answer one bulk operation message on an entity set; create_row / upsert_row write one target."""
    table = TABLES.get(set_name)
    if table is None:
        return error(404, "0x80060888", f"Resource not found for the segment '{set_name}'.")
    if action not in ACTIONS or call.method != "POST":
        return error(
            400,
            "0x80060888",
            f"The request URI is not valid. '{action}' is not a bound action of the collection '{set_name}'.",
        )
    try:
        body = json.loads(call.body or b"{}")
    except ValueError:
        return _bad(f"Error identified in Payload provided by the user for Entity :'{set_name}': the body is not JSON.")
    targets = body.get("Targets") if isinstance(body, dict) else None
    if not isinstance(targets, list) or not targets or not all(isinstance(t, dict) for t in targets):
        return _bad(f"{action}: the parameter 'Targets' must be a non-empty collection of {table.logical_name}.")
    expected = f"Microsoft.Dynamics.CRM.{table.logical_name}"
    # One table per request, and the @odata.type annotation on every target (UpsertMultiple Action, Important).
    for n, target in enumerate(targets):
        if target.get("@odata.type") != expected:
            return _bad(
                f'{action}: Targets[{n}] must carry "@odata.type": "{expected}" '
                f"(got {target.get('@odata.type')!r}); every target must be a {table.logical_name}."
            )
    # Each target runs as its own call without Prefer or conditional headers: bulk messages take none.
    inner = replace(
        call, headers={k: v for k, v in call.headers.items() if k not in ("prefer", "if-match", "if-none-match")}
    )
    ids: list[str] = []
    try:
        with transaction.atomic():  # standard tables: all targets are written or none
            if action != "CreateMultiple":
                # Each target's row by its alternate key, and the duplicate checks, from one read per key.
                call.cache[(ROW_INDEX, set_name)] = RowIndex(table, set_name, _key_values(table, set_name, targets))
            for target in targets:
                values = {k: v for k, v in target.items() if k not in ("@odata.type", "@odata.id")}
                if action == "CreateMultiple":
                    result, record_id = create_row(inner, table, set_name, values)
                else:
                    key: dict[str, Any] | str | None = values.get(table.primary_id)
                    if "@odata.id" in target:
                        match = _ID.match(str(target["@odata.id"]))
                        if not match or match.group("set") != set_name:
                            raise _Failed(
                                _bad(f"{action}: '@odata.id' {target['@odata.id']!r} is not a {set_name} row.")
                            )
                        key = parse_key(match.group("key"))
                    if not key:
                        raise _Failed(
                            _bad(f"{action}: every target needs '{table.primary_id}' or '@odata.id' to find its row.")
                        )
                    headers = {**inner.headers, "if-match": "*"} if action == "UpdateMultiple" else inner.headers
                    result, record_id = upsert_row(replace(inner, headers=headers), table, set_name, key, values)
                if result.status >= 400:
                    raise _Failed(result)
                ids.append(record_id)
            if index := call.cache.get((ROW_INDEX, set_name)):
                index.flush()  # the request's new rows, one INSERT before the transaction commits
    except _Failed as failed:
        return failed.result
    except ODataError as exc:
        return error(400, "0x80060888", str(exc))
    finally:
        call.cache.pop((ROW_INDEX, set_name), None)
    if action == "CreateMultiple":
        return Result.json(
            {"@odata.context": f"{call.root}/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse", "Ids": ids}
        )
    return Result(204, {"OData-Version": "4.0"})
