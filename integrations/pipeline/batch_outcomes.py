"""A batch's delivered outcomes, written together: what Delivery.finish_delivered does for one message, for many.

Split from integrations.pipeline.delivery (the one message's life) because its SQL is its own: one fenced
lock, one UPDATE of every row's outcome, one INSERT of the attempts, one upsert of the links.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations.models import Attempt, Message, RecordLink
from integrations.pipeline import prepare
from integrations.pipeline.delivery import LINK_FIELDS, Delivery, log_delivered
from integrations.protocols.transport import DeliveryResult

logger = logging.getLogger(__name__)
Status = Message.Status


def _write_delivered(kept: list[tuple[Delivery, DeliveryResult]], now: datetime) -> None:
    """One UPDATE of the delivered rows (locked and fenced by the caller), what Delivery._write sets for each.

    SQL of our own: QuerySet.bulk_update builds a CASE per row and column in Python, which took half a
    worker's time for a batch of 200; unnest() passes each row's own values as arrays instead. SQLite
    (`make run`'s embedded database) has no unnest(): one UPDATE a row there.
    """
    if connection.vendor != "postgresql":
        _write_delivered_portably(kept, now)
        return
    meta = Message._meta
    column = {name: connection.ops.quote_name(meta.get_field(name).column) for name in _DELIVERED_COLUMNS}
    encoder = meta.get_field("payload_out").encoder
    ids, keys, payloads, versions = [], [], [], []
    for delivery, result in kept:
        message = delivery.message
        ids.append(message.pk)
        keys.append(result.target_key[:255])
        payloads.append(None if message.payload_out is None else json.dumps(message.payload_out, cls=encoder))
        versions.append(message.mapping_version)
    sql = (
        f"UPDATE {connection.ops.quote_name(meta.db_table)} AS m SET "
        f"{column['status']} = %s, {column['lease_expires_at']} = NULL, {column['next_attempt_at']} = NULL, "
        f"{column['last_error_class']} = '', {column['last_error']} = '', "
        f"{column['attempts']} = m.{column['attempts']} + 1, {column['delivered_at']} = %s, "
        f"{column['force_overwrite']} = false, {column['payload_out']} = v.payload::jsonb, "
        f"{column['mapping_version']} = v.version, {column['target_record_key']} = v.key "
        "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::integer[]) AS v(id, key, payload, version) "
        f"WHERE m.{connection.ops.quote_name(meta.pk.column)} = v.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [Status.DELIVERED, now, ids, keys, payloads, versions])


def _write_delivered_portably(kept: list[tuple[Delivery, DeliveryResult]], now: datetime) -> None:
    for delivery, result in kept:
        message = delivery.message
        Message.objects.filter(pk=message.pk).update(
            status=Status.DELIVERED,
            lease_expires_at=None,
            next_attempt_at=None,
            last_error_class="",
            last_error="",
            attempts=F("attempts") + 1,
            delivered_at=now,
            force_overwrite=False,
            payload_out=message.payload_out,
            mapping_version=message.mapping_version,
            target_record_key=result.target_key[:255],
        )


_DELIVERED_COLUMNS = (
    "status",
    "payload_out",
    "mapping_version",
    "lease_expires_at",
    "next_attempt_at",
    "last_error_class",
    "last_error",
    "attempts",
    "target_record_key",
    "delivered_at",
    "force_overwrite",
)


def finish_delivered_many(items: list[tuple[Delivery, DeliveryResult]]) -> None:
    """Record many deliveries as finish_delivered does each, in one transaction of four statements.

    1. Lock the rows whose claims still hold (status delivering, the delivery's lease): the fence.
    2. One UPDATE of their outcomes (attempts + 1), one INSERT of their Attempt rows, one upsert of their
       RecordLinks. The record locks of the batch (deliver._record_locks) make each source key appear
       once, and make each delivery's `link` current.
    A claim lost meanwhile writes nothing, as in Delivery._write.
    """
    if len(items) == 1:
        items[0][0].finish_delivered(items[0][1])
        return
    now = timezone.now()
    fence = Q()
    for delivery, _ in items:
        fence |= Q(pk=delivery.message.pk, lease_expires_at=delivery.lease)
    kept: list[tuple[Delivery, DeliveryResult]] = []
    with transaction.atomic():
        held = set(
            Message.objects.select_for_update().filter(fence, status=Status.DELIVERING).values_list("pk", flat=True)
        )
        kept = [(delivery, result) for delivery, result in items if delivery.message.pk in held]
        if len(kept) != len(items):
            logger.warning("%d claim(s) lost before the outcome was written", len(items) - len(kept))
        attempts, links = [], []
        for delivery, result in kept:
            message = delivery.message
            if not delivery.payload_hash:
                delivery.payload_hash = prepare.content_hash(message.payload_out)
            attempts.append(
                Attempt(
                    message=message,
                    number=delivery.number,
                    started_at=delivery.started,
                    duration_ms=delivery.duration_ms,
                    outcome=Attempt.Outcome.DELIVERED,
                    request_summary=result.request_summary or "",
                    response_status=result.status_code,
                    response_excerpt=(result.response_excerpt or "")[:2000],
                )
            )
            if message.source_record_key:
                links.append(delivery.link_row(result.target_key, result.etag, now))
        if kept:
            _write_delivered(kept, now)
            Attempt.objects.bulk_create(attempts)
        if links:
            RecordLink.objects.bulk_create(
                links,
                update_conflicts=True,
                unique_fields=["flow", "source_key"],
                update_fields=[*LINK_FIELDS, "updated_at"],
            )
    for delivery, result in kept:
        message = delivery.message
        message.status = Status.DELIVERED
        message.attempts += 1
        message.lease_expires_at = None
        message.target_record_key = result.target_key[:255]
        log_delivered(message, result.target_key, delivery.duration_ms)
