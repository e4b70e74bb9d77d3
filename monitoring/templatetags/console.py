"""Template tags of the operator console."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from integrations.selectors import overview
from monitoring.models import Alert

register = template.Library()


@register.simple_tag
def attention_counts() -> dict[str, int]:
    """Failed, dead and conflict counts, and retrying past the threshold; grouped on the status index."""
    return overview.attention_counts()


@register.simple_tag
def open_alert_count() -> int:
    return Alert.objects.filter(resolved_at__isnull=True).count()


@register.simple_tag
def console_overview() -> dict[str, Any]:
    """What the home page shows: incidents first, then every flow's and system's state."""
    incidents = overview.incidents()
    return {
        "incidents": incidents,
        "flows": overview.flow_states(),
        "systems": overview.system_states(current=incidents),
    }


@register.filter
def ago(when: datetime | None) -> str:
    """ "just now", "5 minutes ago", "2 days ago"; "—" for never."""
    if when is None:
        return "—"
    if (timezone.now() - when).total_seconds() < 60:
        return "just now"
    return f"{timesince(when).split(',')[0]} ago"
