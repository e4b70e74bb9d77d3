"""Echo suppression: a change event caused by our own write never travels back as a new change.

We write account A to S/4; S/4 emits "BusinessPartner changed" for A; the reverse flow
(S/4 → Dataverse) must not carry it back. The forward flow's RecordLink knows what we
wrote there: the target key, the ETag the target answered, the content hash and the
payload (its last message), and when. An incoming message on a reverse flow is an echo
when its record is a target of a forward flow and

1. the event reports the ETag / version our write produced (a higher row version number than ours is
   a later change, whatever its time says), or
2. the event has a change time, and that change happened no later than our write completed
   (event time ≤ RecordLink.synced_at): it cannot be a later edit; or
3. the event has no change time, and carries the fields we wrote, all with the values we wrote.

Forward flows are the flows named in the reverse flow's options["echo_of"]; without that
option, every enabled flow from this flow's target to its source. "echo_of": [] says no flow
writes what this flow reads (the intercompany documents): nothing is screened, no query made.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from integrations.models import Flow, Message, RecordLink
from integrations.scenarios.payloads import message_payload, payload_value
from integrations.systems import canonical_key

# F&O / Dataverse / SAP OData v2 dates: /Date(1570769681000)/ or /Date(1472796947125+0000)/
_MS_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")
# Where events carry the time of the change, per sender.
EVENT_TIME_PATHS = ("EventTime", "time", "modifiedon", "LastChangeDateTime", "ModifiedDateTime")
ETAG_PATHS = ("@odata.etag", "etag", "ETag", "__metadata.etag", "versionnumber", "RowVersion")


def forward_flows(flow: Flow) -> QuerySet[Flow]:
    """The flows whose writes into this flow's source could come back through this flow."""
    names = flow.opts.echo_of
    if names is not None:  # [] says no flow writes what this one reads: nothing to screen
        return Flow.objects.filter(slug__in=names)
    return Flow.objects.filter(source=flow.target, target=flow.source).exclude(pk=flow.pk)


def screens(flow: Flow) -> bool:
    """Whether any flow may write what this one reads; "echo_of": [] says none, so no query is made."""
    names = flow.opts.echo_of
    return names is None or len(names) > 0


def parse_event_time(value: Any) -> datetime | None:
    """An event's change time from /Date(ms)/, ISO 8601 or epoch milliseconds; None if unreadable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if not isinstance(value, str):
        return None
    if match := _MS_DATE.match(value.strip()):
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    parsed = parse_datetime(value.strip().replace("Z", "+00:00"))
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def event_record(payload: Any) -> dict[str, Any]:
    """The record fields an event carries, whatever the envelope (Dataverse context, OData v2, CloudEvent)."""
    if not isinstance(payload, dict):
        return {}
    if isinstance(
        payload.get("attributes"), dict
    ):  # a Dataverse webhook as integrations.systems.dataverse.inbound stores it
        return payload["attributes"]
    attributes = payload_value(payload, "InputParameters.0.value.Attributes")
    if isinstance(attributes, list):
        return {item["key"]: item.get("value") for item in attributes if isinstance(item, dict) and "key" in item}
    for wrapper in ("d", "data"):
        inner = payload.get(wrapper)
        if isinstance(inner, dict):
            return inner
    return payload


def _first(payload: Any, paths: tuple[str, ...], headers: dict[str, Any]) -> Any:
    for path in paths:
        if headers.get(path) not in (None, ""):
            return headers[path]
        value = payload_value(payload, path)
        if value not in (None, ""):
            return value
    return None


def normalise_etag(value: Any) -> str:
    """W/"12345", "12345" and 12345 are one version: Dataverse's @odata.etag wraps its versionnumber."""
    text = str(value).strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"')


def _same(ours: Any, theirs: Any) -> bool:
    if ours == theirs:
        return True
    # Targets give numbers back as strings (S/4 decimals) or strings as numbers: compare as text then.
    return str(ours) == str(theirs)


def _later_version(theirs: Any, ours: str) -> bool:
    """Both are row version numbers and the event's is the higher."""
    if theirs in (None, "") or not ours:
        return False
    theirs_text, ours_text = normalise_etag(theirs), normalise_etag(ours)
    return theirs_text.isdecimal() and ours_text.isdecimal() and int(theirs_text) > int(ours_text)


def echo_reason(*, message: Message) -> str:
    """Why the message is an echo of our own write ("" when it is a real change); see the module docstring."""
    key = message.source_record_key
    if not key or not screens(message.flow):
        return ""
    # Forward flows store the key in the form this flow's source answers with (its normal form); the
    # event may spell it otherwise (F&O's dataAreaId in upper case, a GUID in braces): compare in that form.
    keys = sorted({key, canonical_key(message.flow.source.kind, key)})
    links = list(
        RecordLink.objects.filter(flow__in=forward_flows(message.flow), target_key__in=keys)
        .select_related("flow", "last_message")
        .order_by("-synced_at")
    )
    if not links:
        return ""
    headers = message.headers if isinstance(message.headers, dict) else {}
    payload = message_payload(message)  # a truncated event reads as completed from the source
    record = event_record(payload)
    etag = _first(payload, ETAG_PATHS, headers) or _first(record, ETAG_PATHS, {})
    event_time = parse_event_time(_first(payload, EVENT_TIME_PATHS, headers))
    if event_time is None:
        event_time = parse_event_time(_first(record, EVENT_TIME_PATHS, {}))
    for link in links:
        if etag and link.target_etag and normalise_etag(etag) == normalise_etag(link.target_etag):
            return f"Echo of our write by flow '{link.flow.slug}': {key} is still at ETag {link.target_etag}"
        if _later_version(etag, link.target_etag):
            # A row version past ours (Dataverse's versionnumber only grows) is a later change, even when
            # its change time, kept in whole seconds, is not later than our write.
            continue
        if event_time is not None:
            # The change time decides when the event has one: an edit after our write is a real change,
            # even if it touched only fields we do not write.
            if link.synced_at and event_time <= link.synced_at:
                return (
                    f"Echo of our write by flow '{link.flow.slug}': the change to {key} at "
                    f"{event_time.isoformat()} is not later than our write at {link.synced_at.isoformat()}"
                )
            continue
        written = link.last_message.payload_out if link.last_message else None
        compared = [field for field in written if field in record] if isinstance(written, dict) else []
        if compared and all(_same(written[field], record[field]) for field in compared):
            return (
                f"Echo of our write by flow '{link.flow.slug}': {key} holds the {len(compared)} field(s) "
                "we wrote, unchanged"
            )
    return ""


def forward_write_in_flight(*, message: Message) -> str:
    """A forward flow is writing this very record right now: its echo may arrive before its RecordLink.

    Only for forward flows keyed by one field: the record's key is then in the payload we write, as
    the event's record key (a business partner number) or as that field of the event's record (the
    accountnumber of a Dataverse account, whose webhook is keyed by its id).
    The caller retries the message shortly; by then the link is there and echo_reason decides.
    """
    key = message.source_record_key
    if not key or not screens(message.flow):
        return ""
    record = event_record(message_payload(message))
    writing = Q()
    for flow in forward_flows(message.flow).only("pk", "target_key_fields"):
        if len(flow.target_key_fields or []) != 1:
            continue
        field = flow.target_key_fields[0]
        keys = {key} | ({str(record[field])} if record.get(field) not in (None, "") else set())
        writing |= Q(flow=flow, **{f"payload_out__{field}__in": sorted(keys)})
    if not writing:
        return ""
    busy = Message.objects.filter(writing, status=Message.Status.DELIVERING).select_related("flow").first()
    if busy is None:
        return ""
    return f"flow '{busy.flow.slug}' is writing {key} right now; checking for an echo once it has finished"


def filter_reason(*, message: Message) -> str:
    """Why the flow does not carry this event: options["only_when"] names field values the record must have.

    E.g. {"statecode": 1} on the Sales task flow: only a completed task clears an F&O hold;
    {"CustomerAccount": {"not": ["IC-DK01"]}}: every customer but the intercompany one.
    """
    only_when = message.flow.opts.only_when
    if not only_when:
        return ""
    record = event_record(message_payload(message))
    for field, condition in only_when.items():
        value = record.get(field)
        matches = any(_same(other, value) for other in condition.values)
        if condition.negate and matches:
            return f"Not for this flow: {field} is {value!r}, which the flow does not carry"
        if not condition.negate and not matches:
            return f"Not for this flow: {field} is {value!r}, the flow carries only {list(condition.values)!r}"
    return ""


def message_skip_reason(*, message: Message) -> str:
    """The pipeline's hook before delivery: a filtered-out event or an echo is skipped, with the reason."""
    return filter_reason(message=message) or echo_reason(message=message)
