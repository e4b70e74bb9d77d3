"""Seed a small sandbox demo: a login, a sandbox target and one message that flows end to end."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from integrations.models import Flow, System
from integrations.services.ingest import message_ingest

DEMO_USER = "admin"
DEMO_PASSWORD_DEFAULT = "icbridge-demo"


class Command(BaseCommand):
    help = "Create the demo login, sandbox systems and flows, and send one demo message. Safe to run again."

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("ICBRIDGE_DEMO_PASSWORD", DEMO_PASSWORD_DEFAULT)
        user_model = get_user_model()
        if not user_model.objects.filter(username=DEMO_USER).exists():
            user_model.objects.create_superuser(DEMO_USER, "admin@localhost", password)
        sandbox = settings.PUBLIC_URL + "/sandbox"
        demo_source, _ = System.objects.update_or_create(
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
                "source": demo_source,
                "target": recorder,
                "trigger": Flow.Trigger.WEBHOOK,
                "target_entity": "orders",
                "target_key_fields": ["OrderNumber"],
                "mapping_spec": {"fields": {"OrderNumber": "SalesOrderNumber", "Customer": "CustomerAccount"}},
                "retry_policy": {"max_attempts": 8, "backoff": {"1": 5, "3": 30}, "jitter": 0.2},
            },
        )
        message, created = message_ingest(
            flow=flow,
            payload={"SalesOrderNumber": "DEMO-0001", "CustomerAccount": "US-001"},
            idempotency_key="demo-0001",
            source_record_key="DEMO-0001",
        )
        self.stdout.write(f"Demo message {message.pk} {'queued' if created else 'already there'}.")
        self.stdout.write(self.style.SUCCESS(f"Admin: {settings.PUBLIC_URL}/admin/  login {DEMO_USER} / {password}"))
