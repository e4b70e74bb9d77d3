"""The pipeline with real Celery workers, a real Redis broker and the live sandbox recorder."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from integrations.models import Message
from integrations.pipeline.ingest import message_ingest
from sandbox.common.faults import set_faults
from sandbox.models import RecorderRecord, RecorderWrite
from tests.conftest import broker, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
Status = Message.Status


def ingest_orders(flow, count: int, prefix: str = "SO") -> list[Message]:
    return [
        message_ingest(
            flow=flow,
            payload={"OrderNumber": f"{prefix}-{n}", "Lines": [{"Item": "A", "Qty": n}]},
            idempotency_key=f"evt-{prefix}-{n}",
            source_record_key=f"{prefix}-{n}",
        )[0]
        for n in range(count)
    ]


def all_delivered() -> bool:
    return not Message.objects.exclude(status=Status.DELIVERED).exists()


def assert_each_order_written_once(count: int) -> None:
    assert RecorderRecord.objects.count() == count
    assert set(RecorderRecord.objects.values_list("writes", flat=True)) == {1}


def test_same_event_ingested_twice_gives_one_message_and_one_delivery(start_worker, recorder_flow):
    start_worker()
    for _ in range(2):
        message_ingest(flow=recorder_flow, payload={"OrderNumber": "SO-1"}, idempotency_key="evt-1")

    wait_until(all_delivered)

    assert Message.objects.count() == 1
    assert RecorderWrite.objects.count() == 1


def test_transient_failure_is_retried_by_the_worker_and_delivered(start_worker, recorder_flow):
    recorder_flow.retry_policy = {"max_attempts": 5, "backoff": {"1": 1}, "jitter": 0}
    recorder_flow.save()
    set_faults("recorder", down=True)
    start_worker()
    [message] = ingest_orders(recorder_flow, 1)
    wait_until(lambda: Message.objects.filter(pk=message.pk, status=Status.RETRYING).exists())

    set_faults("recorder", down=False)
    wait_until(all_delivered, sweep=True)  # the sweeper re-queues it when due, as beat would

    message.refresh_from_db()
    assert list(message.attempt_set.values_list("outcome", flat=True)) == ["retry", "delivered"]


def test_two_workers_racing_on_the_same_messages_deliver_each_once(start_worker, recorder_flow):
    from integrations import tasks

    messages = ingest_orders(recorder_flow, 20)
    for message in messages:  # every message queued three times in all
        tasks.process_message.delay(message.pk)
        tasks.process_message.delay(message.pk)
    start_worker("w1")
    start_worker("w2")

    wait_until(all_delivered)

    assert_each_order_written_once(20)
    assert RecorderWrite.objects.count() == 20


def test_worker_killed_mid_delivery_loses_nothing_and_duplicates_nothing(start_worker, recorder_flow):
    recorder_flow.target.timeout_seconds = 2
    recorder_flow.target.batch_size = 3  # several slow batches, so some are in flight when the worker dies
    recorder_flow.target.save()
    set_faults("recorder", latency_ms=400)
    worker = start_worker("doomed", concurrency=2)
    ingest_orders(recorder_flow, 12)
    wait_until(lambda: Message.objects.filter(status=Status.DELIVERED).count() >= 2)
    wait_until(lambda: Message.objects.filter(status=Status.DELIVERING).exists(), interval=0.02)

    worker.kill()  # kill -9 in the middle of deliveries
    assert Message.objects.filter(status=Status.DELIVERING).exists()
    set_faults("recorder", latency_ms=0)
    start_worker("rescuer")
    wait_until(all_delivered, sweep=True)

    assert_each_order_written_once(12)


def test_broker_flush_with_messages_waiting_loses_nothing(start_worker, recorder_flow):
    ingest_orders(recorder_flow, 15)
    redis = broker()
    assert redis.llen(settings.CELERY_TASK_DEFAULT_QUEUE) == 1  # one drain carries the burst
    # CI has the Redis server to itself; on a shared dev machine only our own database is flushed.
    redis.flushall() if os.environ.get("CI") else redis.flushdb()
    assert redis.llen(settings.CELERY_TASK_DEFAULT_QUEUE) == 0
    Message.objects.update(queued_at=None)  # what the sweeper sees once ICBRIDGE_REQUEUE_AFTER_SECONDS has passed

    start_worker()
    wait_until(all_delivered, sweep=True)

    assert_each_order_written_once(15)
