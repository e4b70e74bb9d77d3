"""Business chains: one correlation id from the AX purchase order to the F&O invoice."""

from __future__ import annotations

import pytest

from integrations.errors import MappingError, TransientError
from integrations.models import Message
from integrations.pipeline.prepare import message_prepare
from integrations.scenarios.chains import message_link_context
from integrations.selectors.chains import ChainNotFound, chain_as_dict, chain_for

pytestmark = pytest.mark.django_db
Status = Message.Status


@pytest.fixture
def chain_flows(make_flow):
    po = make_flow(slug="ic-po", name="AX PO → F&O SO")
    follow = {"follows": "ic-po", "match": "target_key", "key": ["SalesOrderNumber", "SalesId"], "as": "order"}
    packing = make_flow(
        slug="ic-packing", name="F&O packing slip → AX receipt", options={"chain": {**follow, "step": 2}}
    )
    invoice = make_flow(
        slug="ic-invoice", name="F&O invoice → AX vendor invoice", options={"chain": {**follow, "step": 3}}
    )
    hold = make_flow(slug="ic-hold", name="Order hold", options={"chain": {**follow, "step": 4, "optional": True}})
    return po, packing, invoice, hold


def test_event_of_a_linked_order_takes_the_orders_correlation_id_and_po_number(chain_flows, make_link, make_message):
    po, packing, *_ = chain_flows
    make_link(po, "PO-000123", "SO-000777", correlation_id="corr-1")
    event = make_message(packing, payload_in={"SalesId": "SO-000777"}, correlation_id="event-guid")

    context = message_link_context(message=event)

    assert context["chain"]["order"] == {
        "source_key": "PO-000123",
        "target_key": "SO-000777",
        "correlation_id": "corr-1",
        "target": {},
        "source": {},
    }
    event.refresh_from_db()
    assert event.correlation_id == "corr-1"


def test_event_for_an_order_not_linked_yet_is_retried_later_with_the_key(chain_flows, make_message):
    _, packing, *_ = chain_flows
    event = make_message(packing, payload_in={"SalesOrderNumber": "SO-404"})

    with pytest.raises(TransientError) as caught:
        message_link_context(message=event)

    assert "SO-404" in caught.value.message
    assert "ic-po" in caught.value.message


def test_event_without_the_key_says_which_paths_were_tried(chain_flows, make_message):
    _, packing, *_ = chain_flows
    event = make_message(packing, payload_in={"InvoiceId": "INV-1"})

    with pytest.raises(MappingError) as caught:
        message_link_context(message=event)

    assert "SalesOrderNumber" in caught.value.message
    assert "SalesId" in caught.value.message


def test_flow_without_a_chain_rule_adds_nothing(chain_flows, make_message):
    po, *_ = chain_flows
    message = make_message(po, payload_in={"PurchId": "PO-1"}, correlation_id="c")

    assert message_link_context(message=message) == {}


def test_chain_lists_every_step_in_order_with_state_and_cross_references(chain_flows, make_link, make_message):
    po, packing, invoice, hold = chain_flows
    make_message(
        po, source_record_key="PO-1", correlation_id="corr-9", status=Status.DELIVERED, target_record_key="SO-1"
    )
    make_link(po, "PO-1", "SO-1", correlation_id="corr-9")
    make_message(packing, source_record_key="PS-1", correlation_id="corr-9", status=Status.RETRYING)

    chain = chain_for("corr-9")

    steps = chain_as_dict(chain)["steps"]
    assert [(s["flow"], s["state"]) for s in steps] == [
        ("ic-po", "delivered"),
        ("ic-packing", "retrying"),
        ("ic-invoice", "waiting"),
        ("ic-hold", "waiting"),
    ]
    assert (steps[0]["source_key"], steps[0]["target_key"]) == ("PO-1", "SO-1")
    assert chain.state == "in_progress"


def test_chain_is_complete_when_every_required_step_is_done(chain_flows, make_message):
    po, packing, invoice, _ = chain_flows
    for flow in (po, packing, invoice):
        make_message(flow, source_record_key=f"{flow.slug}-1", correlation_id="corr-2", status=Status.DELIVERED)

    assert chain_for("corr-2").state == "complete"


def test_chain_with_a_failed_step_needs_attention(chain_flows, make_message):
    po, packing, *_ = chain_flows
    make_message(po, source_record_key="PO-3", correlation_id="corr-3", status=Status.DELIVERED)
    make_message(packing, source_record_key="PS-3", correlation_id="corr-3", status=Status.DEAD)

    assert chain_for("corr-3").state == "attention"


def test_unknown_correlation_id_is_not_found(chain_flows):
    with pytest.raises(ChainNotFound):
        chain_for("nothing")


def test_chain_api_and_page_are_for_staff_only(chain_flows, make_message, staff_client, django_user_model):
    po, *_ = chain_flows
    make_message(po, source_record_key="PO-5", correlation_id="corr-5", status=Status.DELIVERED)

    api = staff_client.get("/api/chains/corr-5")
    page = staff_client.get("/admin/chain/corr-5/")
    unknown = staff_client.get("/api/chains/nope")
    staff_client.force_login(django_user_model.objects.create_user("clerk", password="pw"))
    refused = staff_client.get("/api/chains/corr-5")

    assert api.status_code == 200
    assert api.json()["steps"][0]["source_key"] == "PO-5"
    assert page.status_code == 200
    assert b"PO-5" in page.content
    assert b"waiting" in page.content
    assert unknown.status_code == 404
    assert refused.status_code == 403


def test_prepare_skips_filtered_events_before_looking_for_their_order(chain_flows, make_message):
    _, packing, *_ = chain_flows
    packing.options = {**packing.options, "only_when": {"CustomerAccount": "IC-DK01"}}
    packing.save()
    other_customer = make_message(packing, payload_in={"SalesOrderNumber": "SO-9", "CustomerAccount": "C-1"})

    prepared = message_prepare(message=other_customer)

    assert "CustomerAccount is 'C-1'" in prepared.skip_reason
    assert prepared.context == {}


def test_prepare_gives_the_chain_context_of_a_linked_event(chain_flows, make_link, make_message):
    po, packing, *_ = chain_flows
    make_link(po, "PO-7", "SO-7", correlation_id="corr-7")
    event = make_message(packing, payload_in={"SalesOrderNumber": "SO-7"})

    prepared = message_prepare(message=event)

    assert prepared.skip_reason == ""
    assert prepared.context["chain"]["order"]["source_key"] == "PO-7"


def test_lookup_links_feed_the_mapping_without_changing_the_correlation_id(make_flow, make_link, make_message):
    accounts = make_flow(slug="p2c-accounts")
    orders = make_flow(
        slug="p2c-orders",
        options={
            "links": [
                {"follows": "p2c-accounts", "match": "source_key", "key": "attributes.customerid", "as": "customer"}
            ]
        },
    )
    make_link(accounts, "acc-guid", "SE01|C-000042", correlation_id="account-chain")
    make_link(accounts, "acc-2", "dataAreaId='se01',CustomerAccount='C-2'", correlation_id="account-2")
    customer = {"LogicalName": "account", "Id": "acc-guid", "Name": "Contoso"}
    order = make_message(orders, payload_in={"attributes": {"customerid": customer}}, correlation_id="order-1")

    context = message_link_context(message=order)

    assert context["chain"]["customer"]["target_key"] == "SE01|C-000042"
    assert context["chain"]["customer"]["target"] == {}
    order.refresh_from_db()
    assert order.correlation_id == "order-1"


def test_odata_target_keys_are_split_into_fields_for_the_mapping(make_flow, make_link, make_message):
    accounts = make_flow(slug="accounts")
    orders = make_flow(
        slug="orders",
        options={"links": [{"follows": "accounts", "match": "source_key", "key": "customer", "as": "customer"}]},
    )
    make_link(accounts, "acc-2", "dataAreaId='se01',CustomerAccount='C-2'")
    order = make_message(orders, payload_in={"customer": "acc-2"})

    customer = message_link_context(message=order)["chain"]["customer"]

    assert customer["target"] == {"dataAreaId": "se01", "CustomerAccount": "C-2"}


def test_fo_event_finds_its_order_by_the_connectors_odata_key(make_flow, make_link, make_message):
    po = make_flow(slug="po")
    rule = {"follows": "po", "key": "SalesOrderNumber", "key_field": "SalesOrderNumber", "company": "LegalEntity"}
    packing = make_flow(slug="packing", options={"chain": rule})
    make_link(po, "PO000001", "dataAreaId='se01',SalesOrderNumber='DK01-PO000001'", correlation_id="c-1")
    event = make_message(packing, payload_in={"SalesOrderNumber": "DK01-PO000001", "LegalEntity": "SE01"})

    order = message_link_context(message=event)["chain"]["order"]

    assert order["source_key"] == "PO000001"
    assert order["target"]["SalesOrderNumber"] == "DK01-PO000001"


def test_an_optional_lookup_lets_an_event_without_its_key_through_but_still_waits_for_a_missing_link(
    make_flow, make_link, make_message
):
    make_flow(slug="accounts")
    lookup = {"follows": "accounts", "match": "source_key", "key": "attributes.parentcustomerid", "as": "customer"}
    contacts = make_flow(slug="contacts", options={"links": [{**lookup, "optional": True}]})
    strict = make_flow(slug="contacts-strict", options={"links": [lookup]})
    no_account = {"attributes": {"lastname": "Solo"}}
    unlinked_account = {"attributes": {"parentcustomerid": {"LogicalName": "account", "Id": "acc-new", "Name": "X"}}}

    assert message_link_context(message=make_message(contacts, payload_in=no_account)) == {}
    with pytest.raises(MappingError):
        message_link_context(message=make_message(strict, payload_in=no_account))
    with pytest.raises(TransientError) as caught:  # the account is named but not delivered yet: wait for it
        message_link_context(message=make_message(contacts, payload_in=unlinked_account))
    assert "acc-new" in caught.value.message
