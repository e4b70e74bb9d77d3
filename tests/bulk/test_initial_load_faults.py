"""An initial load on real Celery workers: kill -9 mid-load resumes with nothing lost or written twice."""

from __future__ import annotations

import time

import pytest

from integrations.bulk import load
from integrations.models import LoadRun, Message
from integrations.pipeline.sweep import messages_sweep
from sandbox.common.faults import clear_faults, set_faults
from sandbox.models import RecorderRecord
from tests.bulk.conftest import seed_customers
from tests.conftest import wait_until

pytest_plugins = ["tests.connectors.microsoft_support"]
pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
LEASE = {"ICBRIDGE_LOAD_LEASE_SECONDS": "2"}
RECORDS = 60


def settled() -> bool:
    messages_sweep()
    load.load_runs_sweep()  # what beat's sweep task runs after the messages' sweep
    run = LoadRun.objects.get()
    busy = Message.objects.filter(status__in=(*Message.DELIVERABLE, Message.Status.DELIVERING)).exists()
    return run.is_finished and not busy


def test_a_worker_killed_mid_load_resumes_and_nothing_is_lost_or_written_twice(start_worker, load_flow, settings):
    settings.ICBRIDGE_LOAD_LEASE_SECONDS = 2
    settings.ICBRIDGE_REQUEUE_AFTER_SECONDS = 2  # delivery tasks the dead worker held are queued again
    seed_customers(RECORDS)
    set_faults("finops", latency_ms=400)  # slow pages, so the kill lands while one is being read
    worker = start_worker("doomed", concurrency=2, **LEASE)
    run = load.load_start(flow=load_flow, page_size=6)
    wait_until(lambda: LoadRun.objects.get().pages >= 3, timeout=60)

    worker.kill()
    run.refresh_from_db()
    assert run.state == LoadRun.State.RUNNING
    assert run.read < RECORDS
    clear_faults("finops")
    start_worker("rescuer", concurrency=2, **LEASE)
    wait_until(settled, timeout=120, interval=0.5)

    run.refresh_from_db()
    assert (run.state, run.read, run.written, run.failed) == (LoadRun.State.DONE, RECORDS, RECORDS, 0)
    assert Message.objects.filter(flow=load_flow, status=Message.Status.DELIVERED).count() == RECORDS
    # one message per source record: no page stored twice, however often it was read
    assert Message.objects.values("source_record_key").distinct().count() == RECORDS
    assert RecorderRecord.objects.count() == RECORDS
    assert set(RecorderRecord.objects.values_list("writes", flat=True)) == {1}


def test_a_load_cancelled_on_a_worker_stops_cleanly(start_worker, load_flow):
    seed_customers(RECORDS)
    set_faults("finops", latency_ms=300)
    start_worker("w1", concurrency=1)
    run = load.load_start(flow=load_flow, page_size=5)
    wait_until(lambda: LoadRun.objects.get().pages >= 2, timeout=60)

    assert load.load_cancel(run=run)
    pages_at_cancel = LoadRun.objects.get().pages
    # Long enough for several more 300 ms pages, had the load gone on.
    wait_until(lambda: not Message.objects.filter(status__in=Message.DELIVERABLE).exists(), timeout=60)
    time.sleep(2)

    run.refresh_from_db()
    stored = Message.objects.filter(flow=load_flow).count()
    assert run.state == LoadRun.State.CANCELLED
    assert run.pages in (pages_at_cancel, pages_at_cancel + 1)  # the page committing as it was cancelled
    assert run.read == stored == run.pages * 5 < RECORDS
