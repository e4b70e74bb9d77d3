"""Reconciliation: compare what a flow's source says with what its target holds, record it, and repair.

Repair re-delivers through the ordinary pipeline. The original message is already delivered, and
targets honour idempotency keys (the recorder, Dataverse and S/4 treat a repeated key as a no-op),
so re-sending under the *same* key would be ignored exactly when the target was changed behind our
back. A repair is therefore a replay of the original message under a derived, deterministic key,
"<original key>#repair-<discrepancy id>": the target record is still addressed by its alternate key
(an upsert, never a second record), a repeated repair of the same discrepancy is a no-op at the hub
(message_ingest returns the first message) and at the target (same idempotency key), and the repair
message carries force_overwrite, because reconciliation has just found the target to be wrong.

Comparing: key fields in the target's normal form (integrations.systems.canonical_value: F&O answers
dataAreaId in lower case), numbers by value (10 = 10.0 = "10.000"), and a header's lines as lines:
Connector.fetch_document reads them back (F&O from the line entity of options.lines, S/4 through the
navigation property, $expand) and they pair by options.lines.match or their first key-like field. Action
flows (an operation such as posting an invoice, no record to read back by key) are not compared: their run
counts their records under totals["not_reconcilable"] and reports no difference.

Source pass: the hub's links show only what reached it. The run also lists the flow's source through
its connector's paged reader (read_page, the initial load's; integrations.bulk.load.load_source says
what a load reads), keys each record as the pipeline does (record_identity in the source kind's normal
form, the form message_ingest stores and RecordLinks copy), drops the records the flow's own filter
skips (options.only_when), and reports every record with no link and no message as "never reached the
hub". Repair ingests it as an ordinary message under the load's key "<entity>:<key>:<version>", so a
second repair, or a later load, stores it once. A source that cannot be listed (an event-only source,
no key fields) is recorded under totals["source_pass"] with the reason, not as a difference.
"""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from integrations import errors, mapping
from integrations.bulk.load import LoadError, listed_reader, load_source, read_company
from integrations.models import Flow, Message, RecordLink
from integrations.pipeline.ingest import message_ingest
from integrations.pipeline.prepare import content_hash, mapping_context
from integrations.scenarios.echo import filter_reason
from integrations.scenarios.payloads import payload_value
from integrations.services.audit import audit_record
from integrations.systems import canonical_key, canonical_value, get_connector
from monitoring.models import Discrepancy, ReconciliationRun, ReconciliationSchedule

logger = logging.getLogger(__name__)

TASK_NAME = "monitoring.tasks.reconcile_flow"
Kind = Discrepancy.Kind
REPAIRABLE = (Kind.MISSING_IN_TARGET, Kind.DIFFERENT, Kind.MISSING_FROM_HUB)
NOT_RECONCILABLE = "not_reconcilable"  # run.totals key of an action flow's run (see _not_reconcilable)
SOURCE_PASS = "source_pass"  # run.totals key: the source listing's outcome (see _source_pass)
DELETED: Any = object()  # _compare's answer for a link whose last message carried the record's Delete


# --- schedules ------------------------------------------------------------------


def _crontab(expression: str) -> CrontabSchedule:
    parts = expression.split()
    if len(parts) != 5:
        raise ValidationError(
            {"cron": f"cron: expected 5 fields 'minute hour day month weekday', got {len(parts)} in {expression!r}"}
        )
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone=timezone.get_default_timezone_name(),
    )
    return schedule


def schedule_save(*, schedule: ReconciliationSchedule) -> ReconciliationSchedule:
    """Save a reconciliation schedule and create or update its beat PeriodicTask to match."""
    if not schedule.cron and schedule.every_minutes < 1:
        raise ValidationError({"every_minutes": "every_minutes: must be at least 1 when no cron is given"})
    with transaction.atomic():
        schedule.save()
        task = schedule.periodic_task or PeriodicTask(name=f"icbridge-reconcile-{schedule.flow.slug}")
        task.task = TASK_NAME
        task.args = json.dumps([schedule.flow_id])
        task.enabled = schedule.enabled
        task.description = f"Reconcile flow {schedule.flow} (edit the schedule under Monitoring › Reconciliation)"
        if schedule.cron:
            task.crontab, task.interval = _crontab(schedule.cron), None
        else:
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=schedule.every_minutes, period=IntervalSchedule.MINUTES
            )
            task.interval, task.crontab = interval, None
        task.save()
        if schedule.periodic_task_id != task.pk:
            schedule.periodic_task = task
            ReconciliationSchedule.objects.filter(pk=schedule.pk).update(periodic_task=task)
    return schedule


def schedule_delete(*, schedule: ReconciliationSchedule) -> None:
    with transaction.atomic():
        task_id = schedule.periodic_task_id
        schedule.delete()
        if task_id:
            PeriodicTask.objects.filter(pk=task_id).delete()


# --- comparing ------------------------------------------------------------------


def _normal(value: Any) -> Any:
    """One form for numbers: 10, 10.0, "10" and "10.000" compare equal (OData v2 answers Edm.Decimal as a
    string with the property's scale, F&O and Dataverse as JSON numbers, whatever the mapping produced)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float | int):
        number = Decimal(str(value))
        return int(number) if number == number.to_integral_value() else str(number.normalize())
    if (
        isinstance(value, str)
        and _NUMBER.fullmatch(value)
        and not (len(value) > 1 and value[0] == "0" and value[1] != ".")
    ):
        number = Decimal(value)  # "0002" (payment terms, a code) stays text: leading zeros are significant
        return int(number) if number == number.to_integral_value() else str(number.normalize())
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


_NUMBER = re.compile(r"-?\d+(\.\d+)?")
BIND = "@odata.bind"
_BOUND_ID = re.compile(r"\(([^()]*)\)\s*$")


def _is_lines(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(line, dict) for line in value)


def _line_fields(expected: dict[str, Any], prefix: str = "") -> list[str]:
    """The payload fields that hold a document's parts, as expand paths: lists of records (SalesOrderLines,
    to_Item) and nested records (to_Customer), with the parts inside them (to_Customer/to_CustomerSalesArea)."""
    paths = []
    for field, value in expected.items():
        if _is_lines(value) or isinstance(value, dict):
            paths.append(prefix + field)
            inner = {k: v for line in value for k, v in line.items()} if isinstance(value, list) else value
            paths += _line_fields(inner, f"{prefix}{field}/")
    return paths


def _part_projection(want: Any, have: Any, match: str = "") -> Any:
    """The target's value cut to the shape the flow wrote: nested records to their fields, lines paired."""
    if isinstance(want, dict):
        return {k: _part_projection(v, have.get(k)) for k, v in want.items()} if isinstance(have, dict) else None
    if _is_lines(want):
        return _lines_projection(want, have, match)
    return _normal(have)


def _lines_projection(want: list[dict[str, Any]], have: Any, match: str) -> list[dict[str, Any]] | None:
    """The target's lines cut to the fields the flow wrote, in the order of the expected lines.

    Lines pair by the field that identifies them (options.lines.match, else the first field every expected
    line carries, e.g. SalesOrderItem); a line the target added shows as an extra, unpaired line.
    """
    if not isinstance(have, list):
        return None
    fields = sorted({field for line in want for field in line})
    pair = match if match and all(match in line for line in want) else fields[0] if fields else ""
    by_key = {_normal(line.get(pair)): line for line in have if isinstance(line, dict)}
    paired = [_part_projection(line, by_key.pop(_normal(line.get(pair)), {})) for line in want]
    return paired + [_part_projection({f: None for f in fields}, line) for line in by_key.values()]


def _projection(record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    return {field: _normal(record.get(field)) for field in fields}


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except InvalidOperation:
        return None


class _Totals:
    """Business totals (e.g. invoice amounts) per day and company, summed on both sides."""

    def __init__(self, config: dict[str, Any], default_company: str) -> None:
        self.amount = config.get("amount") if isinstance(config, dict) else None
        self.date = config.get("date", "") if isinstance(config, dict) else ""
        self.company = config.get("company", "") if isinstance(config, dict) else ""
        self.default_company = default_company
        self.sums: dict[tuple[str, str], list[Decimal]] = {}

    def add(self, expected: dict[str, Any], actual: dict[str, Any] | None) -> None:
        if not self.amount:
            return
        day = str(payload_value(expected, self.date) or "")[:10] if self.date else ""
        company = str(payload_value(expected, self.company) or "") if self.company else self.default_company
        sums = self.sums.setdefault((day, company), [Decimal(0), Decimal(0)])
        sums[0] += _decimal(payload_value(expected, self.amount)) or 0
        if actual is not None:
            sums[1] += _decimal(payload_value(actual, self.amount)) or 0

    def as_dict(self) -> dict[str, Any]:
        if not self.amount:
            return {}
        rows = [
            {
                "day": day,
                "company": company,
                "source": str(source),
                "target": str(target),
                "difference": str(source - target),
            }
            for (day, company), (source, target) in sorted(self.sums.items())
        ]
        return {"amount_field": self.amount, "rows": rows, "mismatched": sum(r["difference"] != "0" for r in rows)}


def _expected_from_message(flow: Flow, link: RecordLink) -> tuple[dict[str, Any] | None, Message | None]:
    message = link.last_message
    if message is None or message.payload_out in (None, {}):
        message = (
            Message.objects.filter(flow=flow, source_record_key=link.source_key, status=Message.Status.DELIVERED)
            .exclude(payload_out__isnull=True)
            .order_by("-delivered_at")
            .first()
        )
    if message is None or not message.payload_out:
        return None, message
    return message.payload_out, message


def reconciliation_run(*, flow: Flow, repair: bool | None = None, actor: Any = None) -> ReconciliationRun:
    """Compare every linked record of a flow at source and target and record the differences.

    1. For each RecordLink, the expected target content is the source record mapped through the flow
       (fetch mode) or the payload last delivered (message mode).
    2. The target record is read by its alternate key; the content hashes of the mapped fields are
       compared, and on a mismatch the differing fields are recorded.
    3. Counts, business totals and discrepancies are stored on the run; with repair (or the
       schedule's auto_repair) every missing or different record is re-delivered.
    """
    schedule = ReconciliationSchedule.objects.filter(flow=flow).first() or ReconciliationSchedule(flow=flow)
    if flow.target_operation == Flow.Operation.ACTION:
        return _not_reconcilable(flow)
    run = ReconciliationRun.objects.create(flow=flow)
    context = mapping_context(flow)
    totals = _Totals(schedule.totals, context.get("target_company", ""))
    found: list[Discrepancy] = []
    counts = {
        "checked": 0,
        "matched": 0,
        "missing_in_target": 0,
        "missing_in_source": 0,
        "different": 0,
        "errors": 0,
        "missing_from_hub": 0,
    }
    source_pass: dict[str, Any] = {}
    deleted = 0
    try:
        target = get_connector(flow.target)
        source = get_connector(flow.source) if schedule.source_mode == schedule.SourceMode.FETCH else None
        links = (
            RecordLink.objects.filter(flow=flow)
            .select_related("last_message")
            .order_by("pk")[: schedule.max_records]
            .iterator(chunk_size=500)
        )
        for link in links:
            counts["checked"] += 1
            discrepancy = _compare(flow, schedule, link, source, target, context, totals)
            if discrepancy is DELETED:
                deleted += 1
                continue
            if discrepancy is None:
                counts["matched"] += 1
                continue
            discrepancy.run = run
            found.append(discrepancy)
            counts["errors" if discrepancy.kind == Kind.UNREADABLE else discrepancy.kind] += 1
        source_pass, never = _source_pass(flow, schedule)
        found += [Discrepancy(run=run, **values) for values in never]
        counts["missing_from_hub"] = len(never)
    except Exception as exc:  # recorded on the run for the operator; the schedule runs again next time
        logger.exception("reconciliation of flow %s failed", flow.slug)
        ReconciliationRun.objects.filter(pk=run.pk).update(
            status=ReconciliationRun.Status.FAILED, finished_at=timezone.now(), error=str(exc)[:2000], **counts
        )
        run.refresh_from_db()
        return run
    with transaction.atomic():
        Discrepancy.objects.bulk_create(found, batch_size=500)
        ReconciliationRun.objects.filter(pk=run.pk).update(
            status=ReconciliationRun.Status.DONE,
            finished_at=timezone.now(),
            totals={**totals.as_dict(), SOURCE_PASS: source_pass, **({"deleted": deleted} if deleted else {})},
            **counts,
        )
    run.refresh_from_db()
    logger.info(
        "reconciled flow %s: %d checked, %d matched, %d missing in target, %d missing in source, %d different, "
        "%d never reached the hub",
        flow.slug,
        run.checked,
        run.matched,
        run.missing_in_target,
        run.missing_in_source,
        run.different,
        run.missing_from_hub,
    )
    if repair if repair is not None else schedule.auto_repair:
        discrepancies_repair(discrepancies=run.discrepancies.all(), actor=actor, reason="reconciliation auto-repair")
    return run


def _not_reconcilable(flow: Flow) -> ReconciliationRun:
    """An action flow calls an operation (post an invoice, place a hold): there is no record at the target
    to read back by key, so its records are counted as not reconcilable, not compared and not reported."""
    records = RecordLink.objects.filter(flow=flow).count()
    logger.info("flow %s is an action flow: %d record(s) not reconcilable", flow.slug, records)
    return ReconciliationRun.objects.create(
        flow=flow,
        status=ReconciliationRun.Status.DONE,
        finished_at=timezone.now(),
        totals={NOT_RECONCILABLE: {"reason": "action flow", "records": records}},
    )


def _source_pass(flow: Flow, schedule: ReconciliationSchedule) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """List the flow's source and return (the pass's summary, the records that never reached the hub).

    1. What to read is what an initial load reads (load_source: the schedule's entity and key field, else
       options.poll, options.listing, an S/4 flow's first fetch rule or the connector's listing), in the
       company a load reads (read_company); a source that cannot be listed is not checkable, with the reason.
    2. Read page by page (read_page), key and shape each record as its message would be (listed_reader)
       and drop those the flow's filter skips (filter_reason on the record, as the pipeline would see it).
    3. A record is missing when neither a RecordLink nor a Message of the flow has its key.
    """
    try:
        source = load_source(
            flow=flow,
            entity=schedule.source_entity,
            key=(schedule.source_key_field,) if schedule.source_key_field else (),
        )
    except LoadError as exc:
        return {"checked": False, "reason": f"the source cannot be listed: {exc}"}, []
    company = read_company(flow)
    filters: dict[str, Any] = {"key": list(source.key), **({"company": company} if company else {})}
    connector, kind = get_connector(flow.source), flow.source.kind
    rows: dict[str, dict[str, Any]] = {}
    listed = skipped = unkeyed = 0
    unkeyed_error = ""
    cursor = ""
    read = listed_reader(flow=flow, entity=source.entity, key=source.key)  # each record as its message carries it
    while True:
        page, cursor = connector.read_page(source.entity, cursor, filters)
        for row in page:
            listed += 1
            try:
                record_key, version, payload = read(row)
            except LoadError as exc:  # counted and named, as a load counts it failed; the rest is still checked
                unkeyed, unkeyed_error = unkeyed + 1, str(exc)
                continue
            if filter_reason(message=Message(flow=flow, payload_in=payload)):
                skipped += 1
                continue
            rows[record_key] = {"row": payload, "version": version}
        if not cursor or listed >= schedule.max_records:
            break
    # Stored keys read in the normal form too: a link written before keys were normalised still counts.
    links = RecordLink.objects.filter(flow=flow).values_list("source_key", flat=True)
    known = {canonical_key(kind, key) for key in links}
    known |= {
        canonical_key(kind, key)
        for key in Message.objects.filter(flow=flow, source_record_key__in=list(rows)).values_list(
            "source_record_key", flat=True
        )
    }
    missing = [
        {
            "kind": Kind.MISSING_FROM_HUB,
            "source_key": record_key[:255],
            "source_values": {"entity": source.entity, "version": found["version"], "record": found["row"]},
            "detail": f"{source.entity} record at {flow.source}: no link and no message in the hub",
        }
        for record_key, found in sorted(rows.items())
        if record_key not in known
    ]
    summary = {"checked": True, "entity": source.entity, "listed": listed, "skipped_by_filter": skipped}
    if unkeyed:
        summary |= {"unkeyed": unkeyed, "unkeyed_error": unkeyed_error}
    return {**summary, "missing_from_hub": len(missing)}, missing


def _compare(
    flow: Flow,
    schedule: ReconciliationSchedule,
    link: RecordLink,
    source: Any,
    target: Any,
    context: dict[str, Any],
    totals: _Totals,
) -> Discrepancy | Any | None:
    common = {"source_key": link.source_key, "target_key": link.target_key, "message": link.last_message}
    if source is not None:
        key = {schedule.source_key_field or "key": link.source_key}
        try:
            record = source.fetch(
                entity=schedule.source_entity or flow.entity, key=key, company=context.get("source_company", "")
            )
        except errors.ConnectorError as exc:
            return Discrepancy(kind=Kind.UNREADABLE, detail=f"source: {exc.message}", **common)
        if record is None:
            return Discrepancy(kind=Kind.MISSING_IN_SOURCE, detail="the source no longer has this record", **common)
        try:
            expected = mapping.apply(spec=flow.mapping_spec, payload=record, context=context)
        except errors.MappingError as exc:
            return Discrepancy(kind=Kind.UNREADABLE, detail=f"mapping: {exc.message}", **common)
    else:
        expected, message = _expected_from_message(flow, link)
        common["message"] = message
        if expected is None:
            return Discrepancy(
                kind=Kind.UNREADABLE, detail="no delivered payload to compare (purged by retention?)", **common
            )
    if "@delete" in expected:
        # The flow last carried the record's Delete (integrations.pipeline.prepare): no content to hold, and
        # not a match either: counted apart (totals["deleted"]).
        return DELETED
    key = {field: expected.get(field) for field in flow.target_key_fields}
    if not key or any(value in (None, "") for value in key.values()):
        return Discrepancy(
            kind=Kind.UNREADABLE, detail=f"target key fields {flow.target_key_fields} are not in the payload", **common
        )
    lines = _line_fields(expected)
    try:
        actual = target.fetch_document(
            entity=flow.target_entity,
            key=key,
            company=context.get("target_company", ""),
            lines=lines,
            options=flow.opts,
        )
    except errors.ConnectorError as exc:
        return Discrepancy(kind=Kind.UNREADABLE, detail=f"target: {exc.message}", **common)
    totals.add(expected, actual)
    fields = sorted(expected)
    want = _projection(expected, fields)
    if actual is None:
        return Discrepancy(kind=Kind.MISSING_IN_TARGET, source_values=want, **common)
    have = _projection(actual, fields)
    # Header + lines: the target's lines (read from their entity or navigation) against the lines written.
    spec = flow.opts.lines
    for field in fields:
        if _is_lines(want[field]) or isinstance(want[field], dict):
            have[field] = _part_projection(want[field], actual.get(field), spec.match if spec else "")
    # A Dataverse lookup is written as "<nav>@odata.bind": "/uoms(<id>)" and read back as "_<nav>_value": <id>.
    # https://learn.microsoft.com/power-apps/developer/data-platform/webapi/associate-disassociate-entities-using-web-api
    kind = flow.target.kind
    for field in fields:
        if field.endswith(BIND) and isinstance(want[field], str):
            bound = _BOUND_ID.search(want[field])
            want[field] = canonical_key(kind, bound.group(1)) if bound else want[field]
            read = actual.get(f"_{field[: -len(BIND)]}_value")
            have[field] = canonical_key(kind, str(read)) if read not in (None, "") else None
    # Key fields compare in the target's normal form (F&O answers dataAreaId in lower case, whatever we sent).
    for field in flow.target_key_fields:
        if field in want:
            want[field] = canonical_value(kind, field, want[field])
            have[field] = canonical_value(kind, field, have[field])
    if content_hash(want) == content_hash(have):
        return None
    differing = [field for field in fields if want[field] != have[field]]
    return Discrepancy(
        kind=Kind.DIFFERENT,
        fields=differing,
        source_values={f: want[f] for f in differing},
        target_values={f: have[f] for f in differing},
        **common,
    )


# --- repairing ------------------------------------------------------------------


def discrepancies_repair(*, discrepancies: Any, actor: Any, reason: str = "") -> int:
    """Re-deliver the records found missing or different; returns how many repairs were queued."""
    count = 0
    for discrepancy in discrepancies.select_related("run__flow", "message").filter(kind__in=REPAIRABLE):
        if discrepancy_repair(discrepancy=discrepancy, actor=actor, reason=reason) is not None:
            count += 1
    return count


def discrepancy_repair(*, discrepancy: Discrepancy, actor: Any, reason: str = "") -> Message | None:
    """Replay the record's original message under '<key>#repair-<id>' with force_overwrite (see module doc)."""
    flow = discrepancy.run.flow
    if discrepancy.kind == Kind.MISSING_FROM_HUB:
        return _ingest_never_reached(discrepancy=discrepancy, actor=actor, reason=reason)
    original = discrepancy.message
    schedule = ReconciliationSchedule.objects.filter(flow=flow).first()
    if discrepancy.kind not in REPAIRABLE or original is None:
        return None
    payload = original.payload_in
    if schedule and schedule.source_mode == schedule.SourceMode.FETCH:
        context = mapping_context(flow)
        try:
            payload = get_connector(flow.source).fetch(
                entity=schedule.source_entity or flow.entity,
                key={schedule.source_key_field or "key": discrepancy.source_key},
                company=context.get("source_company", ""),
            )
        except errors.ConnectorError as exc:
            Discrepancy.objects.filter(pk=discrepancy.pk).update(detail=f"repair: source unreadable: {exc.message}")
            return None
    if not payload:
        Discrepancy.objects.filter(pk=discrepancy.pk).update(detail="repair: the original payload was purged")
        return None
    with transaction.atomic():
        repair, created = message_ingest(
            flow=flow,
            payload=payload,
            idempotency_key=f"{original.idempotency_key}#repair-{discrepancy.pk}",
            source_record_key=original.source_record_key,
            source_version=original.source_version,
            correlation_id=original.correlation_id,
            headers=original.headers,
            replay_of=original,
        )
        if created:
            # Before commit, so the worker that picks it up already sees it.
            Message.objects.filter(pk=repair.pk).update(force_overwrite=True)
            audit_record(
                actor=actor,
                action="reconcile_repair",
                obj=discrepancy,
                message=original,
                reason=reason,
                details={"repair_message_id": repair.pk, "kind": discrepancy.kind, "fields": discrepancy.fields},
            )
        Discrepancy.objects.filter(pk=discrepancy.pk).update(repair_message=repair, repaired_at=timezone.now())
    return repair


def _ingest_never_reached(*, discrepancy: Discrepancy, actor: Any, reason: str) -> Message | None:
    """Ingest a source record the hub never received, as the initial load would (same key: stored once)."""
    flow = discrepancy.run.flow
    values = discrepancy.source_values or {}
    row, entity = values.get("record"), values.get("entity", "")
    if not isinstance(row, dict) or not row:
        Discrepancy.objects.filter(pk=discrepancy.pk).update(detail="repair: the source record was not kept")
        return None
    with transaction.atomic():
        message, created = message_ingest(
            flow=flow,
            payload=row,
            idempotency_key=f"{entity}:{discrepancy.source_key}:{values.get('version', '')}",
            source_record_key=discrepancy.source_key,
            headers={"reconciliation_run": discrepancy.run_id, "entity": entity},
        )
        if created:
            audit_record(
                actor=actor,
                action="reconcile_repair",
                obj=discrepancy,
                message=message,
                reason=reason,
                details={"repair_message_id": message.pk, "kind": discrepancy.kind},
            )
        Discrepancy.objects.filter(pk=discrepancy.pk).update(repair_message=message, repaired_at=timezone.now())
    return message


def reconciliation_run_for_flow_id(*, flow_id: int) -> ReconciliationRun | None:
    flow = Flow.objects.select_related("source", "target", "company_link").filter(pk=flow_id).first()
    if flow is None:
        return None  # the flow was deleted; its PeriodicTask goes with the schedule
    return reconciliation_run(flow=flow)
