"""The operator console (Django admin) per role: what each sees and may do, every action audited."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from integrations.models import AuditEntry, MappingVersion, Message
from integrations.pipeline import deliver as pipeline
from integrations.pipeline.ingest import message_ingest
from monitoring.roles import console_roles_ensure
from sandbox.common.faults import set_faults

pytestmark = pytest.mark.django_db(transaction=True)
Status = Message.Status


def member(role: str, name: str) -> User:
    console_roles_ensure()
    user = User.objects.create_user(name, password="pw-" + name, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def operator_client(client):
    client.force_login(member("operator", "olga"))
    return client


@pytest.fixture
def auditor_client(client):
    client.force_login(member("auditor", "audrey"))
    return client


@pytest.fixture
def dead(recorder_flow) -> Message:
    recorder_flow.retry_policy = {"max_attempts": 1}
    recorder_flow.save()
    MappingVersion.objects.create(flow=recorder_flow, version=recorder_flow.mapping_version, spec={})
    set_faults("recorder", down=True)
    message, _ = message_ingest(
        flow=recorder_flow, payload={"OrderNumber": "SO-7", "Qty": 1}, idempotency_key="evt-7", source_record_key="SO-7"
    )
    pipeline.message_process(message_id=message.pk)
    set_faults("recorder", down=False)
    message.refresh_from_db()
    assert message.status == Status.DEAD
    return message


@pytest.fixture
def delivered(recorder_flow) -> Message:
    message, _ = message_ingest(
        flow=recorder_flow, payload={"OrderNumber": "SO-8"}, idempotency_key="evt-8", source_record_key="SO-8"
    )
    pipeline.message_process(message_id=message.pk)
    return message


def changelist(client, query: str = "") -> str:
    response = client.get(reverse("admin:integrations_message_changelist") + query)
    assert response.status_code == 200
    return response.content.decode()


def listed_ids(html: str) -> set[int]:
    return {int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', html)}


def test_the_index_shows_attention_counts_and_the_dashboard_link(operator_client, dead):
    html = operator_client.get(reverse("admin:index")).content.decode()

    assert re.search(r'id="count-dead">1 dead<', html)
    assert 'id="dashboard-link" href="/monitoring/dashboard"' in html


def test_the_message_list_opens_on_what_needs_attention_and_a_search_widens_it(operator_client, dead, delivered):
    assert listed_ids(changelist(operator_client)) == {dead.pk}
    assert listed_ids(changelist(operator_client, "?attention=all")) == {dead.pk, delivered.pk}
    assert listed_ids(changelist(operator_client, f"?q={delivered.correlation_id}")) == {delivered.pk}
    assert listed_ids(changelist(operator_client, "?q=SO-8")) == {delivered.pk}  # source record id
    assert listed_ids(changelist(operator_client, "?q=evt-7")) == {dead.pk}  # idempotency key


def test_the_detail_shows_payloads_attempts_mapping_version_chain_and_actions(operator_client, dead):
    html = operator_client.get(reverse("admin:integrations_message_change", args=[dead.pk])).content.decode()

    assert "<details class='icb-payload' open><summary>payload in" in html
    assert "&quot;OrderNumber&quot;: &quot;SO-7&quot;" in html
    assert re.search(r'<tr class="attempt-dead">.*?503', html, re.S)
    assert "<code>errors.TransientError</code>" in html
    version = MappingVersion.objects.get(flow=dead.flow)
    assert f"/admin/integrations/mappingversion/{version.pk}/change/" in html
    assert 'id="business-chain"' in html
    assert f"/admin/chain/{dead.correlation_id}/" in html
    for action in ("retry", "replay", "discard"):
        assert f'id="action-{action}"' in html
    assert 'name="_save"' not in html


def test_edit_and_replay_links_the_new_message_and_audits_the_reason(operator_client, dead):
    url = reverse("admin:integrations_message_replay", args=[dead.pk])
    form = operator_client.get(url).content.decode()
    assert "&quot;Qty&quot;: 1" in form

    bad = operator_client.post(url, {"payload": '{"OrderNumber": "SO-7",', "reason": "fix qty"})
    assert "payload is not valid JSON" in bad.content.decode()
    response = operator_client.post(url, {"payload": json.dumps({"OrderNumber": "SO-7", "Qty": 2}), "reason": "qty"})

    replay = Message.objects.get(replay_of=dead)
    assert response.status_code == 302
    assert response["Location"].endswith(f"/message/{replay.pk}/change/")
    assert replay.payload_in == {"OrderNumber": "SO-7", "Qty": 2}
    dead.refresh_from_db()
    assert dead.status == Status.DISCARDED
    entry = AuditEntry.objects.get(action="replay")
    assert (entry.actor_name, entry.reason, entry.details["edited"]) == ("olga", "qty", True)
    pipeline.message_process(message_id=replay.pk)
    replay.refresh_from_db()
    assert replay.status == Status.DELIVERED


def test_discard_asks_for_a_reason(operator_client, dead):
    url = reverse("admin:integrations_message_discard", args=[dead.pk])

    refused = operator_client.post(url, {"reason": "  "})
    done = operator_client.post(url, {"reason": "duplicate of SO-6"})

    assert "Say why" in refused.content.decode() or "This field is required" in refused.content.decode()
    assert done.status_code == 302
    assert AuditEntry.objects.get(action="discard").reason == "duplicate of SO-6"


def test_retry_all_matching_the_filter_reaches_beyond_one_page(operator_client, recorder_flow, make_message):
    for _ in range(60):
        make_message(recorder_flow, status=Status.DEAD)
    make_message(recorder_flow, status=Status.FAILED)
    url = reverse("admin:integrations_message_retry_matching") + "?status__exact=dead"

    page = operator_client.get(url).content.decode()
    response = operator_client.post(url, {"reason": "target is back"})

    assert re.search(r"<strong>60</strong> retryable message", page)
    assert response.status_code == 302
    assert Message.objects.filter(status=Status.RECEIVED).count() == 60
    assert Message.objects.filter(status=Status.FAILED).count() == 1
    assert AuditEntry.objects.filter(action="retry", reason="target is back").count() == 60


def test_the_retry_list_action_asks_for_a_reason_first(operator_client, dead):
    url = reverse("admin:integrations_message_changelist")
    data = {"action": "retry_selected", "_selected_action": [dead.pk], "index": 0}

    asked = operator_client.post(url, data)
    done = operator_client.post(url, {**data, "apply": "1", "reason": "bulk retry"})

    assert 'name="reason"' in asked.content.decode()
    assert done.status_code == 302
    assert AuditEntry.objects.get(action="retry").reason == "bulk retry"


def test_a_conflict_shows_both_versions_side_by_side_and_resolves(operator_client, make_message, recorder_flow):
    message = make_message(
        recorder_flow,
        status=Status.CONFLICT,
        payload_out={"Name": "Ours", "City": "Aarhus"},
        target_snapshot={"Name": "Theirs", "City": "Aarhus"},
    )
    url = reverse("admin:integrations_message_resolve", args=[message.pk])

    html = operator_client.get(url).content.decode()
    operator_client.post(url, {"side": "target", "reason": "sales owns the name"})

    assert re.search(
        r'<tr class="diff"><td><strong>Name</strong></td><td><pre>&quot;Ours&quot;</pre></td>'
        r"<td><pre>&quot;Theirs&quot;</pre>",
        html,
    )
    assert '<tr class=""><td><strong>City</strong>' in html
    message.refresh_from_db()
    assert message.status == Status.SKIPPED
    assert AuditEntry.objects.get(action="resolve_conflict_target").reason == "sales owns the name"


def test_an_auditor_sees_everything_but_cannot_retry(auditor_client, dead):
    detail = auditor_client.get(reverse("admin:integrations_message_change", args=[dead.pk])).content.decode()
    retry = auditor_client.post(reverse("admin:integrations_message_retry", args=[dead.pk]), {"reason": "x"})
    action = auditor_client.post(
        reverse("admin:integrations_message_changelist"),
        {"action": "retry_selected", "_selected_action": [dead.pk], "apply": "1", "reason": "x", "index": 0},
    )
    audit_log = auditor_client.get(reverse("admin:integrations_auditentry_changelist"))

    assert "SO-7" in detail
    assert 'id="action-retry"' not in detail
    assert retry.status_code == 403
    assert action.status_code in (200, 302)
    dead.refresh_from_db()
    assert dead.status == Status.DEAD
    assert AuditEntry.objects.exists() is False
    assert audit_log.status_code == 200


def test_attempts_and_the_audit_log_are_read_only_even_for_a_superuser(client, dead, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="x"))
    attempt = dead.attempt_set.first()

    page = client.get(reverse("admin:integrations_attempt_change", args=[attempt.pk])).content.decode()
    post = client.post(reverse("admin:integrations_attempt_change", args=[attempt.pk]), {"duration_ms": 1})

    assert 'name="_save"' not in page
    assert post.status_code == 403
    assert client.get(reverse("admin:integrations_auditentry_add")).status_code == 403


def test_the_dashboard_renders_flows_systems_and_charts(operator_client, dead, delivered):
    html = operator_client.get("/monitoring/dashboard?window=day").content.decode()

    assert 'id="tile-delivered">1<' in html
    assert 'id="tile-dead">1<' in html
    assert html.count('<svg class="chart"') == 3  # throughput, latency, backlog age
    assert 'class="series-delivered"' in html
    assert dead.flow.name in html
    assert "Recorder" in html


def test_the_dashboard_is_for_staff_only_and_names_bad_windows(client, operator_client, django_user_model):
    outsider = django_user_model.objects.create_user("eve", password="x")
    client.force_login(outsider)
    assert client.get("/monitoring/dashboard").status_code == 302

    operator_client.force_login(member("operator", "oscar"))
    bad = operator_client.get("/monitoring/dashboard?window=year")
    assert (bad.status_code, bad.content.decode()) == (400, "window must be one of: hour, day, week")


def test_an_engineer_edits_a_reconciliation_schedule_and_beat_follows(client, make_flow):
    from django_celery_beat.models import PeriodicTask

    from monitoring.models import ReconciliationSchedule

    client.force_login(member("integration engineer", "erik"))
    flow = make_flow()
    data = {
        "flow": flow.pk,
        "enabled": "on",
        "every_minutes": 30,
        "cron": "",
        "source_mode": "message",
        "max_records": 100,
        "totals": "{}",
    }

    added = client.post(reverse("admin:monitoring_reconciliationschedule_add"), data)
    schedule = ReconciliationSchedule.objects.get(flow=flow)
    changed = client.post(
        reverse("admin:monitoring_reconciliationschedule_change", args=[schedule.pk]), {**data, "cron": "0 3 * * *"}
    )

    assert (added.status_code, changed.status_code) == (302, 302)
    task = PeriodicTask.objects.get(name=f"icbridge-reconcile-{flow.slug}")
    assert (task.interval, task.crontab.minute, task.crontab.hour) == (None, "0", "3")


def test_an_operator_repairs_a_reconciliation_run_from_the_console(operator_client, recorder_flow):
    from monitoring.services import reconciliation
    from sandbox.models import RecorderRecord
    from tests.monitoring.conftest import deliver_order

    deliver_order(recorder_flow, "SO-1", Amount=1)
    RecorderRecord.objects.filter(key="SO-1").delete()
    run = reconciliation.reconciliation_run(flow=recorder_flow)

    response = operator_client.post(
        reverse("admin:monitoring_reconciliationrun_changelist"),
        {"action": "repair", "_selected_action": [run.pk], "index": 0},
    )

    assert response.status_code == 302
    repair = Message.objects.get(idempotency_key__endswith=f"#repair-{run.discrepancies.get().pk}")
    assert AuditEntry.objects.get(action="reconcile_repair").actor_name == "olga"
    pipeline.message_process(message_id=repair.pk)
    assert RecorderRecord.objects.filter(key="SO-1").exists()


def test_the_message_list_never_counts_the_whole_table(operator_client, dead):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        changelist(operator_client, "?attention=needs")

    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"] and '"integrations_message"' in q["sql"]]
    assert counts  # the page's own (filtered) count is fine …
    assert all("WHERE" in sql for sql in counts)  # … an unfiltered COUNT(*) of the table is not


def test_an_unfiltered_large_table_is_paged_on_the_planner_estimate(recorder_flow, make_message):
    from django.db import connection

    from integrations.admin.messages import EstimatedCountPaginator

    class Large(EstimatedCountPaginator):
        exact_below = 3  # what 20,000 rows are in production

    for _ in range(5):
        make_message(recorder_flow)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE integrations_message")
    make_message(recorder_flow)  # not yet in the estimate

    assert Large(Message.objects.all(), 50).count == 5  # the estimate, no COUNT(*)
    assert Large(Message.objects.filter(status=Status.DELIVERED), 50).count == 6  # filtered: exact
    assert EstimatedCountPaginator(Message.objects.all(), 50).count == 6  # a small table: exact


@pytest.mark.parametrize(
    ("values", "field", "text"),
    [
        ({"cron": "daily"}, "cron", "cron: expected 5 fields"),
        ({"every_minutes": 0}, "every_minutes", "must be at least 1"),
        ({"totals": '{"date": "InvoiceDate"}'}, "totals", 'totals: expected {"amount"'),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(admin_client, make_flow, values, field, text):
    from monitoring.models import ReconciliationSchedule

    data = {
        "flow": make_flow().pk,
        "enabled": "on",
        "every_minutes": 30,
        "cron": "",
        "source_mode": "message",
        "max_records": 100,
        "totals": "{}",
        **values,
    }

    response = admin_client.post(reverse("admin:monitoring_reconciliationschedule_add"), data)

    assert response.status_code == 200
    assert text in " ".join(response.context["adminform"].form.errors[field])
    assert ReconciliationSchedule.objects.exists() is False
