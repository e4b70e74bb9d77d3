"""Change feeds of F&O data entities, for poll flows whose source is F&O (products, customer credit).

F&O's OData has no delta links: a poll reads the rows modified since the flow's cursor
(FinOpsConnector.read_changes, $filter on ModifiedDateTime); integrations.polling ingests them.
The cursor row is the one the AX poller uses (AxPollCursor: flow + changed_since), so the
console shows both kinds of poll alike.

    Flow.options["poll"] = {"entity": "ReleasedProductsV2", "key": ["ItemNumber"], "company": "SE01"}

The source record key is written the way the F&O connector writes target keys
(dataAreaId='se01',ItemNumber='A0001'), so a row we wrote ourselves meets its RecordLink:
that is what echo suppression compares.
"""

from __future__ import annotations

import datetime as dt

from django.utils.dateparse import parse_datetime

from integrations.models import Flow
from integrations.protocols.polling import PollBatch, PolledRecord
from integrations.systems import get_connector
from integrations.systems.finops.connector import format_key

MODIFIED = "ModifiedDateTime"


def _config(flow: Flow) -> tuple[str, list[str], str]:
    poll = flow.opts.poll  # the schema requires entity and key once poll is set
    if poll is None:
        raise ValueError(f"flow {flow.slug}: options.poll.entity (the F&O data entity to read) is not set")
    company = poll.company
    if not company and flow.company_link:
        company = flow.company_link.context_for(flow.source)["source_company"]
    if not company:
        raise ValueError(f"flow {flow.slug}: no F&O company; set options.poll.company or a company link")
    return poll.entity, list(poll.key), company


def _modified(record: dict) -> dt.datetime | None:
    moment = parse_datetime(str(record.get(MODIFIED) or "").replace("Z", "+00:00"))
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def read_changes(*, flow: Flow, since: dt.datetime | None, started: dt.datetime) -> PollBatch:
    """The rows of the flow's F&O entity modified since the cursor.

    The idempotency key holds the row's ETag, so a row read twice is stored once; the next poll
    starts at the newest ModifiedDateTime seen.
    """
    entity, keys, company = _config(flow)
    since_text = since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if since else None
    rows, _ = get_connector(flow.source).read_changes(entity, since_text, company=company)
    newest = None
    records = []
    for row in rows:
        missing = [name for name in keys if row.get(name) in (None, "")]
        if missing:
            raise ValueError(f"flow {flow.slug}: {entity} row without key field(s) {', '.join(missing)}")
        key = format_key(str(row.get("dataAreaId") or company).lower(), {name: row[name] for name in keys})
        modified = _modified(row)
        records.append(
            PolledRecord(
                payload=row,
                idempotency_key=f"{entity}:{key}:{row.get('@odata.etag') or row.get(MODIFIED)}",
                source_record_key=key,
                source_version=int(modified.timestamp() * 1_000_000) if modified else None,
                headers={"finops_entity": entity, "event_time": row.get(MODIFIED, "")},
            )
        )
        if modified and (newest is None or modified > newest):
            newest = modified
    return PollBatch(records=records, cursor=newest, changed=len(records))
