"""Operator actions on messages: each changes state as promised and leaves an audit row."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from integrations.models import AuditEntry, Message
from integrations.pipeline import deliver as pipeline
from integrations.pipeline import operator
from integrations.pipeline.ingest import message_ingest
from sandbox.common.faults import set_faults
from sandbox.models import RecorderRecord

pytestmark = pytest.mark.django_db(transaction=True)
Status = Message.Status


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", password="x")


@pytest.fixture
def dead_message(recorder_flow) -> Message:
    recorder_flow.retry_policy = {"max_attempts": 1}
    recorder_flow.save()
    set_faults("recorder", down=True)
    message, _ = message_ingest(
        flow=recorder_flow, payload={"OrderNumber": "SO-1"}, idempotency_key="evt-1", source_record_key="SO-1"
    )
    pipeline.message_process(message_id=message.pk)
    set_faults("recorder", down=False)
    message.refresh_from_db()
    assert message.status == Status.DEAD
    return message


def test_retry_gives_a_dead_message_a_fresh_start_and_is_audited(dead_message, alice):
    count = operator.messages_retry(messages=[dead_message], actor=alice, reason="target is back")
    pipeline.message_process(message_id=dead_message.pk)
    dead_message.refresh_from_db()

    assert count == 1
    assert dead_message.status == Status.DELIVERED
    entry = AuditEntry.objects.get(action="retry")
    assert (entry.actor_name, entry.reason, entry.message_id) == ("alice", "target is back", dead_message.pk)
    assert entry.details == {"from": "dead"}


def test_retry_ignores_messages_that_are_already_delivered(recorder_flow, alice):
    message, _ = message_ingest(flow=recorder_flow, payload={"OrderNumber": "SO-2"}, idempotency_key="evt-2")
    pipeline.message_process(message_id=message.pk)

    assert operator.messages_retry(messages=Message.objects.all(), actor=alice) == 0
    assert AuditEntry.objects.exists() is False


def test_discard_needs_a_reason(dead_message, alice):
    with pytest.raises(operator.OperatorError, match="why"):
        operator.message_discard(message=dead_message, actor=alice, reason=" ")

    discarded = operator.message_discard(message=dead_message, actor=alice, reason="duplicate of 4711")

    assert discarded.status == Status.DISCARDED
    assert str(AuditEntry.objects.get()) == f"discard message {dead_message.pk} by alice: duplicate of 4711"


def test_discard_of_a_delivered_message_is_refused(recorder_flow, alice):
    message, _ = message_ingest(flow=recorder_flow, payload={"OrderNumber": "SO-3"}, idempotency_key="evt-3")
    pipeline.message_process(message_id=message.pk)

    with pytest.raises(operator.OperatorError, match="cannot be discarded"):
        operator.message_discard(message=message, actor=alice, reason="oops")


def test_edit_and_replay_links_to_the_original(dead_message, alice):
    replay = operator.message_replay(
        message=dead_message, actor=alice, reason="fixed quantity", payload={"OrderNumber": "SO-1", "Qty": 2}
    )
    pipeline.message_process(message_id=replay.pk)
    replay.refresh_from_db()
    dead_message.refresh_from_db()

    assert replay.replay_of_id == dead_message.pk
    assert replay.correlation_id == dead_message.correlation_id
    assert replay.status == Status.DELIVERED
    assert dead_message.status == Status.DISCARDED
    assert RecorderRecord.objects.get(key="SO-1").payload == {"OrderNumber": "SO-1", "Qty": 2}
    assert AuditEntry.objects.get(action="replay").details == {"replay_id": replay.pk, "edited": True}


def test_conflict_resolved_for_the_source_overwrites_the_target(recorder_flow, alice):
    recorder_flow.conflict_policy = "park"
    recorder_flow.save()
    first, _ = message_ingest(
        flow=recorder_flow, payload={"OrderNumber": "SO-4", "Qty": 1}, idempotency_key="a", source_record_key="SO-4"
    )
    pipeline.message_process(message_id=first.pk)
    RecorderRecord.objects.filter(key="SO-4").update(version=9)
    second, _ = message_ingest(
        flow=recorder_flow, payload={"OrderNumber": "SO-4", "Qty": 2}, idempotency_key="b", source_record_key="SO-4"
    )
    pipeline.message_process(message_id=second.pk)
    second.refresh_from_db()
    assert second.status == Status.CONFLICT

    operator.message_resolve_conflict(message=second, actor=alice, side="source", reason="ours is right")
    pipeline.message_process(message_id=second.pk)
    second.refresh_from_db()

    assert second.status == Status.DELIVERED
    assert RecorderRecord.objects.get(key="SO-4").payload["Qty"] == 2
    assert AuditEntry.objects.get().action == "resolve_conflict_source"
