"""The operator console in a real browser: an outage on the home page, pause and resume, search, conflicts,
readable lists, local API docs, reconciliation schedules, a retry after a value-map fix.

Each test also writes the screenshot docs/operations.md shows (tests/browser/conftest.py screenshot).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User

from integrations.models import InboundEndpoint, Message, ValueMap, ValueMapEntry
from integrations.pipeline import deliver as pipeline
from integrations.pipeline.ingest import message_ingest
from integrations.pipeline.sweep import messages_sweep
from monitoring.models import ReconciliationRun, ReconciliationSchedule
from monitoring.roles import console_roles_ensure
from sandbox.common.faults import set_faults
from sandbox.models import RecorderRecord, RecorderWrite
from tests.browser.conftest import screenshot
from tests.conftest import broker, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
Status = Message.Status
SECRET = "browser-secret-123"


def member(role: str, name: str) -> tuple[str, str]:
    console_roles_ensure()
    password = f"pw-{name}-123"
    user = User.objects.create_user(name, password=password, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return name, password


def run_action(page, pk: int, action: str) -> str:
    """Tick one row of a changelist, run an admin action, return the console's message."""
    page.check(f"input[name=_selected_action][value='{pk}']")
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")
    return page.locator(".messagelist").inner_text()


def post_webhook(base_url: str, flow_slug: str, number: str) -> int:
    request = urllib.request.Request(
        f"{base_url}/api/ingest/{flow_slug}",
        data=json.dumps({"id": f"evt-{number}", "OrderNumber": number}).encode(),
        headers={"Content-Type": "application/json", "X-Icbridge-Key": SECRET},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_an_outage_shows_on_the_home_page_within_one_sweep_with_its_count(login, recorder_flow):
    recorder_flow.retry_policy = {"max_attempts": 8, "backoff": {"1": 600}, "jitter": 0}
    recorder_flow.save()
    set_faults("recorder", down=True)
    for n in range(3):
        message, _ = message_ingest(
            flow=recorder_flow,
            payload={"OrderNumber": f"SO-{n}"},
            idempotency_key=f"o-{n}",
            source_record_key=f"SO-{n}",
        )
        pipeline.message_process(message_id=message.pk)  # the first attempt: the target is down
    messages_sweep()
    set_faults("recorder", down=False)
    page = login(*member("operator", "oona"))

    incident = page.locator("#incident-recorder").inner_text()
    assert "Recorder is down: 3 message(s) affected" in incident
    assert "3 retrying" in incident
    assert page.locator(f"#flow-{recorder_flow.slug} .icb-chip").inner_text() == "degraded"
    assert page.locator("#system-recorder .icb-chip").inner_text() == "down"
    assert page.locator("#site-name").inner_text().startswith("icbridge")
    assert "Django administration" not in page.content()
    screenshot(page, "home-outage")


def test_pause_holds_incoming_webhooks_and_resume_delivers_them_in_order(
    login, live_server, recorder_flow, start_worker
):
    InboundEndpoint.objects.create(flow=recorder_flow, auth_type=InboundEndpoint.AuthType.HEADER, secret=SECRET)
    start_worker("pause")
    page = login(*member("operator", "paula"))
    page.goto("/admin/integrations/flow/")
    assert "Paused 1 flow(s)" in run_action(page, recorder_flow.pk, "pause_flows")

    codes = [post_webhook(live_server.url, recorder_flow.slug, f"SO-{n}") for n in range(3)]
    queues = (settings.CELERY_TASK_DEFAULT_QUEUE, settings.ICBRIDGE_SWEEP_QUEUE)
    wait_until(lambda: sum(broker().llen(q) for q in queues) == 0, timeout=20)  # the worker took every task …
    time.sleep(1)  # … and had time to deliver, which it must not
    assert codes == [202, 202, 202]
    assert RecorderRecord.objects.exists() is False
    page.goto("/admin/")
    assert page.locator(f"#flow-{recorder_flow.slug} .held-count").inner_text() == "3 held"
    assert page.locator(f"#flow-{recorder_flow.slug} .icb-chip").inner_text() == "paused"
    page.goto("/admin/integrations/flow/")
    screenshot(page, "flows-paused")

    assert "3 held message(s) released" in run_action(page, recorder_flow.pk, "resume_flows")
    wait_until(lambda: Message.objects.filter(status=Status.DELIVERED).count() == 3, timeout=60)
    order = list(RecorderWrite.objects.order_by("at", "pk").values_list("record__key", flat=True))
    assert order == ["SO-0", "SO-1", "SO-2"]
    assert list(Message.objects.order_by("delivered_at", "pk").values_list("source_record_key", flat=True)) == [
        "evt-SO-0",
        "evt-SO-1",
        "evt-SO-2",
    ]


def test_searching_an_order_number_finds_its_messages(login, recorder_flow):
    wanted, _ = message_ingest(
        flow=recorder_flow,
        payload={"SalesOrder": {"PurchaseOrderNumber": "ORD-407050", "Customer": "US-001"}},
        idempotency_key="dv-1",
        source_record_key="0f8fad5b-d9cb-469f-a165-70867728950e",
    )
    message_ingest(
        flow=recorder_flow, payload={"SalesOrder": {"PurchaseOrderNumber": "ORD-407051"}}, idempotency_key="dv-2"
    )
    page = login(*member("operator", "sam"))

    page.goto("/admin/integrations/message/")
    page.fill("#searchbar", "ORD-407050")
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(r"q=ORD-407050"))

    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert rows.first.locator("th a, td a").first.inner_text() == str(wanted.pk)
    screenshot(page, "search")


def test_the_conflict_page_highlights_exactly_the_changed_fields(login, recorder_flow):
    message = Message.objects.create(
        flow=recorder_flow,
        idempotency_key="c-1",
        status=Status.CONFLICT,
        payload_in={"id": "c-1"},
        source_record_key="ACC-1",
        payload_out={"name": "Contoso", "city": "Aarhus", "telephone1": "+45 1111", "creditlimit": 5000},
        target_snapshot={
            "@odata.etag": 'W/"12345"',
            "@odata.context": "https://org.crm4.dynamics.com/api/data/v9.2/$metadata#accounts/$entity",
            "name": "CONTOSO",
            "city": "Aarhus",
            "telephone1": "+45 2222",
            "creditlimit": 5000,
        },
    )
    page = login(*member("operator", "cleo"))

    page.goto(f"/admin/integrations/message/{message.pk}/resolve/")

    highlighted = page.locator("#conflict tr.diff td:first-child strong").all_inner_texts()
    assert highlighted == ["name", "telephone1"]
    background = page.locator("#conflict tr.diff td").first.evaluate("td => getComputedStyle(td).backgroundColor")
    plain = page.locator("#conflict tbody tr:not(.diff) td").first.evaluate(
        "td => getComputedStyle(td).backgroundColor"
    )
    assert background != plain
    assert page.locator("#conflict tr.case-only").inner_text().startswith("name letter case only")
    assert "@odata" not in page.locator("#conflict").inner_text()
    assert page.locator("#changed-count").inner_text() == "2 field(s) differ"
    screenshot(page, "conflict")


def test_the_api_docs_render_with_no_external_request(login, live_server):
    page = login(*member("operator", "dora"))
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto("/api/docs")
    page.wait_for_selector(".swagger-ui .info .title")

    assert "icbridge API" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock").count() > 5  # the operations are listed: the schema loaded too
    outside = [url for url in requested if not url.startswith(live_server.url) and not url.startswith("data:")]
    assert outside == []
    assert any(url.endswith("/api/schema") for url in requested)


def test_the_reconciliation_schedule_page_renders_with_runs_and_reconcile_now(login, recorder_flow):
    schedule = ReconciliationSchedule.objects.create(flow=recorder_flow, every_minutes=60)
    ReconciliationRun.objects.create(flow=recorder_flow, checked=4, matched=4)
    page = login(*member("integration engineer", "erin"))

    response = page.goto("/admin/monitoring/reconciliationschedule/")
    assert response.status == 200
    assert ": 4 checked, 0 discrepancies" in page.locator("#result_list").inner_text()
    result = run_action(page, schedule.pk, "run_now")

    assert f"{recorder_flow.slug}: 0 checked" in result.lower()  # the message list capitalises
    assert page.locator("#result_list tbody tr").count() == 1


LONG_ERROR = "errors.RejectedError: " + "The target refused the record because field X is not valid; " * 30


MEASURE = """() => {
    const d = document.documentElement;
    const r = document.querySelector('#changelist .results');
    const rows = [...document.querySelectorAll('#result_list tbody tr')];
    const heights = rows.map(tr => tr.getBoundingClientRect().height);
    return {page: d.scrollWidth - d.clientWidth, results: r ? r.scrollWidth - r.clientWidth : 0,
            tallest: Math.max(0, ...heights), rows: rows.length};
}"""


def _measure(page) -> dict:
    return page.evaluate(MEASURE)


def test_the_message_flow_and_system_lists_have_no_horizontal_scroll_at_1440(login, make_flow, make_system):
    source = make_system(
        name="Dynamics 365 Finance & Operations SE01 production",
        base_url="https://" + "x" * 60 + ".operations.dynamics.com/data",
    )
    target = make_system(
        name="Dynamics AX 2012 R3 DK01 (AIF services, production)",
        base_url="https://" + "y" * 80 + ".example.com/MicrosoftDynamicsAXAif60/SalesOrderService/xppservice.svc",
    )
    flow = make_flow(
        name="Intercompany purchase order DK01 (AX) to intercompany sales order SE01 (F&O)",
        source=source,
        target=target,
    )
    for n in range(30):
        Message.objects.create(
            flow=flow,
            idempotency_key=f"long-{n}-" + "k" * 120,
            payload_in={"n": n},
            status=Status.FAILED if n % 2 else Status.RETRYING,
            attempts=n,
            source_record_key="SalesOrderNumber='" + "9" * 60 + f"{n}',dataAreaId='se01'",
            last_error_class="integrations.errors.RejectedError",
            last_error=LONG_ERROR,
        )
    page = login(*member("operator", "lara"))
    page.set_viewport_size({"width": 1440, "height": 900})

    for url in (
        "/admin/integrations/message/?attention=all",
        "/admin/integrations/flow/",
        "/admin/integrations/system/",
    ):
        page.goto(url)
        sizes = _measure(page)
        assert sizes["rows"] > 0, url
        assert sizes["page"] <= 0, (url, sizes)
        assert sizes["results"] <= 0, (url, sizes)
        assert sizes["tallest"] <= 48, (url, sizes)
    page.goto("/admin/integrations/message/?attention=all")
    assert page.locator("#result_list tbody tr").first.locator(".icb-flow").inner_text() == flow.name
    screenshot(page, "messages")


def test_a_retry_right_after_a_value_map_fix_succeeds(login, recorder_flow, start_worker):
    units = ValueMap.objects.create(name="uom")
    ValueMapEntry.objects.create(value_map=units, source_value="PCS", target_value="PCE")
    recorder_flow.mapping_spec = {
        "fields": {"OrderNumber": "OrderNumber", "Unit": {"path": "Unit", "lookup": {"map": "uom", "missing": "error"}}}
    }
    recorder_flow.save()
    start_worker("valuemap")
    message, _ = message_ingest(
        flow=recorder_flow,
        payload={"OrderNumber": "SO-1", "Unit": "BOX"},
        idempotency_key="u-1",
        source_record_key="SO-1",
    )
    wait_until(lambda: Message.objects.get(pk=message.pk).status == Status.FAILED, timeout=30)
    assert "BOX" in Message.objects.get(pk=message.pk).last_error

    engineer = login(*member("integration engineer", "eva"))
    engineer.goto(f"/admin/integrations/valuemap/{units.pk}/change/")
    engineer.fill("#id_entries-1-source_value", "BOX")
    engineer.fill("#id_entries-1-target_value", "KAR")
    engineer.click("input[name=_save]")
    assert ValueMapEntry.objects.filter(value_map=units, source_value="BOX").exists()
    operator = login(*member("operator", "otis"))
    operator.goto(f"/admin/integrations/message/{message.pk}/change/")
    operator.click("#action-retry")
    operator.fill("#id_reason", "BOX added to the uom map")
    operator.click("#confirm")

    wait_until(lambda: Message.objects.get(pk=message.pk).status in (Status.DELIVERED, Status.FAILED), timeout=20)
    message.refresh_from_db()
    assert message.status == Status.DELIVERED, message.last_error
    assert RecorderRecord.objects.get(key="SO-1").payload["Unit"] == "KAR"
