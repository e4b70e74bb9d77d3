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


def test_changing_the_pointer_in_the_admin_rekeys_the_links_and_says_so(make_flow, admin_client):
    flow = make_flow()
    endpoint = InboundEndpoint.objects.create(flow=flow, auth_type="none", record_key_pointer="/Order")
    message = Message.objects.create(flow=flow, idempotency_key="e-1", payload_in={"Order": "O-1", "Line": 2})
    link = RecordLink.objects.create(flow=flow, source_key="O-1", target_key="t-1", last_message=message)

    answer = admin_client.post(
        f"/admin/integrations/inboundendpoint/{endpoint.pk}/change/",
        _form(endpoint, record_key_pointer="/Order,/Line"),
        follow=True,
    )

    assert answer.status_code == 200
    said = "Record key pointer changed: 1 record links re-keyed, 0 kept their key, 0 clashed."
    assert said in answer.content.decode()
    link.refresh_from_db()
    assert link.source_key == "O-1|2"


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
