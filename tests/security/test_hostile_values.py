"""Admin pages show values from ERPs and senders as text: braces, slashes and markup neither break nor inject."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from integrations.models import Message, RecordLink
from integrations.services.roles import AUDITOR, OPERATOR
from monitoring.models import Discrepancy, ReconciliationRun
from tests.security.conftest import Hub

pytestmark = pytest.mark.django_db

HOSTILE = ["{0}", "{}", "{company}", "a/b/../c", "<script>alert(1)</script>", "%s %(x)s", "}{", '"><img src=x>']


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("role", [OPERATOR, AUDITOR])
def test_reconciliation_run_page_shows_hostile_companies_and_days(
    value: str, role: str, hub: Hub, client_as: Callable[[str], Client]
) -> None:
    # given a run whose totals and discrepancies carry hostile text from an ERP
    run = ReconciliationRun.objects.create(
        flow=hub.flow,
        status="done",
        totals={"rows": [{"day": value, "company": value, "source": value, "target": "1", "difference": value}]},
        error=value,
    )
    Discrepancy.objects.create(
        run=run, kind="different", source_key=value, target_key=value, source_values={value: value}, detail=value
    )
    # when the run's page and list are opened
    client = client_as(role)
    page = client.get(f"/admin/monitoring/reconciliationrun/{run.pk}/change/")
    listing = client.get("/admin/monitoring/reconciliationrun/")
    discrepancies = client.get("/admin/monitoring/discrepancy/")
    # then they render, with the markup escaped
    for response in (page, listing, discrepancies):
        assert response.status_code == 200
        assert b"<script>alert(1)</script>" not in response.content
        assert b"<img src=x>" not in response.content
    if value == "<script>alert(1)</script>":
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page.content


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("role", [OPERATOR, AUDITOR])
def test_message_page_shows_hostile_correlation_ids_and_keys(
    value: str, role: str, hub: Hub, client_as: Callable[[str], Client]
) -> None:
    # given a message whose sender chose its correlation id, keys and error text
    message = Message.objects.create(
        flow=hub.flow,
        idempotency_key=value,
        payload_in={value: value},
        headers={value: value},
        correlation_id=value,
        source_record_key=value,
        target_record_key=value,
        last_error=value,
        last_error_class=value,
        status=Message.Status.FAILED,
    )
    RecordLink.objects.create(flow=hub.flow, source_key=value, target_key=value, correlation_id=value)
    client = client_as(role)
    # when its page, the list and a search for the id are opened
    responses = [
        client.get(f"/admin/integrations/message/{message.pk}/change/"),
        client.get("/admin/integrations/message/"),
        client.get("/admin/integrations/message/", {"q": value}),
        client.get("/admin/integrations/recordlink/"),
    ]
    # then all render, with the markup escaped
    for response in responses:
        assert response.status_code == 200, response.content[:500]
        assert b"<script>alert(1)</script>" not in response.content
        assert b"<img src=x>" not in response.content


def test_saving_the_message_form_does_not_write_the_row_back(hub: Hub, client_as: Callable[[str], Client]) -> None:
    # given an operator's open message page, and the pipeline updating the row meanwhile
    message = hub.message
    client = client_as(OPERATOR)
    assert client.get(f"/admin/integrations/message/{message.pk}/change/").status_code == 200
    Message.objects.filter(pk=message.pk).update(status=Message.Status.DELIVERED, attempts=3)
    # when the (all read-only) form is posted
    client.post(f"/admin/integrations/message/{message.pk}/change/", {})
    # then the pipeline's update stands
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Message.Status.DELIVERED, 3)
