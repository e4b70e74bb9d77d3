"""The record of one initial load or re-sync of a flow (integrations.bulk).

Kept beside integrations.models (which re-exports it) so that module stays within the size rule; it
imports nothing of integrations but its abstract bases (the flow is named by string), so the re-export
makes no import cycle.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from integrations.model_bases import TimeStampedModel


class LoadRun(TimeStampedModel):
    """One pass over every source record of a flow, page by page, each record ingested as a Message."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        CANCELLED = "cancelled", "Cancelled"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    flow = models.ForeignKey("integrations.Flow", on_delete=models.CASCADE, related_name="load_runs")
    entity = models.CharField(max_length=120, help_text="Source entity read (entity set, AIF service…).")
    filters = models.JSONField(default=dict, blank=True, help_text='{"since": ISO timestamp, "company": "SE01"}')
    cursor = models.TextField(blank=True, help_text="Where the next page starts (a nextLink, a skip token…).")
    pages = models.PositiveIntegerField(default=0)
    expected = models.PositiveIntegerField(null=True, blank=True, help_text="The source's count at the start.")
    read = models.PositiveIntegerField(default=0, help_text="Source records read.")
    written = models.PositiveIntegerField(default=0, help_text="Messages stored (a record already stored: not).")
    failed = models.PositiveIntegerField(default=0, help_text="Records that could not be stored as a message.")
    state = models.CharField(max_length=20, choices=State.choices, default=State.RUNNING)
    last_error = models.TextField(blank=True)
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A worker reading a page holds the run until then."
    )
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "integrations"
        ordering = ["-started_at"]
        constraints = [
            # One load at a time per flow: two would read the same pages for nothing.
            models.UniqueConstraint(fields=["flow"], condition=Q(state="running"), name="loadrun_one_running_per_flow")
        ]

    def __str__(self) -> str:
        return f"load of {self.flow} ({self.state}, {self.read} read)"

    @property
    def is_finished(self) -> bool:
        return self.state != self.State.RUNNING
