"""Install the scenario flow templates (intercompany, prospect to cash, order to cash) into this hub."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.scenarios.install import templates_install
from integrations.scenarios.templates import TEMPLATES, TemplateError


class Command(BaseCommand):
    help = (
        "Install scenario templates (systems, company links, value maps, flows). Safe to run again: "
        "existing objects are kept unless --update is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help=f"Templates to install (default: all): {', '.join(TEMPLATES)}")
        parser.add_argument(
            "--base-url",
            default="",
            help="Root URL of the systems; default: this hub's sandbox at ICBRIDGE_PUBLIC_URL.",
        )
        parser.add_argument("--update", action="store_true", help="Bring existing objects back to the template.")
        parser.add_argument(
            "--no-sandbox",
            action="store_true",
            help="Real systems: skip the sandbox app registration and emulator event subscriptions.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names = options["names"] or list(TEMPLATES)
        unknown = [name for name in names if name not in TEMPLATES]
        if unknown:
            raise CommandError(f"unknown template(s): {', '.join(unknown)}; known: {', '.join(TEMPLATES)}")
        base_url = options["base_url"] or settings.PUBLIC_URL
        for name in names:
            try:
                report = templates_install(
                    name=name,
                    base_url=base_url,
                    update=options["update"],
                    sandbox=not options["no_sandbox"],
                )
            except TemplateError as exc:
                raise CommandError(str(exc)) from exc
            style = self.style.SUCCESS if report.changed else self.style.NOTICE
            self.stdout.write(style(report.summary()))
            for line in report.differs:
                self.stdout.write(f"  kept, differs from the template: {line}")
