"""A record key pointer changed in the admin: the flow's links take the new key form; a bad pointer is refused."""

from __future__ import annotations

import pytest

from integrations.models import InboundEndpoint, Message, RecordLink

pytestmark = pytest.mark.django_db


def _form(endpoint: InboundEndpoint, **changes: str) -> dict[str, str]:
    values = {
        "flow": str(endpoint.flow_id), "system": "", "auth_type": endpoint.auth_type, "credential_name": "",
        "username": "", "secret": "", "timestamp_tolerance_seconds": "300", "jwt_issuer": "", "jwt_audience": "",
        "jwks_url": "", "id_pointer": "", "id_header": "", "record_key_pointer": endpoint.record_key_pointer,
        "version_pointer": "", "allowed_origins": "[]", "max_body_bytes": "", "throttle_rate": "",
    }  # fmt: skip
    return {**values, **changes}


def test_changing_the_pointer_in_the_admin_rekeys_the_links_and_waiting_messages_and_says_so(make_flow, admin_client):
    flow = make_flow()
    endpoint = InboundEndpoint.objects.create(flow=flow, auth_type="none", record_key_pointer="/Order")
    sent = {"Order": "O-1", "Line": 2}
    message = Message.objects.create(flow=flow, idempotency_key="e-1", payload_in=sent, source_record_key="O-1",
                                     status=Message.Status.DELIVERED)  # fmt: skip
    link = RecordLink.objects.create(flow=flow, source_key="O-1", target_key="t-1", last_message=message)
    # A Delete of line 3 waiting for its retry: delivered under the old key it would find no link.
    waiting = Message.objects.create(flow=flow, idempotency_key="e-2", payload_in={"Order": "O-1", "Line": 3},
                                     source_record_key="O-1", status=Message.Status.RETRYING)  # fmt: skip
    # A link keyed otherwise (not as the old pointer reads its message) keeps its key.
    other = RecordLink.objects.create(flow=flow, source_key="evt-9", target_key="t-9", last_message=message)

    answer = admin_client.post(
        f"/admin/integrations/inboundendpoint/{endpoint.pk}/change/",
        _form(endpoint, record_key_pointer="/Order,/Line"),
        follow=True,
    )

    assert answer.status_code == 200
    said = "1 record links re-keyed, 1 kept their key, 0 clashed, 1 waiting messages re-keyed"
    assert f"Record key pointer changed: {said}." in answer.content.decode()
    for row in (link, waiting, other, message):
        row.refresh_from_db()
    assert (link.source_key, other.source_key) == ("O-1|2", "evt-9")
    assert (waiting.source_record_key, message.source_record_key) == ("O-1|3", "O-1")  # history stays


def test_clearing_the_pointer_leaves_every_key_as_it_is(make_flow, admin_client):
    flow = make_flow()
    endpoint = InboundEndpoint.objects.create(flow=flow, auth_type="none", record_key_pointer="/Order")
    message = Message.objects.create(flow=flow, idempotency_key="e-1", payload_in={"Order": "O-1"})
    links = [RecordLink.objects.create(flow=flow, source_key=f"O-{n}", last_message=message) for n in (1, 2)]

    admin_client.post(f"/admin/integrations/inboundendpoint/{endpoint.pk}/change/",
                      _form(endpoint, record_key_pointer=""))  # fmt: skip

    assert sorted(RecordLink.objects.filter(flow=flow).values_list("source_key", flat=True)) == ["O-1", "O-2"]
    assert len(links) == 2


def test_a_pointer_with_an_empty_part_is_refused_in_the_admin_and_nothing_changes(make_flow, admin_client):
    flow = make_flow()
    endpoint = InboundEndpoint.objects.create(flow=flow, auth_type="none", record_key_pointer="/Order")

    answer = admin_client.post(
        f"/admin/integrations/inboundendpoint/{endpoint.pk}/change/", _form(endpoint, record_key_pointer="/Order,")
    )

    assert answer.status_code == 200  # the form again, with the error
    assert "has an empty one" in answer.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.record_key_pointer == "/Order"
