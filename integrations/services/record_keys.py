"""Record keys after an endpoint's record key pointer changes: the flows' RecordLinks take the new form.

A RecordLink keeps the source key its record's events had. When the pointer changes (an operator in the
admin, or a template update: the holds flow's /SalesOrderNumber became /SalesOrderNumber,/HoldCode), the next
event of an old record would get the new key and a second link, and reconciliation would report the old
link's record as missing from the hub; a repair would resend it. So each link is re-keyed from its last
message, as the new pointer reads that message's payload.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from integrations.models import Flow, InboundEndpoint, RecordLink
from integrations.protocols.events import EventError, pointer_key
from integrations.systems import canonical_key


@dataclass
class Rekeyed:
    changed: int = 0
    kept: int = 0  # no last message, or its payload lacks a field the pointer names: the old key stays
    clashes: int = 0  # another link has the new key already: both stay, for an operator to look at

    def __str__(self) -> str:
        return f"{self.changed} record links re-keyed, {self.kept} kept their key, {self.clashes} clashed"


def _flows(endpoint: InboundEndpoint) -> list[Flow]:
    """The flows whose events the endpoint's pointer keys: its flow, or its system's flows with no endpoint of
    their own."""
    if endpoint.flow_id:
        return [endpoint.flow]
    return list(Flow.objects.filter(source_id=endpoint.system_id, inbound__isnull=True))


def rekey_links(endpoint: InboundEndpoint) -> Rekeyed:
    """Give the endpoint's flows' links the keys its current record key pointer names."""
    result = Rekeyed()
    for flow in _flows(endpoint):
        links = RecordLink.objects.filter(flow=flow).select_related("last_message").order_by("pk")
        with transaction.atomic():
            taken = set(RecordLink.objects.filter(flow=flow).values_list("source_key", flat=True))
            changed = []
            for link in links.iterator(chunk_size=2000):
                try:
                    if link.last_message is None:
                        raise EventError("no message", "")
                    key = canonical_key(flow.source.kind, pointer_key(link.last_message.payload_in, endpoint))[:255]
                except EventError:
                    result.kept += 1
                    continue
                if key == link.source_key:
                    continue
                if key in taken:
                    result.clashes += 1
                    continue
                taken.add(key)
                link.source_key = key
                changed.append(link)
            # A new key that any link had when the run began counts as taken, so no update meets the unique index.
            RecordLink.objects.bulk_update(changed, ["source_key"], batch_size=1000)
            result.changed += len(changed)
    return result
