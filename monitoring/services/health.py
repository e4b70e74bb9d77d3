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
    return "failed: beat has not sent a task" + (f" since {last:%Y-%m-%d %H:%M:%S}" if last else " yet")


CHECKS = {"database": check_database, "broker": check_broker, "workers": check_workers, "beat": check_beat}


def health_report() -> dict[str, Any]:
    checks: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            checks[name] = check()
        except Exception as exc:  # any failure is the answer, not an error page
            checks[name] = f"failed: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return {"status": "ok" if healthy else "failing", "checks": checks}
