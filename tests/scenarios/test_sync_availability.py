"""The synchronous availability / price call into the other company, against the live F&O emulator."""

from __future__ import annotations

import pytest

from integrations.models import AuditEntry, CompanyLink
from integrations.scenarios import traffic
from integrations.scenarios.install import templates_install
from integrations.scenarios.templates.intercompany import LINK
from integrations.services.roles import OPERATOR
from monitoring.roles import console_roles_ensure
from sandbox.common.faults import clear_faults, set_faults

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/api/sync/availability"


@pytest.fixture
def link(live_server):
    templates_install(name="intercompany", base_url=live_server.url)
    link = CompanyLink.objects.select_related("system_a", "system_b").get(name=LINK)
    report = traffic.TrafficReport()
    traffic.intercompany_master_data(link=link, report=report)
    assert report.failed == []
    yield link
    clear_faults()


@pytest.fixture
def api(client, django_user_model):
    # A sync call uses the hub's ERP credentials: it needs a role (issue 15), here the operator's.
    buyer = django_user_model.objects.create_user("buyer", password="pw")
    buyer.groups.add(console_roles_ensure()[OPERATOR])
    client.force_login(buyer)
    return client


def ask(api, **body):
    return api.post(
        URL, {"company_link": LINK, "item": "A0001", "quantity": "5", **body}, content_type="application/json"
    )


def test_dk01_asks_se01_for_price_and_availability(api, link):
    response = ask(api)

    assert response.status_code == 200
    body = response.json()
    assert (body["company"], body["asked_by"], body["item"]) == ("SE01", "DK01", "A0001")
    assert body["answer"]["UnitPrice"] == 12.5
    assert body["answer"]["IsAvailable"] is False  # nothing on hand in the sandbox
    audit = AuditEntry.objects.get(action="sync_availability")
    assert audit.actor_name == "buyer"
    assert audit.details["status"] == 200


def test_slow_answer_is_a_504_with_the_timeout_in_the_text(api, link):
    set_faults("finops", latency_ms=1500)

    response = ask(api, timeout_seconds=0.5)

    assert response.status_code == 504
    assert response.json()["error"] == "D365 F&O (sandbox) did not answer within 0.5 s"
    assert AuditEntry.objects.get(action="sync_availability").details["status"] == 504


def test_outage_is_a_502_that_says_so(api, link):
    set_faults("finops", down=True)

    response = ask(api)

    assert response.status_code == 502
    assert response.json()["error"].startswith("D365 F&O (sandbox) could not answer")


def test_unknown_item_is_refused_with_fos_own_text(api, link):
    response = ask(api, item="NOPE")

    assert response.status_code == 422
    assert "NOPE does not exist" in response.json()["error"]


def test_bad_input_names_the_field(api, link):
    unknown = ask(api, company_link="nowhere")
    negative = ask(api, quantity="-1")
    wrong_side = ask(api, ask_company="DE01")

    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no company link 'nowhere'", "field": "company_link"}
    assert negative.status_code == 400
    assert negative.json()["field"] == "quantity"
    assert wrong_side.status_code == 400
    assert wrong_side.json()["field"] == "ask_company"


def test_anonymous_callers_are_refused(client, link):
    assert client.post(URL, {}, content_type="application/json").status_code in (401, 403)
