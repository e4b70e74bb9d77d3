"""Ax2012Connector against the AIF emulator over real sockets: writes, faults, redelivery and the poller."""

from __future__ import annotations

import time

import pytest

from integrations import errors
from integrations.models import AxPollCursor, Flow, Message, System
from integrations.polling.poll import flow_poll, poll_flow_ids
from integrations.protocols.transport import DeliveryRequest
from integrations.systems import get_connector
from integrations.systems.ax2012.connector import message_id_for
from sandbox.ax2012 import ports
from sandbox.common.faults import set_faults


@pytest.fixture
def ax_system(make_system, live_server) -> System:
    return make_system(
        name="AX DK01",
        slug="ax-dk01",
        kind=System.Kind.AX2012,
        base_url=f"{live_server.url}/sandbox/ax2012/MicrosoftDynamicsAXAif60",
        auth_type=System.AuthType.BASIC,
        client_id="icbridge",
        secret="sandbox",
        timeout_seconds=2,
    )


def request(entity: str, payload: dict, key: dict | None = None, idem: str = "evt-1", op: str = "create", **kw):
    return DeliveryRequest(
        entity=entity, operation=op, payload=payload, key=key or {}, idempotency_key=idem, company="DK01", **kw
    )


def customer(ax_system: System, name: str, idem: str) -> str:
    result = get_connector(ax_system).deliver(
        request("CustomerService", {"Name": name, "CustGroup": "IC", "VATNum": name}, {"VATNum": name}, idem)
    )
    return result.target_key


def test_create_returns_the_aif_key_and_fetch_reads_the_document(ax_system):
    account = customer(ax_system, "SE01 intercompany", "c-1")
    connector = get_connector(ax_system)

    result = connector.deliver(
        request(
            "SalesOrderService",
            {"CustAccount": account, "PurchOrderFormNum": "PO-4711", "SalesLine": [{"ItemId": "A1", "SalesQty": "3"}]},
            {"PurchOrderFormNum": "PO-4711"},
            "po-4711",
        )
    )
    document = connector.fetch(entity="SalesOrderService", key={"SalesId": result.target_key}, company="DK01")

    assert result.created is True
    assert result.target_key.startswith("SO")
    assert document["CustAccount"] == account
    assert document["SalesLine"] == [{"ItemId": "A1", "SalesQty": "3"}]
    assert connector.fetch(entity="SalesOrderService", key={"SalesId": "NOPE"}, company="DK01") is None


def test_redelivery_after_a_lost_answer_is_a_duplicate_linked_to_the_existing_record(ax_system):
    first = customer(ax_system, "Fabrikam", "c-dup")

    with pytest.raises(errors.DuplicateError) as raised:
        customer(ax_system, "Fabrikam", "c-dup")

    assert raised.value.existing_key == first
    assert "Duplicate message" in raised.value.message


def test_message_id_is_derived_from_the_idempotency_key():
    one = message_id_for("evt-1", service="SalesOrderService", operation="create", company="dk01")

    assert one == message_id_for("evt-1", service="SalesOrderService", operation="create", company="DK01")
    assert one != message_id_for("evt-2", service="SalesOrderService", operation="create", company="DK01")
    assert one.startswith("{")
    assert one.endswith("}")
    assert len(one) == 38


def test_upsert_updates_the_record_found_by_key(ax_system):
    account = customer(ax_system, "Tailspin", "c-up")
    connector = get_connector(ax_system)

    result = connector.deliver(
        request(
            "CustomerService", {"Name": "Tailspin Toys", "CustGroup": "IC"}, {"VATNum": "Tailspin"}, "c-up-2", "upsert"
        )
    )

    assert result.created is False
    assert result.target_key == account
    assert (
        connector.fetch(entity="CustomerService", key={"AccountNum": account}, company="DK01")["Name"]
        == "Tailspin Toys"
    )


def test_update_with_an_old_etag_is_a_conflict(ax_system):
    account = customer(ax_system, "Northwind", "c-etag")
    connector = get_connector(ax_system)

    with pytest.raises(errors.ConflictError) as raised:
        connector.deliver(
            request("CustomerService", {"Name": "N2"}, {"AccountNum": account}, "c-etag-2", "update", etag="0" * 32)
        )

    assert raised.value.current["Name"] == "Northwind"
    assert raised.value.current_etag


def test_validation_fault_is_rejected_with_axs_own_text(ax_system):
    with pytest.raises(errors.RejectedError) as raised:
        get_connector(ax_system).deliver(
            request("SalesOrderService", {"CustAccount": "C999999", "SalesLine": [{"ItemId": "A1", "SalesQty": "1"}]})
        )

    assert "The value 'C999999' in field 'CustAccount' is not found in the relating table 'Customers'." in (
        raised.value.message
    )


def test_wsdl_is_fetched_once_per_service(ax_system):
    connector = get_connector(ax_system)
    wsdl_gets = []
    connector.session.hooks["response"].append(
        lambda response, **_: wsdl_gets.append(response.url) if response.url.endswith("?wsdl") else None
    )

    customer(ax_system, "One", "c-w1")
    customer(ax_system, "Two", "c-w2")

    assert len([url for url in wsdl_gets if "/CustomerService/" in url]) <= 1
    assert connector._service("CustomerService") is connector._service("CustomerService")


def test_wrong_password_is_an_auth_error(ax_system):
    ax_system.secret = "wrong"
    ax_system.save()

    with pytest.raises(errors.AuthError):
        customer(ax_system, "Nope", "c-auth")


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"down": True}, errors.TransientError),
        ({"error_rate": 1.0}, errors.TransientError),
        ({"latency_ms": 2500}, errors.TransientError),
        ({"throttle_rate": 1.0, "retry_after_seconds": 7}, errors.ThrottledError),
    ],
)
def test_injected_faults_are_classified(ax_system, faults, expected):
    connector = get_connector(ax_system)
    connector._service("CustomerService")  # the WSDL is loaded; the call itself meets the fault
    set_faults("ax2012", **faults)

    with pytest.raises(expected) as raised:
        customer(ax_system, "Faulty", "c-fault")

    assert type(raised.value) is expected
    if "latency_ms" in faults:
        # The emulator still finishes the create after we stopped waiting; let it land inside this test,
        # not in the next one's data.
        time.sleep(1.5)
    if expected is errors.ThrottledError:
        assert raised.value.retry_after == 7


def test_check_connection_reports_wsdl_and_call(ax_system):
    report = get_connector(ax_system).check_connection()

    assert report.ok, report.summary()
    assert [step.name for step in report.steps] == ["SalesOrderService WSDL", "SalesOrderService call"]


# --- the poller -------------------------------------------------------------------------------


@pytest.fixture
def poll_flow(make_flow, ax_system, recorder_system) -> Flow:
    ports.set_document_filters("CustomerService", [{}])  # AIF change tracking needs a document filter
    return make_flow(
        entity="customer",
        source=ax_system,
        target=recorder_system,
        trigger=Flow.Trigger.POLL,
        options={"ax_company": "DK01"},
    )


def test_poll_picks_up_exactly_the_documents_changed_since_the_cursor(poll_flow, ax_system, settings):
    settings.ICBRIDGE_POLL_OVERLAP_SECONDS = 0
    first, second = customer(ax_system, "First", "p-1"), customer(ax_system, "Second", "p-2")
    initial = flow_poll(flow=poll_flow)
    connector = get_connector(ax_system)
    connector.deliver(request("CustomerService", {"Name": "Second v2"}, {"AccountNum": second}, "p-2b", "update"))
    third = customer(ax_system, "Third", "p-3")

    later = flow_poll(flow=poll_flow)

    assert (initial.changed_keys, initial.messages_created) == (2, 2)
    assert (later.changed_keys, later.messages_created) == (2, 2)
    newest = Message.objects.filter(flow=poll_flow).order_by("-id")[:2]
    assert sorted(m.source_record_key for m in newest) == sorted([second, third])
    assert {m.payload_in["Name"] for m in newest} == {"Second v2", "Third"}
    assert first not in [m.source_record_key for m in newest]
    assert AxPollCursor.objects.get(flow=poll_flow).last_keys == 2


def test_overlapping_poll_stores_a_change_only_once(poll_flow, ax_system):
    customer(ax_system, "Only", "p-once")
    flow_poll(flow=poll_flow)

    again = flow_poll(flow=poll_flow)  # the 5 s overlap re-reads the same change

    assert again.changed_keys == 1
    assert again.messages_created == 0
    assert Message.objects.filter(flow=poll_flow).count() == 1


def test_failed_poll_keeps_the_cursor(poll_flow, ax_system):
    customer(ax_system, "Kept", "p-kept")
    flow_poll(flow=poll_flow)
    before = AxPollCursor.objects.get(flow=poll_flow).changed_since
    set_faults("ax2012", down=True)

    result = flow_poll(flow=poll_flow)

    cursor = AxPollCursor.objects.get(flow=poll_flow)
    assert result.messages_created == 0
    assert cursor.changed_since == before
    assert "503" in cursor.last_error


def test_only_enabled_ax_poll_flows_are_polled(poll_flow, make_flow, ax_system):
    make_flow(source=ax_system, trigger=Flow.Trigger.POLL, enabled=False)
    make_flow(trigger=Flow.Trigger.POLL)

    assert poll_flow_ids() == [poll_flow.pk]


def test_bearer_token_from_the_azure_ad_emulator_as_through_application_proxy(
    make_system, live_server, monkeypatch, settings
):
    from integrations.protocols import microsoft as msal_auth
    from sandbox import azuread

    msal_auth.clear_providers()
    azuread.register_app(client_id="ax-proxy-app", client_secret="proxy-secret")
    system = make_system(
        kind=System.Kind.AX2012,
        base_url=f"{live_server.url}/sandbox/ax2012/MicrosoftDynamicsAXAif60",
        auth_type=System.AuthType.CLIENT_CREDENTIALS,
        auth_url=f"{live_server.url}/sandbox/azuread/{azuread.DEFAULT_TENANT}",
        client_id="ax-proxy-app",
        secret="proxy-secret",
    )

    try:
        key = customer(system, "Via proxy", "c-bearer")
        second = customer(system, "Via proxy 2", "c-bearer-2")
        issued_before_rotation = azuread.tokens_issued("ax-proxy-app")
        # The tenant's signing key rotates: the cached token is refused once, a fresh one is fetched.
        settings.SECRET_KEY = "rotated-" + settings.SECRET_KEY
        third = customer(system, "Via proxy 3", "c-bearer-3")
    finally:
        msal_auth.clear_providers()

    assert len({key, second, third}) == 3
    assert issued_before_rotation == 1  # one token for every call, WSDL included
    assert azuread.tokens_issued("ax-proxy-app") == 2


def test_pipeline_delivers_into_the_company_of_the_company_link(make_flow, make_system, ax_system):
    from integrations.models import CompanyLink
    from integrations.pipeline import deliver as pipeline
    from integrations.pipeline.ingest import message_ingest
    from sandbox.models import EmulatorRecord

    fno = make_system(name="F&O SE01", kind=System.Kind.FINOPS)
    link = CompanyLink.objects.create(
        name="SE01-DK01", system_a=fno, company_a="SE01", system_b=ax_system, company_b="DK01"
    )
    flow = make_flow(
        source=fno,
        target=ax_system,
        company_link=link,
        entity="customer",
        target_entity="CustomerService",
        target_operation=Flow.Operation.UPSERT,
        target_key_fields=["VATNum"],
    )
    message, _ = message_ingest(
        flow=flow,
        payload={"Name": "SE01 intercompany", "CustGroup": "IC", "VATNum": "SE556"},
        idempotency_key="evt-se556",
    )

    pipeline.message_process(message_id=message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED, message.last_error
    record = EmulatorRecord.objects.get(emulator="ax2012", entity="Customer", key=message.target_record_key)
    assert record.company == "DK01"
    assert record.data["fields"]["VATNum"] == "SE556"


def test_beat_schedules_the_poll_task_and_the_task_polls_one_flow(poll_flow, ax_system, settings):
    from icbridge.celery import app
    from integrations import tasks

    customer(ax_system, "From beat", "p-beat")

    tasks.poll_flow(poll_flow.pk)  # what the beat fan-out queues per flow, run inline

    entry = settings.CELERY_BEAT_SCHEDULE["icbridge-poll-flows"]
    assert entry["task"] == "integrations.tasks.poll_flows"
    assert entry["task"] in app.tasks
    assert Message.objects.filter(flow=poll_flow).count() == 1
    assert AxPollCursor.objects.get(flow=poll_flow).changed_since is not None


def test_document_deleted_between_get_changed_keys_and_read_is_skipped(poll_flow, ax_system, monkeypatch):
    kept = customer(ax_system, "Kept", "p-race")
    connector = get_connector(ax_system)
    real_changed_keys = connector.changed_keys
    # AX deleted C-GONE after getChangedKeys listed it: the batch read of both keys faults.
    monkeypatch.setattr(connector, "changed_keys", lambda *a, **kw: [*real_changed_keys(*a, **kw), "C-GONE"])

    result = flow_poll(flow=poll_flow)

    assert (result.changed_keys, result.messages_created) == (2, 1)
    assert Message.objects.get(flow=poll_flow).source_record_key == kept
    assert AxPollCursor.objects.get(flow=poll_flow).last_error == ""
