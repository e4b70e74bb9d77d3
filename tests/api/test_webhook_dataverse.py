"""Dataverse webhooks: the documented RemoteExecutionContext and its Create/Delete/truncated variants."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from integrations.models import Flow, InboundEndpoint, Message
from tests.api.conftest import (
    CONTACT_ID,
    SECRET,
    dataverse_create_account,
    dataverse_delete,
    dataverse_headers,
    dataverse_truncated,
    dataverse_update,
    key_header,
    post_json,
    raw,
    with_change,
)

pytestmark = pytest.mark.django_db


def test_documented_update_is_stored_once_with_its_metadata(
    client: Client, inbound_flow: Callable[..., Flow], django_capture_on_commit_callbacks: Any
) -> None:
    # given a contact flow and the body exactly as Dataverse documents it
    flow = inbound_flow(entity="contact")
    context = dataverse_update()
    # when it is posted with Dataverse's headers
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            f"/api/webhooks/dataverse/{flow.slug}",
            data=raw("dataverse/webhook-contact-update-remoteexecutioncontext.json"),
            content_type="application/json",
            **dataverse_headers(context),
            **key_header(),
        )
    # then it is accepted, stored and its processing queued once
    assert response.status_code == 202, response.content
    message = Message.objects.get(flow=flow)
    assert response.json() == {"message_id": message.pk, "duplicate": False}
    assert len(callbacks) == 1
    assert message.source_record_key == CONTACT_ID
    assert message.correlation_id == "b374239d-4233-41a9-8b17-a86cb4f737b5"
    assert message.source_version == 1506384247000 * 1000  # modifiedon, in µs
    assert message.payload_in["event"] == "Update"
    assert message.payload_in["attributes"]["firstname"] == "James"
    assert message.payload_in["attributes"]["modifiedon"] == "2017-09-26T00:04:07Z"
    assert message.payload_in["attributes"]["modifiedby"] == {
        "LogicalName": "systemuser",
        "Id": "75c2dd85-e89e-e711-8122-000d3aa2331c",
        "Name": None,
    }
    assert message.payload_in["post_images"]["AsynchronousStepPrimaryName"]["attributes"]["fullname"] == (
        "James Glynn (sample)"
    )
    assert message.headers["x-ms-dynamics-organization"] == "org6eadd181.crm.dynamics.com"
    assert message.headers["x-ms-dynamics-request-name"] == "Update"


def test_redelivery_is_a_duplicate_with_the_same_message_id(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given an event already accepted
    flow = inbound_flow(entity="contact")
    url = f"/api/webhooks/dataverse/{flow.slug}"
    first = post_json(client, url, dataverse_update(), **key_header())
    # when Dataverse delivers it again
    second = post_json(client, url, dataverse_update(), **key_header())
    # then the answer names the first message and nothing new is stored
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"message_id": first.json()["message_id"], "duplicate": True}
    assert Message.objects.filter(flow=flow).count() == 1


def test_a_new_change_of_the_same_record_is_a_new_message(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given one update accepted
    flow = inbound_flow(entity="contact")
    url = f"/api/webhooks/dataverse/{flow.slug}"
    post_json(client, url, dataverse_update(), **key_header())
    # when a later change of the same contact arrives (a new system job, a new modifiedon)
    later = with_change(dataverse_update(), OperationId="5bf10637-4ea2-e711-8122-000d3aa2331c")
    later["InputParameters"][0]["value"]["Attributes"][4]["value"] = "/Date(1506390000000)/"
    response = post_json(client, url, later, **key_header())
    # then it is a second message with a higher version
    assert response.status_code == 202
    versions = sorted(Message.objects.filter(flow=flow).values_list("source_version", flat=True))
    assert versions == [1506384247000000, 1506390000000000]


def test_create_with_typed_values_keys_on_versionnumber(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given an account Create carrying OptionSetValue, Money, EntityReference and a /Date()/
    flow = inbound_flow(entity="account")
    # when it is posted
    response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}", dataverse_create_account(), **key_header())
    # then each value arrives as plain JSON and the record's versionnumber is key and version
    assert response.status_code == 202, response.content
    message = Message.objects.get(flow=flow)
    attributes = message.payload_in["attributes"]
    assert attributes["customertypecode"] == 3
    assert attributes["creditlimit"] == 25000.5
    assert attributes["primarycontactid"] == {
        "LogicalName": "contact",
        "Id": CONTACT_ID,
        "Name": "James Glynn (sample)",
    }
    assert attributes["createdon"] == "2017-09-26T00:04:07Z"
    assert message.payload_in["target"]["formatted"] == {"customertypecode": "Customer"}
    assert message.idempotency_key == "account:a1b2c3d4-0000-4000-8000-000000000001:Create:v734512"
    assert message.source_version == 734512


def test_delete_carries_the_reference_and_the_pre_image(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given a contact Delete
    flow = inbound_flow(entity="contact")
    # when it is posted
    response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}", dataverse_delete(), **key_header())
    # then the message says Delete, keys on the pre-image's row version and keeps the last state
    assert response.status_code == 202, response.content
    message = Message.objects.get(flow=flow)
    assert message.payload_in["event"] == "Delete"
    assert message.payload_in["target"] == {"LogicalName": "contact", "Id": CONTACT_ID, "attributes": {}}
    assert message.payload_in["attributes"] == {"fullname": "James Glynn (sample)"}
    assert message.source_version == 734600


def test_truncated_event_is_stored_flagged_for_a_later_fetch(client: Client, inbound_flow: Callable[..., Flow]) -> None:
    # given a body Dataverse cut down because the context was over 256 KB
    flow = inbound_flow(entity="contact")
    context = dataverse_truncated()
    # when it is posted with the size-exceeded header
    response = post_json(
        client,
        f"/api/webhooks/dataverse/{flow.slug}",
        context,
        **dataverse_headers(context, HTTP_X_MS_DYNAMICS_MSG_SIZE_EXCEEDED="true"),
        **key_header(),
    )
    # then the event is kept (not refused for its missing Target) and marked truncated
    assert response.status_code == 202, response.content
    message = Message.objects.get(flow=flow)
    assert message.headers["truncated"] is True
    assert message.headers["x-ms-dynamics-msg-size-exceeded"] == "true"
    assert message.payload_in["attributes"] == {}
    assert message.source_record_key == CONTACT_ID


def test_system_endpoint_routes_by_entity_to_every_matching_flow(
    client: Client, make_system: Callable[..., Any], make_flow: Callable[..., Flow]
) -> None:
    # given one Dataverse system with two contact flows (to two targets) and an account flow
    crm = make_system(kind="dataverse", slug="crm")
    InboundEndpoint.objects.create(system=crm, auth_type="header", secret=SECRET)
    to_fo = make_flow(source=crm, entity="contact", slug="contacts-to-fo")
    to_sap = make_flow(source=crm, entity="contact", slug="contacts-to-sap")
    accounts = make_flow(source=crm, entity="account", slug="accounts-to-fo")
    # when the one registration for all entities posts a contact update
    response = post_json(client, "/api/webhooks/dataverse/systems/crm", dataverse_update(), **key_header())
    # then both contact flows got a message in the same request, the account flow none
    assert response.status_code == 202, response.content
    routed = {item["flow"]: item for item in response.json()["messages"]}
    assert set(routed) == {"contacts-to-fo", "contacts-to-sap"}
    assert Message.objects.filter(flow__in=[to_fo, to_sap]).count() == 2
    assert not Message.objects.filter(flow=accounts).exists()


def test_system_endpoint_without_a_matching_flow_says_so(client: Client, make_system: Callable[..., Any]) -> None:
    # given a Dataverse system with no flow for contacts
    crm = make_system(kind="dataverse", slug="crm")
    InboundEndpoint.objects.create(system=crm, auth_type="header", secret=SECRET)
    # when a contact update arrives
    response = post_json(client, "/api/webhooks/dataverse/systems/crm", dataverse_update(), **key_header())
    # then the sender hears which entity found no flow
    assert response.status_code == 422
    assert response.json()["field"] == "PrimaryEntityName"
    assert "'contact'" in response.json()["error"]
    assert not Message.objects.exists()


def test_flow_falls_back_to_its_source_systems_credentials(
    client: Client, make_system: Callable[..., Any], make_flow: Callable[..., Flow]
) -> None:
    # given credentials set once on the Dataverse system, none on the flow
    crm = make_system(kind="dataverse")
    InboundEndpoint.objects.create(system=crm, auth_type="query_key", secret=SECRET)
    flow = make_flow(source=crm, entity="contact")
    # when the flow's endpoint is called with the system's WebhookKey
    response = post_json(client, f"/api/webhooks/dataverse/{flow.slug}?code={SECRET}", dataverse_update())
    # then it is accepted
    assert response.status_code == 202, response.content
