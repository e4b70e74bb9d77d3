"""One Delivery: an attempt counts when its row is written, outcomes are fenced, and a replay reads again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations import errors
from integrations.models import Attempt, Flow, Message
from integrations.pipeline import deliver as pipeline
from integrations.pipeline import sweep
from integrations.pipeline.ingest import message_ingest
from integrations.pipeline.operator import message_replay
from sandbox.models import RecorderRecord

pytestmark = pytest.mark.django_db(transaction=True)
Status = Message.Status


def ingest(flow: Flow, number: str = "SO-1", **payload) -> Message:
    message, _ = message_ingest(
        flow=flow, payload={"OrderNumber": number, **payload}, idempotency_key=f"evt-{number}", source_record_key=number
    )
    return message


def process(message: Message) -> Message:
    pipeline.message_process(message_id=message.pk)
    message.refresh_from_db()
    return message


def test_a_claim_counts_no_attempt(recorder_flow):
    message = ingest(recorder_flow)

    delivery = pipeline.Delivery.claim(message)

    message.refresh_from_db()
    assert delivery is not None
    assert (message.status, message.attempts) == (Status.DELIVERING, 0)
    assert delivery.number == 1


def test_a_mapping_error_fails_at_once_with_an_attempt_and_a_retry_that_fails_again_writes_another(
    recorder_flow, django_user_model
):
    from integrations.pipeline.operator import messages_retry

    recorder_flow.mapping_spec = {"fields": {"Qty": {"path": "Qty", "type": "decimal"}}}
    recorder_flow.save()

    message = process(ingest(recorder_flow, Qty="two"))

    assert message.status == Status.FAILED
    assert message.attempts == 1
    failed = message.attempt_set.get()
    assert (failed.outcome, failed.error_class) == (Attempt.Outcome.FAILED, "errors.MappingError")
    assert "field 'Qty'" in failed.error_text

    messages_retry(messages=[message], actor=django_user_model.objects.create(username="op"), reason="fixed?")
    message = process(message)

    assert message.status == Status.FAILED
    assert message.attempt_set.count() == 2  # the retry shows: it ran, and failed the same way


def test_a_lost_worker_counts_its_attempt_and_the_next_try_is_number_two(recorder_flow):
    message = ingest(recorder_flow)
    pipeline.Delivery.claim(message)
    Message.objects.filter(pk=message.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    sweep.messages_sweep()
    message = process(message)

    assert message.status == Status.DELIVERED
    assert message.attempts == 2
    assert list(message.attempt_set.order_by("number").values_list("number", "outcome")) == [
        (1, Attempt.Outcome.INTERRUPTED),
        (2, Attempt.Outcome.DELIVERED),
    ]


def test_a_late_outcome_after_the_sweeper_released_the_claim_writes_nothing(recorder_flow):
    message = ingest(recorder_flow)
    delivery = pipeline.Delivery.claim(message)
    Message.objects.filter(pk=message.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    sweep.messages_sweep()

    delivery.fail(errors.TransientError("timed out"))  # the hung worker wakes up

    message.refresh_from_db()
    assert (message.status, message.attempts) == (Status.RETRYING, 1)
    assert message.last_error_class == sweep.WORKER_LOST
    assert message.attempt_set.count() == 1


def test_a_replayed_truncated_event_is_completed_from_the_source_again(recorder_flow, recorder_system, make_system):
    # given a truncated event completed from the source and delivered
    recorder_flow.source = make_system(name="Source", slug="source", base_url=recorder_system.base_url)
    recorder_flow.save()
    RecorderRecord.objects.create(entity="orders", key="SO-40", payload={"OrderNumber": "SO-40", "Notes": "first"})
    event = {"event": "Update", "entity": "orders", "id": "SO-40"}
    message, _ = message_ingest(
        flow=recorder_flow,
        payload=event,
        idempotency_key="evt-40",
        source_record_key="SO-40",
        headers={"truncated": True},
    )
    assert process(message).payload_fetched["attributes"]["Notes"] == "first"
    RecorderRecord.objects.filter(entity="orders", key="SO-40").update(
        payload={"OrderNumber": "SO-40", "Notes": "second"}
    )

    # when it is replayed
    replay = message_replay(message=message, actor=None, reason="resend")

    # then the copy starts from the event as received, flagged truncated, and reads the record again
    assert (replay.payload_in, replay.payload_fetched, replay.headers["truncated"]) == (event, None, True)
    replay = process(replay)
    assert replay.status == Status.DELIVERED
    assert replay.payload_fetched["attributes"]["Notes"] == "second"
    assert replay.payload_in == event
