"""Batching targets are fed by one drain per flow instead of a task per message."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from integrations.models import Message
from integrations.pipeline import deliver as pipeline
from integrations.pipeline import dispatch
from integrations.pipeline.ingest import message_ingest
from sandbox.models import RecorderWrite
from tests.conftest import broker

pytestmark = pytest.mark.django_db(transaction=True)


def queued_tasks() -> list[str]:
    raw = broker().lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)
    return [json.loads(item)["headers"]["task"].rsplit(".", 1)[-1] for item in raw]


@pytest.fixture(autouse=True)
def _empty_broker():
    broker().flushdb()
    yield
    broker().flushdb()


def ingest_many(flow, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        message_ingest(
            flow=flow, payload={"OrderNumber": f"SO-{n}"}, idempotency_key=f"e{n}", source_record_key=f"SO-{n}"
        )


def test_a_burst_for_a_batching_target_queues_one_drain(recorder_flow):
    ingest_many(recorder_flow, 30)

    assert queued_tasks() == ["drain_flow"]


def test_a_target_that_takes_one_record_at_a_time_gets_a_task_per_message(recorder_flow):
    recorder_flow.target.batch_size = 1
    recorder_flow.target.save()

    ingest_many(recorder_flow, 3)

    assert queued_tasks() == ["process_message"] * 3


def test_a_drain_delivers_the_backlog_in_batches_and_calls_for_help(recorder_flow):
    recorder_flow.target.batch_size = 10
    recorder_flow.target.save()
    ingest_many(recorder_flow, 35)
    broker().flushdb()

    claimed = pipeline.flow_drain(flow_id=recorder_flow.pk)

    assert claimed == 35
    assert Message.objects.filter(status="delivered").count() == 35
    assert RecorderWrite.objects.count() == 35
    assert queued_tasks() == ["drain_flow"]  # a full first batch asked for a sibling


def test_a_message_after_a_finished_drain_queues_a_new_one(recorder_flow):
    ingest_many(recorder_flow, 2)
    pipeline.flow_drain(flow_id=recorder_flow.pk)
    broker().flushdb()

    ingest_many(recorder_flow, 1, start=2)

    assert queued_tasks() == ["drain_flow"]


def test_a_message_while_a_drain_is_pending_is_left_to_it(recorder_flow):
    ingest_many(recorder_flow, 1)
    assert broker().exists(dispatch.drain_key(recorder_flow.pk))

    ingest_many(recorder_flow, 1, start=1)
    pipeline.flow_drain(flow_id=recorder_flow.pk)

    assert queued_tasks() == ["drain_flow"]  # the first ingest's drain only
    assert Message.objects.filter(status="delivered").count() == 2
