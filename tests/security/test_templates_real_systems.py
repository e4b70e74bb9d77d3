"""Scenario templates installed against real systems open no endpoint and publish no key."""

from __future__ import annotations

import pytest

from integrations.models import InboundEndpoint
from integrations.scenarios.install import templates_install
from integrations.scenarios.templates import TEMPLATES

pytestmark = pytest.mark.django_db

PUBLISHED_KEYS = {"icbridge-sandbox-webhook-key", "icbridge-sandbox-secret"}


def test_real_install_gives_every_endpoint_an_auth_type_and_an_unknown_key() -> None:
    # when every template is installed against real systems (not the sandbox)
    for name in TEMPLATES:
        templates_install(name=name, base_url="https://erp.example.com", sandbox=False)
    # then no endpoint takes events unauthenticated, and none has a key printed in the templates
    endpoints = list(InboundEndpoint.objects.all())
    assert endpoints
    assert [e.flow.slug for e in endpoints if e.auth_type == InboundEndpoint.AuthType.NONE] == []
    assert [e.flow.slug for e in endpoints if (e.secret or "") in PUBLISHED_KEYS | {""}] == []
    assert len({e.secret for e in endpoints}) == len(endpoints)


def test_sandbox_install_keeps_the_demo_endpoints() -> None:
    templates_install(name="intercompany", base_url="http://127.0.0.1:8000")

    assert InboundEndpoint.objects.filter(auth_type=InboundEndpoint.AuthType.NONE).exists()
