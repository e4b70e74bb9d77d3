"""Change feeds of F&O data entities, for poll flows whose source is F&O (products, customer credit).

F&O's OData has no delta links and its data entities no modified date/time: what changed is read through
change tracking in data management ("Enable change tracking for entities"). The flow names a data project
(options.package_project) that exports its entity with "Incremental push only" from an entity with change
tracking enabled; each poll exports it (ExportToPackage) and ingests the package's rows, which are the rows
changed since the previous successful export (all of them the first time). integrations.polling ingests them.

    Flow.options = {"poll": {"entity": "ReleasedProductsV2", "key": ["ItemNumber"], "company": "SE01"},
                    "package_project": "ICB-P2C-ReleasedProducts"}

Nothing is lost across a crash: the export's execution id is stored in the cursor (AxPollCursor.delta_link,
"export:<id>") before the export is asked for, and cleared only when the poll has stored every row as a
message. A poll that finds an id there reads that execution's package again instead of exporting anew: an
incremental export moves F&O's change tracking on, so its rows would not come a second time. A row read
twice is stored once: its idempotency key holds its version (the content, as a package row has no ETag).

The source record key is written the way the F&O connector writes target keys
(dataAreaId='se01',ItemNumber='A0001'), so a row we wrote ourselves meets its RecordLink:
that is what echo suppression compares.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from django.utils import timezone

from integrations import errors
from integrations.models import AxPollCursor, Flow
from integrations.protocols.polling import PollBatch, PolledRecord
from integrations.systems import get_connector
from integrations.systems.finops.connector import format_key

PENDING = "export:"  # the cursor's delta_link while an export's rows are being stored


def _config(flow: Flow) -> tuple[str, list[str], str, str]:
    poll = flow.opts.poll  # the schema requires entity and key once poll is set
    if poll is None:
        raise ValueError(f"flow {flow.slug}: options.poll.entity (the F&O data entity to read) is not set")
    company = poll.company
    if not company and flow.company_link:
        company = flow.company_link.context_for(flow.source)["source_company"]
    if not company:
        raise ValueError(f"flow {flow.slug}: no F&O company; set options.poll.company or a company link")
    if not flow.opts.package_project:
        raise ValueError(
            f"flow {flow.slug}: options.package_project (the change-tracked data project exporting "
            f"{poll.entity}) is not set; F&O entities have no modified date/time to poll"
        )
    return poll.entity, list(poll.key), company, flow.opts.package_project


def row_version(row: dict[str, Any]) -> str:
    """A package row's version: its content (as integrations.bulk.load versions a row without a version field)."""
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _execution_id(flow: Flow) -> str:
    """The export this poll reads: the one a poll before it left unfinished, else a new one, stored first."""
    stored = AxPollCursor.objects.filter(flow=flow).values_list("delta_link", flat=True).first() or ""
    if stored.startswith(PENDING):
        return stored.removeprefix(PENDING)
    execution_id = f"icbridge-{flow.slug}-{uuid.uuid4().hex}"[:100]
    # Committed before the export is asked for (a poll runs with no transaction open: cursors.py).
    AxPollCursor.objects.filter(flow=flow).update(delta_link=f"{PENDING}{execution_id}")
    return execution_id


def read_changes(*, flow: Flow, since: dt.datetime | None, started: dt.datetime) -> PollBatch:
    """The rows of the flow's F&O entity changed since the previous poll's export (since is not used).

    1. Take the pending export's id from the cursor, or store a new one there.
    2. Export the change-tracked data project under that id (or find it done) and read its package.
    3. Answer the rows with token "": flow_poll clears the pending id once they are stored as messages.
    A failed export clears the id too (F&O's change tracking moves only on a successful one) and is raised.
    """
    entity, keys, company, project = _config(flow)
    execution_id = _execution_id(flow)
    read_at = timezone.now()  # the rows read back are as they were then, or later
    try:
        rows = get_connector(flow.source).read_changes(entity, execution_id, project=project, company=company, key=keys)
    except errors.RejectedError:
        AxPollCursor.objects.filter(flow=flow, delta_link=f"{PENDING}{execution_id}").update(delta_link="")
        raise
    records = []
    for row in rows:
        key = format_key(str(row.get("dataAreaId") or company).lower(), {name: row[name] for name in keys})
        records.append(
            PolledRecord(
                payload=row,
                idempotency_key=f"{entity}:{key}:{row.get('@odata.etag') or row_version(row)}",
                source_record_key=key,
                # For echo screening (scenarios.echo): the row's ETag, which is ours if nobody wrote since our
                # write; and the change is no later than the read, when the ETag is another one.
                headers={
                    "finops_entity": entity,
                    "finops_execution": execution_id,
                    "ETag": row.get("@odata.etag", ""),
                    "EventTime": read_at.isoformat(),
                },
            )
        )
    no_execution_left = ""  # the execution's rows are stored: the next poll exports anew
    return PollBatch(records=records, cursor=started, changed=len(records), token=no_execution_left)
