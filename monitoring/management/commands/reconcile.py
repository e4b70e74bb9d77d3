"""manage.py reconcile [--flow SLUG ...] [--repair]: compare sources and targets from cron or CI.

Prints one line per flow with its counts and exits 1 when differences remain (after repair, when
asked for), 2 when a flow could not be reconciled, so a scheduler or a pipeline can act on it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.models import Flow
from monitoring.models import ReconciliationRun
from monitoring.services.reconciliation import NOT_RECONCILABLE, SOURCE_PASS, reconciliation_run


class Command(BaseCommand):
    help = "Reconcile flows (all enabled ones, or those named) and print their counts; non-zero exit on differences."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--flow", action="append", default=[], metavar="SLUG", help="a flow's slug (repeatable)")
        parser.add_argument(
            "--repair",
            action="store_true",
            help="re-deliver missing and different records; ingest source records that never reached the hub",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slugs: list[str] = options["flow"]
        flows = Flow.objects.select_related("source", "target", "company_link").order_by("slug")
        if slugs:
            found = {flow.slug: flow for flow in flows.filter(slug__in=slugs)}
            unknown = [slug for slug in slugs if slug not in found]
            if unknown:
                raise CommandError(f"no flow {', '.join(map(repr, unknown))}; see `manage.py reconcile --help`")
            chosen = [found[slug] for slug in slugs]
        else:
            chosen = list(flows.filter(enabled=True))
        different = failed = 0
        for flow in chosen:
            run = reconciliation_run(flow=flow, repair=options["repair"])
            if options["repair"] and run.status == ReconciliationRun.Status.DONE and run.discrepancies_count:
                # Repairs travel through the pipeline; what remains is what the next run finds.
                self.stdout.write(f"{flow.slug}: {run.discrepancies_count} repair(s) queued")
            skipped = (run.totals or {}).get(NOT_RECONCILABLE)
            if skipped:
                self.stdout.write(
                    f"{flow.slug}: not reconcilable: {skipped['reason']} ({skipped['records']} record(s))"
                )
                continue
            self.stdout.write(
                f"{flow.slug}: {run.status}, {run.checked} checked, {run.matched} matched, "
                f"{run.missing_in_target} missing in target, {run.missing_in_source} missing in source, "
                f"{run.different} different, {run.errors} unreadable, {run.missing_from_hub} never reached the hub"
                + (f" ({run.error})" if run.error else "")
            )
            source_pass = (run.totals or {}).get(SOURCE_PASS) or {}
            if source_pass and not source_pass.get("checked"):
                self.stdout.write(f"{flow.slug}: source not checkable for missing records: {source_pass['reason']}")
            if unkeyed := source_pass.get("unkeyed", 0):  # listed but not checkable: counted like unreadable
                self.stdout.write(
                    f"{flow.slug}: {unkeyed} source record(s) without their key: {source_pass['unkeyed_error']}"
                )
            failed += run.status == ReconciliationRun.Status.FAILED
            different += run.discrepancies_count + run.errors + unkeyed
        self.stdout.write(f"{len(chosen)} flow(s): {different} difference(s), {failed} failed")
        if failed:
            raise SystemExit(2)
        if different:
            raise SystemExit(1)
