"""A document store any emulator may use: records keyed by entity, company and key, with change tracking."""

from __future__ import annotations

import time

from django.db import models


def next_change_seq() -> int:
    """A change sequence that only grows (ns clock), for delta links and getChangedKeys."""
    return time.time_ns()


class EmulatorRecord(models.Model):
    emulator = models.SlugField(max_length=40)
    entity = models.CharField(max_length=120)
    company = models.CharField(max_length=20, blank=True, help_text="dataAreaId / AX company; blank where none.")
    key = models.CharField(max_length=255)
    data = models.JSONField()
    version = models.PositiveBigIntegerField(default=1, help_text="Row version: the ETag.")
    change_seq = models.BigIntegerField(default=next_change_seq, db_index=True)
    deleted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    modified_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["emulator", "entity", "company", "key"], name="emulator_record_unique_key")
        ]
        indexes = [models.Index(fields=["emulator", "entity", "change_seq"], name="emulator_record_changes")]

    def __str__(self) -> str:
        company = f"{self.company}/" if self.company else ""
        return f"{self.emulator}:{self.entity}/{company}{self.key} v{self.version}"


class EmulatorSubscription(models.Model):
    """Where an emulator pushes its events (business events, CloudEvents)."""

    emulator = models.SlugField(max_length=40)
    event_type = models.CharField(max_length=200, blank=True, help_text="Blank: every event.")
    url = models.URLField(max_length=500)
    headers = models.JSONField(default=dict, blank=True, help_text="Sent with every push (e.g. auth).")
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"{self.emulator} {self.event_type or '*'} → {self.url}"
