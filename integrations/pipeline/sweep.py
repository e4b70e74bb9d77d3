"""The sweeper: re-queue due messages and release claims a lost worker left behind (Celery beat)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations.models import Attempt, Message
from integrations.pipeline import dispatch

logger = logging.getLogger(__name__)

Status = Message.Status
WORKER_LOST = "pipeline.WorkerLost"


def messages_sweep(*, batch: int | None = None) -> dict[str, int]:
    """Re-queue what may have been lost; the database, not the broker, holds the schedule.

    1. Claims past their lease (a killed worker) go back to retrying, with an interrupted attempt,
       which counts like any other attempt.
    2. Deliverable messages that are due and not queued recently are queued again.
    3. A full batch queues another sweep, so a large backlog drains without a long task.
    """
    batch = batch or settings.ICBRIDGE_SWEEP_BATCH
    now = timezone.now()
    # Reads the message_leased partial index.
    stuck = list(
        Message.objects.filter(status=Status.DELIVERING, lease_expires_at__lt=now).values_list(
            "pk", "lease_expires_at", "attempts"
        )[:batch]
    )
    for pk, lease, attempts in stuck:
        with transaction.atomic():
            # Fenced like a worker's outcome: a worker that finishes late finds its claim gone.
            if Message.objects.filter(pk=pk, status=Status.DELIVERING, lease_expires_at=lease).update(
                status=Status.RETRYING,
                lease_expires_at=None,
                next_attempt_at=now,
                attempts=F("attempts") + 1,
                last_error_class=WORKER_LOST,
                last_error="The worker delivering this message stopped before it finished; retrying.",
            ):
                Attempt.objects.create(
                    message_id=pk,
                    number=attempts + 1,
                    started_at=lease,
                    outcome=Attempt.Outcome.INTERRUPTED,
                    error_class=WORKER_LOST,
                    error_text="Lease expired: the worker was lost or hung.",
                )
    requeue_before = now - timedelta(seconds=settings.ICBRIDGE_REQUEUE_AFTER_SECONDS)
    due = list(
        Message.objects.filter(status__in=Message.DELIVERABLE, next_attempt_at__lte=now, flow__enabled=True)
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
