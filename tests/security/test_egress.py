"""Outbound URLs: link-local (cloud metadata) never, and only allowed hosts when an allow-list is set."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.admin.systems import SystemForm
from integrations.egress import egress_refusal


def test_metadata_address_is_always_refused(settings: Any) -> None:
    settings.ICBRIDGE_EGRESS_ALLOW = []

    assert "link-local" in egress_refusal("http://169.254.169.254/latest/meta-data/")
    assert egress_refusal("https://org.crm4.dynamics.com/api") is None


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://org.crm4.dynamics.com/api", True),
        ("https://fo.operations.dynamics.com", True),
        ("http://10.1.2.3:8000/aif", True),
        ("http://192.168.1.5/", False),
        ("https://evil.example.com", False),
        ("file:///etc/passwd", False),
    ],
)
def test_allow_list_of_hosts_and_networks(url: str, allowed: bool, settings: Any) -> None:
    settings.ICBRIDGE_EGRESS_ALLOW = ["*.dynamics.com", "10.0.0.0/8"]

    assert (egress_refusal(url) is None) is allowed


@pytest.mark.django_db
def test_system_form_refuses_a_url_outside_the_allow_list(settings: Any) -> None:
    settings.ICBRIDGE_EGRESS_ALLOW = ["*.dynamics.com"]
    form = SystemForm(
        data={
            "name": "X",
            "slug": "x",
            "kind": "finops",
            "base_url": "https://intranet.example.com",
            "auth_type": "none",
            "settings": "{}",
            "timeout_seconds": "5",
            "batch_size": "10",
        }
    )

    assert not form.is_valid()
    assert "ICBRIDGE_EGRESS_ALLOW" in str(form.errors["base_url"])


@pytest.mark.django_db
def test_a_connector_call_to_a_host_outside_the_allow_list_is_refused_unsent(make_system, settings) -> None:
    # given a System saved before the allow-list was set
    from integrations import errors
    from integrations.systems import get_connector

    system = make_system(base_url="http://127.0.0.1:9/sandbox/recorder")
    settings.ICBRIDGE_EGRESS_ALLOW = ["*.dynamics.com"]
    # when the hub would call it, then nothing is sent and the error names the rule
    with pytest.raises(errors.RejectedError, match="not in ICBRIDGE_EGRESS_ALLOW; nothing was sent"):
        get_connector(system).send("GET", "http://127.0.0.1:9/sandbox/recorder/records")


@pytest.mark.django_db
def test_an_alert_webhook_outside_the_allow_list_is_not_posted(settings, monkeypatch) -> None:
    from monitoring.models import Alert, AlertRule
    from monitoring.services import alerts

    settings.ICBRIDGE_EGRESS_ALLOW = ["hooks.example.com"]
    posted: list[str] = []
    monkeypatch.setattr(alerts.requests, "post", lambda url, **kw: posted.append(url))
    rule = AlertRule.objects.create(name="r", kind=AlertRule.Kind.DEAD_LETTERS, webhook_url="http://10.9.9.9/hook")
    alert = Alert.objects.create(rule=rule)

    alerts._notify(alert, "firing", alerts.Reading(firing=True, value=1, detail="1 dead letter"))

    assert posted == []
    assert Alert.objects.get(pk=alert.pk).notifications[-1] == {
        **Alert.objects.get(pk=alert.pk).notifications[-1],
        "channel": "webhook",
        "ok": False,
        "error": "InvalidURL",
    }
