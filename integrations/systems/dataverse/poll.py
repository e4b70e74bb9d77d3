"""Dataverse change tracking, for poll flows whose source is a Dataverse table.

The first poll reads every row and starts change tracking (Prefer: odata.track-changes); each later
poll follows the stored delta link and gets the rows changed since, and a $deletedEntity entry for
each row deleted since:
https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems

    Flow.options["poll"] = {"entity": "accounts", "key": ["accountid"]}

Each entry becomes the message a webhook would have made: {"event": "Update" | "Delete", "entity":
<logical name>, "id": <guid>, "attributes": {…}}, so a deletion is carried by the flow's delete
policy (options.on_delete) exactly like a Delete step's event.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from integrations.models import AxPollCursor, Flow
from integrations.protocols.polling import PollBatch, PolledRecord
from integrations.systems import get_connector
from integrations.systems.dataverse.connector import DataverseConnector, is_deleted, primary_id
from integrations.systems.dataverse.inbound import update_event
from integrations.systems.dataverse.keys import canonical_key


def _record(flow: Flow, entity_set: str, row: dict[str, Any]) -> PolledRecord:
    logical = flow.entity
    if is_deleted(row):
        record_id = canonical_key(str(row.get("id", "")))
        # A GUID is deleted once: the same deletion read again (a poll that failed half way) is one message.
        return PolledRecord(
            payload={"event": "Delete", "entity": logical, "id": record_id, "attributes": {}},
            idempotency_key=f"{logical}:{record_id}:Delete",
            source_record_key=record_id,
            headers={"change_tracking": True},
        )
    record_id = canonical_key(str(row.get(primary_id(entity_set), "")))
    version = row.get("versionnumber")
    version = int(version) if isinstance(version, int | str) and str(version).isdecimal() else None
    stamp = version if version is not None else row.get("@odata.etag", "")
    return PolledRecord(
        payload=update_event(logical, record_id, row),
        idempotency_key=f"{logical}:{record_id}:Update:v{stamp}",
        source_record_key=record_id,
        source_version=version,
        headers={"change_tracking": True},
    )


def read_changes(*, flow: Flow, since: dt.datetime | None, started: dt.datetime) -> PollBatch:
    """The table's rows changed and deleted since the stored delta link; the next delta link as the token."""
    poll = flow.opts.poll
    if poll is None:
        raise ValueError(f"flow {flow.slug}: options.poll.entity (the Dataverse entity set to track) is not set")
    connector = get_connector(flow.source)
    if not isinstance(connector, DataverseConnector):
        raise ValueError(f"flow {flow.slug}: the source is not a Dataverse system")
    delta = AxPollCursor.objects.filter(flow=flow).values_list("delta_link", flat=True).first() or None
    rows, next_delta = connector.read_changes(poll.entity, delta)
    records = [_record(flow, poll.entity, row) for row in rows]
    return PollBatch(records=records, cursor=None, changed=len(records), token=next_delta)
