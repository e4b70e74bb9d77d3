"""No role sees a System or InboundEndpoint secret: not in any admin page of theirs, not in the API."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from integrations.models import AuditEntry, InboundEndpoint, System
from tests.security.conftest import ROLES, SECRETS, Hub

pytestmark = pytest.mark.django_db


def _admin_pages(hub: Hub) -> list[str]:
    pages = []
    for model, objects in ((System, (hub.fo, hub.ax)), (InboundEndpoint, (hub.endpoint, hub.system_endpoint))):
        base = f"/admin/integrations/{model._meta.model_name}/"
        pages += [base, f"{base}add/"]
        # The change form for editors is the read-only view for viewers: same URL, other rendering.
        pages += [f"{base}{obj.pk}/change/" for obj in objects]
        pages += [f"{base}{obj.pk}/history/" for obj in objects]
    # Pages that show a System or an endpoint beside other things.
    pages += [
        "/admin/integrations/flow/",
        f"/admin/integrations/flow/{hub.flow.pk}/change/",
        f"/admin/integrations/message/{hub.message.pk}/change/",
        f"/admin/integrations/companylink/{hub.link.pk}/change/",
        "/admin/integrations/auditentry/",
        "/admin/chain/c-1/",
        "/monitoring/dashboard",
    ]
    return pages


API_PAGES = ("/api/systems", "/api/flows", "/api/flows/orders", "/api/audit")


@pytest.mark.parametrize("role", ROLES)
def test_no_admin_page_of_systems_or_endpoints_shows_a_secret(
    role: str, hub: Hub, client_as: Callable[[str], Client]
) -> None:
    # given a user of the role, and Systems and endpoints that hold secrets
    client = client_as(role)
    for url in _admin_pages(hub):
        # when they open every page of both models
        response = client.get(url)
        # then none answers 500, and none carries a secret
        assert response.status_code < 500, url
        for secret in SECRETS:
            assert secret.encode() not in response.content, (role, url)


@pytest.mark.parametrize("role", ROLES)
def test_viewers_see_whether_a_secret_is_set(role: str, hub: Hub, client_as: Callable[[str], Client]) -> None:
    response = client_as(role).get(f"/admin/integrations/system/{hub.fo.pk}/change/")
    if role == "anonymous":
        assert response.status_code == 302
        return
    assert response.status_code == 200
    assert "•••••• (set)" in response.content.decode() or 'type="password"' in response.content.decode()


@pytest.mark.parametrize("role", ROLES)
def test_no_api_answer_carries_a_secret(role: str, hub: Hub, client_as: Callable[[str], Client]) -> None:
    client = client_as(role)
    for url in API_PAGES:
        response = client.get(url)
        assert response.status_code < 500, url
        for secret in SECRETS:
            assert secret.encode() not in response.content, (role, url)


def test_an_engineer_saving_a_system_keeps_the_secret_and_the_audit_names_no_value(
    hub: Hub, client_as: Callable[[str], Client]
) -> None:
    # given an engineer who changes a System's timeout and leaves the secret field empty
    client = client_as("integration engineer")
    page = client.get(f"/admin/integrations/system/{hub.fo.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update(secret="", timeout_seconds="7", settings="{}")
    # when they save
    response = client.post(f"/admin/integrations/system/{hub.fo.pk}/change/", data)
    # then the secret stays, and the hub's audit log says what changed, without any value
    assert response.status_code == 302, response.content.decode()[:2000]
    hub.fo.refresh_from_db()
    assert (hub.fo.timeout_seconds, hub.fo.secret) == (7.0, SECRETS[0])
    entry = AuditEntry.objects.get(action="config_changed", object_type="system")
    assert "timeout_seconds" in entry.details["fields"]
    assert "secret" not in entry.details["fields"]
    assert entry.actor_name == "integration-engineer"
    assert all(secret not in str(entry.details) for secret in SECRETS)
