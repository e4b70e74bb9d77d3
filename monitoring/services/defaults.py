"""Sensible monitoring for a fresh hub: the alert rules every installation wants, and a nightly reconciliation."""

from __future__ import annotations

from typing import Any

from integrations.models import Flow
from monitoring.models import AlertRule, ReconciliationSchedule
from monitoring.services.reconciliation import schedule_save

DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "Dead letters", "kind": AlertRule.Kind.DEAD_LETTERS, "threshold": 0},
    {
        "name": "Failure rate above 20 % (15 min)",
        "kind": AlertRule.Kind.FAILURE_RATE,
        "threshold": 20,
        "window_minutes": 15,
        "min_messages": 20,
    },
    {"name": "Reconciliation differences", "kind": AlertRule.Kind.RECONCILIATION, "threshold": 0},
    {"name": "System connection checks", "kind": AlertRule.Kind.HEALTH},
]


def monitoring_defaults_ensure(
    *, email_to: str = "", webhook_url: str = "", cron: str = "15 2 * * *"
) -> dict[str, int]:
    """Create the default alert rules and a reconciliation schedule per flow; existing ones are left alone."""
    rules = 0
    for spec in DEFAULT_RULES:
        _, created = AlertRule.objects.get_or_create(
            name=spec["name"], defaults={**spec, "email_to": email_to, "webhook_url": webhook_url}
        )
        rules += created
    schedules = 0
    for flow in Flow.objects.filter(reconciliation__isnull=True):
        schedule_save(schedule=ReconciliationSchedule(flow=flow, cron=cron))
        schedules += 1
    return {"rules": rules, "schedules": schedules}
