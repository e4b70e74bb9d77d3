"""Pause and resume a flow or a system: events are still accepted (202) and held; resume drains them in order.

Paused is not disabled. A disabled flow refuses events (409 at ingress); a paused one stores them as
usual (the outbox) and nothing delivers them: message_process, flow_drain and the sweeper skip a flow
that is held (paused itself, or its source or target system is). Holding is bounded only by the
database's disk: held messages are ordinary deliverable rows, never expired.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from integrations.models import Flow, Message, System
from integrations.pipeline import dispatch
from integrations.services.audit import audit_record

# Flows none of whose parts is paused: the sweeper and the drains deliver only these.
NOT_HELD = Q(paused_at__isnull=True, source__paused_at__isnull=True, target__paused_at__isnull=True)
# The same seen from a message (Message.objects.filter(MESSAGE_NOT_HELD)).
MESSAGE_NOT_HELD = Q(
    flow__paused_at__isnull=True, flow__source__paused_at__isnull=True, flow__target__paused_at__isnull=True
)


def _actor_name(actor: Any) -> str:
    return actor.get_username() if actor is not None and getattr(actor, "is_authenticated", False) else "system"


def _hold(obj: Flow | System, *, actor: Any, reason: str, action: str) -> bool:
    """Mark the flow or system paused unless it is already; audited only when it changed."""
    with transaction.atomic():
        changed = (
            type(obj)
            .objects.filter(pk=obj.pk, paused_at__isnull=True)
            .update(paused_at=timezone.now(), paused_by=_actor_name(actor))
        )
        if changed:
            audit_record(actor=actor, action=action, obj=obj, reason=reason)
    obj.refresh_from_db(fields=["paused_at", "paused_by"])
    return bool(changed)


def _unhold(obj: Flow | System, flows: QuerySet[Flow], *, actor: Any, reason: str, action: str) -> int:
    """Clear the pause, release what `flows` held (if it was paused) and audit how many."""
    with transaction.atomic():
        changed = type(obj).objects.filter(pk=obj.pk, paused_at__isnull=False).update(paused_at=None, paused_by="")
        released = _release(flows) if changed else 0
        if changed:
            audit_record(actor=actor, action=action, obj=obj, reason=reason, details={"released": released})
    obj.refresh_from_db(fields=["paused_at", "paused_by"])
    return released


def flow_pause(*, flow: Flow, actor: Any, reason: str = "") -> bool:
    """Hold the flow's messages from now on; False when it was paused already (nothing audited)."""
    return _hold(flow, actor=actor, reason=reason, action="flow_pause")


def flow_resume(*, flow: Flow, actor: Any, reason: str = "") -> int:
    """Deliver again; returns how many held messages were released (queued oldest first)."""
    return _unhold(flow, Flow.objects.filter(pk=flow.pk), actor=actor, reason=reason, action="flow_resume")


def system_pause(*, system: System, actor: Any, reason: str = "") -> bool:
    """Hold every flow from or to the system (an announced outage, a maintenance window)."""
    return _hold(system, actor=actor, reason=reason, action="system_pause")


def system_resume(*, system: System, actor: Any, reason: str = "") -> int:
    """Deliver again to and from the system; flows still held by another pause stay held."""
    flows = Flow.objects.filter(Q(source=system) | Q(target=system))
    return _unhold(system, flows, actor=actor, reason=reason, action="system_resume")


def held_messages() -> QuerySet[Message]:
    """Deliverable messages that wait because their flow, source or target is paused."""
    return Message.objects.filter(status__in=Message.DELIVERABLE).exclude(MESSAGE_NOT_HELD)


def _release(flows: QuerySet[Flow]) -> int:
    """Make the held messages of flows no longer held due for the sweeper, and sweep after commit.

    Clearing queued_at is what the sweeper reads ("no task queued"); it queues them by next_attempt_at,
    which for a held event is when it arrived, so they drain in the order they came, in batches
    (a sweep with a full batch queues the next), however many were held.
    """
    free = flows.filter(NOT_HELD, enabled=True)
    released = Message.objects.filter(flow__in=free, status__in=Message.DELIVERABLE).update(queued_at=None)
    if released:
        transaction.on_commit(partial(dispatch.queue_sweep))
    return released
