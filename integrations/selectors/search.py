"""Business-document search: an order, customer or invoice number finds the messages that carry it.

A term matches the technical keys exactly (correlation id, idempotency key, source and target record
key) or appears anywhere in the payloads: as received, as fetched, as sent. On PostgreSQL the payload
match reads the trigram indexes of migration 0007 (UPPER(payload::text) with gin_trgm_ops); on SQLite
(the demo) it scans, which a demo's few thousand rows allow.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast, Upper

from integrations.models import Message

# Fewer characters than a trigram cannot use the index, and match nearly every payload anyway.
MIN_PAYLOAD_TERM = 3
PAYLOADS = ("payload_in", "payload_fetched", "payload_out")


def messages_search(*, queryset: QuerySet[Message], term: str) -> QuerySet[Message]:
    """The messages of `queryset` whose keys equal `term` or whose payloads contain it (case-insensitive)."""
    term = term.strip()
    if not term:
        return queryset
    keys = Q(correlation_id=term) | Q(idempotency_key=term) | Q(source_record_key=term) | Q(target_record_key=term)
    if len(term) < MIN_PAYLOAD_TERM:
        return queryset.filter(keys)
    # The annotation is the indexed expression, character for character: UPPER((column)::text).
    annotated = queryset.annotate(**{f"_search_{name}": Upper(Cast(name, TextField())) for name in PAYLOADS})
    upper = term.upper()
    in_payloads = Q()
    for name in PAYLOADS:
        in_payloads |= Q(**{f"_search_{name}__contains": upper})
    return annotated.filter(keys | in_payloads)
