"""The operator's read models: business-document search, needs attention, incidents, health live vs ready."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from integrations.models import Message
from integrations.selectors import overview
from integrations.selectors.conflicts import conflict_diff
from integrations.selectors.search import messages_search
from monitoring.models import ReconciliationRun, ReconciliationSchedule

pytestmark = pytest.mark.django_db
Status = Message.Status


def found(term: str) -> set[int]:
    return set(messages_search(queryset=Message.objects.all(), term=term).values_list("pk", flat=True))


# --- search ---------------------------------------------------------------------------------------


def test_an_order_number_in_the_payload_finds_its_messages(make_flow, make_message):
    flow = make_flow()
    order = make_message(flow, payload_in={"SalesOrder": {"PurchaseOrderNumber": "ORD-407050"}}, source_record_key="k1")
    invoice = make_message(flow, payload_in={"id": "x"}, payload_out={"InvoiceId": "INV-77", "Ref": "ord-407050"})
    make_message(flow, payload_in={"SalesOrder": {"PurchaseOrderNumber": "ORD-407051"}})

    assert found("ORD-407050") == {order.pk, invoice.pk}  # in and out, case-insensitive
    assert found("INV-77") == {invoice.pk}
    assert found("k1") == {order.pk}  # a key, exactly


def test_a_customer_number_in_what_was_fetched_is_found(make_flow, make_message):
    message = make_message(make_flow(), payload_fetched={"fetched": {"customer": {"CustomerAccount": "US-0042"}}})

    assert found("us-0042") == {message.pk}


def test_a_short_term_matches_keys_only_and_wildcards_are_literal(make_flow, make_message):
    flow = make_flow()
    note = make_message(flow, payload_in={"Note": "AB and 100%"})
    keyed = make_message(flow, source_record_key="AB")
    make_message(flow, payload_in={"Note": "1000 units"})

    assert found("AB") == {keyed.pk}
    assert found("%") == set()
    assert found("00%") == {note.pk}  # "%" is a character here, not LIKE's wildcard


def test_the_payload_search_reads_the_trigram_index_on_postgresql(make_flow, make_message):
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL")
    # The suite builds its tables from the models (--no-migrations): create the indexes as the migration does.
    migration = importlib.import_module("integrations.migrations._steps")
    with connection.schema_editor() as editor:
        migration.create_search_indexes(None, editor)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'message_search_%%'")
        names = {row[0] for row in cursor.fetchall()}
        cursor.execute("SET enable_seqscan = off")
        search = messages_search(queryset=Message.objects.order_by(), term="ORD-407050")
        sql, params = search.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = on")

    assert names == {"message_search_in", "message_search_fetched", "message_search_out"}
    assert "message_search_in" in plan, plan


# --- needs attention and incidents ----------------------------------------------------------------


def test_retrying_past_the_attempt_or_age_threshold_needs_attention(make_flow, make_message, settings):
    settings.ICBRIDGE_ATTENTION_ATTEMPTS = 3
    settings.ICBRIDGE_ATTENTION_MINUTES = 10
    flow = make_flow()
    blip = make_message(flow, status=Status.RETRYING, attempts=1)
    many = make_message(flow, status=Status.RETRYING, attempts=3)
    old = make_message(flow, status=Status.RETRYING, attempts=1)
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    dead = make_message(flow, status=Status.DEAD)

    attention = set(overview.needs_attention().values_list("pk", flat=True))

    assert attention == {many.pk, old.pk, dead.pk}
    assert blip.pk not in attention
    assert overview.attention_counts() == {"failed": 0, "dead": 1, "conflict": 0, "retrying": 2}


def test_a_target_failing_every_delivery_is_an_incident_with_its_count(make_flow, make_system, make_message):
    fno = make_system(name="F&O SE01", slug="fno")
    flow = make_flow(target=fno)
    make_message(flow, status=Status.DELIVERED, delivered_at=timezone.now() - timedelta(minutes=30))
    for _ in range(4):
        make_message(
            flow,
            status=Status.RETRYING,
            attempts=1,
            last_error_class="errors.TransientError",
            last_error="connection refused",
        )
    make_message(flow, status=Status.DEAD, last_error_class="errors.TransientError")

    (incident,) = overview.incidents()

    assert (incident.system, incident.state, incident.retrying, incident.dead) == (fno, "down", 4, 1)
    assert incident.title == "F&O SE01 is down: 5 message(s) affected"
    assert incident.last_error == "connection refused"
    (state,) = [s for s in overview.system_states() if s.system == fno]
    assert state.state == "down"


def test_a_target_that_still_takes_some_messages_is_degraded_not_down(make_flow, make_message):
    flow = make_flow()
    failing = make_message(flow, status=Status.RETRYING, attempts=1, last_error_class="errors.TransientError")
    Message.objects.filter(pk=failing.pk).update(updated_at=timezone.now() - timedelta(minutes=2))
    make_message(flow, status=Status.DELIVERED, delivered_at=timezone.now())

    assert [i.state for i in overview.incidents()] == ["degraded"]


def test_no_retrying_message_no_incident(make_flow, make_message):
    make_message(make_flow(), status=Status.RETRYING, attempts=0)  # queued again by an operator, not failed

    assert overview.incidents() == []


# --- conflict diff --------------------------------------------------------------------------------


def test_the_conflict_diff_names_exactly_the_changed_fields(make_flow, make_message):
    message = make_message(
        make_flow(),
        status=Status.CONFLICT,
        payload_out={"name": "Contoso", "city": "Aarhus", "phone": "1", "only_ours": 1},
        target_snapshot={
            "name": "CONTOSO",
            "city": "Aarhus",
            "phone": "2",
            "@odata.etag": 'W/"7"',
            "_parent_value@OData.Community.Display.V1.FormattedValue": "Parent",
        },
    )

    rows = {row.field: row.state for row in conflict_diff(message=message)}

    assert rows == {"city": "same", "name": "case", "phone": "changed", "only_ours": "ours-only"}
    assert [r.field for r in conflict_diff(message=message) if r.differs] == ["name", "phone"]


# --- health ---------------------------------------------------------------------------------------


def test_live_answers_without_checking_anything(client, settings):
    settings.ICBRIDGE_HEALTH_PING_SECONDS = 0.3
    PeriodicTask.objects.all().delete()

    response = client.get("/monitoring/health/live")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_ready_without_workers_is_degraded_not_unready(client, settings):
    settings.ICBRIDGE_HEALTH_PING_SECONDS = 0.3
    settings.ICBRIDGE_HEALTH_DETAILS_PUBLIC = True
    PeriodicTask.objects.all().delete()

    response = client.get("/monitoring/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert (body["checks"]["database"], body["checks"]["broker"]) == ("ok", "ok")
    assert body["checks"]["workers"].startswith("failed")


def test_ready_without_a_broker_is_unready(client, settings, monkeypatch):
    from monitoring.services import health

    def broker_down() -> str:
        raise ConnectionRefusedError

    monkeypatch.setitem(health.CHECKS, "broker", broker_down)
    settings.ICBRIDGE_HEALTH_PING_SECONDS = 0.3

    response = client.get("/monitoring/health/ready")

    assert (response.status_code, response.json()["status"]) == (503, "failing")


def test_a_backlog_draining_is_not_a_dead_beat(make_flow, make_message, settings):
    from monitoring.services import health

    settings.ICBRIDGE_HEALTH_PING_SECONDS = 0.3
    PeriodicTask.objects.all().delete()
    flow = make_flow()
    for _ in range(3):
        make_message(flow, status=Status.RECEIVED, queued_at=timezone.now())

    assert health.check_beat() == "ok: heartbeat queued behind 3 message(s) being delivered"


# --- reconciliation schedule page -----------------------------------------------------------------


def test_the_schedule_list_renders_with_runs(admin_client, make_flow):
    flow = make_flow()
    ReconciliationSchedule.objects.create(flow=flow, every_minutes=60)
    ReconciliationRun.objects.create(flow=flow, checked=12)

    response = admin_client.get("/admin/monitoring/reconciliationschedule/")

    assert response.status_code == 200
    assert ": 12 checked, 0 discrepancies" in response.content.decode()


# --- safer bulk retry -----------------------------------------------------------------------------


@pytest.fixture
def operator_client(client):
    from django.contrib.auth.models import Group, User

    from monitoring.roles import console_roles_ensure

    console_roles_ensure()
    user = User.objects.create_user("olga", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="operator"))
    client.force_login(user)
    return client


def test_retry_all_matching_leaves_skipped_echoes_out_and_shows_what_will_run(operator_client, make_flow, make_message):
    flow = make_flow(name="Accounts to F&O")
    for _ in range(5):
        make_message(flow, status=Status.SKIPPED)
    dead = [make_message(flow, status=Status.DEAD) for _ in range(2)]
    url = "/admin/integrations/message/retry-matching/?attention=all"

    page = operator_client.get(url).content.decode()
    operator_client.post(url, {"reason": "F&O is back"})

    assert "<strong>2</strong> retryable message(s)" in page
    assert "5 skipped message(s)" in page
    assert '<td><span class="icb-badge dead">dead</span></td><td>Accounts to F&amp;O</td><td>2</td>' in page
    assert set(Message.objects.filter(status=Status.RECEIVED).values_list("pk", flat=True)) == {m.pk for m in dead}
    assert Message.objects.filter(status=Status.SKIPPED).count() == 5


def test_retry_all_matching_includes_skipped_when_asked(operator_client, make_flow, make_message):
    flow = make_flow()
    make_message(flow, status=Status.SKIPPED)
    url = "/admin/integrations/message/retry-matching/?attention=all&include_final=1"

    page = operator_client.get(url).content.decode()
    operator_client.post(url, {"reason": "re-send the echo", "include_final": "1"})

    assert "<strong>1</strong> retryable message(s)" in page
    assert Message.objects.get().status == Status.RECEIVED


def test_the_operator_api_searches_by_document_number(operator_client, make_flow, make_message):
    flow = make_flow()
    wanted = make_message(flow, payload_in={"SalesOrder": {"PurchaseOrderNumber": "ORD-407050"}})
    make_message(flow, payload_in={"SalesOrder": {"PurchaseOrderNumber": "ORD-1"}})

    body = operator_client.get("/api/messages", {"search": "ord-407050"}).json()
    too_long = operator_client.get("/api/messages", {"search": "x" * 256})

    assert [m["id"] for m in body["results"]] == [wanted.pk]
    assert too_long.status_code == 400
    assert too_long.json()["field"] == "search"


def test_the_dashboard_charts_one_flow_over_a_week_with_its_backlog_age(operator_client, make_flow, make_message):
    from django.utils import timezone as tz

    mine, other = make_flow(slug="mine"), make_flow(slug="other")
    waiting = make_message(mine, status=Status.RETRYING)
    Message.objects.filter(pk=waiting.pk).update(created_at=tz.now() - timedelta(hours=2))
    make_message(other, status=Status.RECEIVED)

    page = operator_client.get("/monitoring/dashboard", {"window": "week", "flow": "mine"})
    unknown = operator_client.get("/monitoring/dashboard", {"flow": "nope"})

    html = page.content.decode()
    assert page.status_code == 200
    assert html.count('<svg class="chart"') == 3
    assert 'class="series-wait_max_s"' in html
    assert "<strong>last week</strong>" in html
    assert (unknown.status_code, unknown.content.decode()) == (400, "flow 'nope' does not exist")


def test_backlog_age_counts_what_still_waits(make_flow, make_message):
    from django.utils import timezone as tz

    from monitoring.services import stats

    flow = make_flow()
    waiting = make_message(flow, status=Status.RETRYING)
    Message.objects.filter(pk=waiting.pk).update(created_at=tz.now() - timedelta(minutes=20))

    series = stats.dashboard(window="hour", flow=flow).series["wait_max_s"]

    assert series[-1][1] >= 20 * 60
