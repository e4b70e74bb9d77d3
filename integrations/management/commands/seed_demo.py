"""Seed the sandbox demo: logins for each role, the three business scenarios, and one message end to end."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from integrations.models import Flow, System
from integrations.pipeline.ingest import message_ingest
from integrations.scenarios.install import seed_scenarios
from integrations.services import roles
from monitoring.roles import console_roles_ensure
from monitoring.services.defaults import monitoring_defaults_ensure

DEMO_USER = "admin"
DEMO_PASSWORD_DEFAULT = "icbridge-demo"
ROLE_USERS = {"operator": roles.OPERATOR, "engineer": roles.ENGINEER, "auditor": roles.AUDITOR}


class Command(BaseCommand):
    help = "Create demo logins, install the scenario templates against the sandbox, send one demo message. Re-runnable."

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("ICBRIDGE_DEMO_PASSWORD", DEMO_PASSWORD_DEFAULT)
        users = get_user_model()
        if not users.objects.filter(username=DEMO_USER).exists():
            users.objects.create_superuser(DEMO_USER, "admin@localhost", password)
        groups = console_roles_ensure()
        for username, role in ROLE_USERS.items():
            if not users.objects.filter(username=username).exists():
                user = users.objects.create_user(username, f"{username}@localhost", password, is_staff=True)
                user.groups.add(groups[role])
        for report in seed_scenarios(settings.PUBLIC_URL):
            created, unchanged = len(report.created), len(report.unchanged)
            self.stdout.write(f"Scenario {report.template}: {created} created, {unchanged} unchanged")
        flow = self._demo_flow()
        monitoring_defaults_ensure()
        message, created = message_ingest(
            flow=flow,
            payload={"SalesOrderNumber": "DEMO-0001", "CustomerAccount": "US-001"},
            idempotency_key="demo-0001",
            source_record_key="DEMO-0001",
        )
        self.stdout.write(f"Demo message {message.pk} {'queued' if created else 'already there'}.")
        self.stdout.write(self.style.SUCCESS(f"Admin: {settings.PUBLIC_URL}/admin/  login {DEMO_USER} / {password}"))
        self.stdout.write(f"Role logins (same password): {', '.join(ROLE_USERS)}")

    def _demo_flow(self) -> Flow:
        sandbox = settings.PUBLIC_URL + "/sandbox"
        source, _ = System.objects.update_or_create(
            slug="demo-source",
            defaults={"name": "Demo source", "kind": System.Kind.RECORDER, "base_url": f"{sandbox}/recorder"},
        )
        recorder, _ = System.objects.update_or_create(
            slug="sandbox-recorder",
            defaults={"name": "Sandbox recorder", "kind": System.Kind.RECORDER, "base_url": f"{sandbox}/recorder"},
        )
        flow, _ = Flow.objects.update_or_create(
            slug="demo-orders",
            defaults={
                "name": "Demo: orders to the sandbox recorder",
                "entity": "salesorder",
                "source": source,
                "target": recorder,
                "trigger": Flow.Trigger.WEBHOOK,
                "target_entity": "orders",
                "target_key_fields": ["OrderNumber"],
                "mapping_spec": {"fields": {"OrderNumber": "SalesOrderNumber", "Customer": "CustomerAccount"}},
                "retry_policy": {"max_attempts": 8, "backoff": {"1": 5, "3": 30}, "jitter": 0.2},
            },
        )
        return flow
