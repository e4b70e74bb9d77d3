"""Ingest: store an event once (the outbox) and queue its processing after commit."""

from __future__ import annotations

import uuid
from contextlib import nullcontext
from functools import partial
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from integrations.models import Flow, Message
from integrations.pipeline import dispatch
from integrations.protocols.events import key_fit
from integrations.systems import canonical_key


def message_ingest(
    *,
    flow: Flow,
    payload: dict[str, Any],
    idempotency_key: str,
    source_record_key: str = "",
    source_version: int | None = None,
    correlation_id: str = "",
    headers: dict[str, Any] | None = None,
    replay_of: Message | None = None,
) -> tuple[Message, bool]:
    """Store the event once; a repeat of the idempotency key returns the first message unchanged.

    A key longer than the column is fitted (key_fit: its head and a hash of the whole), never cut: two
    keys that differ only past character 255 stay two messages. The record key is stored in the source
    kind's normal form (systems.canonical_key), the form its RecordLink gets and reconciliation compares.
    """
    if not idempotency_key:
        raise ValueError("idempotency_key is required")
    now = timezone.now()
    key = key_fit(idempotency_key)
    # On its own the INSERT is its own transaction (autocommit: one round trip, where BEGIN, SAVEPOINT,
    # RELEASE and COMMIT made five), and a duplicate key leaves nothing to roll back. Inside a caller's
    # transaction (an event routed to two flows) a savepoint keeps a duplicate from aborting the caller's.
    try:
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            message = Message.objects.create(
                flow=flow,
                idempotency_key=key,
                payload_in=payload,
                source_record_key=canonical_key(flow.source.kind, source_record_key)[:255],
                source_version=source_version,
                correlation_id=correlation_id or uuid.uuid4().hex,
                headers=headers or {},
                replay_of=replay_of,
                next_attempt_at=now,
                queued_at=now,
            )
    except IntegrityError:
        return Message.objects.get(flow=flow, idempotency_key=key), False
    # After the caller's commit; with none, at once (the row is committed): never for a rolled-back row.
    transaction.on_commit(partial(dispatch.message_queue, message_id=message.pk, flow=flow))
    return message, True
