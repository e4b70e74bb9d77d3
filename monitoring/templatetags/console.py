"""Template tags of the operator console."""

from __future__ import annotations

from typing import Any

from django import template

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
    return {
        "incidents": overview.incidents(),
        "flows": overview.flow_states(),
        "systems": overview.system_states(),
    }
