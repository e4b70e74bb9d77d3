"""What the source sent and what was fetched for it are shown apart: console page and API detail."""

from __future__ import annotations

import pytest
from django.urls import reverse

from integrations.models import Message

pytestmark = pytest.mark.django_db

EVENT = {"data": {"OutboundDelivery": "80000001"}}
FETCHED = {"fetched": {"delivery": {"DeliveryDocument": "80000001", "ShippingPoint": "1710"}}}


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-12345678"))
    return client


@pytest.fixture
def fetched_message(make_flow) -> Message:
    return Message.objects.create(flow=make_flow(), idempotency_key="evt-f1", payload_in=EVENT, payload_fetched=FETCHED)


def test_the_api_detail_shows_the_event_and_what_was_fetched_apart(staff, fetched_message):
    body = staff.get(f"/api/messages/{fetched_message.pk}").json()

    assert body["payload_in"] == EVENT
    assert body["payload_fetched"] == FETCHED


def test_the_console_shows_the_fetched_payload_beside_the_event(staff, fetched_message):
    html = staff.get(reverse("admin:integrations_message_change", args=[fetched_message.pk])).content.decode()

    assert "<summary>payload in (from the source)</summary>" in html
    assert "<summary>payload fetched (read from the source before mapping)</summary>" in html
    assert "&quot;ShippingPoint&quot;: &quot;1710&quot;" in html
    plain = Message.objects.create(flow=fetched_message.flow, idempotency_key="evt-f2", payload_in=EVENT)
    html = staff.get(reverse("admin:integrations_message_change", args=[plain.pk])).content.decode()
    assert "nothing read from the source for this event" in html
