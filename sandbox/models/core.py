"""State of the sandbox emulators: fault settings and the recorder's records.

Each emulator keeps its own data models in this app, named after it
(e.g. DataverseRecord); they share FaultSettings.
"""

from __future__ import annotations

from django.db import models


class FaultSettings(models.Model):
    """What an emulator should do wrong, set by an operator or a test."""

    emulator = models.SlugField(
        max_length=40, unique=True, help_text="recorder, azuread, dataverse, finops, ax2012, s4hana"
    )
    latency_ms = models.PositiveIntegerField(default=0, help_text="Added to every call.")
    error_rate = models.FloatField(default=0.0, help_text="Share of calls (0-1) answered with 503.")
    throttle_rate = models.FloatField(default=0.0, help_text="Share of calls (0-1) answered with 429.")
    retry_after_seconds = models.PositiveIntegerField(default=1)
    down = models.BooleanField(default=False, help_text="Every call fails: the system is out.")
    slow_after_commit_ms = models.PositiveIntegerField(
        default=0, help_text="Sleep after a write is committed, to make the caller time out (a lost response)."
    )

    class Meta:
        verbose_name_plural = "fault settings"

    def __str__(self) -> str:
        return f"faults of {self.emulator}"


class RecorderRecord(models.Model):
    """One record at the recorder target; `writes` counts how often it was written."""

    entity = models.CharField(max_length=120)
    key = models.CharField(max_length=255)
    payload = models.JSONField()
    version = models.PositiveIntegerField(default=1)
    writes = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entity", "key"], name="recorder_record_unique_key")]

    def __str__(self) -> str:
        return f"{self.entity}/{self.key} v{self.version}"

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


class RecorderWrite(models.Model):
    """Every write call the recorder answered, including repeats of the same idempotency key."""

    record = models.ForeignKey(RecorderRecord, on_delete=models.CASCADE, related_name="write_log")
    idempotency_key = models.CharField(max_length=255, db_index=True)
    correlation_id = models.CharField(max_length=100, blank=True)
    applied = models.BooleanField(default=True, help_text="False when refused (412) or a repeat.")
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"write {self.idempotency_key} to {self.record_id}"
