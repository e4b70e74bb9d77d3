"""The pipeline: transform and deliver one message, and sweep for due and stuck ones."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations import errors, mapping, tasks
from integrations.ingress import events
from integrations.models import Attempt, Flow, Message, RecordLink
from integrations.pipeline import dispatch
from integrations.protocols.transport import DeliveryRequest, DeliveryResult
from integrations.retry import RetryPolicy
from integrations.scenarios import chains
from integrations.systems import get_connector

logger = logging.getLogger(__name__)

Status = Message.Status
# A message whose record another worker is delivering waits this long before trying again.
RECORD_BUSY_DELAY = timedelta(seconds=1)


def content_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def mapping_context(flow: Flow) -> dict[str, Any]:
    return flow.company_link.context_for(flow.source) if flow.company_link else {}


@dataclass
class Claimed:
    """A message this worker holds for delivery; the lease end is its claim token."""

    message: Message
    lease: datetime
    link: RecordLink | None = None
    payload_hash: str = ""


def message_process(*, message_id: int) -> int:
    """Carry one message, and any due companions of its flow, as far as they can go now.

    1. Claim it with one conditional UPDATE, so only one worker handles it, and only when due.
       A target that takes batches gets up to batch_size due messages of the same flow in
       one call; their own tasks then find nothing left to do.
    2. Prepare each: complete a truncated event from the source, transform payload_in through
       the flow's mapping, skip filtered events and echoes of our own writes.
    3. Deliver under per-record locks and record each attempt and its outcome.

    Returns how many messages this call claimed.
    """
    message = _messages().filter(pk=message_id).first()
    if message is None or message.status not in Message.DELIVERABLE:
        return 0  # done, claimed elsewhere, or purged by retention
    if not message.flow.enabled:
        return 0  # paused: the sweeper picks it up again once the flow is enabled
    claimed = [item for item in map(_claim, _with_companions(message)) if item]
    ready = [item for item in claimed if _prepare(item)]
    if ready:
        with _record_locks(ready) as (free, busy):
            for item in busy:
                _release_busy(item)
            if free:
                _deliver(free)
    return len(claimed)


def flow_drain(*, flow_id: int, max_batches: int = 20) -> int:
    """Deliver a flow's due messages batch by batch until none are left; returns how many were claimed.

    1. Clear the flow's drain key, then take its oldest due message (the order that keeps ingest
       from missing a message, see integrations.pipeline.dispatch) and process it with companions.
    2. A full first batch queues a sibling drain, so a backlog gets as many workers as are free.
    3. After max_batches the drain queues its successor instead of running on.
    """
    flow = Flow.objects.select_related("target").filter(pk=flow_id, enabled=True).first()
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
            tasks.drain_flow.delay(flow_id)
    tasks.drain_flow.delay(flow_id)
    return claimed


def _messages():  # noqa: ANN202 - a queryset
    return Message.objects.select_related("flow__source", "flow__target", "flow__company_link")


def _with_companions(message: Message) -> list[Message]:
    target = message.flow.target
    if target.batch_size <= 1 or not get_connector(target).batch_capable:
        return [message]
    # Reads the message_due partial index; racing workers may pick the same rows, the claim decides.
    companions = (
        _messages()
        .filter(flow=message.flow, status__in=Message.DELIVERABLE, next_attempt_at__lte=timezone.now())
        .exclude(pk=message.pk)
        .order_by("next_attempt_at")[: target.batch_size - 1]
    )
    return [message, *companions]


def _claim(message: Message) -> Claimed | None:
    """Take the message; the lease end doubles as this worker's claim token."""
    now = timezone.now()
    lease = now + timedelta(seconds=message.flow.target.timeout_seconds + settings.ICBRIDGE_LEASE_MARGIN_SECONDS)
    claimed = (
        Message.objects.filter(pk=message.pk, status__in=Message.DELIVERABLE)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(status=Status.DELIVERING, lease_expires_at=lease, queued_at=None, attempts=F("attempts") + 1)
    )
    if claimed != 1:
        return None
    message.status = Status.DELIVERING
    message.attempts += 1
    return Claimed(message, lease)


def _prepare(item: Claimed) -> bool:
    """Complete, transform and screen a claimed message; False when it is finished here."""
    message = item.message
    started = timezone.now()
    clock = time.monotonic()
    message.mapping_version = message.flow.mapping_version
    try:
        events.complete_truncated(message=message)
        prepared = chains.message_prepare(message=message)
        if prepared.skip_reason:
            _finish(message, item.lease, started, status=Status.SKIPPED, outcome=None, error_text=prepared.skip_reason)
            return False
        message.payload_out = map_payload(message, context=prepared.context)
    except errors.MappingError as exc:  # not a delivery try: no attempt is counted or recorded
        message.attempts -= 1
        _finish(message, item.lease, started, status=Status.FAILED, outcome=None, error=exc, attempts=message.attempts)
        return False
    except errors.ConnectorError as exc:  # the source could not give the full record of a truncated event
        _handle_error(message, item.lease, started, clock, exc, None)
        return False
    return True


def map_payload(message: Message, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """payload_in through the flow's current mapping; raises MappingError naming field, path and value."""
    flow = message.flow
    return mapping.apply(
        spec=flow.mapping_spec, payload=message.payload_in, context={**mapping_context(flow), **(context or {})}
    )


def _lock_key(message: Message) -> int | None:
    if connection.vendor != "postgresql" or not message.source_record_key:
        return None  # SQLite runs one writer at a time anyway
    digest = hashlib.blake2b(f"{message.flow_id}:{message.source_record_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def _record_locks(items: list[Claimed]) -> Iterator[tuple[list[Claimed], list[Claimed]]]:
    """Serialise deliveries of one source record, so an older event can't overtake a newer one.

    PostgreSQL session advisory locks, taken and released for the whole batch in one query each;
    they die with the worker's connection, so a killed worker never leaves one behind. Two
    messages of one record in one batch: the first goes, the second waits its turn.
    """
    keys = {id(item): _lock_key(item.message) for item in items}
    wanted = sorted({key for key in keys.values() if key is not None})
    acquired: set[int] = set()
    if wanted:
        with connection.cursor() as cursor:
            cursor.execute("SELECT k FROM unnest(%s::bigint[]) AS k WHERE pg_try_advisory_lock(k)", [wanted])
            acquired = {row[0] for row in cursor.fetchall()}
    free: list[Claimed] = []
    busy: list[Claimed] = []
    taken: set[int] = set()
    for item in items:
        key = keys[id(item)]
        if key is None or (key in acquired and key not in taken):
            free.append(item)
            if key is not None:
                taken.add(key)
        else:
            busy.append(item)
    try:
        yield free, busy
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(k) FROM unnest(%s::bigint[]) AS k", [sorted(acquired)])


def _release_busy(item: Claimed) -> None:
    """Give the claim back without counting an attempt: the record is being delivered by another worker."""
    Message.objects.filter(pk=item.message.pk, status=Status.DELIVERING, lease_expires_at=item.lease).update(
        status=Status.TRANSFORMED,
        payload_out=item.message.payload_out,
        mapping_version=item.message.mapping_version,
        attempts=F("attempts") - 1,
        lease_expires_at=None,
        next_attempt_at=timezone.now() + RECORD_BUSY_DELAY,
    )


def _delivery_request(item: Claimed) -> DeliveryRequest:
    message, flow = item.message, item.message.flow
    overwrite = message.force_overwrite or (
        flow.master == Flow.Master.SOURCE and flow.conflict_policy == Flow.ConflictPolicy.MASTER_WINS
    )
    return DeliveryRequest(
        entity=flow.target_entity,
        operation=flow.target_operation,
        payload=message.payload_out,
        key={field: message.payload_out.get(field) for field in flow.target_key_fields},
        idempotency_key=message.idempotency_key,
        correlation_id=message.correlation_id,
        company=mapping_context(flow).get("target_company", ""),
        etag="" if overwrite or item.link is None else item.link.target_etag,
        options=flow.options,
        exists=bool(item.link and item.link.target_key),
    )


def _deliver(items: list[Claimed]) -> None:
    """Skip what needs no write, send the rest in one call (one record, or a batch), record each outcome."""
    flow = items[0].message.flow
    started = timezone.now()
    source_keys = [item.message.source_record_key for item in items if item.message.source_record_key]
    links = {link.source_key: link for link in RecordLink.objects.filter(flow=flow, source_key__in=source_keys)}
    to_send: list[Claimed] = []
    for item in items:
        item.link = links.get(item.message.source_record_key)
        item.payload_hash = content_hash(item.message.payload_out)
        reason = _skip_reason(item.message, item.link, item.payload_hash)
        if reason:
            _finish(item.message, item.lease, started, status=Status.SKIPPED, outcome=None, error_text=reason)
        else:
            to_send.append(item)
    if not to_send:
        return
    requests = [_delivery_request(item) for item in to_send]
    connector = get_connector(flow.target)
    clock = time.monotonic()
    try:
        outcomes = [connector.deliver(requests[0])] if len(requests) == 1 else connector.deliver_many(requests)
        if len(outcomes) != len(requests):
            raise RuntimeError(f"{type(connector).__name__} answered {len(outcomes)} of {len(requests)} records")
    except errors.ConnectorError as exc:
        outcomes = [exc] * len(requests)
    except Exception as exc:  # a bug or a poison message: retried like a transient error, then dead
        logger.exception("crash delivering %d message(s) of flow %s", len(requests), flow.slug)
        # One poison record must not take its batch down with it: try them one by one.
        outcomes = [exc] if len(requests) == 1 else [_deliver_alone(connector, r, flow) for r in requests]
    for item, outcome in zip(to_send, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            _handle_error(item.message, item.lease, started, clock, outcome, item.link)
        else:
            _finish_delivered(item.message, item.lease, started, clock, outcome, item.link, item.payload_hash)


def _deliver_alone(connector: Any, request: DeliveryRequest, flow: Flow) -> DeliveryResult | BaseException:
    try:
        return connector.deliver(request)
    except errors.ConnectorError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - classified by the caller like any crash
        logger.exception("crash delivering %s of flow %s on its own", request.idempotency_key, flow.slug)
        return exc


def _skip_reason(message: Message, link: RecordLink | None, payload_hash: str) -> str:
    if link is None or message.force_overwrite:
        return ""
    if message.source_version is not None and link.source_version is not None:
        if message.source_version < link.source_version:
            return (
                f"Stale: source version {message.source_version} is older than "
                f"version {link.source_version} already delivered"
            )
    if message.replay_of_id is None and link.content_hash == payload_hash and link.target_key:
        return f"Unchanged: target record {link.target_key} already holds this content"
    return ""


def _finish(
    message: Message,
    lease: datetime,
    started: datetime,
    *,
    status: str,
    outcome: str | None,
    duration_ms: int = 0,
    error: BaseException | None = None,
    error_text: str = "",
    next_attempt_at: datetime | None = None,
    **fields: Any,
) -> bool:
    """Write the outcome only if this worker still holds the claim, with its attempt row."""
    error_class = errors.error_class_name(error) if error else ""
    error_text = error_text or (getattr(error, "message", None) or str(error) if error else "")
    with transaction.atomic():
        updated = Message.objects.filter(pk=message.pk, status=Status.DELIVERING, lease_expires_at=lease).update(
            status=status,
            payload_out=message.payload_out,
            mapping_version=message.mapping_version,
            lease_expires_at=None,
            next_attempt_at=next_attempt_at,
            last_error_class=error_class,
            last_error=error_text,
            **fields,
        )
        if updated != 1:
            logger.warning("message %s: claim lost before the outcome was written", message.pk)
            return False
        if outcome:
            Attempt.objects.create(
                message=message,
                number=message.attempts,
                started_at=started,
                duration_ms=duration_ms,
                outcome=outcome,
                request_summary=getattr(error, "request_summary", ""),
                response_status=getattr(error, "status_code", None),
                response_excerpt=getattr(error, "response_excerpt", "") if error else "",
                error_class=error_class,
                error_text=error_text,
            )
    return True


def _finish_delivered(
    message: Message,
    lease: datetime,
    started: datetime,
    clock: float,
    result: DeliveryResult,
    link: RecordLink | None,
    payload_hash: str,
    *,
    outcome: str = Attempt.Outcome.DELIVERED,
) -> None:
    now = timezone.now()
    duration_ms = int((time.monotonic() - clock) * 1000)
    with transaction.atomic():
        updated = Message.objects.filter(pk=message.pk, status=Status.DELIVERING, lease_expires_at=lease).update(
            status=Status.DELIVERED,
            payload_out=message.payload_out,
            mapping_version=message.mapping_version,
            lease_expires_at=None,
            next_attempt_at=None,
            target_record_key=result.target_key[:255],
            delivered_at=now,
            last_error_class="",
            last_error="",
            force_overwrite=False,
        )
        if updated != 1:
            logger.warning("message %s: claim lost before delivery was recorded", message.pk)
            return
        Attempt.objects.create(
            message=message,
            number=message.attempts,
            started_at=started,
            duration_ms=duration_ms,
            outcome=outcome,
            request_summary=result.request_summary,
            response_status=result.status_code,
            response_excerpt=result.response_excerpt[:2000],
        )
        if message.source_record_key:
            _link_record(message, link, result.target_key, result.etag, payload_hash, now)
    logger.info(
        "message %s delivered to %s as %s in %d ms",
        message.pk,
        message.flow.target.name,
        result.target_key,
        duration_ms,
        extra={"message_id": message.pk, "correlation_id": message.correlation_id},
    )


def _link_record(
    message: Message, link: RecordLink | None, target_key: str, etag: str, payload_hash: str, now: datetime
) -> None:
    """Insert or update the cross-reference in one statement; the record lock makes `link` current."""
    versions = [v for v in (message.source_version, link.source_version if link else None) if v is not None]
    values = {
        "target_key": target_key[:255],
        "target_etag": etag[:200],
        "source_version": max(versions) if versions else None,
        "content_hash": payload_hash,
        "correlation_id": message.correlation_id,
        "last_message": message,
        "synced_at": now,
    }
    RecordLink.objects.bulk_create(
        [RecordLink(flow=message.flow, source_key=message.source_record_key, **values)],
        update_conflicts=True,
        unique_fields=["flow", "source_key"],
        update_fields=[*values, "updated_at"],
    )


def _handle_error(
    message: Message,
    lease: datetime,
    started: datetime,
    clock: float,
    exc: BaseException,
    link: RecordLink | None,
) -> None:
    """Turn a classified error into the message's next state, per the flow's policies."""
    flow = message.flow
    duration_ms = int((time.monotonic() - clock) * 1000)
    common = {"duration_ms": duration_ms, "error": exc}
    if isinstance(exc, errors.DuplicateError):
        result = DeliveryResult(
            target_key=exc.existing_key or message.idempotency_key,
            status_code=exc.status_code,
            request_summary=exc.request_summary,
            response_excerpt=exc.response_excerpt,
        )
        _finish_delivered(
            message,
            lease,
            started,
            clock,
            result,
            link,
            content_hash(message.payload_out),
            outcome=Attempt.Outcome.DUPLICATE,
        )
        return
    if isinstance(exc, errors.ConflictError):
        if flow.conflict_policy == Flow.ConflictPolicy.MASTER_WINS and flow.master == Flow.Master.TARGET:
            _finish(
                message,
                lease,
                started,
                status=Status.SKIPPED,
                outcome=Attempt.Outcome.CONFLICT,
                error_text=f"Target changed since the last sync and owns the record; kept its version ({exc.message})",
                duration_ms=duration_ms,
                error=exc,
            )
            return
        _finish(
            message,
            lease,
            started,
            status=Status.CONFLICT,
            outcome=Attempt.Outcome.CONFLICT,
            target_snapshot=exc.current,
            **common,
        )
        return
    if isinstance(exc, (errors.RejectedError, errors.AuthError)):
        _finish(message, lease, started, status=Status.FAILED, outcome=Attempt.Outcome.FAILED, **common)
        return
    # Transient, throttled, or an unexpected crash: retry per the flow's policy.
    policy = RetryPolicy.from_data(flow.retry_policy)
    if policy.exhausted(message.attempts):
        _finish(message, lease, started, status=Status.DEAD, outcome=Attempt.Outcome.DEAD, **common)
        return
    retry_after = exc.retry_after if isinstance(exc, errors.ThrottledError) else None
    delay = policy.delay_after(message.attempts, retry_after)
    _finish(
        message,
        lease,
        started,
        status=Status.RETRYING,
        outcome=Attempt.Outcome.RETRY,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        **common,
    )


def messages_sweep(*, batch: int | None = None) -> dict[str, int]:
    """Re-queue what may have been lost; the database, not the broker, holds the schedule.

    1. Claims past their lease (a killed worker) go back to retrying, with an interrupted attempt.
    2. Deliverable messages that are due and not queued recently are queued again.
    3. A full batch queues another sweep, so a large backlog drains without a long task.
    """
    batch = batch or settings.ICBRIDGE_SWEEP_BATCH
    now = timezone.now()
    stuck = list(
        Message.objects.filter(status=Status.DELIVERING, lease_expires_at__lt=now).values_list(
            "pk", "lease_expires_at", "attempts"
        )[:batch]
    )
    for pk, lease, attempts in stuck:
        with transaction.atomic():
            if Message.objects.filter(pk=pk, status=Status.DELIVERING, lease_expires_at=lease).update(
                status=Status.RETRYING,
                lease_expires_at=None,
                next_attempt_at=now,
                last_error_class="pipeline.WorkerLost",
                last_error="The worker delivering this message stopped before it finished; retrying.",
            ):
                Attempt.objects.create(
                    message_id=pk,
                    number=attempts,
                    started_at=lease,
                    outcome=Attempt.Outcome.INTERRUPTED,
                    error_class="pipeline.WorkerLost",
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
            tasks.process_message.delay(pk)
    if len(due) == batch or len(stuck) == batch:
        tasks.sweep_messages.delay()
    if due or stuck:
        logger.info("sweeper requeued %d due and released %d stuck messages", len(due), len(stuck))
    return {"requeued": len(due), "released": len(stuck)}
