"""Change feeds of F&O data entities, for poll flows whose source is F&O (products, customer credit).

F&O's OData has no delta links: a poll reads the rows modified since the flow's cursor
(FinOpsConnector.read_changes, $filter on ModifiedDateTime) and ingests each as a Message.
The cursor row is the one the AX poller uses (AxPollCursor: flow + changed_since), so the
console shows both kinds of poll alike.

    Flow.options["poll"] = {"entity": "ReleasedProductsV2", "key": ["ItemNumber"], "company": "SE01"}

The source record key is written the way the F&O connector writes target keys
(dataAreaId='se01',ItemNumber='A0001'), so a row we wrote ourselves meets its RecordLink:
that is what echo suppression compares.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from integrations import errors
from integrations.models import Flow
from integrations.pipeline.ingest import message_ingest
from integrations.polling.cursors import cursor_lease
from integrations.systems import get_connector

logger = logging.getLogger(__name__)

MODIFIED = "ModifiedDateTime"


@dataclass
class FeedResult:
    changed: int = 0
    messages_created: int = 0
    skipped: bool = False  # another worker is polling this flow right now
    error: str = ""


def _config(flow: Flow) -> tuple[str, list[str], str]:
    poll = flow.options.get("poll") if isinstance(flow.options, dict) else None
    if not isinstance(poll, dict) or not poll.get("entity"):
        raise ValueError(f"flow {flow.slug}: options.poll.entity (the F&O data entity to read) is not set")
    keys = poll.get("key") or []
    keys = [keys] if isinstance(keys, str) else list(keys)
    if not keys:
        raise ValueError(f"flow {flow.slug}: options.poll.key (the entity's key fields besides dataAreaId) is not set")
    company = poll.get("company", "")
    if not company and flow.company_link:
        company = flow.company_link.context_for(flow.source)["source_company"]
    if not company:
        raise ValueError(f"flow {flow.slug}: no F&O company; set options.poll.company or a company link")
    return poll["entity"], keys, company


def _modified(record: dict) -> dt.datetime | None:
    moment = parse_datetime(str(record.get(MODIFIED) or "").replace("Z", "+00:00"))
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def finops_poll(*, flow: Flow) -> FeedResult:
    """Ingest the rows of the flow's F&O entity modified since its cursor.

    1. Lease the cursor (skip when another worker holds it).
    2. Read the rows modified after the cursor less an overlap (commits in flight, clock skew);
       the idempotency key holds the row's ETag, so a row read twice is stored once.
    3. Move the cursor to the newest ModifiedDateTime seen, only when every row was stored.
    """
    from integrations.systems.finops.connector import format_key

    entity, keys, company = _config(flow)
    result = FeedResult()
    with cursor_lease(flow) as cursor:  # no transaction open while F&O answers (services/cursors.py)
        if cursor is None:
            result.skipped = True
            return result
        started = timezone.now()
        since = ""
        if cursor.changed_since:
            overlap = dt.timedelta(seconds=float(getattr(settings, "ICBRIDGE_POLL_OVERLAP_SECONDS", 5.0)))
            since = (cursor.changed_since - overlap).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            records, _ = get_connector(flow.source).read_changes(entity, since or None, company=company)
        except errors.ConnectorError as exc:
            cursor.last_error, cursor.last_polled_at = exc.message[:2000], started
            cursor.save(update_fields=["last_error", "last_polled_at"])
            logger.warning("F&O poll of flow %s failed: %s", flow.slug, exc.message, extra={"flow_id": flow.pk})
            result.error = exc.message
            return result
        newest = cursor.changed_since
        for record in records:
            missing = [name for name in keys if record.get(name) in (None, "")]
            if missing:
                raise ValueError(f"flow {flow.slug}: {entity} row without key field(s) {', '.join(missing)}")
            key = format_key(str(record.get("dataAreaId") or company).lower(), {name: record[name] for name in keys})
            modified = _modified(record)
            _, created = message_ingest(
                flow=flow,
                payload=record,
                idempotency_key=f"{entity}:{key}:{record.get('@odata.etag') or record.get(MODIFIED)}",
                source_record_key=key,
                source_version=int(modified.timestamp() * 1_000_000) if modified else None,
                headers={"finops_entity": entity, "event_time": record.get(MODIFIED, "")},
            )
            result.changed += 1
            result.messages_created += int(created)
            if modified and (newest is None or modified > newest):
                newest = modified
        cursor.changed_since = newest
        cursor.last_polled_at = started
        cursor.last_keys = result.changed
        cursor.last_error = ""
        cursor.save(update_fields=["changed_since", "last_polled_at", "last_keys", "last_error"])
    return result
