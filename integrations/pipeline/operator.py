"""What an operator does to messages: retry, discard, replay, resolve a conflict. Every action is audited."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from integrations.models import Message
from integrations.pipeline import dispatch
from integrations.pipeline.ingest import message_ingest
from integrations.protocols.events import TRUNCATED_FLAG, key_fit
from integrations.services.audit import audit_record

Status = Message.Status
RETRYABLE = (Status.FAILED, Status.DEAD, Status.RETRYING, Status.CONFLICT, Status.SKIPPED)
# Every state that is not final may be discarded, delivering included: a message stuck in a claim must not
# need its lease to run out first. A worker holding it then writes nothing (its outcome is fenced).
DISCARDABLE = tuple(status for status in Status.values if status not in Message.TERMINAL)
REPLAY_KEY_TRIES = 20


class OperatorError(Exception):
    """An action that does not fit the message's state; the text is for the operator."""


def messages_retry(*, messages: QuerySet[Message] | Iterable[Message], actor: Any, reason: str = "") -> int:
    """Send messages through the pipeline again now, from the transform on, with a fresh attempt budget."""
    ids = [m.pk for m in messages if m.status in RETRYABLE]
    now = timezone.now()
    count = 0
    with transaction.atomic():
        for message in Message.objects.select_for_update().filter(pk__in=ids, status__in=RETRYABLE):
            previous = message.status
            Message.objects.filter(pk=message.pk).update(
                status=Status.RECEIVED,
                attempts=0,
                next_attempt_at=now,
                queued_at=now,
                last_error_class="",
                last_error="",
            )
            audit_record(
                actor=actor, action="retry", obj=message, message=message, reason=reason, details={"from": previous}
            )
            transaction.on_commit(partial(dispatch.queue_process, message_id=message.pk))
            count += 1
    return count


def message_discard(*, message: Message, actor: Any, reason: str) -> Message:
    if not reason.strip():
        raise OperatorError("Say why the message is discarded.")
    with transaction.atomic():
        current = Message.objects.select_for_update().filter(pk=message.pk).values_list("status", flat=True).first()
        updated = Message.objects.filter(pk=message.pk, status__in=DISCARDABLE).update(
            status=Status.DISCARDED, next_attempt_at=None, lease_expires_at=None, last_error=f"Discarded: {reason}"
        )
        if not updated:
            message.refresh_from_db(fields=["status"])
            raise OperatorError(
                f"Message {message.pk} is {message.get_status_display().lower()}; it cannot be discarded."
            )
        # A message discarded while delivering: its worker writes nothing more, but a call already sent
        # may still reach the target; the audit entry says so.
        details = {"from": current, "send_may_be_in_flight": current == Status.DELIVERING}
        audit_record(actor=actor, action="discard", obj=message, message=message, reason=reason, details=details)
    message.refresh_from_db()
    return message


def message_replay(*, message: Message, actor: Any, reason: str = "", payload: dict[str, Any] | None = None) -> Message:
    """Send a copy of the message, its payload optionally edited; the copy links to the original.

    The copy starts from the event as received (payload_in, or the operator's edit of it) and reads
    from the source again what the original fetched (payload_fetched is not copied). The original,
    if it still needs attention, is discarded in favour of the copy.

    The copy's key is the original's with "#replay-<n>", fitted to the column (key_fit: a long key
    keeps its head and gains a hash of the whole), so it is always a key of its own: the copy is a new
    message, never the original or an earlier copy.
    """
    if payload is not None and not isinstance(payload, dict):
        raise OperatorError("The payload must be a JSON object.")
    with transaction.atomic():
        number = message.replays.count()
        for _ in range(REPLAY_KEY_TRIES):
            number += 1
            replay, created = message_ingest(
                flow=message.flow,
                payload=message.payload_in if payload is None else payload,
                idempotency_key=replay_key(message.idempotency_key, number),
                source_record_key=message.source_record_key,
                source_version=message.source_version,
                correlation_id=message.correlation_id,
                headers=_received_headers(message.headers),
                replay_of=message,
            )
            if created:
                break
        else:
            raise OperatorError(f"Message {message.pk}: no free replay key after {REPLAY_KEY_TRIES} tries.")
        Message.objects.filter(pk=message.pk, status__in=DISCARDABLE).update(
            status=Status.DISCARDED,
            next_attempt_at=None,
            lease_expires_at=None,
            last_error=f"Replayed as message {replay.pk}",
        )
        audit_record(
            actor=actor,
            action="replay",
            obj=message,
            message=message,
            reason=reason,
            details={"replay_id": replay.pk, "edited": payload is not None},
        )
    return replay


def replay_key(idempotency_key: str, number: int) -> str:
    """The idempotency key of the number-th replay of a message: distinct from the original's, and fitting."""
    return key_fit(f"{idempotency_key}#replay-{number}")


def _received_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """The headers as the event came: a truncated event completed from the source is truncated again."""
    received = dict(headers or {})
    if received.pop("completed_from_source", False):
        received[TRUNCATED_FLAG] = True
    return received


def message_resolve_conflict(*, message: Message, actor: Any, side: str, reason: str = "") -> Message:
    """source: overwrite the target with our version; target: keep the target's version."""
    if message.status != Status.CONFLICT:
        raise OperatorError(f"Message {message.pk} is not in conflict.")
    if side not in ("source", "target"):
        raise OperatorError("Choose the source or the target version.")
    now = timezone.now()
    with transaction.atomic():
        if side == "source":
            Message.objects.filter(pk=message.pk, status=Status.CONFLICT).update(
                status=Status.RETRYING, force_overwrite=True, next_attempt_at=now, queued_at=now
            )
            transaction.on_commit(partial(dispatch.queue_process, message_id=message.pk))
        else:
            Message.objects.filter(pk=message.pk, status=Status.CONFLICT).update(
                status=Status.SKIPPED, last_error="Conflict resolved: kept the target's version", next_attempt_at=None
            )
        audit_record(actor=actor, action=f"resolve_conflict_{side}", obj=message, message=message, reason=reason)
    message.refresh_from_db()
    return message
