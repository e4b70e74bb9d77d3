"""Each alert rule fires once when its condition starts and resolves once when it ends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from integrations.models import Flow, Message
from monitoring.models import Alert, AlertRule, ReconciliationRun
from monitoring.services import alerts
from sandbox.common.faults import set_faults

pytestmark = pytest.mark.django_db(transaction=True)
Status = Message.Status


def tick() -> dict[str, int]:
    return alerts.alerts_evaluate()


def states(rule: AlertRule) -> list[tuple[bool, bool]]:
    return [(a.resolved_at is None, bool(a.notifications)) for a in rule.alerts.order_by("opened_at")]


def test_dead_letters_above_n_fire_once_mail_and_webhook_then_resolve_once(make_flow, make_message, webhook_catcher):
    url, received = webhook_catcher
    flow = make_flow()
    rule = AlertRule.objects.create(
        name="dead",
        kind=AlertRule.Kind.DEAD_LETTERS,
        threshold=1,
        email_to="ops@example.com, lead@example.com",
        webhook_url=url,
    )
    dead = [make_message(flow, status=Status.DEAD) for _ in range(2)]

    first, second = tick(), tick()

    assert (first, second) == ({"opened": 1, "resolved": 0}, {"opened": 0, "resolved": 0})
    alert = Alert.objects.get(rule=rule)
    assert (alert.value, alert.is_open) == (2, True)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "[icbridge] FIRING: dead"
    assert mail.outbox[0].to == ["ops@example.com", "lead@example.com"]
    assert len(received) == 1
    assert received[0]["alert"]["event"] == "firing"
    assert "2 dead message(s)" in received[0]["text"]
    assert "secret-key" not in str(alert.notifications)  # the webhook URL's key is never stored

    Message.objects.filter(pk=dead[0].pk).update(status=Status.DISCARDED)
    resolved, after = tick(), tick()

    assert (resolved, after) == ({"opened": 0, "resolved": 1}, {"opened": 0, "resolved": 0})
    assert len(mail.outbox) == 2
    assert mail.outbox[1].subject == "[icbridge] RESOLVED: dead"
    assert [body["alert"]["event"] for body in received] == ["firing", "resolved"]
    assert states(rule) == [(False, True)]


def test_failure_rate_over_the_window_fires_and_resolves(make_flow, make_message):
    flow = make_flow()
    rule = AlertRule.objects.create(
        name="failing", kind=AlertRule.Kind.FAILURE_RATE, flow=flow, threshold=25, window_minutes=15, min_messages=4
    )
    failed = [make_message(flow, status=Status.FAILED) for _ in range(2)]
    for _ in range(2):
        make_message(flow)
    old = make_message(flow, status=Status.FAILED)
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))  # outside the window

    assert tick()["opened"] == 1
    assert Alert.objects.get(rule=rule).value == 50.0
    assert tick() == {"opened": 0, "resolved": 0}

    Message.objects.filter(pk__in=[m.pk for m in failed]).update(status=Status.DELIVERED)
    assert tick()["resolved"] == 1
    assert states(rule) == [(False, False)]


def test_failure_rate_ignores_windows_with_too_few_messages(make_flow, make_message):
    flow = make_flow()
    AlertRule.objects.create(name="f", kind=AlertRule.Kind.FAILURE_RATE, threshold=10, min_messages=5)
    make_message(flow, status=Status.DEAD)

    assert tick() == {"opened": 0, "resolved": 0}


def test_a_silent_flow_fires_and_its_next_message_resolves_it(make_flow, make_message):
    flow = make_flow()
    Flow.objects.filter(pk=flow.pk).update(created_at=timezone.now() - timedelta(hours=3))
    rule = AlertRule.objects.create(name="quiet", kind=AlertRule.Kind.SILENCE, flow=flow, window_minutes=30)
    old = make_message(flow)
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))

    assert tick()["opened"] == 1
    assert "silent longer than 30 min" in Alert.objects.get(rule=rule).detail
    assert tick()["opened"] == 0

    make_message(flow)
    assert tick()["resolved"] == 1


def test_reconciliation_differences_fire_and_a_clean_run_resolves(make_flow):
    flow = make_flow()
    rule = AlertRule.objects.create(name="recon", kind=AlertRule.Kind.RECONCILIATION, threshold=0)
    ReconciliationRun.objects.create(flow=flow, status="done", checked=10, matched=8, different=1, missing_in_target=1)

    assert tick()["opened"] == 1
    assert "1 missing in target" in Alert.objects.get(rule=rule).detail
    assert tick()["opened"] == 0

    ReconciliationRun.objects.create(flow=flow, status="done", checked=10, matched=10)
    assert tick()["resolved"] == 1


def test_a_system_failing_its_connection_check_fires_and_resolves(recorder_system):
    rule = AlertRule.objects.create(name="health", kind=AlertRule.Kind.HEALTH, system=recorder_system)
    set_faults("recorder", down=True)

    assert tick()["opened"] == 1
    assert "Recorder" in Alert.objects.get(rule=rule).detail
    assert tick()["opened"] == 0

    set_faults("recorder", down=False)
    assert tick()["resolved"] == 1


def test_a_new_incident_after_resolution_opens_a_new_alert(make_flow, make_message):
    flow = make_flow()
    rule = AlertRule.objects.create(name="dead", kind=AlertRule.Kind.DEAD_LETTERS, threshold=0)
    message = make_message(flow, status=Status.DEAD)
    tick()
    Message.objects.filter(pk=message.pk).update(status=Status.DISCARDED)
    tick()
    make_message(flow, status=Status.DEAD)

    assert tick()["opened"] == 1
    assert [a.is_open for a in rule.alerts.order_by("opened_at")] == [False, True]


def test_an_unreachable_webhook_is_recorded_and_the_alert_still_opens(make_flow, make_message):
    AlertRule.objects.create(
        name="dead", kind=AlertRule.Kind.DEAD_LETTERS, threshold=0, webhook_url="http://127.0.0.1:9/hook"
    )
    make_message(make_flow(), status=Status.DEAD)

    tick()

    assert Alert.objects.get().notifications[0] | {"at": None} == {
        "at": None,
        "event": "firing",
        "channel": "webhook",
        "ok": False,
        "error": "ConnectionError",
    }


def test_the_beat_task_evaluates_the_rules(make_flow, make_message):
    from monitoring import tasks

    AlertRule.objects.create(name="dead", kind=AlertRule.Kind.DEAD_LETTERS, threshold=0)
    make_message(make_flow(), status=Status.DEAD)

    tasks.evaluate_alerts()

    assert Alert.objects.filter(resolved_at__isnull=True).count() == 1


@pytest.mark.parametrize(
    ("values", "field", "text"),
    [
        ({"kind": "failure_rate", "threshold": 150}, "threshold", "a failure rate is a percentage from 0 to 99.9"),
        ({"kind": "dead_letters", "threshold": -1}, "threshold", "must be 0 or more"),
        ({"kind": "silence", "window_minutes": 0}, "window_minutes", "at least 1 minute"),
        ({"kind": "dead_letters", "email_to": "ops@example.com, not-an-address"}, "email_to", "'not-an-address'"),
    ],
)
def test_a_bad_rule_is_refused_in_the_console_naming_the_field(admin_client, values, field, text):
    data = {
        "name": "r",
        "kind": "dead_letters",
        "threshold": 0,
        "window_minutes": 60,
        "min_messages": 1,
        "enabled": "on",
        "email_to": "",
        "webhook_url": "",
        "alerts-TOTAL_FORMS": 0,
        "alerts-INITIAL_FORMS": 0,
        **values,
    }

    response = admin_client.post("/admin/monitoring/alertrule/add/", data)

    assert response.status_code == 200
    assert text in " ".join(response.context["adminform"].form.errors[field])
    assert AlertRule.objects.exists() is False
