"""$batch of the Web API: change sets all-or-nothing; the first failure ends the batch unless
Prefer: odata.continue-on-error; at most 1,000 requests."""

from __future__ import annotations

from typing import Any

from integrations.protocols.odata import ODataError
from integrations.protocols.odata.batch import BatchRequest, ChangeSet, decode_requests, encode_responses
from sandbox.common.batch import run_batch
from sandbox.common.result import Result
from sandbox.dataverse.auth import error
from sandbox.dataverse.entities import dispatch
from sandbox.dataverse.store import Call
from sandbox.dataverse.tables import API, MAX_BATCH_REQUESTS


def batch(call: Call) -> Result:
    try:
        items = decode_requests(call.body, call.headers.get("content-type", ""))
    except (ODataError, UnicodeDecodeError) as exc:
        return error(400, "0x80048d19", f"The $batch body could not be read: {exc}")
    count = sum(len(i.requests) if isinstance(i, ChangeSet) else 1 for i in items)
    if count > MAX_BATCH_REQUESTS:
        return error(
            400,
            "0x8005f103",
            f"The number of requests in the batch ({count}) exceeds the limit of {MAX_BATCH_REQUESTS}.",
        )
    prefer = {k: v for k, v in call.headers.items() if k == "prefer"}

    def run(request: BatchRequest, _scope: dict[str, Any]) -> Result:
        # The parts share the batch's correlation id and cache; they inherit its Prefer unless they set one.
        return dispatch(call.part(request, f"/{API}/", {**prefer, **request.headers}))

    results = run_batch(
        items,
        run,
        stop_on_error="odata.continue-on-error" not in call.prefer(),
        location_header="OData-EntityId",
    )
    body, content_type = encode_responses(results)
    return Result(200, {"Content-Type": content_type, "OData-Version": "4.0"}, body)
