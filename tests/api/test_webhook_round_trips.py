"""A webhook POST's cost in round trips (issue 17): guards against regressions, not timings.

Transactional: the stored event must be committed by its own INSERT, outside any test transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import caches
from django.test import Client

from integrations.api.counters import window
from integrations.models import Flow, InboundEndpoint, Message
from integrations.pipeline.ingest import message_ingest
from tests.api.conftest import SECRET, dataverse_update, key_header, post_json

pytestmark = pytest.mark.django_db(transaction=True)


def _order(number: str) -> dict[str, Any]:
    return {"OrderNumber": number, "Lines": [{"ItemId": "A0001", "Qty": 3}]}


def test_a_webhook_post_costs_two_sql_statements_once_its_flow_is_resolved(
    client: Client, inbound_flow: Callable[..., Flow], django_assert_max_num_queries: Any
) -> None:
    # given a generic endpoint whose flow was resolved by an earlier request
    flow = inbound_flow(id_pointer="/OrderNumber", record_key_pointer="/OrderNumber")
    url = f"/api/ingest/{flow.slug}"
    assert post_json(client, url, _order("SO-1"), **key_header()).status_code == 202
    # when the next event arrives, then the flow's stamps are read and the event inserted: no BEGIN,
    # SAVEPOINT, RELEASE or COMMIT around the one INSERT
    with django_assert_max_num_queries(2):
        response = post_json(client, url, _order("SO-2"), **key_header())
    assert response.status_code == 202
    assert Message.objects.get(pk=response.json()["message_id"]).payload_in == _order("SO-2")


def test_a_resend_outside_any_transaction_returns_the_first_message(make_flow: Callable[..., Flow]) -> None:
    # given an event stored on its own (autocommit: no transaction around the INSERT)
    flow = make_flow()
    first, created = message_ingest(flow=flow, payload={"OrderNumber": "1"}, idempotency_key="evt-own")
    # when it is sent again, then the duplicate key is answered with the first message, and the
    # connection is still usable (nothing was left aborted)
    again, created_again = message_ingest(flow=flow, payload={"OrderNumber": "2"}, idempotency_key="evt-own")
    assert (created, created_again, again.pk) == (True, False, first.pk)
    assert Message.objects.get().payload_in == {"OrderNumber": "1"}


def test_an_event_routed_to_two_flows_stores_the_new_one_when_the_other_is_a_resend(
    client: Client, make_system: Callable[..., Any], make_flow: Callable[..., Flow]
) -> None:
    # given a Dataverse system whose one flow already stored this event, and a second flow added since
    crm = make_system(slug="crm")
    InboundEndpoint.objects.create(system=crm, auth_type="header", secret=SECRET)
    make_flow(source=crm, entity="contact", slug="a-first")
    url = "/api/webhooks/dataverse/systems/crm"
    held = post_json(client, url, dataverse_update(), **key_header()).json()["messages"][0]
    second = make_flow(source=crm, entity="contact", slug="b-second")
    # when the event is sent again, now routed to both flows in one transaction
    response = post_json(client, url, dataverse_update(), **key_header())
    # then the first flow's duplicate did not abort that transaction: the second flow's message is stored
    assert response.status_code == 202, response.content
    routed = {item["flow"]: item for item in response.json()["messages"]}
    assert routed["a-first"] == {**held, "duplicate": True}
    assert routed["b-second"]["duplicate"] is False
    assert Message.objects.filter(flow=second).count() == 1
    assert Message.objects.count() == 2


def test_the_throttle_window_counts_each_post_and_expires(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given an endpoint allowing three requests a minute
    flow = inbound_flow(throttle_rate="3/min", id_pointer="/OrderNumber")
    url = f"/api/ingest/{flow.slug}"
    # when four events arrive within the window
    statuses = [post_json(client, url, _order(f"SO-{n}"), **key_header()).status_code for n in range(4)]
    # then the fourth is refused, and the window's counter holds every request and expires with its window
    assert statuses == [202, 202, 202, 429]
    backend = caches["default"]
    key, _left = window(f"throttle_ingress:flow:{flow.pk}", 60)
    assert backend.get(key) == 4
    full_key = backend.make_and_validate_key(key)
    assert 0 < backend._cache.get_client(full_key).ttl(full_key) <= 61
