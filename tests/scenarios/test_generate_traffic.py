"""Demo traffic: documents created in the sandbox systems the way their users would, and seeding."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from integrations.models import Flow, Message
from integrations.polling.poll import flow_poll
from integrations.scenarios import traffic
from integrations.scenarios.install import seed_scenarios
from integrations.scenarios.templates import TEMPLATES
from integrations.scenarios.templates.systems import SANDBOX_CLIENT_ID
from sandbox import dataverse
from sandbox.models import EmulatorRecord
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seeded(live_server):
    yield seed_scenarios(live_server.url)
    dataverse.reset()  # no webhook of this test may still be on its way when the next one starts


def test_seed_installs_all_three_scenarios_against_the_sandbox(seeded, live_server):
    assert [report.template for report in seeded] == list(TEMPLATES)
    assert all(report.changed for report in seeded)
    assert not any(report.changed for report in seed_scenarios(live_server.url))  # a second `make run`
    assert (
        Flow.objects.filter(source__base_url__startswith=f"{live_server.url}/sandbox/").count() == Flow.objects.count()
    )


def test_intercompany_traffic_enters_purchase_orders_in_ax_that_the_poller_picks_up(seeded):
    out = StringIO()

    call_command("generate_traffic", "--orders", "3", "--scenario", "intercompany", "--seed", "1", stdout=out)

    orders = EmulatorRecord.objects.filter(emulator="ax2012", entity="PurchaseOrder", company="DK01")
    assert orders.count() == 3
    assert {order.data["fields"]["OrderAccount"] for order in orders} == {"IV-SE01"}
    assert "intercompany: 3 document(s) created" in out.getvalue()
    result = flow_poll(flow=Flow.objects.get(slug="ic-dk01-po-to-se01-so"))
    assert result.messages_created == 3


def test_sales_traffic_writes_dataverse_whose_webhooks_reach_the_hub(seeded):
    call_command(
        "generate_traffic", "--orders", "2", "--scenario", "prospect_to_cash", "--seed", "2", stdout=StringIO()
    )

    assert EmulatorRecord.objects.filter(emulator="dataverse", entity="accounts").count() == 2
    assert EmulatorRecord.objects.filter(emulator="dataverse", entity="salesorders").count() == 2
    # Dataverse's webhook steps send them, after the writes: every flow that takes accounts or orders gets each.
    for slug in ("p2c-accounts-sales-to-fo", "p2c-orders-sales-to-fo", "o2c-accounts-d365-to-s4"):
        wait_until(lambda slug=slug: Message.objects.filter(flow__slug=slug).count() == 2, timeout=15)
    order = Message.objects.filter(flow__slug="p2c-orders-sales-to-fo").first()
    customer = order.payload_in["attributes"]["customerid"]
    account = EmulatorRecord.objects.get(emulator="dataverse", entity="accounts", key=customer["Id"])
    assert customer == {"LogicalName": "account", "Id": account.key, "Name": account.data["name"]}
    assert order.headers["x-ms-dynamics-entity-name"] == "salesorder"
    # …written by the Sales users' own app user, not by the hub's
    apps = {app.data["client_id"]: app.data["object_id"] for app in EmulatorRecord.objects.filter(emulator="azuread")}
    assert order.payload_in["context"]["UserId"] == apps[traffic.SALES_USERS_CLIENT_ID] != apps[SANDBOX_CLIENT_ID]


def test_bad_order_count_is_refused():
    with pytest.raises(CommandError, match="--orders must be between 1 and 100000"):
        call_command("generate_traffic", "--orders", "0", stdout=StringIO())


def test_traffic_before_install_says_what_to_run(db):
    with pytest.raises(CommandError, match="install_templates"):
        call_command("generate_traffic", "--scenario", "intercompany", stdout=StringIO())
