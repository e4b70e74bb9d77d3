"""Default monitoring for a fresh hub, safe to run again."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from monitoring.models import AlertRule, ReconciliationSchedule

pytestmark = pytest.mark.django_db


def test_defaults_create_rules_and_one_schedule_per_flow_once(make_flow, capsys):
    flows = [make_flow(), make_flow()]

    call_command("monitoring_defaults", "--email", "ops@example.com")
    call_command("monitoring_defaults")

    out = capsys.readouterr().out.splitlines()
    assert out == [
        "4 alert rule(s) and 2 reconciliation schedule(s) created",
        "0 alert rule(s) and 0 reconciliation schedule(s) created",
    ]
    assert set(AlertRule.objects.values_list("kind", flat=True)) == {
        "dead_letters",
        "failure_rate",
        "reconciliation",
        "health",
    }
    assert AlertRule.objects.get(kind="dead_letters").recipients == ["ops@example.com"]
    assert ReconciliationSchedule.objects.filter(flow__in=flows, cron="15 2 * * *").count() == 2
    assert PeriodicTask.objects.filter(task="monitoring.tasks.reconcile_flow").count() == 2
