"""Data management (DMF): the package REST API and recurring integrations, over data projects.

Package API, OData actions on DataManagementDefinitionGroups (POST data/DataManagementDefinitionGroups/
Microsoft.Dynamics.DataEntities.<action>, JSON body, answer {"value": …}):
https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/data-management-api
  ExportToPackage {definitionGroupId, packageName, executionId, reExecute, legalEntityId} → execution id
  GetExportedPackageUrl {executionId} → a blob URL (a SAS link: no token) of the package zip
  GetExecutionSummaryStatus {executionId} → NotRun, Executing, Succeeded, PartiallySucceeded, Failed, Canceled
  GetAzureWriteUrl {uniqueFileName} → '{"BlobId": …, "BlobUrl": …}' (a JSON string); PUT the zip there
  ImportFromPackage {packageUrl, definitionGroupId, executionId, execute, overwrite, legalEntityId} → id
  GetExecutionErrors {executionId} → a JSON string: the errors of the execution's rows
Recurring integrations, api/connector/… on a recurring data job (its activity id):
https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/recurring-integrations
  POST enqueue/<activity>?entity=<name>&company=<c>   body: a package → a message id
  GET  dequeue/<activity>   → {CorrelationId, PopReceipt, DownloadLocation, IsDownloadFileExist, …}; 204 if empty
  POST ack/<activity>       body: what dequeue answered → 200; the message leaves the queue
  GetMessageStatus {messageId} (a package API action) → Processed, ProcessedWithErrors, …

Change tracking ("Enable change tracking for entities",
https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/entity-change-track): an
administrator enables it per entity (change_tracking(), or PUT /sandbox/finops/control/change-tracking/<entity>);
an export project whose entities are "Incremental push only" (data_project(incremental=True)) then exports,
per entity and legal entity, only the rows changed since its previous successful export, the first time all
of them; an entity without change tracking "can only [get] a full export each time", so it is exported in
full. Deletions are not tracked (non-BYOD exports do not carry them, same document).

Executions: F&O runs an export or import as a batch job, and GetExecutionSummaryStatus answers Executing
until it ends. With finops.configure(job_seconds=N) an execution is Executing for N seconds and does its work
(reads the rows for an export, writes them for an import) when the first status call after that finds it
due; with 0 (the default) it runs inside the call that starts it.

Simplifications (docs/sandbox.md): data projects and recurring jobs are set up with data_project() and
recurring_job() (F&O: the Data management workspace); no NotRun state, and a job runs when it is asked
about, not on a batch server; a recurring export job's package is queued by recurring_export_run() (F&O: its
schedule) and an enqueued package is imported at once.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from django.db import transaction

from integrations.protocols import dmf
from sandbox.common.result import Result
from sandbox.finops.auth import error
from sandbox.finops.config import settings_get
from sandbox.finops.lines import References, failure_text, line_check
from sandbox.finops.model import EMULATOR, ENTITIES, LINE_PARENTS, LINE_UNITS, Entity
from sandbox.finops.store import QUANTITIES, Call, record_key, rows, validate
from sandbox.models import EmulatorRecord
from sandbox.models.store import next_change_seq

ACTION_PREFIX = "DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."
PROJECT, EXECUTION, BLOB, JOB, QUEUED = "$dmf_project", "$dmf_execution", "$dmf_blob", "$dmf_job", "$dmf_message"
TRACKING, TRACKED = "$dmf_tracking", "$dmf_tracked"  # entities with change tracking; what each export has sent
# A row's change sequence is taken when it is written, not when its transaction commits: a write that
# commits while an export reads is seen by the next export only if that one looks back this far.
COMMIT_GRACE_NS = 60 * 1_000_000_000


def _row(kind: str, key: str) -> EmulatorRecord | None:
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity=kind, company="", key=key).first()


def _put(kind: str, key: str, data: dict[str, Any]) -> EmulatorRecord:
    row, _ = EmulatorRecord.objects.update_or_create(
        emulator=EMULATOR, entity=kind, company="", key=key, defaults={"data": data}
    )
    return row


def data_project(name: str, *, entities: list[str], direction: str = "export", incremental: bool = False) -> None:
    """A data project (definition group) of these data entities, for export or import.

    incremental: its entities' default refresh type is "Incremental push only" (else "Full push only").
    """
    unknown = [entity for entity in entities if entity not in ENTITIES]
    if unknown:
        raise ValueError(f"no data entity {unknown[0]!r}")
    if incremental and direction != "export":
        raise ValueError("incremental push is a refresh type of export projects only")
    _put(PROJECT, name, {"entities": entities, "direction": direction, "incremental": incremental})


def data_project_get(name: str) -> dict[str, Any] | None:
    """The data project's definition (entities, direction, incremental), None if there is none."""
    row = _row(PROJECT, name)
    return row.data if row else None


def change_tracking(entity: str, *, enabled: bool = True) -> None:
    """Enable (or disable) change tracking on a data entity, as in Data management > Data entities."""
    if entity not in ENTITIES:
        raise ValueError(f"no data entity {entity!r}")
    if enabled:
        _put(TRACKING, entity, {"scope": "entire_entity"})
    else:
        EmulatorRecord.objects.filter(emulator=EMULATOR, entity=TRACKING, company="", key=entity).delete()
        # Disabled, its history is gone: enabled again, the next incremental export is a full one.
        EmulatorRecord.objects.filter(emulator=EMULATOR, entity=TRACKED, key__contains=f"|{entity}|").delete()


def change_tracking_enabled(entity: str) -> bool:
    return _row(TRACKING, entity) is not None


def _changed_rows(project: str, entity: str, company: str) -> tuple[list[EmulatorRecord], dict[str, Any]]:
    """The rows changed since the project's previous successful export of the entity, and the state after this one.

    The state is a watermark (a change sequence) and the keys exported above it with their sequence: a row
    is sent again when its sequence is past the watermark and not the one already sent. The watermark lags
    the export by COMMIT_GRACE_NS, so a row that committed after it was read is still found next time.
    """
    state = _row(TRACKED, f"{project}|{entity}|{company}")
    watermark, sent = (state.data["watermark"], state.data["sent"]) if state else (0, {})
    snapshot = next_change_seq()  # taken before reading: a row written meanwhile comes again next time
    candidates = list(rows(entity).filter(company=company, change_seq__gt=watermark).order_by("key"))
    changed = [r for r in candidates if sent.get(r.key) != r.change_seq]
    after = max(watermark, snapshot - COMMIT_GRACE_NS)
    return changed, {"watermark": after, "sent": {r.key: r.change_seq for r in candidates if r.change_seq > after}}


def recurring_job(activity_id: str, *, project: str, company: str) -> None:
    """A recurring data job on a data project; its activity id is what api/connector/* name."""
    _put(JOB, activity_id.lower(), {"project": project, "company": company.lower()})


def _blob_url(call: Call, blob_id: str) -> str:
    return f"{call.root.removesuffix('/data')}/dmf-blob/{blob_id}?sv=2014-02-14&sig=sandbox"


def _export(project: dict[str, Any], company: str, name: str) -> bytes:
    """The project's package: per entity every row, or for an incremental push of a change-tracked entity
    only the rows changed since the previous export (its state is kept only when the export is built)."""
    entities, states = {}, {}
    for entity in project["entities"]:
        if project.get("incremental") and change_tracking_enabled(entity):
            records, states[entity] = _changed_rows(name, entity, company)
        else:
            kept_under = ENTITIES[entity].company_of(company) if entity in ENTITIES else company
            records = list(rows(entity).filter(company=kept_under).order_by("key"))
        entities[entity] = [r.data for r in records]
    package = dmf.package_build(definition_group=name, entities=entities, description=f"Export of {name}")
    for entity, state in states.items():
        _put(TRACKED, f"{name}|{entity}|{company}", state)
    return package


def _import(package: bytes, company: str) -> tuple[int, list[dict[str, Any]]]:
    """Write every row of the package's entities into the company; the rows F&O would refuse are errors."""
    _, entities = dmf.package_read(package)
    written, errors = 0, []
    known = References(company)  # released products and units, read once for the import's line rows
    for name, records in entities.items():
        entity = ENTITIES.get(name)
        if entity is None:
            errors.append({"Entity": name, "Row": 0, "Message": f"Entity '{name}' does not exist."})
            continue
        pending: dict[str, dict[str, Any]] = {}  # record key → the values to write
        rows_in = [_typed({k: v for k, v in values.items() if v != "" and k != "dataAreaId"}) for values in records]
        stored = _stored_lines(name, company, entity, rows_in)
        target = entity.company_of(company)  # a shared entity's rows (units) are no company's
        for n, values in enumerate(rows_in, start=1):
            if failure := validate(entity, values, creating=True):
                errors.append({"Entity": name, "Row": n, "Message": failure_text(failure)})
                continue
            if any(not values.get(k) for k in entity.keys):
                errors.append({"Entity": name, "Row": n, "Message": f"Key field(s) {', '.join(entity.keys)} missing."})
                continue
            key = record_key(entity, values)
            # The line rules of OData: a new line as a create (header, its defaults, item and unit), a row of an
            # existing line as an update of it (its other fields kept, not re-defaulted from the header).
            current = {**stored.get(key, {}), **pending[key]} if key in pending else stored.get(key)
            if failure := line_check(name, company, values, current=current, known=known):
                errors.append({"Entity": name, "Row": n, "Message": failure_text(failure)})
                continue
            pending[key] = {**pending.get(key, {}), **values}  # a key given twice: the later row updates the earlier
            written += 1
        # Written before the next entity's rows are checked: a line's header may come earlier in the package.
        _write_rows(name, target, pending)
    return written, errors


def _stored_lines(name: str, company: str, entity: Entity, rows_in: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The stored lines the package's rows name (one query), so a row of an existing line is its update."""
    if name not in LINE_PARENTS and name not in LINE_UNITS:
        return {}
    keys = {record_key(entity, values) for values in rows_in if all(values.get(k) for k in entity.keys)}
    return {r.key: r.data for r in rows(name).filter(company=company, key__in=keys)}


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """A package row's quantities as numbers: a data file carries text, which F&O converts by the field's type."""
    for name in QUANTITIES:
        value = values.get(name)
        if isinstance(value, str):
            try:
                values[name] = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                pass  # left as text: validate() refuses it with the field's name
    return values


def _write_rows(name: str, company: str, pending: dict[str, dict[str, Any]]) -> None:
    """Write the entity's valid rows as store.write() writes each, with one read of their keys and one upsert.

    An existing row takes the values over its own, a row deleted before is created again (F&O keeps no
    tombstone), and each row gets its own change sequence and RecVersion, so change tracking exports it.
    """
    if not pending:
        return
    with transaction.atomic():
        found = {
            record.key: record
            for record in EmulatorRecord.objects.filter(
                emulator=EMULATOR, entity=name, company=company, key__in=list(pending)
            )
            .order_by("key")
            .select_for_update()  # in key order, as the upsert writes: two imports lock shared keys in one order
        }
        upserts = []
        for key, values in sorted(pending.items()):
            values = {k: v for k, v in values.items() if not k.startswith("@")}
            old = found.get(key)
            own = {"dataAreaId": company} if company else {}  # "": a shared entity's row (store.write)
            data = {**(old.data if old is not None and not old.deleted else {}), **values, **own}
            seq = next_change_seq()
            upserts.append(EmulatorRecord(emulator=EMULATOR, entity=name, company=company, key=key, data=data,
                                          version=seq % 2_000_000_000, change_seq=seq, deleted=False))  # fmt: skip
        EmulatorRecord.objects.bulk_create(
            upserts,
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["emulator", "entity", "company", "key"],
            update_fields=["data", "version", "change_seq", "deleted", "modified_at"],
        )


def _status(written: int, errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "Succeeded"
    return "PartiallySucceeded" if written else "Failed"


def _start_import(package: bytes, company: str, execution_id: str) -> dict[str, Any]:
    try:
        written, errors = _import(package, company)
    except dmf.PackageError as exc:
        written, errors = 0, [{"Entity": "", "Row": 0, "Message": str(exc)}]
    data = {"status": _status(written, errors), "errors": errors, "written": written, "direction": "import"}
    _put(EXECUTION, execution_id, data)
    return data


def _start(execution_id: str, job: dict[str, Any]) -> None:
    """Start an execution (job: its direction, company, and the project or the package's blob): it runs now,
    or is Executing until the environment's job_seconds have passed (_due)."""
    seconds = float(settings_get()["job_seconds"])
    if seconds > 0:
        _put(EXECUTION, execution_id, {**job, "status": "Executing", "ready_at": time.time() + seconds, "errors": []})
    else:
        _run(execution_id, job)


def _run(execution_id: str, job: dict[str, Any]) -> None:
    """The execution's batch job: build the export's package, or import the package."""
    if job["direction"] == "import":
        _start_import(base64.b64decode(_row(BLOB, job["package"]).data["base64"]), job["company"], execution_id)
        return
    package = _export(_row(PROJECT, job["project"]).data, job["company"], job["project"])
    blob_id = uuid.uuid4().hex
    _put(BLOB, blob_id, {"base64": base64.b64encode(package).decode()})
    _put(EXECUTION, execution_id, {"status": "Succeeded", "blob": blob_id, "direction": "export", "errors": []})


def _due(execution: EmulatorRecord) -> EmulatorRecord:
    """The execution as a status call finds it: a job whose time has come runs first (once, under a lock)."""
    if execution.data.get("status") != "Executing" or time.time() < execution.data.get("ready_at", 0):
        return execution
    with transaction.atomic():
        locked = EmulatorRecord.objects.select_for_update().get(pk=execution.pk)
        if locked.data.get("status") == "Executing":
            _run(locked.key, locked.data)
    return _row(EXECUTION, execution.key) or execution


def action(call: Call) -> Result:
    """One package API action; an unknown execution or project is refused as F&O refuses it."""
    name = call.path.removeprefix(ACTION_PREFIX)
    if call.method != "POST":
        return error(405, f"The requested resource does not support http method '{call.method}'.")
    try:
        body = json.loads(call.body or b"{}")
    except ValueError:
        return error(400, "The request body is not valid JSON.")
    if name == "ExportToPackage":
        project = _row(PROJECT, str(body.get("definitionGroupId", "")))
        if project is None:
            return error(400, f"Data project '{body.get('definitionGroupId')}' does not exist.")
        execution_id = body.get("executionId") or f"{body['definitionGroupId']}-{uuid.uuid4()}"
        company = str(body.get("legalEntityId", "")).lower()
        _start(execution_id, {"direction": "export", "project": project.key, "company": company})
        return Result.json({"value": execution_id})
    if name == "GetAzureWriteUrl":
        blob_id = uuid.uuid4().hex
        _put(BLOB, blob_id, {"base64": ""})
        return Result.json({"value": json.dumps({"BlobId": blob_id, "BlobUrl": _blob_url(call, blob_id)})})
    if name == "ImportFromPackage":
        blob = _row(BLOB, str(body.get("packageUrl", "")).split("/dmf-blob/")[-1].split("?")[0])
        if blob is None or not blob.data.get("base64"):
            return error(400, "The package was not found at packageUrl.")
        if _row(PROJECT, str(body.get("definitionGroupId", ""))) is None:
            return error(400, f"Data project '{body.get('definitionGroupId')}' does not exist.")
        execution_id = body.get("executionId") or f"{body['definitionGroupId']}-{uuid.uuid4()}"
        company = str(body.get("legalEntityId", "")).lower()
        _start(execution_id, {"direction": "import", "package": blob.key, "company": company})
        return Result.json({"value": execution_id})
    if name in ("GetExportedPackageUrl", "GetExecutionSummaryStatus", "GetExecutionErrors"):
        execution = _row(EXECUTION, str(body.get("executionId", "")))
        if name == "GetExecutionSummaryStatus":
            return Result.json({"value": _due(execution).data["status"] if execution else "Unknown"})
        if execution is None:
            return error(400, f"Execution '{body.get('executionId')}' does not exist.")
        if name == "GetExecutionErrors":
            return Result.json({"value": json.dumps(execution.data.get("errors", []))})
        return Result.json({"value": _blob_url(call, execution.data["blob"]) if execution.data.get("blob") else ""})
    if name == "GetMessageStatus":
        message = _row(QUEUED, str(body.get("messageId", "")).lower())
        return Result.json({"value": message.data.get("status", "Queued") if message else "Unknown"})
    return error(404, f"No HTTP resource was found that matches the request URI '{call.root}/{call.path}'.")


def blob(method: str, blob_id: str, body: bytes) -> Result:
    """The package store's blobs: GET a package, PUT one (x-ms-blob-type: BlockBlob) to a write URL."""
    row = _row(BLOB, blob_id)
    if row is None:
        return Result(404, {"Content-Type": "application/xml"}, b"<Error><Code>BlobNotFound</Code></Error>")
    if method == "PUT":
        row.data = {"base64": base64.b64encode(body).decode()}
        row.save(update_fields=["data", "modified_at"])
        return Result(201)
    return Result(200, {"Content-Type": "application/octet-stream"}, base64.b64decode(row.data.get("base64", "")))


def recurring_export_run(activity_id: str, root: str) -> str:
    """What a recurring export job's schedule does: export its project and queue the package to dequeue."""
    job = _row(JOB, activity_id.lower())
    if job is None:
        raise ValueError(f"no recurring job {activity_id}")
    project = _row(PROJECT, job.data["project"])
    package = _export(project.data, job.data["company"], job.data["project"])
    blob_id, correlation = uuid.uuid4().hex, str(uuid.uuid4())
    _put(BLOB, blob_id, {"base64": base64.b64encode(package).decode()})
    location = f"{root}/dmf-blob/{blob_id}?sv=2014-02-14&sig=sandbox"
    _put(QUEUED, correlation, {"job": activity_id.lower(), "out": True, "location": location, "popped": ""})
    return correlation


def connector(method: str, operation: str, activity_id: str, query: dict[str, str], body: bytes) -> Result:
    """api/connector/{enqueue,dequeue,ack}/<activity id>."""
    job = _row(JOB, activity_id.lower())
    if job is None:
        return Result.json({"Message": f"Recurring job '{activity_id}' was not found or is not enabled."}, 400)
    if operation == "enqueue" and method == "POST":
        message_id = str(uuid.uuid4())
        outcome = _start_import(body, (query.get("company") or job.data["company"]).lower(), f"msg-{message_id}")
        status = "Processed" if outcome["status"] == "Succeeded" else "ProcessedWithErrors"
        _put(QUEUED, message_id, {"job": activity_id.lower(), "out": False, "status": status})
        return Result(200, {"Content-Type": "text/plain"}, message_id.encode())
    if operation == "dequeue" and method == "GET":
        waiting = (
            EmulatorRecord.objects.filter(
                emulator=EMULATOR, entity=QUEUED, data__job=activity_id.lower(), data__out=True, data__popped=""
            )
            .order_by("created_at")
            .first()
        )
        if waiting is None:
            return Result(204)
        receipt = uuid.uuid4().hex
        waiting.data = {**waiting.data, "popped": receipt}
        waiting.save(update_fields=["data", "modified_at"])
        answer = {"CorrelationId": waiting.key, "PopReceipt": receipt, "DownloadLocation": waiting.data["location"],
                  "IsDownloadFileExist": True, "FileDownloadErrorMessage": ""}  # fmt: skip
        return Result.json(answer)
    if operation == "ack" and method == "POST":
        try:
            ack = json.loads(body or b"{}")
        except ValueError:
            return Result.json({"Message": "The acknowledgement is not JSON."}, 400)
        message = _row(QUEUED, str(ack.get("CorrelationId", "")))
        if message is None or not message.data.get("popped") or message.data["popped"] != ack.get("PopReceipt"):
            return Result.json({"Message": "No dequeued message has this CorrelationId and PopReceipt."}, 400)
        message.delete()
        return Result(200)
    return Result.json({"Message": f"'{method} {operation}' is not a recurring integrations operation."}, 405)
