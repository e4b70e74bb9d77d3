"""The Flow and System consoles share their pause actions and columns; attempts and audit rows stay append-only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from integrations.models import Attempt, AuditEntry, Flow, Message, System
from integrations.services.roles import AUDITOR, OPERATOR, roles_ensure

pytestmark = pytest.mark.django_db


def _user(name: str, role: str) -> Client:
    roles_ensure()
    user = User.objects.create_user(name, password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def _run_action(client: Client, model: str, action: str, pk: int) -> str:
    url = reverse(f"admin:integrations_{model}_changelist")
    response = client.post(url, {"action": action, "_selected_action": [pk], "index": 0}, follow=True)
    return response.content.decode()


@pytest.mark.parametrize("model", ["flow", "system"])
def test_an_operator_pauses_and_resumes_from_the_console_and_the_list_shows_what_is_held(make_flow, model):
    # given a flow with a waiting message, and an operator
    flow = make_flow()
    Message.objects.create(flow=flow, idempotency_key="k-1", payload_in={"id": 1})
    obj = flow if model == "flow" else flow.target
    operator = _user("olga", OPERATOR)
    # when the operator pauses it from its console
    page = _run_action(operator, model, f"pause_{model}s", obj.pk)
    # then it is paused, by name, and its list row shows the message as held
    assert f"Paused 1 {model}(s): " in page
    assert type(obj).objects.get(pk=obj.pk).paused_at is not None
    assert "<span class='icb-held'>1 held</span>" in page
    # and resuming releases it
    page = _run_action(operator, model, f"resume_{model}s", obj.pk)
    assert f"Resumed 1 {model}(s); 1 held message(s) released." in page
    assert type(obj).objects.get(pk=obj.pk).paused_at is None


def test_an_auditor_is_not_offered_the_pause_actions(make_flow):
    # given a flow and an auditor (view permissions only)
    flow = make_flow()
    auditor = _user("audrey", AUDITOR)
    # when the auditor opens the two lists
    pages = [auditor.get(reverse(f"admin:integrations_{m}_changelist")).content.decode() for m in ("flow", "system")]
    # then neither offers pausing, and nothing was paused
    assert all("pause_" not in page for page in pages)
    assert not Flow.objects.filter(pk=flow.pk, paused_at__isnull=False).exists()
    assert not System.objects.filter(paused_at__isnull=False).exists()


def test_attempts_and_audit_entries_refuse_a_second_save(make_flow):
    # given a stored attempt and a stored audit entry
    message = Message.objects.create(flow=make_flow(), idempotency_key="k-1", payload_in={})
    attempt = Attempt.objects.create(
        message=message, number=1, started_at=message.created_at, outcome=Attempt.Outcome.DELIVERED
    )
    entry = AuditEntry.objects.create(actor_name="olga", action="retry", object_type="message", object_id="1")
    # when either is saved again, then it is refused, naming the kind of record
    with pytest.raises(ValueError, match="^Attempts are append-only$"):
        attempt.save()
    with pytest.raises(ValueError, match="^Audit entries are append-only$"):
        entry.save()
