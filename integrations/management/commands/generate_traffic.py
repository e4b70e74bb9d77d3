"""Generate realistic demo traffic against the sandbox so an operator sees the scenario flows move."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.models import CompanyLink
from integrations.scenarios import traffic
from integrations.scenarios.templates import intercompany

SCENARIOS = ("intercompany", "prospect_to_cash", "order_to_cash")


class Command(BaseCommand):
    help = (
        "Create N business documents in the sandbox systems the way their users would: AX intercompany "
        "purchase orders (picked up by the AX poller), Sales accounts and orders (Dataverse sends its webhooks). "
        "Run it while `make run` is up."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=10, help="How many orders per scenario (default 10).")
        parser.add_argument(
            "--scenario", choices=SCENARIOS, action="append", help="Scenario(s) to drive (default: all installed)."
        )
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for repeatable traffic.")

    def handle(self, *args: Any, **options: Any) -> None:
        count = options["orders"]
        if count < 1 or count > 100_000:
            raise CommandError(f"--orders must be between 1 and 100000, got {count}")
        scenarios = options["scenario"] or list(SCENARIOS)
        for scenario in scenarios:
            report = self.run_scenario(scenario, count, options)
            style = self.style.SUCCESS if not report.failed else self.style.WARNING
            self.stdout.write(style(f"{scenario}: {report.summary()}"))

    def run_scenario(self, scenario: str, count: int, options: dict[str, Any]) -> traffic.TrafficReport:
        if scenario == "intercompany":
            link = CompanyLink.objects.select_related("system_a", "system_b").filter(name=intercompany.LINK).first()
            if link is None:
                raise CommandError("the intercompany template is not installed: run `manage.py install_templates`")
            return traffic.intercompany_orders(count=count, link=link, seed=options["seed"])
        return traffic.sales_orders(count=count, template=scenario, seed=options["seed"])
