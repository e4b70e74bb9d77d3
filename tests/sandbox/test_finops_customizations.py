"""The order-hold service and event are a customer's customization, not standard F&O: the emulator can go without."""

from __future__ import annotations

import time

from sandbox import finops
from sandbox.models import EmulatorRecord, EmulatorSubscription
from tests.connectors.microsoft_support import Inbox, MsClient
from tests.sandbox.test_finops_emulator import SERVICES, sales_order

pytest_plugins = ["tests.connectors.microsoft_support"]

CLEAR = f"{SERVICES}/IcbOrderHoldServices/IcbOrderHoldService/clearHold"
PLACE = f"{SERVICES}/IcbSandboxServices/IcbSalesOrderService/placeHold"


def test_without_the_customization_there_is_no_clear_hold_service_and_no_hold_event(
    fo: MsClient, inbox: Inbox, finops_items: None
) -> None:
    """Business events developer documentation; Service endpoints: custom events and services are X++ a
    customer deploys; an environment without them lists no such service group and raises no such event."""
    EmulatorSubscription.objects.create(
        emulator="finops", event_type="SalesOrderHoldPlacedBusinessEvent", url=inbox.url
    )
    finops.configure(customizations=[])
    sales_order(fo)
    hold = {"_dataAreaId": "SE01", "_salesOrderNumber": "SO-1", "_holdCode": "Credit"}

    placed = fo.call("POST", PLACE, json={**hold, "_holdReason": "Limit"})
    cleared = fo.call("POST", CLEAR, json={**hold, "_clearedBy": "ops"})
    groups = fo.call("GET", f"{SERVICES}").json()["ServiceGroups"]
    time.sleep(1)

    assert placed.status_code == 200  # the hold itself is standard F&O (order holds)
    assert EmulatorRecord.objects.filter(emulator="finops", entity="SalesOrderHolds").exists()
    assert cleared.status_code == 404
    assert "IcbOrderHoldServices" not in [g["Name"] for g in groups]
    assert inbox.received == []


def test_the_customization_is_deployed_by_default(fo: MsClient) -> None:
    """Service endpoints: a deployed custom service group is listed under /api/services."""
    groups = fo.call("GET", f"{SERVICES}").json()["ServiceGroups"]

    assert "IcbOrderHoldServices" in [g["Name"] for g in groups]
    assert finops.settings_get()["customizations"] == ["order_holds"]
