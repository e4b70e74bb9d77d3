"""Messages as the operator asks for them: by status, flow, system, time, correlation id or record key."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from integrations.models import Message


def messages_filter(*, queryset: QuerySet[Message], filters: dict[str, Any]) -> QuerySet[Message]:
    """The messages of `queryset` that match every given filter (validated by MessageFilterSerializer)."""
    if filters.get("status"):
        queryset = queryset.filter(status__in=filters["status"])
    if filters.get("flow"):
        queryset = queryset.filter(flow__slug=filters["flow"])
    if filters.get("system"):
        queryset = queryset.filter(Q(flow__source__slug=filters["system"]) | Q(flow__target__slug=filters["system"]))
    if filters.get("since"):
        queryset = queryset.filter(created_at__gte=filters["since"])
    if filters.get("until"):
        queryset = queryset.filter(created_at__lt=filters["until"])
    if filters.get("correlation_id"):
        queryset = queryset.filter(correlation_id=filters["correlation_id"])
    if filters.get("source_record_key"):
        queryset = queryset.filter(source_record_key=filters["source_record_key"])
    if filters.get("q"):
        term = filters["q"]
        queryset = queryset.filter(
            Q(idempotency_key__icontains=term)
            | Q(source_record_key__icontains=term)
            | Q(target_record_key__icontains=term)
            | Q(correlation_id=term)
        )
    return queryset
