"""Monitoring records: reconciliation schedules, runs and discrepancies; alert rules and alerts; heartbeats."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.db.models import Q

from integrations.models import Flow, Message, System


class ReconciliationSchedule(models.Model):
    """When and how one flow is reconciled; saved through the service, which keeps its beat PeriodicTask in step."""

    class SourceMode(models.TextChoices):
        MESSAGE = "message", "Last delivered message (payload out)"
        FETCH = "fetch", "Read the source record from the source system"

    flow = models.OneToOneField(Flow, on_delete=models.CASCADE, related_name="reconciliation")
    enabled = models.BooleanField(default=True)
    every_minutes = models.PositiveIntegerField(default=60, help_text="Run every N minutes (unless cron is set).")
    cron = models.CharField(
        max_length=100, blank=True, help_text="Cron expression 'minute hour day month weekday'; overrides the interval."
    )
    source_mode = models.CharField(max_length=10, choices=SourceMode.choices, default=SourceMode.MESSAGE)
    source_entity = models.CharField(
        max_length=120, blank=True, help_text="Entity to read at the source (fetch mode); empty: the flow's entity."
    )
    source_key_field = models.CharField(
        max_length=120, blank=True, help_text="Key name for reading the source record (fetch mode); default 'key'."
    )
    max_records = models.PositiveIntegerField(default=10_000, help_text="Records checked per run at most.")
    auto_repair = models.BooleanField(default=False, help_text="Re-deliver every record found missing or different.")
    totals = models.JSONField(
        default=dict,
        blank=True,
        help_text='Business totals, e.g. {"amount": "InvoiceAmount", "date": "InvoiceDate", "company": "dataAreaId"}.',
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        when = f"cron '{self.cron}'" if self.cron else f"every {self.every_minutes} min"
        return f"reconcile {self.flow.slug} {when}"

    def clean(self) -> None:
        problems: dict[str, str] = {}
        if self.cron and len(self.cron.split()) != 5:
            fields = len(self.cron.split())
            problems["cron"] = f"cron: expected 5 fields 'minute hour day month weekday', got {fields} in {self.cron!r}"
        if not self.cron and self.every_minutes < 1:
            problems["every_minutes"] = "every_minutes: must be at least 1 when no cron is given"
        if self.totals and (not isinstance(self.totals, dict) or not self.totals.get("amount")):
            problems["totals"] = 'totals: expected {"amount": "<field>", "date": "<field>", "company": "<field>"}'
        if problems:
            raise ValidationError(problems)


class ReconciliationRun(models.Model):
    """One comparison of source and target for one flow."""

    class Status(models.TextChoices):  # labelled by name: "Running"…
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="reconciliation_runs")
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    checked = models.PositiveIntegerField(default=0)
    matched = models.PositiveIntegerField(default=0)
    missing_in_target = models.PositiveIntegerField(default=0)
    missing_in_source = models.PositiveIntegerField(default=0)
    different = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0, help_text="Records that could not be read.")
    missing_from_hub = models.PositiveIntegerField(
        default=0, help_text="Source records the hub never received (no link, no message in flight)."
    )
    totals = models.JSONField(default=dict, blank=True, help_text="Business totals per day and company, both sides.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"reconciliation of {self.flow.slug} at {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def discrepancies_count(self) -> int:
        return self.missing_in_target + self.missing_in_source + self.different + self.missing_from_hub


class Discrepancy(models.Model):
    """One record that does not match between source and target in one run."""

    class Kind(models.TextChoices):
        MISSING_IN_TARGET = "missing_in_target", "Missing in target"
        MISSING_IN_SOURCE = "missing_in_source", "Missing in source"
        DIFFERENT = "different", "Different"
        UNREADABLE = "unreadable", "Could not be read"
        MISSING_FROM_HUB = "missing_from_hub", "Never reached the hub"

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="discrepancies")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    source_key = models.CharField(max_length=255)
    target_key = models.CharField(max_length=255, blank=True)
    fields = models.JSONField(default=list, blank=True, help_text="Names of the mapped fields that differ.")
    source_values = models.JSONField(default=dict, blank=True)
    target_values = models.JSONField(default=dict, blank=True)
    message = models.ForeignKey(Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    repair_message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="The re-delivery."
    )
    repaired_at = models.DateTimeField(null=True, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "source_key"]
        verbose_name_plural = "discrepancies"

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.source_key}"


class AlertRule(models.Model):
    """A condition watched by the beat evaluator; it opens one Alert when it starts and closes it when it ends."""

    class Kind(models.TextChoices):
        DEAD_LETTERS = "dead_letters", "Dead letters above N"
        FAILURE_RATE = "failure_rate", "Failure rate above X % over the window"
        SILENCE = "silence", "Flow silent longer than the window"
        RECONCILIATION = "reconciliation", "Reconciliation differences above N"
        HEALTH = "health", "System failing its connection check"

    name = models.CharField(max_length=150, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    flow = models.ForeignKey(
        Flow, on_delete=models.CASCADE, null=True, blank=True, help_text="Empty: every flow (not for silence)."
    )
    system = models.ForeignKey(System, on_delete=models.CASCADE, null=True, blank=True, help_text="For health rules.")
    threshold = models.FloatField(
        default=0, help_text="N for counts, X (percent) for failure rate; the alert fires above it."
    )
    window_minutes = models.PositiveIntegerField(default=60, help_text="Failure rate window, or the silence limit.")
    min_messages = models.PositiveIntegerField(default=1, help_text="Failure rate: ignore windows with fewer messages.")
    email_to = models.TextField(blank=True, help_text="Addresses, one per line or comma separated.")
    webhook_url = models.URLField(max_length=500, blank=True, help_text="Teams/Slack incoming webhook URL.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        problems: dict[str, str] = {}
        if self.kind == self.Kind.FAILURE_RATE and not 0 <= self.threshold < 100:
            problems["threshold"] = f"threshold: a failure rate is a percentage from 0 to 99.9, got {self.threshold:g}"
        elif self.threshold < 0:
            problems["threshold"] = f"threshold: must be 0 or more, got {self.threshold:g}"
        if self.kind in (self.Kind.FAILURE_RATE, self.Kind.SILENCE) and self.window_minutes < 1:
            problems["window_minutes"] = "window_minutes: must be at least 1 minute"
        if self.kind == self.Kind.HEALTH and self.flow_id:
            problems["flow"] = "flow: a health rule watches a system, not a flow; choose a system or leave both empty"
        for address in self.recipients:
            try:
                validate_email(address)
            except ValidationError:
                problems["email_to"] = f"email_to: {address!r} is not an email address"
                break
        if problems:
            raise ValidationError(problems)

    @property
    def recipients(self) -> list[str]:
        return [a.strip() for a in self.email_to.replace(",", "\n").splitlines() if a.strip()]


class Alert(models.Model):
    """One firing of a rule, from opened to resolved; at most one open per rule."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    opened_at = models.DateTimeField(auto_now_add=True, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True)
    detail = models.TextField(blank=True)
    notifications = models.JSONField(default=list, blank=True, help_text="What was sent, where, and how it went.")

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule"], condition=Q(resolved_at__isnull=True), name="alert_one_open_per_rule"
            )
        ]

    def __str__(self) -> str:
        state = "resolved" if self.resolved_at else "open"
        return f"{self.rule.name} ({state})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class Heartbeat(models.Model):
    """Last sign of life of a process role (worker), written by a beat-scheduled task."""

    name = models.CharField(max_length=100, unique=True)
    seen_at = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.seen_at:%H:%M:%S}"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seen_at": self.seen_at.isoformat(), **self.details}
