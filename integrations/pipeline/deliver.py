"""Deliver: claim a message, send it to the target, and write its outcome.

A Delivery is one claimed message on its way: it holds the lease (the claim's fencing token),
when and how long the try ran, the record's link and the payload's hash. Every outcome it writes
is fenced: the row changes only while status=DELIVERING and lease_expires_at=lease, so a worker
whose claim the sweeper has released writes nothing.

A message is never in flight twice:
1. The claim's lease is the target's delivery budget (the governor's longest wait plus the System's
   timeout) plus ICBRIDGE_LEASE_MARGIN_SECONDS; the delivery's deadline is the budget alone.
2. Every call made for the delivery, body included, ends by that deadline (protocols.deadline): a
   total per call, not per read. A send that would start after it is not sent.
3. Before the send the lease is renewed with a fenced UPDATE if preparing used part of it; a claim
   the sweeper has meanwhile released is dropped unsent.
4. The sweeper releases only claims past their lease, so by then every send of the claim is over.

An attempt is counted when its Attempt row is written (attempts + 1 in the same fenced UPDATE).
Every failure writes one, in preparation too (a mapping error, a source that cannot answer, a
crash): a retry that fails again shows it. What writes no row counts none: a skip, a record busy
with another worker. A failure is classified once: rejected (failed at once, for an operator) or
transient (retried per the flow's policy, then dead); nothing retries without end.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from integrations import errors
from integrations.models import Flow, Message, RecordLink
from integrations.pipeline import dispatch, prepare
from integrations.pipeline.batch_outcomes import finish_delivered_many
from integrations.pipeline.delivery import (  # noqa: F401 - the stage's API
    RENEW_SLACK_SECONDS,
    Delivery,
    delivery_budget,
    describe,
    lease_seconds,
)
from integrations.pipeline.pause import NOT_HELD
from integrations.protocols.deadline import deadline_until
from integrations.protocols.transport import DeliveryRequest, DeliveryResult
from integrations.systems import get_connector

logger = logging.getLogger(__name__)

Status = Message.Status

# --- the services -----------------------------------------------------------------------------


def message_process(*, message_id: int) -> int:
    """Carry one message, and any due companions of its flow, as far as they can go now.

    1. Claim it with one conditional UPDATE, so only one worker handles it, and only when due.
       A target that takes batches gets up to batch_size due messages of the same flow in
       one call; their own tasks then find nothing left to do.
    2. Prepare each (integrations.pipeline.prepare): complete a truncated event, screen filtered
       events and echoes, fetch what key-only events name, map through the flow's mapping.
    3. Deliver under per-record locks and record each attempt and its outcome.

    Returns how many messages this call claimed.
    """
    message = _messages().filter(pk=message_id).first()
    if message is None or message.status not in Message.DELIVERABLE:
        return 0  # done, claimed elsewhere, or purged by retention
    if not message.flow.enabled or message.flow.is_held:
        return 0  # disabled or paused: held; the sweeper picks it up once enabled and resumed (pipeline.pause)
    first, *companions = _with_companions(message)
    # The message itself as claim() takes it; its companions with one UPDATE for the batch.
    claimed = [delivery for delivery in [Delivery.claim(first)] if delivery] + Delivery.claim_many(companions)
    try:
        ready = _prepared(claimed)
        if ready:
            with _record_locks(ready) as (free, busy):
                for delivery in busy:
                    delivery.release_busy()
                if free:
                    _send(free)
    except Exception as exc:
        # A crash outside the classified paths (the database, a bug): end every claim still held, so no
        # companion of the batch waits for its lease; then let the task fail loudly.
        for delivery in claimed:
            delivery.abandon(exc)
        raise
    return len(claimed)


def flow_drain(*, flow_id: int, max_batches: int = 20) -> int:
    """Deliver a flow's due messages batch by batch until none are left; returns how many were claimed.

    1. Clear the flow's drain key, then take its oldest due message (the order that keeps ingest
       from missing a message, see integrations.pipeline.dispatch) and process it with companions.
    2. A full first batch queues a sibling drain, so a backlog gets as many workers as are free.
    3. After max_batches the drain queues its successor instead of running on.
    """
    flow = Flow.objects.select_related("target").filter(NOT_HELD, pk=flow_id, enabled=True).first()
    if flow is None:
        return 0
    claimed = 0
    for batch in range(max_batches):
        dispatch.drain_look(flow_id)
        oldest = (
            Message.objects.filter(flow_id=flow_id, status__in=Message.DELIVERABLE, next_attempt_at__lte=timezone.now())
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)
            .first()
        )
        if oldest is None:
            return claimed
        count = message_process(message_id=oldest)
        claimed += count
        if batch == 0 and count >= flow.target.batch_size:
            dispatch.queue_drain_task(flow_id=flow_id)
    dispatch.queue_drain_task(flow_id=flow_id)
    return claimed


def _messages():  # noqa: ANN202 - a queryset
    return Message.objects.select_related("flow__source", "flow__target", "flow__company_link")


def _with_companions(message: Message) -> list[Message]:
    target = message.flow.target
    if target.batch_size <= 1 or not get_connector(target).batch_capable:
        return [message]
    # Reads the message_due partial index; racing workers may pick the same rows, the claim decides.
    companions = list(
        Message.objects.filter(flow=message.flow, status__in=Message.DELIVERABLE, next_attempt_at__lte=timezone.now())
        .exclude(pk=message.pk)
        .order_by("next_attempt_at")[: target.batch_size - 1]
    )
    # One flow for the batch: not a copy of the flow, its systems and their JSON per companion row
    # (select_related's decoding of those took a third of a worker's time on batches of 200).
    for companion in companions:
        companion.flow = message.flow
    return [message, *companions]


def _lock_key(message: Message) -> int | None:
    if connection.vendor != "postgresql" or not message.source_record_key:
        return None  # SQLite runs one writer at a time anyway
    digest = hashlib.blake2b(f"{message.flow_id}:{message.source_record_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def _record_locks(deliveries: list[Delivery]) -> Iterator[tuple[list[Delivery], list[Delivery]]]:
    """Serialise deliveries of one source record, so an older event can't overtake a newer one.

    PostgreSQL session advisory locks, taken and released for the whole batch in one query each;
    they die with the worker's connection, so a killed worker never leaves one behind. Two
    messages of one record in one batch: the first goes, the second waits its turn.
    """
    keys = {id(delivery): _lock_key(delivery.message) for delivery in deliveries}
    wanted = sorted({key for key in keys.values() if key is not None})
    acquired: set[int] = set()
    if wanted:
        with connection.cursor() as cursor:
            cursor.execute("SELECT k FROM unnest(%s::bigint[]) AS k WHERE pg_try_advisory_lock(k)", [wanted])
            acquired = {row[0] for row in cursor.fetchall()}
    free: list[Delivery] = []
    busy: list[Delivery] = []
    taken: set[int] = set()
    for delivery in deliveries:
        key = keys[id(delivery)]
        if key is None or (key in acquired and key not in taken):
            free.append(delivery)
            if key is not None:
                taken.add(key)
        else:
            busy.append(delivery)
    try:
        yield free, busy
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(k) FROM unnest(%s::bigint[]) AS k", [sorted(acquired)])


def _send(deliveries: list[Delivery]) -> None:
    """Skip what needs no write, send the rest in one call (one record, or a batch), record each outcome."""
    flow = deliveries[0].message.flow
    source_keys = [d.message.source_record_key for d in deliveries if d.message.source_record_key]
    links = {link.source_key: link for link in RecordLink.objects.filter(flow=flow, source_key__in=source_keys)}
    to_send: list[Delivery] = []
    requests: list[DeliveryRequest] = []
    for delivery in deliveries:
        delivery.link = links.get(delivery.message.source_record_key)
        try:
            delivery.payload_hash = prepare.content_hash(delivery.message.payload_out)
            if reason := delivery.skip_reason():
                delivery.skip(reason)
                continue
            request = delivery.request()
        except Exception as exc:  # noqa: BLE001 - a payload the pipeline cannot carry: this one alone fails
            delivery.fail_preparing(exc)
            continue
        to_send.append(delivery)
        requests.append(request)
    # Preparing the batch may have used part of the claims' budget: renew them, fenced; a lost claim stays unsent.
    held = _renewed(to_send)
    if len(held) != len(to_send):
        requests = [request for delivery, request in zip(to_send, requests, strict=True) if delivery in held]
        to_send = held
    if not to_send:
        return
    connector = get_connector(flow.target)
    for delivery in to_send:
        delivery.start()  # the attempt is the call to the target
    try:
        # Every call of this send ends before the earliest lease of the batch (protocols.deadline).
        with deadline_until(min(delivery.deadline for delivery in to_send)):
            outcomes = [connector.deliver(requests[0])] if len(requests) == 1 else connector.deliver_many(requests)
            if len(outcomes) != len(requests):
                raise RuntimeError(f"{type(connector).__name__} answered {len(outcomes)} of {len(requests)} records")
    except errors.ConnectorError as exc:
        outcomes = [exc] * len(requests)
    except Exception as exc:  # a bug or a poison message: retried like a transient error, then dead
        logger.exception("crash delivering %d message(s) of flow %s", len(requests), flow.slug)
        # One poison record must not take its batch down with it: try them one by one.
        with deadline_until(min(delivery.deadline for delivery in to_send)):
            outcomes = [exc] if len(requests) == 1 else [_deliver_alone(connector, r, flow) for r in requests]
    delivered: list[tuple[Delivery, DeliveryResult]] = []
    for delivery, outcome in zip(to_send, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            delivery.fail(outcome)
        else:
            delivered.append((delivery, outcome))
    if delivered:
        finish_delivered_many(delivered)  # one transaction for the batch's outcomes, not one per message


def _prepared(claimed: list[Delivery]) -> list[Delivery]:
    """Prepare each claimed delivery; the ones left to deliver.

    Preparing a batch of hundreds outlasts RENEW_SLACK_SECONDS: when the next one is short of its
    budget, the claims of all still to prepare are renewed with one fenced UPDATE (_renewed), not one
    UPDATE each in Delivery.prepare; a claim lost meanwhile is dropped unprepared, as prepare would.
    """
    pending = list(claimed)
    ready: list[Delivery] = []
    slack = RENEW_SLACK_SECONDS
    while pending:
        if pending[0].is_short(slack):
            started = time.monotonic()
            pending = _renewed(pending)
            # The renewed deadlines count from before the UPDATE: one that outlasts the slack (1,000 rows on a
            # loaded box: about a second) left the batch short again at once, so every message renewed the
            # whole batch once more. Wait for the next renewal at least twice as long as this one took (at most
            # half the budget, so a batch still prepares with its claims' deadlines ahead).
            took = time.monotonic() - started
            slack = min(max(RENEW_SLACK_SECONDS, 2 * took), delivery_budget(claimed[0].message.flow) / 2)
            if not pending:
                break
        delivery = pending.pop(0)
        if delivery.prepare(renew=False):  # renewed above for the batch, not with an UPDATE per message
            ready.append(delivery)
    return ready


def _renewed(deliveries: list[Delivery]) -> list[Delivery]:
    """The deliveries whose claims still hold, each with its whole budget again: one fenced UPDATE for the batch."""
    short = [delivery for delivery in deliveries if delivery.is_short()]
    if not short:
        return deliveries
    flow = short[0].message.flow
    clock = time.monotonic()
    lease = timezone.now() + timedelta(seconds=lease_seconds(flow))
    # One term per lease, not per claim: a batch's companions share the lease of their claim_many (and of each
    # renewal), so this stays a few ANDs of pk IN (…); an OR of a term per row made a batch of 1,000 renew
    # with 1,000-term UPDATEs, slower than the slack, so every prepared message renewed the batch again.
    by_lease: dict[datetime, list[int]] = {}
    for delivery in short:
        by_lease.setdefault(delivery.lease, []).append(delivery.message.pk)
    fence = Q()
    for held_lease, ids in by_lease.items():
        fence |= Q(pk__in=ids, lease_expires_at=held_lease)
    renewed = Message.objects.filter(fence, status=Status.DELIVERING).update(lease_expires_at=lease)
    if renewed == len(short):
        kept = short
    else:
        ids = {d.message.pk for d in short}
        held = set(Message.objects.filter(pk__in=ids, lease_expires_at=lease).values_list("pk", flat=True))
        kept = [delivery for delivery in short if delivery.message.pk in held]
    for delivery in kept:
        delivery.lease = delivery.message.lease_expires_at = lease
        delivery.deadline = clock + delivery_budget(flow)
    lost = {id(delivery) for delivery in short} - {id(delivery) for delivery in kept}
    if lost:
        logger.warning("%d claim(s) of flow %s lost before the send; not sent", len(lost), flow.slug)
    return [delivery for delivery in deliveries if id(delivery) not in lost]


def _deliver_alone(connector: Any, request: DeliveryRequest, flow: Flow) -> DeliveryResult | BaseException:
    try:
        return connector.deliver(request)
    except errors.ConnectorError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - classified by the caller like any crash
        logger.exception("crash delivering %s of flow %s on its own", request.idempotency_key, flow.slug)
        return exc
