"""The roles as groups (ensure_roles), and the OpenAPI schema: builds without warnings, served with docs."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from integrations.services.roles import AUDITOR, ENGINEER, OPERATOR, roles_ensure

pytestmark = pytest.mark.django_db


def _perms(name: str) -> set[str]:
    group = Group.objects.get(name=name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_ensure_roles_creates_the_three_groups(capsys: pytest.CaptureFixture[str]) -> None:
    # when the command runs on an empty database
    call_command("ensure_roles")
    # then each role has its permissions
    assert {"integrations.change_message", "integrations.view_message"} <= _perms(OPERATOR)
    assert "integrations.change_flow" not in _perms(OPERATOR)
    assert {"integrations.change_flow", "integrations.change_system", "integrations.add_inboundendpoint"} <= _perms(
        ENGINEER
    )
    assert "integrations.change_message" not in _perms(ENGINEER)
    assert "integrations.view_auditentry" in _perms(AUDITOR)
    assert all(perm.split(".", 1)[1].startswith("view_") for perm in _perms(AUDITOR))
    assert "operator:" in capsys.readouterr().out


def test_ensure_roles_is_idempotent_and_repairs_drift() -> None:
    # given the roles, and an operator group someone granted too much
    groups = roles_ensure()
    expected = _perms(OPERATOR)
    groups[ENGINEER].permissions.clear()
    groups[OPERATOR].permissions.add(*Group.objects.get(name=AUDITOR).permissions.all())
    # when ensured again
    roles_ensure()
    # then each group has exactly its role's permissions again, and no group is doubled
    assert _perms(OPERATOR) == expected
    assert "integrations.change_flow" in _perms(ENGINEER)
    assert Group.objects.filter(name__in=[OPERATOR, ENGINEER, AUDITOR]).count() == 3


def test_openapi_schema_builds_without_warnings(tmp_path: Path) -> None:
    # when the schema is generated as CI does, failing on any warning
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    # then it holds the webhook and operator routes
    text = out.read_text()
    for route in ("/api/webhooks/dataverse/{flow_slug}", "/api/events/sap/{flow_slug}", "/api/messages/{id}/replay"):
        assert route in text
    assert "/sandbox/" not in text


def test_schema_and_docs_are_served(client: Client) -> None:
    schema = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = client.get("/api/docs")
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


@pytest.mark.parametrize("path", ["/api/docs", "/api/docs/", "/api/redoc/"])
def test_api_docs_load_their_assets_from_the_hub_not_a_cdn(client: Client, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    assert "cdn" not in html.lower()
    assert "https://" not in html.split("<body", 1)[-1].split("url:", 1)[0]


@pytest.mark.parametrize("path", ["/api/schema/", "/api/flows/", "/api/messages/"])
def test_api_routes_take_a_trailing_slash(admin_client: Client, path: str) -> None:
    response = admin_client.get(path, HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content[:300]
