"""What a scheduled flow's beat task does: poll its source, or re-sync one that has no change feed.

End to end: beat's DatabaseScheduler sends the flow's own PeriodicTask to a real worker, which reads the
F&O emulator's change feed and delivers to the recorder.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from icbridge.celery import app
from integrations.models import AxPollCursor, Flow, LoadRun, Message, System
from integrations.polling.schedules import periodic_task_name, scheduled_run_by_id
from integrations.systems import get_connector
from sandbox.models import RecorderRecord
from tests.bulk.conftest import seed_customers
from tests.bulk.test_initial_load import run_pages
from tests.conftest import wait_until
from tests.connectors.test_s4hana_connector import ORDERS, request, s4_system, sales_order  # noqa: F401 (fixture)

pytest_plugins = ["tests.connectors.microsoft_support"]
pytestmark = pytest.mark.django_db(transaction=True)
Status = Message.Status


def delivered(flow: Flow, count: int) -> bool:
    return Message.objects.filter(flow=flow, status=Status.DELIVERED).count() >= count


def beat_sends(flow: Flow) -> None:
    """What beat does when the flow's crontab is due: send its PeriodicTask's task, as stored."""
    scheduler = DatabaseScheduler(app=app, lazy=True)
    scheduler.apply_async(ModelEntry(PeriodicTask.objects.get(name=periodic_task_name(flow.pk)), app=app))


@pytest.mark.e2e
def test_beat_runs_a_scheduled_flow_that_polls_its_source_and_delivers_what_changed(
    start_worker, make_scheduled_flow, finops_system, recorder_system
):
    # given an F&O customers flow on a schedule, three customers at F&O, and a worker
    flow = make_scheduled_flow(source=finops_system, target=recorder_system)
    seed_customers(3)
    start_worker()

    # when beat sends the flow's task, then every customer is delivered to the recorder
    beat_sends(flow)
    wait_until(lambda: delivered(flow, 3))
    assert RecorderRecord.objects.count() == 3

    # and the next run reads only what changed since (the cursor), the change delivered once more
    seed_customers(1, start=1, group="20")
    beat_sends(flow)
    wait_until(lambda: delivered(flow, 4))
    assert Message.objects.filter(flow=flow).count() == 4
    changed = Message.objects.filter(flow=flow).latest("pk")
    assert changed.source_record_key == "dataAreaId='se01',CustomerAccount='C00001'"
    assert AxPollCursor.objects.get(flow=flow).changed_since is not None


def test_a_run_while_the_previous_run_holds_the_cursor_does_nothing(make_scheduled_flow, finops_system):
    flow = make_scheduled_flow(source=finops_system)
    seed_customers(2)
    AxPollCursor.objects.create(flow=flow, polling_until=timezone.now() + dt.timedelta(minutes=5))

    busy = scheduled_run_by_id(flow_id=flow.pk)
    AxPollCursor.objects.filter(flow=flow).update(polling_until=None)
    free = scheduled_run_by_id(flow_id=flow.pk)

    assert busy.skipped is True
    assert (free.skipped, free.poll.messages_created) == (False, 2)


def test_a_disabled_or_no_longer_scheduled_flow_is_not_run(make_scheduled_flow, finops_system):
    disabled = make_scheduled_flow(source=finops_system, enabled=False)
    polled = make_scheduled_flow(source=finops_system)
    Flow.objects.filter(pk=polled.pk).update(trigger=Flow.Trigger.POLL, schedule=None)  # since beat queued it
    seed_customers(1)

    assert scheduled_run_by_id(flow_id=disabled.pk) is None
    assert scheduled_run_by_id(flow_id=polled.pk) is None
    assert not Message.objects.exists()


def s4_order(s4: System, n: int) -> None:
    get_connector(s4).deliver(request(sales_order(po=f"PO-{n}", items=1), idem=f"so-{n}"))


def test_an_s4_source_is_re_synced_from_its_last_finished_scheduled_run(make_scheduled_flow, s4_system, settings):  # noqa: F811
    """S/4 has no change feed: each run loads what changed (LastChangeDateTime) since the last scheduled one."""
    settings.ICBRIDGE_POLL_OVERLAP_SECONDS = 0
    s4 = s4_system
    flow = make_scheduled_flow(source=s4, options={"poll": {"entity": ORDERS, "key": ["SalesOrder"]}})
    s4_order(s4, 1)
    s4_order(s4, 2)

    first = scheduled_run_by_id(flow_id=flow.pk).load_run
    while_running = scheduled_run_by_id(flow_id=flow.pk)
    run_pages(first)
    # "since" goes out in whole seconds: let the first orders' second pass before the first run "started"
    time.sleep(1.1)
    LoadRun.objects.filter(pk=first.pk).update(started_at=timezone.now())
    s4_order(s4, 3)
    second = run_pages(scheduled_run_by_id(flow_id=flow.pk).load_run)

    assert "since" not in first.filters  # the first run reads everything
    assert while_running.skipped is True  # its pages are still being read: no second load
    assert second.filters["scheduled"] is True
    assert (second.state, second.read, second.written) == (LoadRun.State.DONE, 1, 1)
    assert Message.objects.filter(flow=flow).count() == 3


def test_a_re_sync_that_cannot_start_says_why_on_the_cursor(make_scheduled_flow, s4_system):  # noqa: F811
    flow = make_scheduled_flow(source=s4_system, options={})  # no options.poll.key: no record key to load by

    result = scheduled_run_by_id(flow_id=flow.pk)

    assert result.error == f"flow {flow.slug}: the load needs the source key fields (options.poll.key, or key=)"
    assert AxPollCursor.objects.get(flow=flow).last_error == result.error
    assert not LoadRun.objects.exists()
