"""The sweeper: re-queue due messages and release claims a lost worker left behind (Celery beat).

It runs on its own queue (settings.ICBRIDGE_SWEEP_QUEUE, with beat's other housekeeping), so slow
deliveries holding every delivery worker cannot stall it. It never re-sends a message whose send may
still be running: it releases only claims past their lease, and a delivery's every call ends before
its lease does (pipeline.deliver, protocols.deadline).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations.models import Attempt, Flow, Message
from integrations.pipeline import dispatch
from integrations.pipeline.pause import MESSAGE_NOT_HELD
from integrations.retry import RetryPolicy

logger = logging.getLogger(__name__)

Status = Message.Status
WORKER_LOST = "pipeline.WorkerLost"


def messages_sweep(*, batch: int | None = None) -> dict[str, int]:
    """Re-queue what may have been lost; the database, not the broker, holds the schedule.

    1. Claims past their lease (a killed worker) go back to retrying, with an interrupted attempt,
       which counts like any other attempt: past the flow's max_attempts the message is dead, so a
       message that kills its worker every time does not come back for ever. The lost worker may
       have held its flow's drain task too (unacknowledged, the broker returns it only after its
       visibility timeout), so a drained flow with a released claim gets a new drain now.
    2. Deliverable messages that are due and not queued recently are queued again.
    3. A full batch queues another sweep, so a large backlog drains without a long task.
    """
    batch = batch or settings.ICBRIDGE_SWEEP_BATCH
    now = timezone.now()
    # Reads the message_leased partial index.
    stuck = list(
        Message.objects.filter(status=Status.DELIVERING, lease_expires_at__lt=now).values_list(
            "pk", "lease_expires_at", "attempts", "flow__retry_policy", "flow_id"
        )[:batch]
    )
    lost_flows: set[int] = set()
    for pk, lease, attempts, retry_policy, flow_id in stuck:
        number = attempts + 1
        try:
            policy = RetryPolicy.from_data(retry_policy or {})
        except ValidationError:
            policy = RetryPolicy.from_data({})
        exhausted = policy.exhausted(number)
        if exhausted:
            status, outcome, next_at = Status.DEAD, Attempt.Outcome.DEAD, None
            text = (
                f"The worker delivering this message stopped before it finished, on attempt {number} "
                f"of {policy.max_attempts}: dead."
            )
        else:
            status, outcome = Status.RETRYING, Attempt.Outcome.INTERRUPTED
            next_at = now + timedelta(seconds=policy.delay_after(number))
            text = "The worker delivering this message stopped before it finished; retrying."
        with transaction.atomic():
            # Fenced like a worker's outcome: a worker that finishes late finds its claim gone.
            if Message.objects.filter(pk=pk, status=Status.DELIVERING, lease_expires_at=lease).update(
                status=status,
                lease_expires_at=None,
                next_attempt_at=next_at,
                attempts=F("attempts") + 1,
                last_error_class=WORKER_LOST,
                last_error=text,
            ):
                Attempt.objects.create(
                    message_id=pk,
                    number=number,
                    started_at=lease,
                    outcome=outcome,
                    error_class=WORKER_LOST,
                    error_text="Lease expired: the worker was lost or hung."
                    + (" Attempts exhausted." if exhausted else ""),
                )
                lost_flows.add(flow_id)
    for flow in Flow.objects.select_related("target").filter(pk__in=lost_flows, enabled=True):
        if dispatch.drains(flow):
            dispatch.queue_drain_task(flow_id=flow.pk)
    requeue_before = now - timedelta(seconds=settings.ICBRIDGE_REQUEUE_AFTER_SECONDS)
    due = list(
        Message.objects.filter(status__in=Message.DELIVERABLE, next_attempt_at__lte=now, flow__enabled=True)
        .filter(MESSAGE_NOT_HELD)  # a paused flow or system holds its messages (pipeline.pause)
        .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=requeue_before))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:batch]
    )
    if due:
        Message.objects.filter(pk__in=due).update(queued_at=now)
        for pk in due:
            dispatch.queue_process(message_id=pk)
    if len(due) == batch or len(stuck) == batch:
        dispatch.queue_sweep()
    if due or stuck:
        logger.info("sweeper requeued %d due and released %d stuck messages", len(due), len(stuck))
    return {"requeued": len(due), "released": len(stuck)}
