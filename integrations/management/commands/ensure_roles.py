"""manage.py ensure_roles: create or update the operator, integration engineer and auditor groups."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from monitoring.roles import console_roles_ensure


class Command(BaseCommand):
    help = "Create or update the groups operator, integration engineer and auditor with their permissions."

    def handle(self, *args: Any, **options: Any) -> None:
        for name, group in console_roles_ensure().items():
            self.stdout.write(f"{name}: {group.permissions.count()} permission(s)")
