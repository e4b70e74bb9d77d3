"""Batched live traffic to Dataverse goes as bulk operation messages, with real workers."""

from __future__ import annotations

import uuid

from integrations.models import Attempt, Message
from integrations.polling.poll import flow_poll
from integrations.protocols.transport import DeliveryRequest
from integrations.systems import get_connector
from sandbox.models import EmulatorRecord
from tests.conftest import wait_until

PRODUCTS = "p2c-products-fo-to-sales"


def test_fo_products_reach_sales_as_one_upsert_multiple(start_worker, p2c_flows):
    """Use bulk operation messages: a batch of the products flow is one UpsertMultiple on products."""
    flow = p2c_flows[PRODUCTS]
    flow.target.batch_size = 50
    flow.target.save(update_fields=["batch_size"])
    fo = get_connector(flow.source)
    items = [f"BLK{n:02d}" for n in range(6)]
    for item in items:
        fo.deliver(
            DeliveryRequest(
                entity="ReleasedProductsV2",
                operation="upsert",
                payload={"ProductName": f"Bulk {item}", "SalesPrice": 10.0, "SalesUnitSymbol": "ea"},
                key={"ItemNumber": item},
                idempotency_key=str(uuid.uuid4()),
                company="SE01",
            )
        )

    flow_poll(flow=flow)
    start_worker()
    wait_until(lambda: Message.objects.filter(flow=flow, status="delivered").count() == len(items))

    products = EmulatorRecord.objects.filter(emulator="dataverse", entity="products", deleted=False)
    assert sorted(p.data["productnumber"] for p in products) == items
    summaries = set(Attempt.objects.filter(message__flow=flow).values_list("request_summary", flat=True))
    assert any("Microsoft.Dynamics.CRM.UpsertMultiple" in s for s in summaries), summaries
