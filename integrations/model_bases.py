"""Abstract bases of the hub's models: timestamps, what an operator can pause, append-only records.

Kept apart from integrations.models so integrations.load_models can use them without importing that
module (which re-exports LoadRun); abstract, so no table and no migration of their own.
"""

from __future__ import annotations

from typing import Any

from django.db import models


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class PausableModel(TimeStampedModel):
    """A system or flow: switched off (enabled) or paused by an operator (integrations.pipeline.pause).

    Each model declares its own paused_at, whose help text says what a pause holds there.
    """

    enabled = models.BooleanField(default=True)
    paused_by = models.CharField(max_length=150, blank=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    @property
    def is_held(self) -> bool:
        """Its messages wait for an operator to resume."""
        return bool(self.paused_at)


class AppendOnlyModel(models.Model):
    """A record written once, with its outcome, and never edited (attempts, the audit log)."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValueError(f"{str(self._meta.verbose_name_plural).capitalize()} are append-only")
        super().save(*args, **kwargs)
