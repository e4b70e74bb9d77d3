"""Flows that run on a schedule: one django-celery-beat PeriodicTask per flow, and what each run does.

A flow with trigger "schedule" names a CrontabSchedule (Flow.schedule, edited in the console with the
related-object popup). Its PeriodicTask, "icbridge-flow-schedule-<flow id>", is kept in step on every
save and delete of the flow (signals, so the console, the API, the template installer and the shell
all keep it) and by the console's enable/disable actions, which write with update(). Beat's
DatabaseScheduler notices the change (django-celery-beat's PeriodicTasks.last_update); editing the
crontab itself, shared or not, moves every task that uses it.

Each run is the flow's incremental pass:

1. Its source's kind has a change reader (AX 2012, F&O, Dataverse): the same poll as trigger "poll",
   changes since the flow's cursor (integrations.polling.poll.flow_poll).
2. Otherwise (S/4HANA): a re-sync through integrations.bulk of what was modified since the start of
   the flow's last scheduled re-sync that finished (less the poll overlap); the first one reads all.
   A source that can be read neither way cannot be scheduled (schedulable_problem).

A run whose previous run still holds the flow's cursor lease, or whose previous re-sync is still
reading pages, does nothing: a flow never runs twice at once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from integrations import systems
from integrations.bulk import load
from integrations.models import Flow, LoadRun
from integrations.polling.cursors import cursor_lease
from integrations.polling.poll import PollResult, flow_poll

logger = logging.getLogger(__name__)
TASK_NAME = "integrations.tasks.run_scheduled_flow"  # by name: services never import the tasks module's functions


@dataclass
class ScheduledRun:
    poll: PollResult | None = None  # the source was polled
    load_run: LoadRun | None = None  # a re-sync was started
    skipped: bool = False  # the previous run still holds the flow
    error: str = ""


def periodic_task_name(flow_id: int) -> str:
    return f"icbridge-flow-schedule-{flow_id}"


def schedulable_problem(kind: str) -> str:
    """Why a source of this kind cannot run on a schedule ("" if it can), naming the field."""
    if systems.poller(kind) or hasattr(systems.connector_class(kind), "read_page"):
        return ""
    return f"trigger: a {kind} source has no change reader and cannot be read page by page, so not on a schedule"


def flow_schedule_sync(*, flow: Flow) -> PeriodicTask | None:
    """Create, update or remove the flow's PeriodicTask to match its trigger, schedule and enabled."""
    name = periodic_task_name(flow.pk)
    if flow.trigger != Flow.Trigger.SCHEDULE or flow.schedule_id is None:
        PeriodicTask.objects.filter(name=name).delete()
        return None
    task, _ = PeriodicTask.objects.update_or_create(
        name=name,
        defaults={
            "task": TASK_NAME,
            "args": json.dumps([flow.pk]),
            "crontab_id": flow.schedule_id,
            "interval": None,
            "enabled": flow.enabled,
            "description": f"Scheduled run of flow {flow.slug}; edit its schedule on the flow, not here.",
        },
    )
    return task


def flow_schedule_remove(*, flow_id: int) -> None:
    PeriodicTask.objects.filter(name=periodic_task_name(flow_id)).delete()


def _flow_saved(sender: type[Flow], instance: Flow, raw: bool = False, **kwargs: Any) -> None:
    if not raw:  # loaddata: the fixture holds the PeriodicTask rows it wants
        flow_schedule_sync(flow=instance)


def _flow_deleted(sender: type[Flow], instance: Flow, **kwargs: Any) -> None:
    flow_schedule_remove(flow_id=instance.pk)


post_save.connect(_flow_saved, sender=Flow, dispatch_uid="flow-schedule-sync")
post_delete.connect(_flow_deleted, sender=Flow, dispatch_uid="flow-schedule-remove")


def scheduled_run_by_id(*, flow_id: int) -> ScheduledRun | None:
    """The beat task's entry: one run of a scheduled flow (None if disabled, deleted or no longer scheduled)."""
    flow = (
        Flow.objects.select_related("source", "company_link")
        .filter(pk=flow_id, enabled=True, trigger=Flow.Trigger.SCHEDULE, source__enabled=True)
        .first()
    )
    if flow is None:
        return None
    if systems.poller(flow.source.kind) is not None:
        polled = flow_poll(flow=flow)
        return ScheduledRun(poll=polled, skipped=polled.skipped, error=polled.error)
    return flow_resync(flow=flow)


def flow_resync(*, flow: Flow) -> ScheduledRun:
    """Start a re-sync of what changed at the source since the flow's last finished scheduled re-sync."""
    with cursor_lease(flow) as cursor:
        if cursor is None or LoadRun.objects.filter(flow=flow, state=LoadRun.State.RUNNING).exists():
            return ScheduledRun(skipped=True)
        last = (
            LoadRun.objects.filter(flow=flow, state=LoadRun.State.DONE, filters__scheduled=True)
            .order_by("-started_at")
            .first()
        )
        overlap = dt.timedelta(seconds=float(settings.ICBRIDGE_POLL_OVERLAP_SECONDS))
        since = last.started_at - overlap if last else None
        started = timezone.now()
        try:
            # Not in one transaction with the mark: load_start asks the source for its count. A run left
            # unmarked (a crash in between) only makes the next re-sync start from an earlier run.
            run = load.load_start(flow=flow, since=since)
        except load.LoadError as exc:
            cursor.last_error, cursor.last_polled_at = str(exc)[:2000], started
            cursor.save(update_fields=["last_error", "last_polled_at"])
            logger.warning("scheduled re-sync of flow %s not started: %s", flow.slug, exc, extra={"flow_id": flow.pk})
            return ScheduledRun(error=str(exc))
        run.filters = {**run.filters, "scheduled": True}  # page workers never write filters: no lost update
        LoadRun.objects.filter(pk=run.pk).update(filters=run.filters)
        cursor.last_error, cursor.last_polled_at = "", started
        cursor.save(update_fields=["last_error", "last_polled_at"])
    return ScheduledRun(load_run=run)
