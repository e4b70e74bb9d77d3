"""Fault tests: in every case accepted = delivered, no duplicate at the target, and source and target agree.

Each runs real Celery workers against the live sandbox over loopback and is bounded in time.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
from django.db import connection

from integrations.models import Attempt, Message, RecordLink
from integrations.pipeline.ingest import message_ingest
from monitoring.services.reconciliation import reconciliation_run
from sandbox.common.faults import clear_faults, set_faults
from sandbox.models import RecorderRecord, RecorderWrite
from tests.conftest import broker, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
Status = Message.Status
PATIENT_RETRIES = {"max_attempts": 100, "backoff": {"1": 1, "4": 2}, "jitter": 0.2}


@pytest.fixture
def flow(recorder_flow):
    recorder_flow.retry_policy = PATIENT_RETRIES
    recorder_flow.save()
    recorder_flow.target.timeout_seconds = 2
    recorder_flow.target.save()
    return recorder_flow


def accept_orders(flow, count: int, prefix: str = "SO") -> None:
    for n in range(count):
        message_ingest(
            flow=flow,
            payload={"OrderNumber": f"{prefix}-{n}", "Lines": [{"Item": f"ITEM-{i}", "Qty": i + 1} for i in range(5)]},
            idempotency_key=f"evt-{prefix}-{n}",
            source_record_key=f"{prefix}-{n}",
            source_version=1,
        )


def all_settled() -> bool:
    return not Message.objects.filter(status__in=(*Message.DELIVERABLE, Status.DELIVERING)).exists()


def assert_nothing_lost_nothing_doubled(accepted: int) -> None:
    """accepted = delivered; each order written once at the target; reconciliation finds no difference."""
    clear_faults()  # the incident is over; reconciliation reads the target as an operator would afterwards
    assert Message.objects.filter(status=Status.DELIVERED).count() == accepted
    assert RecorderRecord.objects.count() == accepted
    assert set(RecorderRecord.objects.values_list("writes", flat=True)) == {1}
    assert RecordLink.objects.count() == accepted
    run = reconciliation_run(flow=Message.objects.first().flow)
    counts = (run.checked, run.matched, run.missing_in_target, run.missing_in_source, run.different, run.errors)
    assert counts == (accepted, accepted, 0, 0, 0, 0)


def test_worker_killed_with_sigkill_during_deliveries(start_worker, flow):
    flow.target.batch_size = 4  # several slow batches, so some are in flight when the worker dies
    flow.target.save()
    set_faults("recorder", latency_ms=300)
    worker = start_worker("doomed", concurrency=2)
    accept_orders(flow, 30)
    wait_until(lambda: Message.objects.filter(status=Status.DELIVERED).count() >= 3)
    wait_until(lambda: Message.objects.filter(status=Status.DELIVERING).exists(), interval=0.02)

    worker.kill()
    set_faults("recorder", latency_ms=0)
    start_worker("rescuer", concurrency=2)
    wait_until(all_settled, timeout=90, sweep=True)

    assert_nothing_lost_nothing_doubled(30)


def _restart_redis() -> None:
    """On CI the Redis server is ours: shut it down without saving and start it again, as .ci/run does."""
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], check=False, timeout=10)
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
         "--appendonly", "no", "--dir", "/tmp", "--logfile", "/tmp/icbridge-redis-restart.log"],
        check=True,
        timeout=10,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if broker().ping():
                return
        except Exception:  # noqa: BLE001 - still starting
            time.sleep(0.2)
    raise AssertionError("Redis did not come back")


def test_redis_restart_and_flushall_with_messages_waiting(start_worker, flow, settings):
    settings.ICBRIDGE_REQUEUE_AFTER_SECONDS = 2
    worker = start_worker()
    set_faults("recorder", down=True)  # messages wait: some queued, some retrying
    accept_orders(flow, 20)
    wait_until(lambda: Message.objects.filter(status=Status.RETRYING).count() >= 5)

    if os.environ.get("CI"):
        _restart_redis()
        broker().flushall()
    else:  # a shared development Redis: drop our connections and flush only our database
        redis = broker()
        redis.flushdb()
        redis.client_kill_filter(_type="normal", skipme=True)
    set_faults("recorder", down=False)
    wait_until(all_settled, timeout=90, sweep=True)

    assert_nothing_lost_nothing_doubled(20)
    assert worker.process.poll() is None  # the worker reconnected rather than died


def test_postgresql_connections_dropped_during_deliveries(start_worker, flow):
    set_faults("recorder", latency_ms=100)
    start_worker(concurrency=2)
    accept_orders(flow, 30)
    wait_until(lambda: Message.objects.filter(status=Status.DELIVERED).count() >= 3)

    for _ in range(3):  # drop every other connection to the test database, a few times over
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        time.sleep(0.5)
    set_faults("recorder", latency_ms=0)
    wait_until(all_settled, timeout=90, sweep=True)

    assert_nothing_lost_nothing_doubled(30)


def test_target_outage_for_a_minute_then_recovery(start_worker, flow):
    start_worker(concurrency=2)
    set_faults("recorder", down=True)
    accept_orders(flow, 20)
    outage_ends = time.monotonic() + 60
    stop = threading.Event()

    def sweep_like_beat() -> None:
        from integrations.pipeline.sweep import messages_sweep

        while not stop.is_set():
            messages_sweep()
            connection.close()
            stop.wait(1)

    sweeper = threading.Thread(target=sweep_like_beat)
    sweeper.start()
    try:
        time.sleep(max(0.0, outage_ends - time.monotonic()))
        assert Message.objects.filter(status=Status.DELIVERED).exists() is False
        assert Message.objects.filter(status=Status.DEAD).exists() is False
        set_faults("recorder", down=False)
        wait_until(all_settled, timeout=60)
    finally:
        stop.set()
        sweeper.join()

    assert_nothing_lost_nothing_doubled(20)


def test_429_storm_is_ridden_out_honouring_retry_after(start_worker, flow):
    flow.target.batch_size = 5  # several requests, so the storm hits many of them
    flow.target.save()
    # The storm starts with every call refused, so it is seen whatever the run's random seed (pytest-randomly
    # seeds the fault's dice), then goes on refusing 70 % of the calls.
    set_faults("recorder", throttle_rate=1.0, retry_after_seconds=1)
    start_worker(concurrency=2)
    accept_orders(flow, 15)
    wait_until(lambda: Attempt.objects.filter(response_status=429).exists())
    set_faults("recorder", throttle_rate=0.7, retry_after_seconds=1)

    wait_until(all_settled, timeout=120, sweep=True)

    assert_nothing_lost_nothing_doubled(15)
    throttled = Message.objects.get(pk=Message.objects.filter(attempt_set__response_status=429).values("pk")[:1])
    attempts = list(throttled.attempt_set.order_by("started_at"))
    for before, after in zip(attempts, attempts[1:], strict=False):
        if before.response_status == 429:  # never asked again before Retry-After (1 s) had passed
            assert (after.started_at - before.started_at).total_seconds() >= 1


def test_response_lost_after_the_target_committed(start_worker, flow):
    flow.target.timeout_seconds = 0.5
    flow.target.save()
    set_faults("recorder", slow_after_commit_ms=1000)
    start_worker(concurrency=2)
    accept_orders(flow, 10)
    wait_until(lambda: Message.objects.filter(status=Status.RETRYING).count() >= 3)

    set_faults("recorder", slow_after_commit_ms=0)
    wait_until(all_settled, timeout=60, sweep=True)

    assert_nothing_lost_nothing_doubled(10)
    assert RecorderWrite.objects.filter(applied=False).exists()  # the target did see repeats, and ignored them


def test_poison_message_ends_dead_without_blocking_others(start_worker, flow):
    flow.retry_policy = {"max_attempts": 3, "backoff": {"1": 0}, "jitter": 0}
    flow.save()
    start_worker(concurrency=2)
    # The target answers this one with an HTML page: parsing it crashes inside the connector, every time.
    message_ingest(flow=flow, payload={"OrderNumber": "POISON", "__garbage__": True}, idempotency_key="poison")
    accept_orders(flow, 10)

    wait_until(
        lambda: (
            Message.objects.filter(status=Status.DELIVERED).count() == 10
            and Message.objects.filter(idempotency_key="poison", status=Status.DEAD).exists()
        ),
        timeout=60,
        sweep=True,
    )

    poison = Message.objects.get(idempotency_key="poison")
    assert poison.attempts == 3
    assert poison.last_error_class == "requests.exceptions.JSONDecodeError"
    assert broker().llen("icbridge") == 0
