"""Queueing work for committed messages: one task per message, or one drain per flow for batching targets.

A target that takes batches is fed by drain tasks: each claims the flow's oldest due messages in
batches until none are left, so a burst of N messages costs about N / batch_size tasks instead of N.
A Redis key per flow says "a drain is queued or about to look again"; ingest queues a drain only
when it can set that key.

Why nothing is missed: a drain deletes the key *before* each look for due messages. A message is
committed before ingest tries to set the key. If the key was still set, the drain that set it has
not yet made its next look, which therefore sees the message; if it was not set, ingest queues a
new drain. The key expires after DRAIN_KEY_TTL so a drain killed in between cannot block a flow; the
beat sweeper covers that gap too.
"""

from __future__ import annotations

import logging
import time
from functools import cache

import redis
from celery import current_app
from django.conf import settings
from django.db import DatabaseError
from kombu.exceptions import OperationalError as KombuOperationalError

from integrations.models import Flow, Message
from integrations.systems import connector_class

logger = logging.getLogger(__name__)
DRAIN_KEY_TTL = 60


@cache
def _redis() -> redis.Redis | None:
    url = settings.REDIS_URL
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) if url else None


def drain_key(flow_id: int) -> str:
    return f"icbridge:drain:{flow_id}"


def drains(flow: Flow) -> bool:
    """Whether this flow's messages are fed by drains (a batching target and a Redis broker)."""
    return flow.target.batch_size > 1 and connector_class(flow.target.kind).batch_capable and _redis() is not None


def message_queue(*, message_id: int, flow: Flow) -> None:
    """Queue processing of a committed message (call after commit).

    When the broker cannot take it, the message's queued_at is cleared, so the sweeper's next pass
    queues it (rather than after ICBRIDGE_REQUEUE_AFTER_SECONDS, as for a task it believes queued).
    """
    if broker_paused():
        _left_to_sweeper(message_id)
        return
    if not drains(flow):
        queued = queue_process(message_id=message_id)
    else:
        try:
            queue_drain = _redis().set(drain_key(flow.pk), message_id, nx=True, ex=DRAIN_KEY_TTL)
        except redis.RedisError:
            logger.warning("drain key for flow %s unavailable; queueing a drain for message %s", flow.slug, message_id)
            queue_drain = True
        queued = queue_drain_task(flow_id=flow.pk) if queue_drain else True
    if not queued:
        _left_to_sweeper(message_id)


def _left_to_sweeper(message_id: int) -> None:
    try:
        Message.objects.filter(pk=message_id).update(queued_at=None)
    except DatabaseError:  # the sweeper still finds it, after ICBRIDGE_REQUEUE_AFTER_SECONDS
        logger.warning("message %s: could not mark it unqueued", message_id)


# The pipeline's only calls into Celery: one task per message, one drain per flow, one more sweep.
# By name, so the services never import the task module that imports them (docs/architecture.md).
PROCESS, DRAIN, SWEEP = (
    "integrations.tasks.process_message",
    "integrations.tasks.drain_flow",
    "integrations.tasks.sweep_messages",
)


# Until when (monotonic) this process's ingest leaves new messages to the sweeper without trying the broker:
# each try waits out the broker's connection timeout (seconds), and every webhook of an outage would wait.
# Only ingest pauses: it marks the message unqueued, so the sweeper's next pass queues it; the sweeper, an
# operator's retry and a drain mark theirs queued before sending, so they must really try.
_broker = {"paused_until": 0.0}


def broker_paused() -> bool:
    """Whether the broker refused a task less than ICBRIDGE_BROKER_PAUSE_SECONDS ago in this process."""
    return time.monotonic() < _broker["paused_until"]


def broker_pause_forget() -> None:
    """End the pause: ingest tries the broker again at its next message (tests)."""
    _broker["paused_until"] = 0.0


def _send(task: str, *args: int) -> bool:
    """Queue one task; False when the broker cannot take it now.

    Losing the queue entry loses nothing: the message is committed, and the beat sweeper queues
    every due message whose task was not queued recently (queued_at). So an unreachable broker is
    logged, not raised: a webhook whose event was stored still answers 202. A refusal starts the
    process's broker pause (message_queue: ingest leaves its messages to the sweeper without trying the
    broker for ICBRIDGE_BROKER_PAUSE_SECONDS); every other caller still tries each time.
    """
    try:
        current_app.send_task(task, args=args, retry=False)
    except (KombuOperationalError, redis.RedisError, OSError) as exc:
        _broker["paused_until"] = time.monotonic() + settings.ICBRIDGE_BROKER_PAUSE_SECONDS
        logger.warning(
            "broker unavailable, %s%r left to the sweeper; ingest leaves new messages to it for %.0f s: %s",
            task.rsplit(".", 1)[-1], args, settings.ICBRIDGE_BROKER_PAUSE_SECONDS, exc,
        )  # fmt: skip
        return False
    return True


def queue_process(*, message_id: int) -> bool:
    """Queue one message's processing task, whatever its flow (a retry, a sweep, a resolved conflict)."""
    return _send(PROCESS, message_id)


def queue_drain_task(*, flow_id: int) -> bool:
    return _send(DRAIN, flow_id)


def queue_sweep() -> bool:
    return _send(SWEEP)


LOAD_PAGE = "integrations.tasks.load_page"


def queue_load_page(*, run_id: int) -> bool:
    """Queue the next page of an initial load (integrations.bulk); a lost one is re-queued by the sweeper."""
    return _send(LOAD_PAGE, run_id)


def drain_look(flow_id: int) -> None:
    """Called by a drain right before it looks for due messages: later ingests queue a new drain."""
    client = _redis()
    if client is not None:
        try:
            client.delete(drain_key(flow_id))
        except redis.RedisError:
            logger.warning("could not clear the drain key of flow %s", flow_id)
