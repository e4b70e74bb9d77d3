"""Retention: blank the payloads of finished messages after a configurable number of days.

The Message row stays (status, keys, correlation id, timings), and so do its attempts and the
audit trail: only the business data is dropped.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from integrations.models import Message

logger = logging.getLogger(__name__)


def payloads_purge(*, days: int | None = None, batch: int = 1000) -> int:
    """Blank the payloads (in, fetched, out, snapshot) of terminal messages older than `days`; returns the count.

    Works in primary-key batches so one run never holds a long lock on a large table; rows
    already blanked are skipped, so a second run finds nothing to do. Only final messages are touched:
    the UPDATE says status IN (final) again, so a message an operator retried (or replayed) between the
    batch's SELECT and its UPDATE keeps its payload (PostgreSQL re-checks the condition on the row it waited for).
    """
    days = settings.ICBRIDGE_PAYLOAD_RETENTION_DAYS if days is None else days
    if days < 1:
        raise ValueError(f"payload retention must be at least 1 day, got {days}")
    cutoff = timezone.now() - timedelta(days=days)
    purged = 0
    stale = (
        Message.objects.filter(status__in=Message.TERMINAL, created_at__lt=cutoff)
        .filter(
            ~Q(payload_in={})
            | Q(payload_fetched__isnull=False)
            | Q(payload_out__isnull=False)
            | Q(target_snapshot__isnull=False)
        )
        .order_by("pk")
    )
    while True:
        ids = list(stale.values_list("pk", flat=True)[:batch])
        if not ids:
            break
        purged += Message.objects.filter(pk__in=ids, status__in=Message.TERMINAL, created_at__lt=cutoff).update(
            payload_in={}, payload_fetched=None, payload_out=None, target_snapshot=None, headers={}
        )
    if purged:
        logger.info("retention: blanked the payloads of %d message(s) older than %d days", purged, days)
    return purged
