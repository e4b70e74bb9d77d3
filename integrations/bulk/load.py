"""Initial load and re-sync: every source record of a flow, read page by page, ingested as a Message.

Each record goes through the same mapping and idempotent delivery as live traffic, in batches: a page
is stored with one INSERT and delivered by the target's batch writes (_ingest_page). Its idempotency
key is "<entity>:<record key>:<version>" (the F&O poller's form), so a page read twice after a crash,
or a record the poller already took, is stored once.

A page is one unit: a worker leases the run, reads the page at the run's cursor, then stores the
page's messages, the new cursor and the counts in one transaction, and queues the next page after
commit. A worker killed mid-page commits nothing; the lease runs out and the sweeper queues the page
again (load_runs_sweep). A cancel is seen under the run's row lock, so a page in flight stores nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from integrations import errors, systems
from integrations.models import Flow, InboundEndpoint, LoadRun, Message
from integrations.pipeline import dispatch
from integrations.protocols import deadline
from integrations.protocols.events import EventError, key_fit, pointer_key
from integrations.protocols.odata.keys import string_literal
from integrations.services.audit import audit_record

logger = logging.getLogger(__name__)
State = LoadRun.State
# How long one page task goes on reading pages while delivery keeps up (load_page, step 4).
LOAD_SLICE_SECONDS = 10.0
VERSION_FIELDS = ("@odata.etag", "ModifiedDateTime", "modifiedon", "LastChangeDateTime", "modifiedDateTime")


class LoadError(ValueError):
    """A load that cannot start: no readable source, no key fields, one already running."""


@dataclass(frozen=True)
class LoadSource:
    entity: str
    key: tuple[str, ...]


def load_source(*, flow: Flow, entity: str = "", key: tuple[str, ...] | list[str] = ()) -> LoadSource:
    """What a load of this flow reads: the given entity and key fields, else the flow's poll options, else
    for a flow of key-only events the document its first fetch rule reads (an S/4 BusinessPartner event →
    A_BusinessPartner keyed by BusinessPartner), else what the source tells of the flow's entity (a
    connector's `listing`: a Dataverse table's entity set and primary id column, from its definition; an
    AX document service's key field)."""
    poll, listing = flow.opts.poll, flow.opts.listing
    naming = _event_naming(flow)
    named = (
        entity
        or (poll.entity if poll else "")
        or (listing.entity if listing else "")
        or flow.opts.ax_service
        or (flow.opts.fetch[0].entity if naming else "")
    )
    entity = named or flow.entity
    key = (
        tuple(key)
        or (tuple(poll.key) if poll else ())
        or (tuple(listing.key) if listing else ())
        or tuple(name for name, _ in naming)
    )
    if (not named or not key) and hasattr(systems.connector_class(flow.source.kind), "listing"):
        try:
            entity, listed_key = systems.get_connector(flow.source).listing(entity)
        except errors.ConnectorError as exc:
            raise LoadError(f"flow {flow.slug}: {flow.source} cannot describe {entity}: {exc}") from exc
        key = key or listed_key
    if not key:
        raise LoadError(f"flow {flow.slug}: the load needs the source key fields (options.poll.key, or key=)")
    if not hasattr(systems.connector_class(flow.source.kind), "read_page"):
        raise LoadError(f"flow {flow.slug}: {flow.source.kind} sources cannot be read page by page")
    return LoadSource(entity=entity, key=key)


def read_company(flow: Flow) -> str:
    """The company a load or reconciliation's source pass reads ("" for every company): options.ax_company or
    the poll's company, else, for a source read as the flow's live traffic reads it, one company at a time
    (an AX service, an F&O poll, an event flow's listing), the company link's source company."""
    poll = flow.opts.poll
    company = flow.opts.ax_company or (poll.company if poll else "")
    one_company = poll or flow.opts.listing or getattr(systems.connector_class(flow.source.kind), "one_company", False)
    return company or (_linked_company(flow) if one_company else "")


def _linked_company(flow: Flow) -> str:
    return flow.company_link.context_for(flow.source)["source_company"] if flow.company_link else ""


def _filters(since: dt.datetime | str | None, company: str, page_size: int | None) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if since:
        moment = (
            since if isinstance(since, dt.datetime) else dt.datetime.fromisoformat(str(since).replace("Z", "+00:00"))
        )
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        filters["since"] = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if company:
        filters["company"] = company
    if page_size:
        filters["page_size"] = int(page_size)
    return filters


def load_preview(
    *, flow: Flow, since: dt.datetime | str | None = None, company: str = "", entity: str = ""
) -> int | None:
    """How many records a load would read, if the source can count them (F&O $count); None otherwise."""
    source = load_source(flow=flow, entity=entity, key=("-",))
    if flow.opts.transport == "package":
        return None  # counted only by exporting the package: the load itself reports it
    connector = systems.get_connector(flow.source)
    count = getattr(connector, "count", None)
    return count(source.entity, _filters(since, company, None)) if count else None


def load_start(
    *,
    flow: Flow,
    since: dt.datetime | str | None = None,
    company: str = "",
    entity: str = "",
    key: tuple[str, ...] | list[str] = (),
    page_size: int | None = None,
    actor: Any = None,
) -> LoadRun:
    """Create the run (one running load per flow) and queue its first page after commit."""
    source = load_source(flow=flow, entity=entity, key=key)
    if since and (refused := getattr(systems.connector_class(flow.source.kind), "load_since_refused", "")):
        raise LoadError(f"flow {flow.slug}: since: {refused}")
    company = company or read_company(flow)
    filters = {**_filters(since, company, page_size), "key": list(source.key)}
    if flow.opts.transport == "package":  # F&O: read an export of the data project, not the OData entity
        # An export is of one legal entity: the given company, else the flow's, else the company link's. It is
        # named up front, so a first page read again (its lease ran out while F&O's job ran) waits for it.
        filters.update(transport="package", project=flow.opts.package_project, execution=f"icb-load-{uuid.uuid4()}")
        filters.setdefault("company", _linked_company(flow))
    try:
        expected = load_preview(flow=flow, since=since, company=company, entity=source.entity)
    except errors.ConnectorError:
        expected = None  # the preview is a courtesy; the load itself reports a source that fails
    try:
        with transaction.atomic():
            run = LoadRun.objects.create(
                flow=flow,
                entity=source.entity,
                filters=filters,
                expected=expected,
                started_by=actor if getattr(actor, "pk", None) else None,
            )
            transaction.on_commit(partial(dispatch.queue_load_page, run_id=run.pk))
            audit_record(actor=actor, action="load_start", obj=flow, details={"load_run": run.pk, **filters})
    except IntegrityError as exc:
        raise LoadError(f"flow {flow.slug}: a load is already running") from exc
    logger.info("load %s of flow %s started (%s)", run.pk, flow.slug, filters, extra={"flow_id": flow.pk})
    return run


def load_cancel(*, run: LoadRun, actor: Any = None) -> bool:
    """Stop a running load: the page in flight stores nothing, no further page is read."""
    with transaction.atomic():
        cancelled = LoadRun.objects.filter(pk=run.pk, state=State.RUNNING).update(
            state=State.CANCELLED, finished_at=timezone.now(), lease_expires_at=None
        )
        if cancelled:
            audit_record(actor=actor, action="load_cancel", obj=run.flow, details={"load_run": run.pk})
    return bool(cancelled)


def record_identity(*, entity: str, key: tuple[str, ...], row: dict[str, Any], kind: str = "") -> tuple[str, str]:
    """The record's key (dataAreaId='se01',CustomerAccount='C1' for company-bound rows) and its version.

    With the source's kind, the key is in its normal form (systems.canonical_key), as message_ingest
    stores it: a record loaded, polled or pushed by a webhook has one key, and one RecordLink.
    """
    missing = [name for name in key if row.get(name) in (None, "")]
    if missing:
        raise LoadError(f"{entity} record without key field(s) {', '.join(missing)}")
    parts = {name: row[name] for name in key}
    if row.get("dataAreaId") and "dataAreaId" not in parts:
        parts = {"dataAreaId": str(row["dataAreaId"]).lower(), **parts}
    record_key = ",".join(
        f"{name}={string_literal(value)}" if isinstance(value, str) else f"{name}={value}"
        for name, value in parts.items()
    )
    record_key = systems.canonical_key(kind, record_key) if kind else record_key
    version = next((str(row[name]) for name in VERSION_FIELDS if row.get(name)), "")
    if not version:  # no version field: the content is the version, so an unchanged record is stored once
        version = hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return record_key, version


def _claim(run_id: int) -> bool:
    now = timezone.now()
    lease = now + dt.timedelta(seconds=float(settings.ICBRIDGE_LOAD_LEASE_SECONDS))
    return bool(
        LoadRun.objects.filter(
            Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now), pk=run_id, state=State.RUNNING
        ).update(lease_expires_at=lease, updated_at=now)
    )


def _end(run_id: int, state: str, error: str) -> None:
    LoadRun.objects.filter(pk=run_id, state=State.RUNNING).update(
        state=state, last_error=error[:2000], finished_at=timezone.now(), lease_expires_at=None
    )


def load_page(*, run_id: int) -> LoadRun | None:
    """Read and store a page of a running load, then the next while delivery keeps up (None: not ours to run now).

    1. Lease the run; a duplicate task, or one for a finished run, does nothing.
    2. Read the page at the cursor, with no transaction open while the source answers.
    3. Under the run's row lock (a cancel waits for it), ingest every record, move the cursor and
       the counts; at the last page the run is done.
    4. After commit, read the next page in this task while less than a page of the flow's messages
       waits for delivery (and for at most LOAD_SLICE_SECONDS); else queue it. A page task waits in the
       workers' queue behind the deliveries it caused: reading on while delivery has caught up keeps the
       read from falling behind, and the backlog bound keeps the backpressure that stops a load from
       flooding the outbox.
    """
    started = time.monotonic()
    while True:
        run, more = _load_one_page(run_id)
        if not more or run is None:
            return run
        if time.monotonic() - started >= LOAD_SLICE_SECONDS or _waiting(run) >= _page_size(run):
            dispatch.queue_load_page(run_id=run.pk)
            return run


def _waiting(run: LoadRun) -> int:
    """How many of the flow's messages wait for delivery, counted up to a page (the message_due index)."""
    return Message.objects.filter(flow_id=run.flow_id, status__in=Message.DELIVERABLE)[: _page_size(run)].count()


def _page_size(run: LoadRun) -> int:
    return int(run.filters.get("page_size") or 1000)


def _load_one_page(run_id: int) -> tuple[LoadRun | None, bool]:
    """Steps 1-3 of load_page; whether a page was stored and another follows."""
    if not _claim(run_id):
        return None, False
    run = LoadRun.objects.select_related("flow__source", "flow__target", "flow__company_link").get(pk=run_id)
    key = tuple(run.filters.get("key") or ())
    try:
        # The read ends by half the lease (a package export's wait included), leaving the rest to store it.
        with deadline.deadline_until(time.monotonic() + float(settings.ICBRIDGE_LOAD_LEASE_SECONDS) / 2):
            rows, next_cursor = systems.get_connector(run.flow.source).read_page(run.entity, run.cursor, run.filters)
    except errors.TransientError as exc:
        # Left leased: the sweeper queues the page again once the lease has run out, not in a hot loop.
        LoadRun.objects.filter(pk=run_id).update(last_error=exc.message[:2000])
        logger.warning("load %s: page read failed, will retry: %s", run_id, exc.message, extra={"flow_id": run.flow_id})
        return run, False
    except errors.ConnectorError as exc:
        _end(run_id, State.FAILED, exc.message)
        logger.warning("load %s failed: %s", run_id, exc.message, extra={"flow_id": run.flow_id})
        return run, False
    with transaction.atomic():
        run = LoadRun.objects.select_for_update().select_related("flow").get(pk=run_id)
        if run.state != State.RUNNING:
            return run, False  # cancelled while the page was read: store nothing
        written, failed, error = _ingest_page(run=run, key=key, rows=rows)
        if error:
            run.last_error = error[:2000]
        run.read += len(rows)
        run.written += written
        run.failed += failed
        run.pages += 1
        run.cursor = next_cursor
        run.lease_expires_at = None
        if not next_cursor:
            run.state, run.finished_at = State.DONE, timezone.now()
        run.save(
            update_fields=[
                "read",
                "written",
                "failed",
                "pages",
                "cursor",
                "lease_expires_at",
                "state",
                "finished_at",
                "last_error",
                "updated_at",
            ]
        )
    return run, bool(next_cursor)


def message_payload_shaper(flow: Flow) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """How a row listed at the flow's source is stored as its message, so the flow's mapping reads it as live
    traffic: as the source's events carry it where the connector says (`loaded_record`: a Dataverse row as a
    webhook's Update, the flow's mapping reads `attributes.*`); for a flow naming its listing (options.listing,
    F&O events carrying the document's fields) as the event that would have announced the row; for a flow of
    key-only events (an S/4 event whose first fetch rule reads the document by the event's `data.*`) as the
    event naming the row, so the fetch reads the document as it does for a live event; else the row itself
    (F&O and AX polls store rows)."""
    connector = systems.get_connector(flow.source)
    loaded = getattr(connector, "loaded_record", None)
    if loaded is not None:
        return partial(loaded, flow.entity)
    listing = flow.opts.listing
    if listing:  # as the event that would have announced the row (F&O: finops.inbound.listed_event)
        listed = getattr(connector, "listed_event", None)
        pairs = [(field_name, path) for path, field_name in listing.event.items()]
        return lambda record_key, row: listed(listing.event, row) if listed else _event_of(pairs, row)
    naming = _event_naming(flow)
    if naming:
        return lambda record_key, row: _event_of(naming, row)
    return lambda record_key, row: row


def listed_reader(*, flow: Flow, entity: str, key: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[str, str, Any]]:
    """Each row a load or reconciliation lists, as (its record key, its version, its message's payload).

    The key is record_identity's, except for a flow whose rows are stored as the events announcing them
    (options.listing.event): those are keyed as the flow's events are, by its endpoint's record-key pointer,
    so a listed F&O invoice and its SalesOrderInvoicedBusinessEvent are one record.
    """
    shape, kind = message_payload_shaper(flow), flow.source.kind
    listing = flow.opts.listing
    # The endpoint its events come through: the flow's own, else its source system's.
    endpoint = None
    if listing:
        endpoint = (
            InboundEndpoint.objects.filter(flow=flow).first()
            or InboundEndpoint.objects.filter(system_id=flow.source_id).first()
        )
    pointer = endpoint if endpoint is not None and endpoint.record_key_pointer else None

    def read(row: dict[str, Any]) -> tuple[str, str, Any]:
        record_key, version = record_identity(entity=entity, key=key, row=row, kind=kind)
        payload = shape(record_key, row)
        if pointer is not None:
            try:
                record_key = systems.canonical_key(kind, pointer_key(payload, pointer))
            except EventError as exc:
                raise LoadError(f"{entity} record as its event: {exc}") from exc
        return record_key, version, payload

    return read


def _event_naming(flow: Flow) -> list[tuple[str, str]]:
    """An event flow's first fetch rule's key (document field → event path) when it reads the one document
    the event announces: a source whose events carry only the key (S/4: `key_only_events`), and a rule
    keyed by the event's own fields (no `fetched.` path, no `many` or `first` search). An F&O event carries
    the document's fields; its fetch rules read other documents (the lines): such a flow names its listing."""
    rules = flow.opts.fetch
    if flow.trigger != Flow.Trigger.BUSINESS_EVENT or not rules or rules[0].many or rules[0].first:
        return []  # a poll flow's messages are the rows its poll reads
    if not getattr(systems.connector_class(flow.source.kind), "key_only_events", False):
        return []
    paths = list(rules[0].key.items())
    return paths if paths and all(not path.startswith("fetched.") for _, path in paths) else []


def _event_of(naming: list[tuple[str, str]], row: dict[str, Any]) -> dict[str, Any]:
    """{"data": {"BusinessPartner": "1"}} for the pair (BusinessPartner, data.BusinessPartner) and its row."""
    event: dict[str, Any] = {"loaded": True}
    for field_name, path in naming:
        *parents, leaf = path.split(".")
        node = event
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = row.get(field_name)
    return event


def _ingest_page(*, run: LoadRun, key: tuple[str, ...], rows: list[dict[str, Any]]) -> tuple[int, int, str]:
    """Store a page's records as messages with one INSERT, and queue their delivery after commit.

    The same rows message_ingest would store, one at a time, cost a savepoint, an INSERT and a queueing
    call per record; a page of 1,000 is stored with one INSERT … ON CONFLICT DO NOTHING (a record
    already stored, by a page read twice or by the poller, stays one message). A batching target is
    then fed by one drain for the page, which delivers up to batch_size messages per call (a Dataverse
    UpsertMultiple of up to 1,000 records); any other target gets one task per new message.
    Returns (written, failed, the last key error).
    """
    now = timezone.now()
    fresh: dict[str, Message] = {}
    failed, error = 0, ""
    read = listed_reader(flow=run.flow, entity=run.entity, key=key)
    for row in rows:
        try:
            record_key, version, payload = read(row)
        except LoadError as exc:
            failed, error = failed + 1, str(exc)
            continue
        idempotency_key = key_fit(f"{run.entity}:{record_key}:{version}")
        fresh.setdefault(
            idempotency_key,
            Message(
                flow=run.flow,
                idempotency_key=idempotency_key,
                payload_in=payload,
                source_record_key=record_key[:255],
                correlation_id=uuid.uuid4().hex,
                headers={"load_run": run.pk, "entity": run.entity},
                next_attempt_at=now,
                queued_at=now,
            ),
        )
    if not fresh:
        return 0, failed, error
    Message.objects.bulk_create(fresh.values(), ignore_conflicts=True)
    # The rows this INSERT stored, told from older ones of the same keys by the correlation ids made here.
    ids = list(
        Message.objects.filter(
            flow=run.flow,
            idempotency_key__in=list(fresh),
            correlation_id__in=[message.correlation_id for message in fresh.values()],
        ).values_list("pk", flat=True)
    )
    if ids:
        transaction.on_commit(partial(_queue_delivery, flow=run.flow, message_ids=ids))
    return len(ids), failed, error


def _queue_delivery(*, flow: Flow, message_ids: list[int]) -> None:
    """After commit: one drain for a batching target (it takes all the page's due messages), else a task each."""
    for message_id in message_ids[:1] if dispatch.drains(flow) else message_ids:
        dispatch.message_queue(message_id=message_id, flow=flow)


def load_runs_sweep() -> int:
    """Queue again the page of every running load whose worker is gone (lease run out, or no progress)."""
    now = timezone.now()
    idle = now - dt.timedelta(seconds=float(settings.ICBRIDGE_LOAD_LEASE_SECONDS))
    ids = list(
        LoadRun.objects.filter(state=State.RUNNING)
        .filter(Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True, updated_at__lt=idle))
        .values_list("pk", flat=True)
    )
    for run_id in ids:
        LoadRun.objects.filter(pk=run_id).update(updated_at=now)  # one re-queue per idle period
        dispatch.queue_load_page(run_id=run_id)
    return len(ids)


def load_progress(*, run: LoadRun) -> dict[str, Any]:
    """Counts, rate and ETA of a load, and how its messages stand (delivered, failed)."""
    end = run.finished_at or timezone.now()
    seconds = max((end - run.started_at).total_seconds(), 0.001)
    messages = Message.objects.filter(flow_id=run.flow_id, headers__load_run=run.pk)
    delivered = messages.filter(status=Message.Status.DELIVERED).count()
    failing = messages.filter(status__in=[Message.Status.FAILED, Message.Status.DEAD]).count()
    rate = run.read / seconds
    eta = None
    if run.expected and rate > 0 and not run.is_finished:
        eta = max(run.expected - run.read, 0) / rate
    percent = min(100, round(100 * run.read / run.expected)) if run.expected else (100 if run.is_finished else None)
    return {
        "id": run.pk,
        "flow": run.flow.slug,
        "state": run.state,
        "entity": run.entity,
        "filters": run.filters,
        "expected": run.expected,
        "read": run.read,
        "written": run.written,
        "failed": run.failed,
        "pages": run.pages,
        "delivered": delivered,
        "messages_failed": failing,
        "rate_per_second": round(rate, 2),
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "percent": percent,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "last_error": run.last_error,
    }
