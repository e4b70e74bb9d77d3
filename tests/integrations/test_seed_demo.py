"""seed_demo: logins per role, the three scenarios and the demo message; safe to run twice."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from integrations.models import Flow, Message
from monitoring.models import AlertRule

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_seed_demo_installs_everything_once(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        first = seed()
        second = seed()

    assert "login admin / icbridge-demo" in first
    assert User.objects.get(username="admin").is_superuser
    for username, group in (("operator", "operator"), ("engineer", "integration engineer"), ("auditor", "auditor")):
        assert User.objects.get(username=username).groups.get().name == group
    slugs = set(Flow.objects.values_list("slug", flat=True))
    assert {"demo-orders", "ic-dk01-po-to-se01-so"} <= slugs
    assert len(slugs) > 10  # the three scenarios' flows
    assert Message.objects.get().idempotency_key == "demo-0001"
    assert AlertRule.objects.exists()
    assert "already there" in second
    assert "0 created" in second
