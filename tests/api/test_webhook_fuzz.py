"""Fuzz every kind of webhook endpoint: 5,000 mutated requests, no 5xx, every 2xx stored, nothing stored on a 4xx."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from integrations.api.auth import hmac_sign
from integrations.models import Flow, InboundEndpoint, Message, System
from tests.api.conftest import SECRET
from tests.fuzzing import Tally, case_for, to_wsgi

REQUESTS = 5_000
SEED = 20261202


@pytest.fixture
def endpoints(make_flow: Callable[..., Flow], make_system: Callable[..., System]) -> list[tuple[str, str, str]]:
    """(url, sender kind, auth) for one flow endpoint of each format, plus a system-level one."""
    auth = InboundEndpoint.AuthType
    found = []
    for kind, entity, mode, prefix in [
        ("dataverse", "contact", auth.HEADER, "webhooks/dataverse"),
        ("finops", "BusinessEventsAlertEvent", auth.HMAC, "events/finops"),
        ("sap", "sap.s4.beh.salesorder.v1.SalesOrder.Created.v1", auth.QUERY_KEY, "events/sap"),
        ("generic", "salesorder", auth.HEADER, "ingest"),
    ]:
        flow = make_flow(entity=entity)
        InboundEndpoint.objects.create(flow=flow, auth_type=mode, secret=SECRET)
        found.append((f"/api/{prefix}/{flow.slug}", kind, mode))
    source = make_system(kind=System.Kind.DATAVERSE)
    make_flow(source=source, entity="contact")
    InboundEndpoint.objects.create(system=source, auth_type=auth.HEADER, secret=SECRET)
    found.append((f"/api/webhooks/dataverse/systems/{source.slug}", "dataverse", auth.HEADER))
    return found


def fuzz(client: Client, endpoints: list[tuple[str, str, str]], requests: int, seed: int) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    for _ in range(requests):
        url, kind, auth = rng.choice(endpoints)
        case = case_for(rng, kind, auth, SECRET, hmac_sign)
        before = Message.objects.count()
        meta = to_wsgi(case.headers)
        content_type = meta.pop("CONTENT_TYPE", "")
        response = client.generic(
            "POST", f"{url}?{case.query}" if case.query else url, case.body, content_type=content_type, **meta
        )
        after = Message.objects.count()
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        tally.stored += after - before
        where = f"{kind} {auth} {response.status_code} body={case.body[:120]!r} headers={case.headers}"
        if response.status_code >= 500:
            exc: Any = getattr(response, "exc_info", None)
            tally.problems.append(f"5xx: {where} {exc[1]!r}" if exc else f"5xx: {where}")
        elif 200 <= response.status_code < 300:
            data = response.json()
            duplicate = data.get("duplicate")
            if after == before and not duplicate:
                tally.problems.append(f"2xx stored nothing: {where}")
            media = case.headers.get("content-type", "").split(";")[0].strip()
            json_type = media in ("application/json", "application/cloudevents+json")
            if not json_type and "ce-specversion" not in case.headers:
                tally.problems.append(f"2xx for a body that is not JSON by its content type: {where}")
        elif after != before:
            tally.problems.append(f"4xx stored {after - before}: {where}")
    return tally


def test_five_thousand_hostile_requests_get_no_5xx_and_4xx_store_nothing(endpoints, settings):
    settings.ICBRIDGE_INGRESS_THROTTLE_RATE = "1000000/s"  # the fuzz is about input, not rate
    settings.ICBRIDGE_AUTH_FAILURE_RATE = "1000000/s"
    tally = fuzz(Client(raise_request_exception=False), endpoints, REQUESTS, SEED)
    assert tally.requests == REQUESTS
    assert tally.problems == [], f"{len(tally.problems)} problems; first: {tally.problems[:5]}"
    # The mutator must reach both sides: stored events and refusals (else it tests nothing).
    assert sum(n for code, n in tally.statuses.items() if code < 300) > 500, tally.summary()
    assert sum(n for code, n in tally.statuses.items() if 400 <= code < 500) > 1000, tally.summary()
