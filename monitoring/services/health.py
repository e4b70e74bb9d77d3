"""Health of the moving parts: database, broker, workers (heartbeat or ping) and beat."""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.utils import timezone

from icbridge.celery import app
from monitoring.models import Heartbeat

WORKER_HEARTBEAT = "worker"


def heartbeat_record(*, name: str = WORKER_HEARTBEAT, details: dict[str, Any] | None = None) -> Heartbeat:
    """Written by the beat-scheduled heartbeat task, run by a worker: proves both are alive."""
    heartbeat, _ = Heartbeat.objects.update_or_create(
        name=name, defaults={"seen_at": timezone.now(), "details": details or {"host": socket.gethostname()}}
    )
    return heartbeat


def _stale_after() -> timedelta:
    # Three missed beats before we call it dead: one slow tick is not an outage.
    return timedelta(seconds=3 * settings.ICBRIDGE_HEARTBEAT_SECONDS)


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def check_broker() -> str:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return "ok"


def _heartbeat_age() -> float | None:
    seen = Heartbeat.objects.filter(name=WORKER_HEARTBEAT).values_list("seen_at", flat=True).first()
    return (timezone.now() - seen).total_seconds() if seen else None


def check_workers() -> str:
    """A fresh heartbeat, or else a control ping with a short timeout (Redis broker only)."""
    age = _heartbeat_age()
    if age is not None and age <= _stale_after().total_seconds():
        return "ok"
    if settings.CELERY_BROKER_URL.startswith(("redis", "rediss")):
        replies = app.control.ping(timeout=settings.ICBRIDGE_HEALTH_PING_SECONDS)
        if replies:
            return "ok"
    return "failed: no worker heartbeat" + (f" for {age:.0f} s" if age is not None else " yet")


def check_beat() -> str:
    """Beat sends the heartbeat task; a fresh heartbeat means beat is sending.

    When the heartbeat is stale, beat's own bookkeeping (PeriodicTask.last_run_at, saved by the
    database scheduler every few minutes) tells whether beat is still sending anything.
    """
    age = _heartbeat_age()
    if age is not None and age <= _stale_after().total_seconds():
        return "ok"
    from django_celery_beat.models import PeriodicTask

    last = PeriodicTask.objects.aggregate(last=Max("last_run_at"))["last"]
    # The database scheduler writes last_run_at on its sync, every 3 minutes by default.
    if last and timezone.now() - last <= timedelta(minutes=5) + _stale_after():
        return "ok"
    if backlog := _queued_backlog():
        # The heartbeat beat sent waits in the queue behind the backlog (the first minutes after a
        # restart, an outage draining): workers are busy, not gone. Not a failure.
        return f"ok: heartbeat queued behind {backlog} message(s) being delivered"
    return "failed: beat has not sent a task" + (f" since {last:%Y-%m-%d %H:%M:%S}" if last else " yet")


def _queued_backlog() -> int:
    """Messages queued for delivery in the last few minutes: tasks the heartbeat waits behind."""
    from integrations.models import Message

    recent = timezone.now() - timedelta(minutes=5) - _stale_after()
    return Message.objects.filter(status__in=Message.DELIVERABLE, queued_at__gte=recent).count()


CHECKS = {"database": check_database, "broker": check_broker, "workers": check_workers, "beat": check_beat}
# Ready means this process can take requests: it reaches the database and the broker. Workers and beat
# are reported (a stopped worker is an alert, see monitoring.services.alerts) but a web process whose
# workers are busy or restarting still accepts webhooks, so they do not make it unready.
READY_CHECKS = ("database", "broker")


def _run(names: tuple[str, ...] | None = None) -> dict[str, str]:
    checks: dict[str, str] = {}
    for name, check in CHECKS.items():
        if names is not None and name not in names:
            continue
        try:
            checks[name] = check()
        except Exception as exc:  # any failure is the answer, not an error page
            checks[name] = f"failed: {type(exc).__name__}"
    return checks


def _ok(value: str) -> bool:
    return value == "ok" or value.startswith("ok:")


def health_report() -> dict[str, Any]:
    """Every moving part; "failing" when any of them fails (a backlog is not a failure)."""
    checks = _run()
    healthy = all(_ok(value) for value in checks.values())
    return {"status": "ok" if healthy else "failing", "checks": checks}


def live_report() -> dict[str, Any]:
    """The process answers: nothing else is checked, so a restart loop is never caused by a dependency."""
    return {"status": "ok"}


def ready_report() -> dict[str, Any]:
    """Ready to take traffic: database and broker up ("ok"); workers or beat down only "degraded"."""
    checks = _run()
    if not all(_ok(checks[name]) for name in READY_CHECKS):
        status = "failing"
    elif all(_ok(value) for value in checks.values()):
        status = "ok"
    else:
        status = "degraded"
    return {"status": status, "checks": checks}
