"""The recorder: a plain JSON target that upserts by key and logs every write call.

PUT  records/<entity>/<key>   upsert; Idempotency-Key makes a repeat a no-op; If-Match → 412 on mismatch
                              (test hooks in the body: "__reject__": text → 400; "__garbage__" → 200 with HTML)
GET  records/<entity>/<key>   the record with its ETag
GET  records/                 counts
"""

from __future__ import annotations

import json
import time

from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from sandbox.faults import with_faults
from sandbox.models import RecorderRecord, RecorderWrite

EMULATOR = "recorder"


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
            return JsonResponse({"error": {"code": "404", "message": f"{entity}/{key} not found"}}, status=404)
        return _record_json(found)
    if request.method != "PUT":
        return JsonResponse({"error": {"code": "405", "message": "use GET or PUT"}}, status=405)
    try:
        payload = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": {"code": "400", "message": "body is not JSON"}}, status=400)
    if not isinstance(payload, dict):
        return JsonResponse({"error": {"code": "400", "message": "body must be a JSON object"}}, status=400)
    if payload.get("__garbage__"):  # a proxy answering 200 with an HTML page: the caller cannot parse it
        return HttpResponse("<html><body>Welcome</body></html>", content_type="text/html")
    if payload.get("__reject__"):
        return JsonResponse({"error": {"code": "400", "message": str(payload["__reject__"])}}, status=400)
    response = _upsert(
        entity,
        key,
        payload,
        idempotency_key=request.headers.get("Idempotency-Key", ""),
        correlation_id=request.headers.get("X-Correlation-Id", ""),
        if_match=request.headers.get("If-Match", ""),
    )
    delay = request.sandbox_faults.slow_after_commit_ms
    if delay and response.status_code < 300:
        time.sleep(delay / 1000)  # the write is committed; the caller times out and never hears of it
    return response


def _upsert(
    entity: str, key: str, payload: dict, *, idempotency_key: str, correlation_id: str, if_match: str
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
                if idempotency_key and found.write_log.filter(idempotency_key=idempotency_key, applied=True).exists():
                    found.write_log.create(applied=False, **log)
                    return _record_json(found)
                if if_match and if_match not in ("*", found.etag):
                    found.write_log.create(applied=False, **log)
                    return JsonResponse(
                        {"error": {"code": "412", "message": f"ETag mismatch: record is at {found.etag}"}}, status=412
                    )
                found.write_log.create(**log)
                found.payload = payload
                found.version += 1
                found.writes += 1
                found.save()
                return _record_json(found)
        except IntegrityError:
            continue
    return JsonResponse({"error": {"code": "503", "message": "write conflict, try again"}}, status=503)


@csrf_exempt
@with_faults(EMULATOR)
def batch(request: HttpRequest) -> HttpResponse:
    """POST {"records": [{entity, key, payload, idempotency_key, if_match}]} → {"results": [{status, body}]}.

    Each record is its own transaction, like independent requests in one round trip.
    """
    if request.method != "POST":
        return JsonResponse({"error": {"code": "405", "message": "use POST"}}, status=405)
    try:
        records = json.loads(request.body)["records"]
        if any(record["payload"].get("__garbage__") for record in records):
            return HttpResponse("<html><body>Welcome</body></html>", content_type="text/html")
        results = []
        for record in records:
            if record["payload"].get("__reject__"):
                answer = JsonResponse(
                    {"error": {"code": "400", "message": record["payload"]["__reject__"]}}, status=400
                )
            else:
                answer = _upsert(
                    record["entity"],
                    record["key"],
                    record["payload"],
                    idempotency_key=record.get("idempotency_key", ""),
                    correlation_id=record.get("correlation_id", ""),
                    if_match=record.get("if_match", ""),
                )
            results.append(
                {"status": answer.status_code, "etag": answer.get("ETag", ""), "body": json.loads(answer.content)}
            )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return JsonResponse({"error": {"code": "400", "message": f"bad batch: {exc}"}}, status=400)
    if request.sandbox_faults.slow_after_commit_ms:
        time.sleep(request.sandbox_faults.slow_after_commit_ms / 1000)  # written; the caller never hears of it
    return JsonResponse({"results": results})


urlpatterns = [
    path("batch", batch, name="recorder-batch"),
    path("records/", records, name="recorder-records"),
    path("records/<str:entity>/<str:key>", record, name="recorder-record"),
]


def reset() -> None:
    RecorderRecord.objects.all().delete()
