from __future__ import annotations

import pytest

from integrations.models import Message
from integrations.pipeline.ingest import message_ingest

pytestmark = pytest.mark.django_db


def test_same_key_twice_returns_the_first_message(make_flow, django_capture_on_commit_callbacks):
    flow = make_flow()
    with django_capture_on_commit_callbacks() as callbacks:
        first, created = message_ingest(flow=flow, payload={"OrderNumber": "1"}, idempotency_key="evt-1")
        again, created_again = message_ingest(flow=flow, payload={"OrderNumber": "changed"}, idempotency_key="evt-1")

    assert created is True
    assert created_again is False
    assert again.pk == first.pk
    assert Message.objects.get().payload_in == {"OrderNumber": "1"}
    assert len(callbacks) == 1  # one processing task queued, for the first only


def test_processing_is_queued_only_after_commit(make_flow, django_capture_on_commit_callbacks):
    flow = make_flow()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message, _ = message_ingest(flow=flow, payload={}, idempotency_key="evt-2")

    assert len(callbacks) == 1
    assert message.status == Message.Status.RECEIVED
    assert message.next_attempt_at is not None


def test_same_key_on_another_flow_is_another_message(make_flow):
    first, _ = message_ingest(flow=make_flow(), payload={}, idempotency_key="evt-3")
    second, created = message_ingest(flow=make_flow(), payload={}, idempotency_key="evt-3")

    assert created is True
    assert second.pk != first.pk


def test_empty_idempotency_key_is_refused(make_flow):
    with pytest.raises(ValueError, match="idempotency_key"):
        message_ingest(flow=make_flow(), payload={}, idempotency_key="")
