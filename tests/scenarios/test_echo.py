"""Echo suppression: a change event caused by our own write is recognised as such."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.scenarios.echo import echo_reason, event_record, message_skip_reason, parse_event_time

pytestmark = pytest.mark.django_db


@pytest.fixture
def flows(make_flow, make_system):
    dataverse, s4 = make_system(), make_system()
    forward = make_flow(slug="bp-dv-to-s4", source=dataverse, target=s4)
    reverse = make_flow(slug="bp-s4-to-dv", source=s4, target=dataverse)
    return forward, reverse


@pytest.fixture
def our_write(flows, make_link, make_message):
    """We wrote account acc-1 to S/4 as business partner BP-1 one second ago."""
    forward, _ = flows
    written = make_message(
        forward, source_record_key="acc-1", payload_out={"OrganizationBPName1": "Contoso", "Rating": 5}
    )
    return make_link(
        forward,
        "acc-1",
        "BP-1",
        target_etag="W/\"datetimeoffset'2026-11-23T10:00:00Z'\"",
        last_message=written,
        synced_at=timezone.now() - timedelta(seconds=1),
    )


def cloud_event(at, key="BP-1"):
    return {
        "type": "sap.s4.beh.businesspartner.v1.BusinessPartner.Changed.v1",
        "time": at,
        "data": {"BusinessPartner": key},
    }


def test_change_event_from_before_our_write_completed_is_an_echo(flows, our_write, make_message):
    _, reverse = flows
    at = (our_write.synced_at - timedelta(milliseconds=200)).isoformat()
    event = make_message(reverse, source_record_key="BP-1", payload_in=cloud_event(at))

    reason = echo_reason(message=event)

    assert "Echo of our write by flow 'bp-dv-to-s4'" in reason


def test_change_after_our_write_is_a_real_change(flows, our_write, make_message):
    _, reverse = flows
    at = (our_write.synced_at + timedelta(seconds=5)).isoformat()
    event = make_message(reverse, source_record_key="BP-1", payload_in=cloud_event(at))

    assert echo_reason(message=event) == ""


def test_event_with_the_etag_we_wrote_is_an_echo_whatever_its_time(flows, our_write, make_message):
    _, reverse = flows
    payload = {"d": {"BusinessPartner": "BP-1", "__metadata": {"etag": our_write.target_etag}}}
    event = make_message(reverse, source_record_key="BP-1", payload_in=payload)

    assert "still at ETag" in echo_reason(message=event)


def test_untimed_event_with_the_values_we_wrote_is_an_echo_and_with_other_values_is_not(flows, our_write, make_message):
    _, reverse = flows
    same = make_message(
        reverse, source_record_key="BP-1", payload_in={"d": {"OrganizationBPName1": "Contoso", "Rating": "5"}}
    )
    edited = make_message(
        reverse, source_record_key="BP-1", payload_in={"d": {"OrganizationBPName1": "Contoso AB", "Rating": "5"}}
    )

    assert "holds the 2 field(s) we wrote" in echo_reason(message=same)
    assert echo_reason(message=edited) == ""


def test_dataverse_event_uses_versionnumber_against_the_etag_we_got(make_flow, make_system, make_link, make_message):
    fo, dataverse = make_system(), make_system()
    products = make_flow(slug="products-fo-to-dv", source=fo, target=dataverse)
    reverse = make_flow(slug="products-dv-to-fo", source=dataverse, target=fo, options={"echo_of": "products-fo-to-dv"})
    make_link(products, "SE01|P-1", "guid-1", target_etag='W/"90001"')
    payload = {"event": "Update", "entity": "product", "id": "guid-1", "attributes": {"versionnumber": 90001}}
    event = make_message(reverse, source_record_key="guid-1", payload_in=payload)

    assert "still at ETag" in echo_reason(message=event)


def test_a_later_row_version_is_a_real_change_though_its_time_in_whole_seconds_is_not_later(
    make_flow, make_system, make_link, make_message
):
    fo, dataverse = make_system(), make_system()
    credit = make_flow(slug="credit-fo-to-dv", source=fo, target=dataverse)
    accounts = make_flow(slug="accounts-dv-to-fo", source=dataverse, target=fo, options={"echo_of": "credit-fo-to-dv"})
    ours = make_link(credit, "C-1", "guid-1", target_etag='W/"90001"')
    # A Sales user's edit right after our write: Dataverse's modifiedon is kept in whole seconds.
    at = ours.synced_at.replace(microsecond=0).isoformat()
    edit = make_message(
        accounts, source_record_key="guid-1", payload_in={"attributes": {"versionnumber": 90002, "modifiedon": at}}
    )
    echo = make_message(
        accounts, source_record_key="guid-1", payload_in={"attributes": {"versionnumber": 90001, "modifiedon": at}}
    )

    assert echo_reason(message=edit) == ""
    assert "still at ETag" in echo_reason(message=echo)


def test_records_we_never_wrote_are_never_echoes(flows, our_write, make_message):
    _, reverse = flows
    event = make_message(reverse, source_record_key="BP-2", payload_in=cloud_event("2000-01-01T00:00:00Z", "BP-2"))

    assert echo_reason(message=event) == ""


def test_event_time_formats():
    assert parse_event_time("/Date(1570769681000)/").isoformat() == "2019-10-11T04:54:41+00:00"
    assert parse_event_time("/Date(1472796947125+0000)/").year == 2016
    assert parse_event_time("2020-12-31T13:59:15Z").isoformat() == "2020-12-31T13:59:15+00:00"
    assert parse_event_time("not a date") is None
    assert parse_event_time(None) is None


def test_event_record_reads_each_envelope():
    assert event_record({"attributes": {"name": "A"}}) == {"name": "A"}
    assert event_record({"d": {"SalesOrder": "1"}}) == {"SalesOrder": "1"}
    assert event_record({"data": {"BusinessPartner": "9"}}) == {"BusinessPartner": "9"}
    context = {"InputParameters": [{"key": "Target", "value": {"Attributes": [{"key": "name", "value": "B"}]}}]}
    assert event_record(context) == {"name": "B"}


def test_flow_filter_skips_events_without_the_wanted_values(make_flow, make_message):
    tasks = make_flow(slug="tasks", options={"only_when": {"statecode": 1}})
    open_task = make_message(tasks, payload_in={"attributes": {"statecode": 0, "subject": "Hold"}})
    done_task = make_message(tasks, payload_in={"attributes": {"statecode": 1, "subject": "Hold"}})

    assert "statecode is 0" in message_skip_reason(message=open_task)
    assert message_skip_reason(message=done_task) == ""


def test_event_for_a_record_we_are_writing_right_now_waits_for_that_write(make_flow, make_system, make_message):
    from integrations.errors import TransientError
    from integrations.models import Message
    from integrations.pipeline.prepare import message_prepare

    dataverse, s4 = make_system(), make_system()
    forward = make_flow(slug="accounts-out", source=dataverse, target=s4, target_key_fields=["BusinessPartner"])
    reverse = make_flow(slug="bp-back", source=s4, target=dataverse)
    make_message(forward, status=Message.Status.DELIVERING, payload_out={"BusinessPartner": "C-9", "Name": "A"})
    event = make_message(reverse, source_record_key="C-9", payload_in={"data": {"BusinessPartner": "C-9"}})

    with pytest.raises(TransientError, match="accounts-out' is writing C-9 right now"):
        message_prepare(message=event)


def test_webhook_keyed_by_id_waits_for_our_write_by_its_alternate_key(make_flow, make_system, make_message):
    from integrations.errors import TransientError
    from integrations.models import Message
    from integrations.pipeline.prepare import message_prepare

    fo, dataverse = make_system(), make_system()
    credit = make_flow(slug="credit-out", source=fo, target=dataverse, target_key_fields=["accountnumber"])
    accounts = make_flow(slug="accounts-back", source=dataverse, target=fo, options={"echo_of": ["credit-out"]})
    make_message(credit, status=Message.Status.DELIVERING, payload_out={"accountnumber": "C-9", "creditlimit": 5})
    # Dataverse's webhook names the account by its id; the accountnumber we write it by is in its record.
    event = make_message(accounts, source_record_key="guid-9", payload_in={"attributes": {"accountnumber": "C-9"}})
    other = make_message(accounts, source_record_key="guid-8", payload_in={"attributes": {"accountnumber": "C-8"}})

    with pytest.raises(TransientError, match="credit-out' is writing guid-9 right now"):
        message_prepare(message=event)
    assert message_prepare(message=other).skip_reason == ""


def test_flow_filter_can_refuse_values(make_flow, make_message):
    invoices = make_flow(slug="invoices", options={"only_when": {"CustomerAccount": {"not": ["IC-DK01"]}}})
    intercompany = make_message(invoices, payload_in={"CustomerAccount": "IC-DK01", "InvoiceNumber": "1"})
    customer = make_message(invoices, payload_in={"CustomerAccount": "C-1", "InvoiceNumber": "2"})

    assert "CustomerAccount is 'IC-DK01'" in message_skip_reason(message=intercompany)
    assert message_skip_reason(message=customer) == ""


def test_echo_of_an_empty_list_screens_nothing_and_asks_the_database_nothing(
    flows, our_write, make_message, django_assert_num_queries
):
    from integrations.scenarios.echo import forward_write_in_flight

    _, reverse = flows
    at = (our_write.synced_at - timedelta(milliseconds=200)).isoformat()
    event = make_message(reverse, source_record_key="BP-1", payload_in=cloud_event(at))
    assert echo_reason(message=event)  # by default every flow back into the source is screened
    reverse.options = {"echo_of": []}  # the engineer says no flow writes what this one reads

    with django_assert_num_queries(0):
        assert echo_reason(message=event) == ""
        assert forward_write_in_flight(message=event) == ""


def test_a_write_in_flight_by_any_forward_flow_holds_the_event_back(flows, make_message, make_flow):
    from integrations.models import Message
    from integrations.scenarios.echo import forward_write_in_flight

    forward, reverse = flows
    forward.target_key_fields = ["BusinessPartner"]
    forward.save()
    other = make_flow(slug="bp-other", source=forward.source, target=forward.target, target_key_fields=["X"])
    make_message(other, payload_out={"X": "BP-2"}, status=Message.Status.DELIVERING)
    event = make_message(reverse, source_record_key="BP-1", payload_in=cloud_event(timezone.now().isoformat()))
    assert forward_write_in_flight(message=event) == ""

    make_message(forward, payload_out={"BusinessPartner": "BP-1"}, status=Message.Status.DELIVERING)

    assert "flow 'bp-dv-to-s4' is writing BP-1 right now" in forward_write_in_flight(message=event)
