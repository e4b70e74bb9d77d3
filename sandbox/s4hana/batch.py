"""$batch as SAP Gateway runs it: each change set in one transaction, answered by its first error if one fails;
retrieve requests (GET) stand alone, modifying ones must be inside a change set. The answer is 202."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse

from integrations.protocols.odata import ODataError
from integrations.protocols.odata.batch import BatchRequest, decode_requests, encode_responses
from sandbox.common.batch import run_batch
from sandbox.common.result import Result
from sandbox.s4hana.reads import Context, query_params
from sandbox.s4hana.reply import GatewayError, Reply, error_reply
from sandbox.s4hana.writes import handle

BAD_BATCH = "/IWBEP/CM_MGW_RT/000"


def batch(ctx: Context, request: HttpRequest) -> HttpResponse:
    service = ctx.service.name
    try:
        items = decode_requests(request.body, request.headers.get("Content-Type", ""))
    except (ODataError, UnicodeDecodeError) as exc:
        return error_reply(service, GatewayError(400, BAD_BATCH, str(exc))).to_http()
    if any(isinstance(item, BatchRequest) and item.method != "GET" for item in items):
        error = GatewayError(400, BAD_BATCH, "Modifying requests must be inside a change set")
        return error_reply(service, error).to_http()

    def run(sub: BatchRequest, _scope: dict[str, Any]) -> Result:
        split = urlsplit(sub.url.removeprefix(ctx.base + "/"))
        try:
            reply = handle(ctx, sub.method, split.path.lstrip("/"), query_params(split.query), sub.headers, sub.body)
        except GatewayError as error:
            reply = error_reply(service, error, sub.content_id)
        return _part(reply)

    results = run_batch(items, run, location_header="Location", content_ids=False)
    body, content_type = encode_responses(results)
    return HttpResponse(body, status=202, content_type=content_type)


def _part(reply: Reply) -> Result:
    """A reply as a $batch part: its Content-Type when it has a body, its headers, its Content-Length."""
    content = reply.content()
    headers = {"Content-Type": reply.content_type, **reply.headers} if reply.body is not None else dict(reply.headers)
    return Result(reply.status, {**headers, "Content-Length": str(len(content))}, content)
