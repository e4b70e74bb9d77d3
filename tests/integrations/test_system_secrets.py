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
