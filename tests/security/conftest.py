"""Fixtures of the security tests: one user per console role, and a hub whose rows all hold secrets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from integrations.models import CompanyLink, Flow, InboundEndpoint, Message, System
from integrations.services.roles import AUDITOR, ENGINEER, OPERATOR
from monitoring.roles import console_roles_ensure

ROLES = (OPERATOR, ENGINEER, AUDITOR, "anonymous")
SYSTEM_SECRET = "sys-client-secret-9f8e7d"
AX_PASSWORD = "ax-aos-password-4c3b2a"
WEBHOOK_KEY = "webhook-key-1a2b3c4d5e"
SECRETS = (SYSTEM_SECRET, AX_PASSWORD, WEBHOOK_KEY)


@pytest.fixture(autouse=True)
def _no_throttle_history() -> None:
    """Throttle counters live in the shared cache (Redis) across tests and runs: start from none.

    Only the cache's own keys go (its KEY_PREFIX), never the broker's queues in the same database.
    """
    cache = django_settings.CACHES["default"]
    if "redis" not in cache["BACKEND"].lower():
        return
    store = redis.Redis.from_url(cache["LOCATION"])
    for key in store.scan_iter(match=f"{cache['KEY_PREFIX']}:*"):
        store.delete(key)


@dataclass
class Hub:
    fo: System
    ax: System
    flow: Flow
    endpoint: InboundEndpoint
    system_endpoint: InboundEndpoint
    message: Message
    link: CompanyLink


@pytest.fixture
def hub(make_system: Callable[..., System], make_flow: Callable[..., Flow]) -> Hub:
    fo = make_system(
        name="F&O", slug="fo", kind=System.Kind.FINOPS, auth_type="client_credentials", secret=SYSTEM_SECRET
    )
    ax = make_system(name="AX", slug="ax", kind=System.Kind.AX2012, auth_type="basic", secret=AX_PASSWORD)
    flow = make_flow(slug="orders", source=ax, target=fo)
    endpoint = InboundEndpoint.objects.create(flow=flow, auth_type="query_key", secret=WEBHOOK_KEY)
    system_endpoint = InboundEndpoint.objects.create(system=ax, auth_type="header", secret=WEBHOOK_KEY)
    message = Message.objects.create(
        flow=flow, idempotency_key="k-1", payload_in={"id": 1}, status=Message.Status.FAILED, correlation_id="c-1"
    )
    link = CompanyLink.objects.create(name="DK01-SE01", company_a="DK01", system_a=ax, company_b="SE01", system_b=fo)
    return Hub(fo=fo, ax=ax, flow=flow, endpoint=endpoint, system_endpoint=system_endpoint, message=message, link=link)


@pytest.fixture
def role_user(db: None) -> Callable[[str], User | None]:
    """The console user of a role (staff, in the role's group), or None for anonymous."""
    groups = console_roles_ensure()
    users: dict[str, User] = {}

    def make(role: str) -> User | None:
        if role == "anonymous":
            return None
        if role not in users:
            user = User.objects.create_user(role.replace(" ", "-"), password="pw", is_staff=True)
            user.groups.add(groups[role])
            users[role] = user
        return users[role]

    return make


@pytest.fixture
def client_as(role_user: Callable[[str], User | None]) -> Callable[[str], Client]:
    def make(role: str) -> Client:
        client = Client()
        client.raise_request_exception = False  # a 500 is a finding to assert on, not a test crash
        user = role_user(role)
        if user is not None:
            client.force_login(user)
        return client

    return make


def denied(response: Any) -> bool:
    """Refused: 401/403, or the admin's redirect to its login page."""
    if response.status_code in (401, 403):
        return True
    return response.status_code == 302 and "/login/" in response.get("Location", "")
