"""The console in a real browser, per role: find a dead message, edit and replay it, see it delivered and audited."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Group, User

from integrations.models import Message
from integrations.pipeline import deliver as pipeline
from integrations.pipeline.ingest import message_ingest
from monitoring.roles import console_roles_ensure
from sandbox.common.faults import set_faults
from tests.browser.conftest import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
Status = Message.Status


def member(role: str, name: str) -> tuple[str, str]:
    console_roles_ensure()
    password = f"pw-{name}-123"
    user = User.objects.create_user(name, password=password, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return name, password


@pytest.fixture
def dead(recorder_flow) -> Message:
    recorder_flow.retry_policy = {"max_attempts": 1}
    recorder_flow.save()
    set_faults("recorder", down=True)
    message, _ = message_ingest(
        flow=recorder_flow,
        payload={"OrderNumber": "SO-42", "Qty": "x"},
        idempotency_key="evt-42",
        source_record_key="SO-42",
    )
    pipeline.message_process(message_id=message.pk)
    set_faults("recorder", down=False)
    message.refresh_from_db()
    assert message.status == Status.DEAD
    return message


def test_an_operator_finds_a_dead_message_edits_replays_and_sees_it_delivered(login, dead):
    page = login(*member("operator", "olga"))

    assert page.locator("#count-dead").inner_text() == "1 dead"
    page.click("#needs-attention-link")
    page.locator(f"a[href*='/message/{dead.pk}/change/']").first.click()
    assert "SO-42" in page.locator("details.icb-payload").first.inner_text()
    page.click("#action-replay")
    page.fill("#id_payload", json.dumps({"OrderNumber": "SO-42", "Qty": 3}))
    page.fill("#id_reason", "quantity was text")
    page.click("#confirm")
    page.wait_for_url(re.compile(r"/message/\d+/change/$"))

    replay = Message.objects.get(replay_of=dead)
    assert page.url.endswith(f"/message/{replay.pk}/change/")
    pipeline.message_process(message_id=replay.pk)  # what a worker does with the queued task
    page.reload()
    assert page.locator(".field-status_badge .icb-badge").inner_text() == "Delivered"
    assert page.locator("#attempts tr.attempt-delivered").count() == 1
    page.locator(f"a[href*='/message/{dead.pk}/change/']").first.click()  # "replay of" → the original
    entry = page.locator("#audit-trail li.audit-entry").first.inner_text()
    assert "replay by olga: quantity was text" in entry
    assert page.locator(".field-status_badge .icb-badge").inner_text() == "Discarded"


def test_an_operator_retries_from_the_detail_page_with_a_reason(login, dead):
    page = login(*member("operator", "omar"))

    page.goto(f"/admin/integrations/message/{dead.pk}/change/")
    page.click("#action-retry")
    page.fill("#id_reason", "   ")
    page.click("#confirm")  # a blank reason: the form says why it refuses
    assert page.locator(".errorlist").count() == 1
    page.fill("#id_reason", "recorder is back")
    page.click("#confirm")
    page.wait_for_url(f"**/message/{dead.pk}/change/")
    pipeline.message_process(message_id=dead.pk)
    page.reload()

    assert page.locator(".field-status_badge .icb-badge").inner_text() == "Delivered"
    assert "retry by omar: recorder is back" in page.locator("#audit-trail").inner_text()


def test_an_auditor_sees_the_dead_message_and_the_audit_log_but_cannot_retry(login, dead):
    page = login(*member("auditor", "audrey"))

    page.goto(f"/admin/integrations/message/{dead.pk}/change/")
    assert "SO-42" in page.content()
    assert page.locator("#action-retry").count() == 0
    assert page.locator("#action-replay").count() == 0
    response = page.goto(f"/admin/integrations/message/{dead.pk}/retry/")
    assert response.status == 403
    page.goto("/admin/integrations/message/")
    assert page.locator("select[name=action]").count() == 0  # no bulk actions offered
    assert page.goto("/admin/integrations/auditentry/").status == 200
    dead.refresh_from_db()
    assert dead.status == Status.DEAD


def test_an_integration_engineer_edits_systems_but_does_not_act_on_messages(login, dead):
    page = login(*member("integration engineer", "erik"))

    assert page.goto("/admin/integrations/system/add/").status == 200
    page.goto(f"/admin/integrations/message/{dead.pk}/change/")
    assert page.locator("#action-retry").count() == 0
    assert page.goto(f"/admin/integrations/message/{dead.pk}/replay/").status == 403


def test_the_dashboard_renders_with_data(login, dead, recorder_flow):
    for n in range(3):
        message, _ = message_ingest(
            flow=recorder_flow,
            payload={"OrderNumber": f"SO-{n}"},
            idempotency_key=f"ok-{n}",
            source_record_key=f"SO-{n}",
        )
        pipeline.message_process(message_id=message.pk)
    page = login(*member("operator", "olivia"))

    page.click("#dashboard-link")
    page.wait_for_url("**/monitoring/dashboard")

    assert page.locator("#tile-delivered").inner_text() == "3"
    assert page.locator("#tile-dead").inner_text() == "1"
    assert page.locator("svg.chart").count() == 3  # throughput, latency, backlog age
    assert page.locator("svg.chart polyline.series-delivered").count() == 1
    assert recorder_flow.name in page.locator("#rows-flow").inner_text()
    page.click("text=last day")
    assert page.locator("#tile-delivered").inner_text() == "3"
    screenshot(page, "dashboard")


def test_an_operator_bulk_retries_everything_the_filter_matches(login, dead, recorder_flow):
    others = []
    for n in range(2):
        message, _ = message_ingest(
            flow=recorder_flow, payload={"OrderNumber": f"X-{n}"}, idempotency_key=f"x-{n}", source_record_key=f"X-{n}"
        )
        Message.objects.filter(pk=message.pk).update(status=Status.DEAD)
        others.append(message)
    page = login(*member("operator", "otto"))

    page.goto("/admin/integrations/message/?status__exact=dead")
    page.click("#retry-matching")
    assert page.locator("#matching-count strong").inner_text() == "3"
    screenshot(page, "retry-matching")
    page.fill("#id_reason", "recorder outage is over")
    page.click("#confirm")
    page.wait_for_url("**/admin/integrations/message/?status__exact=dead")

    assert "Requeued 3 message(s) matching the filter." in page.locator(".messagelist").inner_text()
    assert Message.objects.filter(status=Status.RECEIVED).count() == 3
