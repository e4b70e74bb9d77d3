"""One claimed message on its way to its target: lease, fenced outcome writes, attempts counted as written.

The rules it keeps are in integrations.pipeline.deliver's docstring.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations import errors
from integrations.models import Attempt, Flow, Message, RecordLink
from integrations.pipeline import prepare
from integrations.protocols.deadline import deadline_until
from integrations.protocols.transport import DeliveryRequest, DeliveryResult
from integrations.retry import RetryPolicy

logger = logging.getLogger(__name__)

Status = Message.Status
# A message whose record another worker is delivering waits this long before trying again.
RECORD_BUSY_DELAY = timedelta(seconds=1)
# A claim is renewed before its send when preparing left less than its budget minus this: a send always
# has nearly its whole timeout, so it is not cut short while the target is still working on it.
RENEW_SLACK_SECONDS = 0.25
# What a delivery writes on its RecordLink (link_row), the columns an upsert of the link updates.
LINK_FIELDS = (
    "target_key",
    "target_etag",
    "source_version",
    "content_hash",
    "correlation_id",
    "last_message",
    "synced_at",
)


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

    @classmethod
    def claim_many(cls, messages: list[Message]) -> list[Delivery]:
        """Take a batch's companions with one locking read and one UPDATE, on claim()'s conditions per row.

        SKIP LOCKED: a row another worker is claiming at this moment is theirs. The rows read are locked
        until the UPDATE commits, so the conditions checked are the ones the UPDATE writes on.
        """
        if not messages:
            return []
        now = timezone.now()
        clock = time.monotonic()
        flow = messages[0].flow
        lease = now + timedelta(seconds=lease_seconds(flow))
        match = Q()
        for message in messages:
            match |= Q(pk=message.pk, attempts=message.attempts)  # attempts as read, as in claim()
        with transaction.atomic():
            ids = set(
                Message.objects.select_for_update(skip_locked=True)
                .filter(match, status__in=Message.DELIVERABLE)
                .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
                .values_list("pk", flat=True)
            )
            if ids:
                Message.objects.filter(pk__in=ids).update(
                    status=Status.DELIVERING, lease_expires_at=lease, queued_at=None
                )
        claimed = []
        for message in messages:
            if message.pk in ids:
                message.status = Status.DELIVERING
                message.lease_expires_at = lease
                claimed.append(cls(message, lease, deadline=clock + delivery_budget(flow)))
        return claimed

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

    def is_short(self, slack: float = RENEW_SLACK_SECONDS) -> bool:
        """Whether less than the full budget (minus the slack) is left of the claim."""
        return self.deadline - time.monotonic() < delivery_budget(self.message.flow) - slack

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

    def prepare(self, *, renew: bool = True) -> bool:
        """Complete, screen and transform the message; False when it is finished here.

        Every failure ends the claim with an attempt: nothing raised here leaves the message delivering.
        renew=False: the caller renews the claim (a batch's: deliver._prepared), not an UPDATE of its own."""
        message = self.message
        if renew and not self.renew_if_short():
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
            self._write(status=Status.FAILED, outcome=Attempt.Outcome.FAILED, error=exc, error_text=describe(exc))
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
                error_text=f"{describe(exc)} (the mapped payload could not be stored)",
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
            log_delivered(message, result.target_key, self.duration_ms)

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

    def link_row(self, target_key: str, etag: str, now: datetime) -> RecordLink:
        """The record's cross-reference as this delivery leaves it (not saved)."""
        message, link = self.message, self.link
        versions = [v for v in (message.source_version, link.source_version if link else None) if v is not None]
        return RecordLink(
            flow=message.flow,
            source_key=message.source_record_key,
            target_key=target_key[:255],
            target_etag=etag[:200],
            source_version=max(versions) if versions else None,
            content_hash=self.payload_hash,
            correlation_id=message.correlation_id,
            last_message=message,
            synced_at=now,
        )

    def _link_record(self, target_key: str, etag: str, now: datetime) -> None:
        """Insert or update the cross-reference in one statement; the record lock makes `link` current."""
        RecordLink.objects.bulk_create(
            [self.link_row(target_key, etag, now)],
            update_conflicts=True,
            unique_fields=["flow", "source_key"],
            update_fields=[*LINK_FIELDS, "updated_at"],
        )


def log_delivered(message: Message, target_key: str, duration_ms: int) -> None:
    logger.info(
        "message %s delivered to %s as %s in %d ms",
        message.pk,
        message.flow.target.name,
        target_key,
        duration_ms,
        extra={"message_id": message.pk, "correlation_id": message.correlation_id},
    )


def describe(exc: BaseException) -> str:
    """The text an operator sees for a failure: our own errors say it all, others get their class."""
    text = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, errors.ConnectorError | errors.MappingError):
        return text
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 2000 else text[:1997] + "..."
