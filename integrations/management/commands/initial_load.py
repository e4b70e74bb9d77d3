"""manage.py initial_load --flow SLUG [--since ISO] [--company SE01]: start a load and follow it live.

The pages are read by the Celery workers (as for a load started from the admin or the API); this
command prints their progress until the load ends, and exits non-zero if it failed or a record failed.
With --inline it reads the pages itself, for a host with no worker running.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.bulk import load
from integrations.models import Flow, LoadRun


class Command(BaseCommand):
    help = "Initial load / re-sync of one flow, with live progress (read, written, failed, rate, ETA)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--flow", required=True, help="slug of the flow")
        parser.add_argument("--since", default=None, help="only records modified since (ISO 8601)")
        parser.add_argument("--company", default="", help="only this company (dataAreaId / company code)")
        parser.add_argument("--entity", default="", help="source entity (default: the flow's poll entity)")
        parser.add_argument("--key", default="", help="source key fields, comma-separated (default: the flow's)")
        parser.add_argument("--page-size", type=int, default=None)
        parser.add_argument("--inline", action="store_true", help="read the pages in this process")
        parser.add_argument("--timeout", type=float, default=0, help="give up after this many seconds (0: never)")

    def handle(self, *args: object, **options: object) -> None:
        flow = Flow.objects.select_related("source", "target").filter(slug=options["flow"]).first()
        if flow is None:
            raise CommandError(f"no flow {options['flow']!r}")
        try:
            run = load.load_start(
                flow=flow,
                since=options["since"],  # type: ignore[arg-type]
                company=str(options["company"]),
                entity=str(options["entity"]),
                key=[k for k in str(options["key"]).split(",") if k],
                page_size=options["page_size"],  # type: ignore[arg-type]
            )
        except load.LoadError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"load {run.pk} of {flow.slug}: {run.entity}, {run.expected or '?'} records expected")
        deadline = time.monotonic() + float(options["timeout"] or 0) if options["timeout"] else None
        while True:
            if options["inline"]:
                load.load_page(run_id=run.pk)
            else:
                time.sleep(1)
            run.refresh_from_db()
            self.stdout.write(self._line(load.load_progress(run=run)))
            if run.is_finished:
                break
            if deadline and time.monotonic() > deadline:
                load.load_cancel(run=run)
                raise CommandError(f"load {run.pk}: timed out, cancelled")
        if run.state != LoadRun.State.DONE or run.failed:
            raise CommandError(f"load {run.pk} ended {run.state}: {run.failed} record(s) failed {run.last_error}")

    @staticmethod
    def _line(progress: dict) -> str:
        eta = f"{progress['eta_seconds']:.0f} s" if progress["eta_seconds"] is not None else "?"
        return (
            f"{progress['state']}: read {progress['read']}/{progress['expected'] or '?'},"
            f" written {progress['written']}, failed {progress['failed']}, delivered {progress['delivered']},"
            f" {progress['rate_per_second']:.1f} records/s, ETA {eta}"
        )
