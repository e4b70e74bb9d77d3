"""Deliver: claim a message, send it to the target, and write its outcome.

A Delivery is one claimed message on its way: it holds the lease (the claim's fencing token),
when and how long the try ran, the record's link and the payload's hash. Every outcome it writes
is fenced: the row changes only while status=DELIVERING and lease_expires_at=lease, so a worker
whose claim the sweeper has released writes nothing.

An attempt is counted when its Attempt row is written (attempts + 1 in the same fenced UPDATE).
What writes no row counts none: a mapping error, a skip, a record busy with another worker.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations import errors
from integrations.models import Attempt, Flow, Message, RecordLink
from integrations.pipeline import dispatch, prepare
from integrations.protocols.transport import DeliveryRequest, DeliveryResult
from integrations.retry import RetryPolicy
from integrations.systems import get_connector

logger = logging.getLogger(__name__)

Status = Message.Status
# A message whose record another worker is delivering waits this long before trying again.
RECORD_BUSY_DELAY = timedelta(seconds=1)


@dataclass(eq=False)
class Delivery:
    """One message this worker holds for delivery; every write is fenced by its lease."""

    message: Message
    lease: datetime
    started: datetime = field(default_factory=timezone.now)
    clock: float = field(default_factory=time.monotonic)
    link: RecordLink | None = None
    payload_hash: str = ""

    @classmethod
    def claim(cls, message: Message) -> Delivery | None:
        """Take the message with one conditional UPDATE; None when another worker has it or it is not due."""
        now = timezone.now()
        lease = now + timedelta(seconds=message.flow.target.timeout_seconds + settings.ICBRIDGE_LEASE_MARGIN_SECONDS)
        claimed = (
            # attempts as read: the attempt number this claim writes is attempts + 1, so a row another
            # worker moved on meanwhile (finished a try, or an operator reset) is not taken on stale data.
            Message.objects.filter(pk=message.pk, status__in=Message.DELIVERABLE, attempts=message.attempts)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .update(status=Status.DELIVERING, lease_expires_at=lease, queued_at=None)
        )
        if claimed != 1:
            return None
        message.status = Status.DELIVERING
        message.lease_expires_at = lease
        return cls(message, lease)

    @property
    def number(self) -> int:
        """The number of the attempt this delivery writes."""
        return self.message.attempts + 1

    @property
    def duration_ms(self) -> int:
        return int((time.monotonic() - self.clock) * 1000)

    def start(self) -> None:
        """Start the clock of the try (the prepare stage, then the call to the target)."""
        self.started = timezone.now()
        self.clock = time.monotonic()

    # --- the stages ---------------------------------------------------------------------------

    def prepare(self) -> bool:
        """Complete, screen and transform the message; False when it is finished here."""
        message = self.message
        self.start()
        message.mapping_version = message.flow.mapping_version
        try:
            prepared = prepare.message_prepare(message=message)
            if prepared.skip_reason:
                self.skip(prepared.skip_reason)
                return False
            message.payload_out = prepare.map_payload(message, context=prepared.context)
        except errors.MappingError as exc:  # not a delivery try: no attempt row, so none is counted
            self._write(status=Status.FAILED, error=exc)
            return False
        except errors.ConnectorError as exc:  # the source could not give what the event names
            self.fail(exc)
            return False
        return True

    def skip_reason(self) -> str:
        """Why this delivery needs no write: an older version, or content the target already holds."""
        message, link = self.message, self.link
        if link is None or message.force_overwrite:
            return ""
        if message.source_version is not None and link.source_version is not None:
            if message.source_version < link.source_version:
                return (
                    f"Stale: source version {message.source_version} is older than "
                    f"version {link.source_version} already delivered"
                )
        if message.replay_of_id is None and link.content_hash == self.payload_hash and link.target_key:
            return f"Unchanged: target record {link.target_key} already holds this content"
        return ""

    def request(self) -> DeliveryRequest:
        message, flow = self.message, self.message.flow
        overwrite = message.force_overwrite or (
            flow.master == Flow.Master.SOURCE and flow.conflict_policy == Flow.ConflictPolicy.MASTER_WINS
        )
        return DeliveryRequest(
            entity=flow.target_entity,
            operation=flow.target_operation,
            payload=message.payload_out,
            key={name: message.payload_out.get(name) for name in flow.target_key_fields},
            idempotency_key=message.idempotency_key,
            correlation_id=message.correlation_id,
            company=prepare.mapping_context(flow).get("target_company", ""),
            etag="" if overwrite or self.link is None else self.link.target_etag,
            options=flow.opts,
            exists=bool(self.link and self.link.target_key),
        )

    # --- outcomes ----------------------------------------------------------------------------

    def skip(self, reason: str) -> bool:
        """Finish without a write at the target and without an attempt: filtered, echo, stale or unchanged."""
        return self._write(status=Status.SKIPPED, error_text=reason)

    def release_busy(self) -> None:
        """Give the claim back without an attempt: another worker is delivering the same record."""
        message = self.message
        Message.objects.filter(pk=message.pk, status=Status.DELIVERING, lease_expires_at=self.lease).update(
            status=Status.TRANSFORMED,
            payload_out=message.payload_out,
            mapping_version=message.mapping_version,
            lease_expires_at=None,
            next_attempt_at=timezone.now() + RECORD_BUSY_DELAY,
        )

    def finish_delivered(self, result: DeliveryResult, *, outcome: str = Attempt.Outcome.DELIVERED) -> None:
        """Record the delivery, its attempt and the record's cross-reference in one fenced transaction."""
        message = self.message
        now = timezone.now()
        if not self.payload_hash:
            self.payload_hash = prepare.content_hash(message.payload_out)

        def link_record() -> None:
            if message.source_record_key:
                self._link_record(result.target_key, result.etag, now)

        written = self._write(
            status=Status.DELIVERED,
            outcome=outcome,
            result=result,
            on_written=link_record,
            target_record_key=result.target_key[:255],
            delivered_at=now,
            force_overwrite=False,
        )
        if written:
            logger.info(
                "message %s delivered to %s as %s in %d ms",
                message.pk,
                message.flow.target.name,
                result.target_key,
                self.duration_ms,
                extra={"message_id": message.pk, "correlation_id": message.correlation_id},
            )

    def fail(self, exc: BaseException) -> None:
        """Turn a classified error into the message's next state, per the flow's policies."""
        flow = self.message.flow
        if isinstance(exc, errors.DuplicateError):
            result = DeliveryResult(
                target_key=exc.existing_key or self.message.idempotency_key,
                status_code=exc.status_code,
                request_summary=exc.request_summary,
                response_excerpt=exc.response_excerpt,
            )
            self.finish_delivered(result, outcome=Attempt.Outcome.DUPLICATE)
            return
        if isinstance(exc, errors.ConflictError):
            if flow.conflict_policy == Flow.ConflictPolicy.MASTER_WINS and flow.master == Flow.Master.TARGET:
                self._write(
                    status=Status.SKIPPED,
                    outcome=Attempt.Outcome.CONFLICT,
                    error=exc,
                    error_text=(
                        f"Target changed since the last sync and owns the record; kept its version ({exc.message})"
                    ),
                )
                return
            self._write(
                status=Status.CONFLICT, outcome=Attempt.Outcome.CONFLICT, error=exc, target_snapshot=exc.current
            )
            return
        if isinstance(exc, (errors.RejectedError, errors.AuthError)):
            self._write(status=Status.FAILED, outcome=Attempt.Outcome.FAILED, error=exc)
            return
        # Transient, throttled, or an unexpected crash: retry per the flow's policy.
        policy = RetryPolicy.from_data(flow.retry_policy)
        if policy.exhausted(self.number):
            self._write(status=Status.DEAD, outcome=Attempt.Outcome.DEAD, error=exc)
            return
        retry_after = exc.retry_after if isinstance(exc, errors.ThrottledError) else None
        delay = policy.delay_after(self.number, retry_after)
        self._write(
            status=Status.RETRYING,
            outcome=Attempt.Outcome.RETRY,
            error=exc,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
        )

    def _write(
        self,
        *,
        status: str,
        outcome: str | None = None,
        error: BaseException | None = None,
        error_text: str = "",
        result: DeliveryResult | None = None,
        next_attempt_at: datetime | None = None,
        on_written: Callable[[], None] | None = None,
        **fields: Any,
    ) -> bool:
        """Write the outcome while this claim still holds; with an outcome, its Attempt row, counted.

        False (and nothing written) when the claim was lost: the sweeper released it, or it moved on.
        """
        message = self.message
        error_class = errors.error_class_name(error) if error else ""
        error_text = error_text or (getattr(error, "message", None) or str(error) if error else "")
        counted = {"attempts": F("attempts") + 1} if outcome else {}
        with transaction.atomic():
            updated = Message.objects.filter(
                pk=message.pk, status=Status.DELIVERING, lease_expires_at=self.lease
            ).update(
                status=status,
                payload_out=message.payload_out,
                mapping_version=message.mapping_version,
                lease_expires_at=None,
                next_attempt_at=next_attempt_at,
                last_error_class=error_class,
                last_error=error_text,
                **counted,
                **fields,
            )
            if updated != 1:
                logger.warning("message %s: claim lost before the outcome was written", message.pk)
                return False
            if outcome:
                answer: Any = result or error
                Attempt.objects.create(
                    message=message,
                    number=self.number,
                    started_at=self.started,
                    duration_ms=self.duration_ms,
                    outcome=outcome,
                    request_summary=getattr(answer, "request_summary", ""),
                    response_status=getattr(answer, "status_code", None),
                    response_excerpt=(getattr(answer, "response_excerpt", "") or "")[:2000],
                    error_class=error_class,
                    error_text=error_text,
                )
            if on_written is not None:
                on_written()
        if outcome:
            message.attempts += 1
        message.status = status
        return True

    def _link_record(self, target_key: str, etag: str, now: datetime) -> None:
        """Insert or update the cross-reference in one statement; the record lock makes `link` current."""
        message, link = self.message, self.link
        versions = [v for v in (message.source_version, link.source_version if link else None) if v is not None]
        values = {
            "target_key": target_key[:255],
            "target_etag": etag[:200],
            "source_version": max(versions) if versions else None,
            "content_hash": self.payload_hash,
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
    if not message.flow.enabled:
        return 0  # paused: the sweeper picks it up again once the flow is enabled
    claimed = [delivery for delivery in map(Delivery.claim, _with_companions(message)) if delivery]
    ready = [delivery for delivery in claimed if delivery.prepare()]
    if ready:
        with _record_locks(ready) as (free, busy):
            for delivery in busy:
                delivery.release_busy()
            if free:
                _send(free)
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
    companions = (
        _messages()
        .filter(flow=message.flow, status__in=Message.DELIVERABLE, next_attempt_at__lte=timezone.now())
        .exclude(pk=message.pk)
        .order_by("next_attempt_at")[: target.batch_size - 1]
    )
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
    for delivery in deliveries:
        delivery.link = links.get(delivery.message.source_record_key)
        delivery.payload_hash = prepare.content_hash(delivery.message.payload_out)
        if reason := delivery.skip_reason():
            delivery.skip(reason)
        else:
            to_send.append(delivery)
    if not to_send:
        return
    requests = [delivery.request() for delivery in to_send]
    connector = get_connector(flow.target)
    for delivery in to_send:
        delivery.start()  # the attempt is the call to the target
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
    for delivery, outcome in zip(to_send, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            delivery.fail(outcome)
        else:
            delivery.finish_delivered(outcome)


def _deliver_alone(connector: Any, request: DeliveryRequest, flow: Flow) -> DeliveryResult | BaseException:
    try:
        return connector.deliver(request)
    except errors.ConnectorError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - classified by the caller like any crash
        logger.exception("crash delivering %s of flow %s on its own", request.idempotency_key, flow.slug)
        return exc
