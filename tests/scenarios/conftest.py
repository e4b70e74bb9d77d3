"""Helpers for the scenario tests: linked records and staff users."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from integrations.models import Flow, Message, RecordLink


@pytest.fixture
def make_link() -> Callable[..., RecordLink]:
    def make(flow: Flow, source_key: str, target_key: str, **values: Any) -> RecordLink:
        values.setdefault("synced_at", timezone.now())
        return RecordLink.objects.create(flow=flow, source_key=source_key, target_key=target_key, **values)

    return make


@pytest.fixture
def make_message() -> Callable[..., Message]:
    counter = iter(range(1, 100_000))

    def make(flow: Flow, **values: Any) -> Message:
        values.setdefault("idempotency_key", f"evt-{next(counter)}")
        values.setdefault("payload_in", {})
        return Message.objects.create(flow=flow, **values)

    return make


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_user("operator", password="pw", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def p2c_flows(live_server):
    """The prospect-to-cash template against the live sandbox, retrying within seconds; flows by slug."""
    from integrations.scenarios.install import templates_install
    from sandbox import dataverse
    from sandbox.common.faults import clear_faults

    templates_install(name="prospect_to_cash", base_url=live_server.url)
    Flow.objects.all().update(retry_policy={"max_attempts": 10, "backoff": {"1": 1}, "jitter": 0})
    yield {flow.slug: flow for flow in Flow.objects.select_related("source", "target")}
    clear_faults()
    dataverse.reset()  # no webhook of this test may still be on its way when the next one starts
