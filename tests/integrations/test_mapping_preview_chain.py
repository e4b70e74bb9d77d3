"""Mapping preview of a chained flow sees the chain's links, as the pipeline does (message_prepare)."""

from __future__ import annotations

import pytest

from integrations.models import Message, RecordLink
from integrations.pipeline.preview import mapping_preview

pytestmark = pytest.mark.django_db

SPEC = {
    "fields": {
        "PackingSlip": "PackingSlipId",
        "PurchaseOrder": {"expr": "$ctx.chain.order.source_key", "required": True},
        "Customer": {"expr": "$ctx.chain.customer.target_key", "required": True},
    }
}


@pytest.fixture
def chained(make_flow):
    orders = make_flow(slug="ic-po")
    accounts = make_flow(slug="accounts")
    RecordLink.objects.create(flow=orders, source_key="PO-1", target_key="SO-9", correlation_id="c-1")
    RecordLink.objects.create(flow=accounts, source_key="ACC-1", target_key="US-0042")
    return make_flow(
        slug="packing-slips",
        mapping_spec=SPEC,
        options={
            "chain": {"follows": "ic-po", "match": "target_key", "key": ["SalesOrderNumber"], "as": "order"},
            "links": [{"follows": "accounts", "match": "source_key", "key": "Account", "as": "customer"}],
        },
    )


def test_the_preview_of_a_chained_flow_maps_with_the_chains_links(chained):
    result = mapping_preview(
        flow=chained, payload={"PackingSlipId": "PS-1", "SalesOrderNumber": "SO-9", "Account": "ACC-1"}
    )

    assert result.errors == []
    assert result.output == {"PackingSlip": "PS-1", "PurchaseOrder": "PO-1", "Customer": "US-0042"}
    assert Message.objects.exists() is False  # a preview stores nothing


def test_a_chain_link_not_there_yet_is_named_not_a_missing_account(chained):
    result = mapping_preview(
        flow=chained, payload={"PackingSlipId": "PS-2", "SalesOrderNumber": "SO-404", "Account": "ACC-1"}
    )

    assert result.errors == [
        "chain context: chain: SO-404 is not linked by flow 'ic-po' yet (looked up by target_key); "
        "waiting for that record to be delivered"
    ]
