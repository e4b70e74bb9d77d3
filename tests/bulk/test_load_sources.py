"""read_page of each source kind, through a whole load: S/4 ($skiptoken paging) and AX 2012 (getKeys + read)."""

from __future__ import annotations

import pytest

from integrations.bulk import load
from integrations.models import LoadRun, Message, System
from integrations.protocols.transport import DeliveryRequest
from integrations.systems import get_connector
from tests.bulk.test_initial_load import run_pages

pytest_plugins = ["tests.connectors.microsoft_support"]
pytestmark = pytest.mark.django_db(transaction=True)


def test_an_s4_load_follows_the_gateways_skiptoken_pages(make_system, make_flow, live_server, settings):
    settings.SANDBOX_S4_PAGE_SIZE = 3
    s4 = make_system(
        kind=System.Kind.S4HANA,
        base_url=f"{live_server.url}/sandbox/s4hana/sap/opu/odata/sap",
        auth_type=System.AuthType.BASIC,
        client_id="ICBRIDGE",
        secret="sandbox",
    )
    connector = get_connector(s4)
    for n in range(7):
        payload = {
            "SalesOrderType": "OR",
            "SalesOrganization": "1710",
            "DistributionChannel": "10",
            "OrganizationDivision": "00",
            "SoldToParty": "17100001",
            "PurchaseOrderByCustomer": f"PO-{n}",
        }
        connector.deliver(
            DeliveryRequest(
                entity="API_SALES_ORDER_SRV/A_SalesOrder",
                operation="create",
                payload=payload,
                key={},
                idempotency_key=f"so-{n}",
            )
        )
    flow = make_flow(source=s4)

    first, cursor = connector.read_page("API_SALES_ORDER_SRV/A_SalesOrder", "", {})
    run = run_pages(load.load_start(flow=flow, entity="API_SALES_ORDER_SRV/A_SalesOrder", key=["SalesOrder"]))

    assert len(first) == 3
    assert "$skiptoken=3" in cursor
    assert (run.state, run.read, run.written, run.pages) == (LoadRun.State.DONE, 7, 7, 3)
    assert Message.objects.filter(flow=flow).values("source_record_key").distinct().count() == 7


@pytest.fixture
def ax(make_system, live_server) -> System:
    return make_system(
        kind=System.Kind.AX2012,
        base_url=f"{live_server.url}/sandbox/ax2012/MicrosoftDynamicsAXAif60",
        auth_type=System.AuthType.BASIC,
        client_id="icbridge",
        secret="sandbox",
    )


def test_an_ax_load_reads_every_document_of_the_company(ax, make_flow):
    connector = get_connector(ax)
    before = len(connector.read_page("CustomerService", "", {"company": "DK01", "page_size": 1000})[0])
    for n in range(5):
        connector.deliver(
            DeliveryRequest(
                entity="CustomerService",
                operation="create",
                company="DK01",
                payload={"Name": f"Customer {n}", "CustGroup": "IC", "VATNum": f"V{n}"},
                key={"VATNum": f"V{n}"},
                idempotency_key=f"c-{n}",
            )
        )
    flow = make_flow(source=ax, options={"ax_service": "CustomerService", "ax_company": "DK01"})

    run = run_pages(load.load_start(flow=flow, key=["AccountNum"], page_size=2))

    assert (run.state, run.read, run.written) == (LoadRun.State.DONE, before + 5, before + 5)
    assert run.pages == -(-(before + 5) // 2)
    names = set(Message.objects.filter(flow=flow).values_list("payload_in__Name", flat=True))
    assert {f"Customer {n}" for n in range(5)} <= names


def test_a_dataverse_load_pages_with_maxpagesize_and_next_links(make_flow, dataverse_system):
    connector = get_connector(dataverse_system)
    for n in range(5):
        connector.deliver(DeliveryRequest(entity="accounts", operation="upsert", payload={"name": f"Account {n}"},
                                          key={"accountnumber": f"A{n}"}, idempotency_key=f"acc-{n}"))  # fmt: skip
    flow = make_flow(source=dataverse_system, entity="account")

    first, cursor = connector.read_page("accounts", "", {"page_size": 2})
    run = run_pages(load.load_start(flow=flow, entity="accounts", key=["accountid"], page_size=2))

    assert len(first) == 2
    assert cursor.startswith("https://")  # the server's @odata.nextLink, followed as is
    assert (run.state, run.read, run.written, run.pages) == (LoadRun.State.DONE, 5, 5, 3)
    loaded = {m.payload_in["attributes"]["accountnumber"] for m in Message.objects.filter(flow=flow)}
    assert loaded == {f"A{n}" for n in range(5)}  # each row as a webhook's Update carries it


def test_a_dataverse_load_stores_a_lookup_as_the_webhooks_entity_reference(make_flow, dataverse_system):
    """A loaded row's lookup is the EntityReference a webhook carries (its table and name included, read with
    Prefer: odata.include-annotations), so links and mappings read attributes.parentcustomerid alike."""
    connector = get_connector(dataverse_system)
    account = connector.deliver(DeliveryRequest(entity="accounts", operation="upsert", payload={"name": "Contoso"},
                                                key={"accountnumber": "A1"}, idempotency_key="acc-1"))  # fmt: skip
    contact = {"lastname": "Smith", "parentcustomerid_account@odata.bind": f"/accounts({account.target_key})"}
    connector.deliver(
        DeliveryRequest(entity="contacts", operation="create", payload=contact, key={}, idempotency_key="c-1")
    )
    flow = make_flow(source=dataverse_system, entity="contact")

    run = run_pages(load.load_start(flow=flow, entity="contacts", key=["contactid"]))

    assert (run.state, run.written) == (LoadRun.State.DONE, 1)
    loaded = Message.objects.get(flow=flow).payload_in["attributes"]
    assert loaded["parentcustomerid"] == {"LogicalName": "account", "Id": account.target_key, "Name": "Contoso"}


def test_an_ax_document_loaded_and_then_polled_has_one_source_key(ax, make_flow):
    """AIF names a document by its key field alone (getChangedKeys, EntityKeyList); the load's row key carries
    dataAreaId too. Both are stored in AX's normal form, so one record is one key (and one RecordLink)."""
    from integrations.polling.poll import flow_poll
    from sandbox.ax2012 import ports

    get_connector(ax).deliver(
        DeliveryRequest(
            entity="CustomerService",
            operation="create",
            company="DK01",
            key={"VATNum": "V-ONE"},
            payload={"Name": "Loaded then polled", "CustGroup": "IC", "VATNum": "V-ONE"},
            idempotency_key="c-one",
        )
    )
    flow = make_flow(source=ax, trigger="poll", options={"ax_service": "CustomerService", "ax_company": "DK01"})
    run_pages(load.load_start(flow=flow, key=["AccountNum"], page_size=50))
    ports.set_document_filters("CustomerService", [{}])
    flow_poll(flow=flow)

    messages = Message.objects.filter(flow=flow, payload_in__Name="Loaded then polled")
    assert messages.count() == 2  # the load's message and the poll's
    assert {m.source_record_key for m in messages} == {messages[0].payload_in["AccountNum"]}


def test_an_ax_flow_naming_no_service_is_listed_by_its_entitys_service_and_key(ax, make_flow):
    """The poller reads a flow of entity "customer" with CustomerService (options.ax_service unset): a load and
    reconciliation list the same service, keyed by its document's key field."""
    flow = make_flow(source=ax, entity="customer", trigger="poll")

    assert load.load_source(flow=flow) == load.LoadSource(entity="CustomerService", key=("AccountNum",))


def test_an_fo_event_flow_is_not_listed_by_the_document_its_fetch_rule_reads(make_flow, make_system):
    """An F&O business event carries the document's own fields; a fetch rule reads another document (an order
    an invoice names). Listing that one would report every order without such an event: the flow needs
    options.listing, and without it the source cannot be listed."""
    fo = make_system(kind=System.Kind.FINOPS)
    rule = {"entity": "SalesOrderHeadersV2", "key": {"SalesOrderNumber": "SalesOrderNumber"}, "as": "order"}
    flow = make_flow(source=fo, entity="invoice", trigger="business_event", options={"fetch": [rule]})

    with pytest.raises(load.LoadError, match="source key fields"):
        load.load_source(flow=flow)


def test_a_listing_is_refused_on_a_flow_that_takes_no_business_events(make_flow):
    from django.core.exceptions import ValidationError

    listing = {"entity": "SalesInvoiceHeadersV2", "key": ["InvoiceNumber"], "event": {"InvoiceNumber": "InvoiceNumber"}}
    flow = make_flow(trigger="webhook", options={"listing": listing})

    with pytest.raises(ValidationError, match="only a business_event flow"):
        flow.full_clean()
