"""Fixtures of the security tests: one user per console role, and a hub whose rows all hold secrets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from integrations.models import CompanyLink, Flow, InboundEndpoint, Message, System
from integrations.services.roles import AUDITOR, ENGINEER, OPERATOR
from monitoring.roles import console_roles_ensure
from tests.conftest import ROOT, _database_url

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


# --- a real gunicorn (2 workers) on a free loopback port -----------------------------------------


@dataclass
class Gunicorn:
    base: str
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def start_gunicorn(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """gunicorn with the Procfile's config file and access log, 2 workers, on the test DB and Redis."""
    processes: list[subprocess.Popen] = []

    def start(**extra_env: str) -> Gunicorn:
        port = _free_port()
        log_path = tmp_path / f"gunicorn-{port}.log"
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": django_settings.CELERY_BROKER_URL,
            "DJANGO_SETTINGS_MODULE": "icbridge.settings",
            "ICBRIDGE_INGRESS_CONFIG_TTL": "0",
            **extra_env,
        }
        args = [
            sys.executable, "-m", "gunicorn", "icbridge.wsgi", "--config", "gunicorn.conf.py",
            # Sync workers take one connection at a time, so concurrent clients must reach both processes.
            "--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", "sync", "--timeout", "60",
            "--access-logfile", "-", "--no-control-socket",
        ]  # fmt: skip
        log = log_path.open("w")
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/api/messages", timeout=5)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}") from None
                time.sleep(0.3)
        # Both workers must be up, so requests really spread over two processes.
        while log_path.read_text().count("Booting worker") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        return Gunicorn(base=base, log_path=log_path)

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
