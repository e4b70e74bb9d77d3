"""manage.py monitoring_defaults [--email ops@example.com] [--webhook URL] [--cron '15 2 * * *']"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from monitoring.services.defaults import monitoring_defaults_ensure


class Command(BaseCommand):
    help = "Create the default alert rules and a nightly reconciliation schedule for every flow (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default="", help="Alert recipients, comma separated.")
        parser.add_argument("--webhook", default="", help="Teams/Slack incoming webhook URL for alerts.")
        parser.add_argument("--cron", default="15 2 * * *", help="Reconciliation schedule for new flows.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = monitoring_defaults_ensure(
            email_to=options["email"], webhook_url=options["webhook"], cron=options["cron"]
        )
        self.stdout.write(
            f"{result['rules']} alert rule(s) and {result['schedules']} reconciliation schedule(s) created"
        )
