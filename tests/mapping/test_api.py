"""The mapping API: preview (current or draft spec) and save a new version."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from integrations.models import MappingVersion, Message

SPEC = {"fields": {"OrderNumber": "SalesOrderNumber", "Qty": {"path": "Qty", "type": "integer"}}}


@pytest.fixture
def admin_client(db) -> APIClient:
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_superuser("root", password="x"))
    return client


@pytest.fixture
def flow(make_flow):
    return make_flow(slug="so-to-s4", mapping_spec=SPEC)


def test_preview_with_the_current_spec(admin_client, flow):
    response = admin_client.post(
        "/api/flows/so-to-s4/mapping/preview", {"payload": {"SalesOrderNumber": "SO-1", "Qty": "3"}}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"output": {"OrderNumber": "SO-1", "Qty": 3}}
    assert not Message.objects.exists()


def test_preview_with_a_draft_spec_leaves_the_flow_unchanged(admin_client, flow):
    draft = {"fields": {"Ref": "=lower(SalesOrderNumber)"}}

    response = admin_client.post(
        "/api/flows/so-to-s4/mapping/preview", {"payload": {"SalesOrderNumber": "SO-1"}, "spec": draft}, format="json"
    )

    assert response.json() == {"output": {"Ref": "so-1"}}
    flow.refresh_from_db()
    assert flow.mapping_spec == SPEC


def test_preview_shows_the_transform_error(admin_client, flow):
    response = admin_client.post(
        "/api/flows/so-to-s4/mapping/preview", {"payload": {"SalesOrderNumber": "SO-1", "Qty": "3.5"}}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"errors": ["field 'Qty': '3.5' is not a whole number (source 'Qty', value '3.5')"]}


def test_preview_of_an_invalid_draft_is_refused_naming_the_field(admin_client, flow):
    response = admin_client.post(
        "/api/flows/so-to-s4/mapping/preview",
        {"payload": {}, "spec": {"fields": {"Total": "=summ(Lines)"}}},
        format="json",
    )

    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "Total"
    assert body["errors"][0].startswith("field 'Total': expr 'summ(Lines)': unknown function summ()")


def test_preview_needs_a_json_object_payload(admin_client, flow):
    response = admin_client.post("/api/flows/so-to-s4/mapping/preview", {"payload": [1, 2]}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "field 'payload': must be a JSON object"


def test_save_creates_a_version(admin_client, flow):
    new = {"fields": {"OrderNumber": "SalesOrderNumber"}}

    response = admin_client.post("/api/flows/so-to-s4/mapping", {"spec": new, "comment": "drop qty"}, format="json")

    assert response.status_code == 201
    assert response.json()["version"] == 2
    assert response.json()["created_by"] == "root"
    flow.refresh_from_db()
    assert (flow.mapping_version, flow.mapping_spec) == (2, new)
    assert list(MappingVersion.objects.filter(flow=flow).values_list("version", flat=True)) == [2, 1]
    history = admin_client.get("/api/flows/so-to-s4/mapping").json()
    assert [item["version"] for item in history["history"]] == [2, 1]
    assert history["spec"] == new


def test_save_refuses_an_invalid_spec_with_field_named_errors(admin_client, flow):
    bad = {"fields": {"OrderNumber": {"path": "SalesOrderNumber", "type": "text"}, "X": {"lookup": "uom"}}}

    response = admin_client.post("/api/flows/so-to-s4/mapping", {"spec": bad}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["errors"] == [
        "field 'OrderNumber': unknown type 'text' (known: string, integer, decimal, boolean, date, datetime)",
        "field 'X': give exactly one source (path, paths, const, context, expr, cases, each, fields); found none",
    ]
    assert body["field"] == "OrderNumber"
    assert not MappingVersion.objects.exists()


def test_saving_needs_the_change_permission(flow):
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("viewer", password="x"))

    response = client.post("/api/flows/so-to-s4/mapping", {"spec": SPEC}, format="json")

    assert response.status_code == 403


def test_unknown_flow_is_404(admin_client, db):
    response = admin_client.post("/api/flows/nope/mapping/preview", {"payload": {}}, format="json")

    assert response.status_code == 404
