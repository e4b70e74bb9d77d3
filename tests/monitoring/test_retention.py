"""Retention blanks old payloads of finished messages and keeps the rows, attempts and audit trail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.models import Attempt, AuditEntry, Message
from monitoring.services import retention

pytestmark = pytest.mark.django_db
Status = Message.Status


def aged(message: Message, days: int) -> Message:
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(days=days))
    return message


def test_old_finished_payloads_are_blanked_and_everything_else_stays(make_flow, make_message, settings):
    settings.ICBRIDGE_PAYLOAD_RETENTION_DAYS = 30
    flow = make_flow()
    old = aged(make_message(flow, payload_out={"x": 1}, headers={"h": 1}), 31)
    old_skipped = aged(make_message(flow, status=Status.SKIPPED, payload_out={"x": 2}), 40)
    old_dead = aged(make_message(flow, status=Status.DEAD, payload_out={"x": 3}), 60)  # still needs an operator
    recent = aged(make_message(flow, payload_out={"x": 4}), 29)
    Attempt.objects.create(message=old, number=1, started_at=timezone.now(), outcome="delivered", response_status=201)
    AuditEntry.objects.create(
        actor_name="alice", action="retry", object_type="message", object_id=str(old.pk), message=old
    )

    purged = retention.payloads_purge(batch=1)

    assert purged == 2
    for message in (old, old_skipped):
        message.refresh_from_db()
        assert (message.payload_in, message.payload_out, message.headers) == ({}, None, {})
        assert message.source_record_key.startswith("RAW-")  # the row and its keys stay
    old_dead.refresh_from_db()
    recent.refresh_from_db()
    assert old_dead.payload_out == {"x": 3}
    assert recent.payload_out == {"x": 4}
    assert Attempt.objects.filter(message=old, response_status=201).exists()
    assert AuditEntry.objects.filter(message=old).exists()
    assert retention.payloads_purge() == 0  # nothing left to do


def test_the_beat_task_uses_the_configured_days(make_flow, make_message, settings):
    from monitoring import tasks

    settings.ICBRIDGE_PAYLOAD_RETENTION_DAYS = 5
    message = aged(make_message(make_flow()), 6)

    tasks.purge_payloads()

    message.refresh_from_db()
    assert message.payload_in == {}


def test_a_retention_below_one_day_is_refused():
    with pytest.raises(ValueError, match="at least 1 day"):
        retention.payloads_purge(days=0)


def test_the_setting_is_read_from_the_environment():
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django;django.setup();from django.conf import settings;"
            "print(settings.ICBRIDGE_PAYLOAD_RETENTION_DAYS)",
        ],
        env={
            "DJANGO_SETTINGS_MODULE": "icbridge.settings",
            "ICBRIDGE_PAYLOAD_RETENTION_DAYS": "7",
            "PATH": "/usr/bin:/bin",
            "ICBRIDGE_DATA_DIR": "/tmp/icbridge-ops-retention",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "7"
