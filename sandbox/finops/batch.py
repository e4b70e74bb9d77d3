"""data/$batch: change sets all-or-nothing, lone requests each on their own; every request runs."""

from __future__ import annotations

from typing import Any

from integrations.protocols.odata import ODataError
from integrations.protocols.odata.batch import BatchRequest, decode_requests, encode_responses
from sandbox.common.batch import run_batch
from sandbox.common.result import Result
from sandbox.finops.auth import error
from sandbox.finops.entities import dispatch
from sandbox.finops.store import Call


def batch(call: Call) -> Result:
    try:
        items = decode_requests(call.body, call.headers.get("content-type", ""))
    except (ODataError, UnicodeDecodeError) as exc:
        return error(400, f"The $batch request could not be read: {exc}")

    def run(request: BatchRequest, _scope: dict[str, Any]) -> Result:
        # A header written earlier in the change set is in the same transaction: its lines find it.
        return dispatch(call.part(request, "/data/", request.headers))

    body, content_type = encode_responses(run_batch(items, run))
    return Result(200, {"Content-Type": content_type, "OData-Version": "4.0"}, body)
