"""The hub's routes plus /bench/bare: a bare Django view that parses the JSON body and inserts one row.

It is the floor the webhook ingress is measured against: same server, same database, no auth,
no parsing of the event, no outbox, no queueing.
"""

from __future__ import annotations

import json

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def bare_insert(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_bare (body) VALUES (%s) RETURNING id", [json.dumps(body)])
        row_id = cursor.fetchone()[0]
    return JsonResponse({"id": row_id}, status=202)


urlpatterns = [
    path("bench/bare", bare_insert),
    path("", include("icbridge.urls")),
]
