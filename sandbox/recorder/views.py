"""The recorder: a plain JSON target that upserts by key and logs every write call.

PUT  records/<entity>/<key>   upsert; Idempotency-Key makes a repeat a no-op; If-Match → 412 on mismatch
                              (dedupe off — setting SANDBOX_RECORDER_DEDUPE = False, or the request's
                              header X-Recorder-Dedupe: off — ignores Idempotency-Key: every call writes,
                              and `writes` counts it, like a target with no dedupe of its own)
                              (test hooks in the body: "__reject__": text → 400; "__garbage__" → 200 with HTML;
                              "__throttle__": text → 429 with that text as Retry-After, e.g. "1e12" or a date)
GET  records/<entity>/<key>   the record with its ETag
GET  records/                 counts
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from integrations.protocols.odata.errors import v4_error
from sandbox.common.faults import slow_after_commit, with_faults
from sandbox.models import RecorderRecord, RecorderWrite

EMULATOR = "recorder"


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse(v4_error(str(status), message), status=status)


def _dedupes(request: HttpRequest) -> bool:
    """Whether a repeated Idempotency-Key is a no-op here (the default), or written again (dedupe off)."""
    if request.headers.get("X-Recorder-Dedupe", "").lower() == "off":
        return False
    return bool(getattr(settings, "SANDBOX_RECORDER_DEDUPE", True))


def _record_json(record: RecorderRecord, status: int = 200) -> JsonResponse:
    body = {"id": f"{record.entity}/{record.key}", "version": record.version, "payload": record.payload}
    response = JsonResponse(body, status=status)
    response["ETag"] = record.etag
    return response


@csrf_exempt
@with_faults(EMULATOR)
def records(request: HttpRequest) -> HttpResponse:
    totals = RecorderRecord.objects.aggregate(records=Count("id"), writes=Sum("writes"))
    totals["calls"] = RecorderWrite.objects.count()
    return JsonResponse({k: v or 0 for k, v in totals.items()})


@csrf_exempt
@with_faults(EMULATOR)
def record(request: HttpRequest, entity: str, key: str) -> HttpResponse:
    if request.method == "GET":
        found = RecorderRecord.objects.filter(entity=entity, key=key).first()
        if found is None:
            return _error(404, f"{entity}/{key} not found")
        return _record_json(found)
    if request.method != "PUT":
        return _error(405, "use GET or PUT")
    try:
        payload = json.loads(request.body)
    except ValueError:
        return _error(400, "body is not JSON")
    if not isinstance(payload, dict):
        return _error(400, "body must be a JSON object")
    if payload.get("__garbage__"):  # a proxy answering 200 with an HTML page: the caller cannot parse it
        return HttpResponse("<html><body>Welcome</body></html>", content_type="text/html")
    if payload.get("__reject__"):
        return _error(400, str(payload["__reject__"]))
    if payload.get("__throttle__"):  # a target asking for a wait of its own choosing, however absurd
        throttled = _error(429, "too many requests")
        throttled["Retry-After"] = str(payload["__throttle__"])
        return throttled
    response = _upsert(
        entity,
        key,
        payload,
        idempotency_key=request.headers.get("Idempotency-Key", ""),
        correlation_id=request.headers.get("X-Correlation-Id", ""),
        if_match=request.headers.get("If-Match", ""),
        dedupe=_dedupes(request),
    )
    slow_after_commit(request, response.status_code)  # committed; the caller times out and never hears of it
    return response


def _upsert(
    entity: str,
    key: str,
    payload: dict,
    *,
    idempotency_key: str,
    correlation_id: str,
    if_match: str,
    dedupe: bool = True,
) -> JsonResponse:
    for _ in range(2):  # a concurrent first insert of the same key loses the race once, then updates
        try:
            with transaction.atomic():
                found = RecorderRecord.objects.select_for_update().filter(entity=entity, key=key).first()
                if found is None:
                    found = RecorderRecord.objects.create(entity=entity, key=key, payload=payload)
                    found.write_log.create(idempotency_key=idempotency_key, correlation_id=correlation_id)
                    return _record_json(found, status=201)
                log = {"idempotency_key": idempotency_key, "correlation_id": correlation_id}
                repeat = dedupe and idempotency_key
                if repeat and found.write_log.filter(idempotency_key=idempotency_key, applied=True).exists():
                    found.write_log.create(applied=False, **log)
                    return _record_json(found)
                if if_match and if_match not in ("*", found.etag):
                    found.write_log.create(applied=False, **log)
                    return _error(412, f"ETag mismatch: record is at {found.etag}")
                found.write_log.create(**log)
                found.payload = payload
                found.version += 1
                found.writes += 1
                found.save()
                return _record_json(found)
        except IntegrityError:
            continue
    return _error(503, "write conflict, try again")


@csrf_exempt
@with_faults(EMULATOR)
def batch(request: HttpRequest) -> HttpResponse:
    """POST {"records": [{entity, key, payload, idempotency_key, if_match}]} → {"results": [{status, body}]}.

    Each record is its own transaction, like independent requests in one round trip.
    """
    if request.method != "POST":
        return _error(405, "use POST")
    try:
        records = json.loads(request.body)["records"]
        if any(record["payload"].get("__garbage__") for record in records):
            return HttpResponse("<html><body>Welcome</body></html>", content_type="text/html")
        results = []
        for record in records:
            if record["payload"].get("__reject__"):
                answer = _error(400, record["payload"]["__reject__"])
            else:
                answer = _upsert(
                    record["entity"],
                    record["key"],
                    record["payload"],
                    idempotency_key=record.get("idempotency_key", ""),
                    correlation_id=record.get("correlation_id", ""),
                    if_match=record.get("if_match", ""),
                    dedupe=_dedupes(request),
                )
            results.append(
                {"status": answer.status_code, "etag": answer.get("ETag", ""), "body": json.loads(answer.content)}
            )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return _error(400, f"bad batch: {exc}")
    slow_after_commit(request, 200)  # written; the caller never hears of it
    return JsonResponse({"results": results})
