"""Template tags of the operator console."""

from __future__ import annotations

from django import template

from integrations.models import Message
from monitoring.models import Alert

register = template.Library()


@register.simple_tag
def attention_counts() -> dict[str, int]:
    """Failed, dead and conflict counts; each reads the (status, created_at) index, no full count."""
    counts = dict.fromkeys((str(s) for s in Message.NEEDS_ATTENTION), 0)
    for status in counts:
        counts[status] = Message.objects.filter(status=status).count()
    return counts


@register.simple_tag
def open_alert_count() -> int:
    return Alert.objects.filter(resolved_at__isnull=True).count()
