"""System secrets are encrypted at rest and never shown back."""

from __future__ import annotations

import pytest
from django.db import connection

from integrations.models import System

pytestmark = pytest.mark.django_db


def test_secret_is_encrypted_in_the_database(make_system):
    system = make_system(secret="s3cr3t-client-secret")

    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM integrations_system WHERE id = %s", [system.pk])
        stored = cursor.fetchone()[0]

    assert "s3cr3t" not in stored
    assert System.objects.get(pk=system.pk).secret == "s3cr3t-client-secret"


def test_admin_never_shows_the_secret(make_system, admin_client):
    system = make_system(secret="s3cr3t-client-secret")

    page = admin_client.get(f"/admin/integrations/system/{system.pk}/change/")
    listing = admin_client.get("/admin/integrations/system/")

    assert page.status_code == 200
    assert "s3cr3t" not in page.content.decode()
    assert "s3cr3t" not in listing.content.decode()
    assert "(set)" in listing.content.decode()


def test_inbound_endpoint_secret_is_write_only_in_the_admin(make_flow, admin_client):
    from integrations.models import InboundEndpoint

    endpoint = InboundEndpoint.objects.create(flow=make_flow(), auth_type="header", secret="hook-s3cr3t")

    page = admin_client.get(f"/admin/integrations/inboundendpoint/{endpoint.pk}/change/")

    assert page.status_code == 200
    assert "hook-s3cr3t" not in page.content.decode()


def test_saving_a_system_with_the_secret_left_empty_keeps_it(make_system, admin_client):
    system = make_system(secret="s3cr3t-client-secret")
    form = {
        "name": system.name, "slug": system.slug, "kind": system.kind, "base_url": system.base_url,
        "auth_type": system.auth_type, "auth_url": "", "client_id": "", "secret": "", "scope": "",
        "settings": "{}", "timeout_seconds": "5", "rate_limit_per_second": "", "batch_size": "100",
        "enabled": "on",
    }  # fmt: skip

    answer = admin_client.post(f"/admin/integrations/system/{system.pk}/change/", form)

    assert answer.status_code == 302
    system.refresh_from_db()
    assert system.secret == "s3cr3t-client-secret"
