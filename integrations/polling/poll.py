"""Polling sources that cannot push: each kind's reader turns changes since a cursor into Messages.

The reader is the system's own (its descriptor's `poller`, e.g. AX 2012 getChangedKeys + read,
F&O's change-tracked export); the cursor lease, ingest and error bookkeeping are here, once.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from integrations import errors, systems
from integrations.models import Flow
from integrations.pipeline.ingest import message_ingest
from integrations.polling.cursors import cursor_lease
from integrations.protocols.polling import PollBatch

logger = logging.getLogger(__name__)


@dataclass
class PollResult:
    changed_keys: int = 0  # how many changed records the source reported
    messages_created: int = 0
    skipped: bool = False  # another worker is polling this flow right now
    error: str = ""


def poll_flow_ids() -> list[int]:
    """Enabled poll flows of enabled sources whose kind has a poller."""
    return list(
        Flow.objects.filter(
            enabled=True, trigger=Flow.Trigger.POLL, source__kind__in=systems.pollable_kinds(), source__enabled=True
        ).values_list("pk", flat=True)
    )


def poll_by_id(*, flow_id: int) -> PollResult | None:
    """The beat task's entry: poll one flow by id (None if disabled, deleted, or its source is not polled)."""
    flow = Flow.objects.select_related("source", "company_link").filter(pk=flow_id, enabled=True).first()
    if flow is None or systems.poller(flow.source.kind) is None:
        return None
    return flow_poll(flow=flow)


def flow_poll(*, flow: Flow) -> PollResult:
    """Ingest what changed at the flow's source since its cursor.

    1. Lease the flow's cursor (skip if another worker holds it: a poll is already running).
    2. Ask the source's reader for changes since the cursor, less an overlap for commits in flight and
       clock skew; each record's idempotency key holds its version, so a change read twice is stored once.
    3. Only when all were stored, move the cursor to where the reader says the next poll starts; a
       failure leaves it, so the next poll asks again. Leased, not locked: no transaction stays open
       while the source answers (integrations.polling.cursors).
    """
    read = systems.poller(flow.source.kind)
    result = PollResult()
    with cursor_lease(flow) as cursor:
        if cursor is None:
            result.skipped = True
            return result
        started = timezone.now()
        since = None
        if cursor.changed_since:
            since = cursor.changed_since - dt.timedelta(seconds=float(settings.ICBRIDGE_POLL_OVERLAP_SECONDS))
        try:
            batch: PollBatch = read(flow=flow, since=since, started=started)
        except errors.ConnectorError as exc:
            cursor.last_error, cursor.last_polled_at = exc.message[:2000], started
            cursor.save(update_fields=["last_error", "last_polled_at"])
            logger.warning("poll of flow %s failed: %s", flow.slug, exc.message, extra={"flow_id": flow.pk})
            result.error = exc.message
            return result
        for record in batch.records:
            _, created = message_ingest(
                flow=flow,
                payload=record.payload,
                idempotency_key=record.idempotency_key,
                source_record_key=record.source_record_key,
                source_version=record.source_version,
                headers=record.headers,
            )
            result.messages_created += int(created)
        result.changed_keys = batch.changed
        cursor.changed_since = batch.cursor or cursor.changed_since
        cursor.delta_link = cursor.delta_link if batch.token is None else batch.token
        cursor.last_polled_at = started
        cursor.last_keys = batch.changed
        cursor.last_error = ""
        cursor.save(update_fields=["changed_since", "delta_link", "last_polled_at", "last_keys", "last_error"])
    return result
