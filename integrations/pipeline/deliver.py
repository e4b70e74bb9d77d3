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
from integrations.pipeline.pause import NOT_HELD
from integrations.protocols.deadline import deadline_until
from integrations.protocols.transport import DeliveryRequest, DeliveryResult
from integrations.retry import RetryPolicy
from integrations.systems import get_connector

logger = logging.getLogger(__name__)

Status = Message.Status
# A message whose record another worker is delivering waits this long before trying again.
RECORD_BUSY_DELAY = timedelta(seconds=1)
# A claim is renewed before its send when preparing left less than its budget minus this: a send always
# has nearly its whole timeout, so it is not cut short while the target is still working on it.
RENEW_SLACK_SECONDS = 0.25


def delivery_budget(flow: Flow) -> float:
    """Seconds a delivery may take, every call included: the governor's longest wait plus the target's timeout."""
    return settings.ICBRIDGE_THROTTLE_MAX_WAIT_SECONDS + flow.target.timeout_seconds


def lease_seconds(flow: Flow) -> float:
    """A claim's lease: the delivery budget plus the margin; the sweeper may release it only after."""
    return delivery_budget(flow) + settings.ICBRIDGE_LEASE_MARGIN_SECONDS


@dataclass(eq=False)
class Delivery:
    """One message this worker holds for delivery; every write is fenced by its lease."""

    message: Message
    lease: datetime
    started: datetime = field(default_factory=timezone.now)
    clock: float = field(default_factory=time.monotonic)
    link: RecordLink | None = None
    payload_hash: str = ""
    # time.monotonic() by which every call of this claim is over: its lease minus the margin.
    deadline: float = field(default_factory=time.monotonic)

    @classmethod
    def claim(cls, message: Message) -> Delivery | None:
        """Take the message with one conditional UPDATE; None when another worker has it or it is not due."""
        now = timezone.now()
        clock = time.monotonic()
        lease = now + timedelta(seconds=lease_seconds(message.flow))
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
        return cls(message, lease, deadline=clock + delivery_budget(message.flow))

    def renew(self) -> bool:
        """Extend the lease (a fenced UPDATE) and the deadline with it; False when the claim was lost."""
        message = self.message
        clock = time.monotonic()
        lease = timezone.now() + timedelta(seconds=lease_seconds(message.flow))
        renewed = Message.objects.filter(pk=message.pk, status=Status.DELIVERING, lease_expires_at=self.lease).update(
            lease_expires_at=lease
        )
        if renewed != 1:
            logger.warning("message %s: claim lost before the send; not sent", message.pk)
            return False
        self.lease = message.lease_expires_at = lease
        self.deadline = clock + delivery_budget(message.flow)
        return True

    def is_short(self) -> bool:
        """Whether less than the full budget (minus RENEW_SLACK_SECONDS) is left of the claim."""
        return self.deadline - time.monotonic() < delivery_budget(self.message.flow) - RENEW_SLACK_SECONDS

    def renew_if_short(self) -> bool:
        """Renew when less than the full budget is left; False when the claim was lost."""
        return self.renew() if self.is_short() else True

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
        """Complete, screen and transform the message; False when it is finished here.

        Every failure ends the claim with an attempt: nothing raised here leaves the message delivering.
        """
        message = self.message
        if not self.renew_if_short():
            return False
        self.start()
        message.mapping_version = message.flow.mapping_version
        try:
            with deadline_until(self.deadline):  # reads from the source end before the lease does
                prepared = prepare.message_prepare(message=message)
                if prepared.skip_reason:
                    self.skip(prepared.skip_reason)
                    return False
                message.payload_out = prepare.map_payload(message, context=prepared.context)
        except Exception as exc:  # noqa: BLE001 - every failure is classified by fail_preparing
            self.fail_preparing(exc)
            return False
        return True

    def fail_preparing(self, exc: BaseException) -> None:
        """A failure before the send, classified: rejected fails at once, transient retries, both with an attempt.

        A mapping error or a value the pipeline cannot carry (a number too large, a width beyond reason, a
        payload that cannot be stored) is rejected: retrying cannot help until an operator acts. A source
        that cannot answer now, or a database hiccup, is transient (errors.is_transient).
        """
        if isinstance(exc, errors.ConnectorError):
            self.fail(exc)
        elif isinstance(exc, errors.MappingError) or not errors.is_transient(exc):
            if not isinstance(exc, errors.MappingError):
                logger.warning("message %s: preparation failed: %r", self.message.pk, exc)
            self._write(status=Status.FAILED, outcome=Attempt.Outcome.FAILED, error=exc, error_text=_describe(exc))
        else:
            self.fail(exc)

    def abandon(self, exc: BaseException) -> None:
        """Last resort after a crash outside the classified paths: end the claim, so nothing stays delivering.

        The payload_out that could not be written (a value PostgreSQL refuses) is dropped on the second try.
        """
        if self.message.status != Status.DELIVERING:
            return  # its outcome is written
        try:
            self.fail_preparing(exc)
            return
        except Exception:  # noqa: BLE001 - tried again below without the payload that may be the cause
            logger.exception("message %s: cannot write the outcome of a crash", self.message.pk)
        self.message.payload_out = None
        try:
            self._write(
                status=Status.FAILED,
                outcome=Attempt.Outcome.FAILED,
                error=exc,
                error_text=f"{_describe(exc)} (the mapped payload could not be stored)",
            )
        except Exception:  # noqa: BLE001 - the database is gone: the lease runs out and the sweeper takes over
            logger.exception("message %s: left to the sweeper", self.message.pk)

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
            operation=prepare.delivery_operation(message),  # a Delete event: the delete operation
            payload=message.payload_out,
            key={name: message.payload_out.get(name) for name in flow.target_key_fields},
            idempotency_key=message.idempotency_key,
            correlation_id=message.correlation_id,
            company=prepare.mapping_context(flow).get("target_company", ""),
            etag="" if overwrite or self.link is None else self.link.target_etag,
            options=flow.opts,
            exists=bool(self.link and self.link.target_key),
            target_key=self.link.target_key if self.link else "",
            flow=flow.slug,
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
    if not message.flow.enabled or message.flow.is_held:
        return 0  # disabled or paused: held; the sweeper picks it up once enabled and resumed (pipeline.pause)
    claimed = [delivery for delivery in map(Delivery.claim, _with_companions(message)) if delivery]
    try:
        ready = [delivery for delivery in claimed if delivery.prepare()]
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
    for delivery, outcome in zip(to_send, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            delivery.fail(outcome)
        else:
            delivery.finish_delivered(outcome)


def _renewed(deliveries: list[Delivery]) -> list[Delivery]:
    """The deliveries whose claims still hold, each with its whole budget again: one fenced UPDATE for the batch."""
    short = [delivery for delivery in deliveries if delivery.is_short()]
    if not short:
        return deliveries
    flow = short[0].message.flow
    clock = time.monotonic()
    lease = timezone.now() + timedelta(seconds=lease_seconds(flow))
    fence = Q()
    for delivery in short:
        fence |= Q(pk=delivery.message.pk, lease_expires_at=delivery.lease)
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


def _describe(exc: BaseException) -> str:
    """The text an operator sees for a failure: our own errors say it all, others get their class."""
    text = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, errors.ConnectorError | errors.MappingError):
        return text
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 2000 else text[:1997] + "..."
