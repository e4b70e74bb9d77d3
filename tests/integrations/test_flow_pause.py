"""Pause holds (202, counted), resume releases in arrival order; paused is not disabled; every change audited."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group, User

from integrations.models import AuditEntry, InboundEndpoint, Message
from integrations.pipeline import deliver, pause
from integrations.pipeline.sweep import messages_sweep
from integrations.selectors import overview

pytestmark = pytest.mark.django_db(transaction=True)
Status = Message.Status
SECRET = "pause-secret-123"


@pytest.fixture
def webhook_flow(recorder_flow):
    InboundEndpoint.objects.create(flow=recorder_flow, auth_type=InboundEndpoint.AuthType.HEADER, secret=SECRET)
    return recorder_flow


@pytest.fixture
def olga(db):
    return User.objects.create_user("olga", password="x", is_staff=True)


def post_event(client, flow, number: str):
    return client.post(
        f"/api/ingest/{flow.slug}",
        data=json.dumps({"id": f"evt-{number}", "OrderNumber": number}),
        content_type="application/json",
        HTTP_X_ICBRIDGE_KEY=SECRET,
    )


def test_a_paused_flow_accepts_events_and_holds_them(client, webhook_flow, olga):
    pause.flow_pause(flow=webhook_flow, actor=olga, reason="F&O maintenance")

    responses = [post_event(client, webhook_flow, f"SO-{n}") for n in range(3)]
    for message in Message.objects.all():
        assert deliver.message_process(message_id=message.pk) == 0
    swept = messages_sweep()

    assert [r.status_code for r in responses] == [202, 202, 202]
    assert swept["requeued"] == 0
    assert set(Message.objects.values_list("status", flat=True)) == {Status.RECEIVED}
    state = overview.flow_states()[0]
    assert (state.state, state.held) == ("paused", 3)
    assert AuditEntry.objects.get(action="flow_pause").reason == "F&O maintenance"


def test_a_disabled_flow_still_refuses_events(client, webhook_flow):
    webhook_flow.enabled = False
    webhook_flow.save()

    response = post_event(client, webhook_flow, "SO-1")

    assert response.status_code == 409
    assert Message.objects.exists() is False


def test_resume_releases_the_held_messages_oldest_first(client, webhook_flow, olga):
    pause.flow_pause(flow=webhook_flow, actor=olga)
    for n in range(3):
        post_event(client, webhook_flow, f"SO-{n}")
    held = list(Message.objects.order_by("created_at").values_list("pk", flat=True))

    released = pause.flow_resume(flow=webhook_flow, actor=olga, reason="maintenance over")
    order = list(
        Message.objects.filter(status__in=Message.DELIVERABLE, queued_at__isnull=True)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)
    )
    swept = messages_sweep()  # what the sweep queued after commit does
    for pk in held:
        deliver.message_process(message_id=pk)

    assert released == 3
    assert order == held
    assert swept["requeued"] == 3
    assert set(Message.objects.values_list("status", flat=True)) == {Status.DELIVERED}
    assert AuditEntry.objects.get(action="flow_resume").details == {"released": 3}


def test_pausing_a_system_holds_every_flow_to_it(client, webhook_flow, olga):
    pause.system_pause(system=webhook_flow.target, actor=olga, reason="announced outage")
    post_event(client, webhook_flow, "SO-9")
    message = Message.objects.get()

    assert deliver.message_process(message_id=message.pk) == 0
    assert overview.flow_states()[0].state == "held"
    assert pause.system_resume(system=webhook_flow.target, actor=olga) == 1
    deliver.message_process(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == Status.DELIVERED


def test_pause_twice_audits_once_and_resume_of_a_running_flow_does_nothing(webhook_flow, olga):
    assert pause.flow_pause(flow=webhook_flow, actor=olga) is True
    assert pause.flow_pause(flow=webhook_flow, actor=olga) is False
    assert pause.flow_resume(flow=webhook_flow, actor=olga) == 0
    assert pause.flow_resume(flow=webhook_flow, actor=olga) == 0

    assert list(AuditEntry.objects.order_by("at").values_list("action", flat=True)) == ["flow_pause", "flow_resume"]


def test_the_operator_api_pauses_and_resumes_with_an_audit_row(client, webhook_flow):
    from monitoring.roles import console_roles_ensure

    console_roles_ensure()
    user = User.objects.create_user("omar", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="operator"))
    client.force_login(user)

    paused = client.post(f"/api/flows/{webhook_flow.slug}/pause", {"reason": "hold"}, content_type="application/json")
    post_event(client, webhook_flow, "SO-5")
    resumed = client.post(f"/api/flows/{webhook_flow.slug}/resume", {}, content_type="application/json")

    assert paused.status_code == 200
    assert (paused.json()["state"], paused.json()["changed"]) == ("paused", True)
    assert (resumed.json()["state"], resumed.json()["released"]) == ("running", 1)
    assert AuditEntry.objects.filter(action__in=["flow_pause", "flow_resume"], actor_name="omar").count() == 2


def test_the_operator_api_pauses_a_system_and_an_auditor_may_not(client, webhook_flow):
    from monitoring.roles import console_roles_ensure

    console_roles_ensure()
    auditor = User.objects.create_user("audrey", password="x", is_staff=True)
    auditor.groups.add(Group.objects.get(name="auditor"))
    engineer = User.objects.create_user("erik", password="x", is_staff=True)
    engineer.groups.add(Group.objects.get(name="integration engineer"))
    url = f"/api/systems/{webhook_flow.target.slug}/pause"

    client.force_login(auditor)
    refused = client.post(url, {}, content_type="application/json")
    client.force_login(engineer)
    paused = client.post(url, {"reason": "AX upgrade"}, content_type="application/json")
    post_event(client, webhook_flow, "SO-6")
    state = client.post(url, {}, content_type="application/json").json()

    assert refused.status_code == 403
    assert (paused.status_code, paused.json()["state"]) == (200, "paused")
    assert (state["changed"], state["held"]) == (False, 1)
    assert AuditEntry.objects.get(action="system_pause").reason == "AX upgrade"
