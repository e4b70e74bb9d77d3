"""Webhooks out of the Dataverse emulator, as a registered service endpoint with SDK message processing steps.

Each enabled EmulatorSubscription(emulator="dataverse") is one webhook step, asynchronous (Mode 1) and
post-operation (Stage 40), like the steps the Plug-in Registration tool registers:

    event_type ""                  Create and Update of every table
    event_type "account"           Create and Update of one table (its logical name)
    event_type "task:Update"       one message of one table: Create, Update or Delete
    url, headers                   the service endpoint and its HttpHeader authentication (sent every time)

Once the write has committed (in a $batch change set: only if the change set commits), the emulator posts
the RemoteExecutionContext Dataverse sends (sandbox.dataverse.context; the shape of
tests/fixtures/dataverse/webhook-contact-update-remoteexecutioncontext.json) with the headers of
https://learn.microsoft.com/power-apps/developer/data-platform/use-webhooks: x-ms-dynamics-organization,
-entity-name, -request-name, x-ms-correlation-request-id and x-request-id. A body over 256 KB goes without
ParentContext, InputParameters and the images, flagged by x-ms-dynamics-msg-size-exceeded.

As the asynchronous service does, a small thread pool sends them with a bounded timeout; a delivery that
fails with a 5xx or 429, a timeout or no connection is tried again after RETRY_DELAYS, then the system job
fails. Every step execution is logged as an EmulatorRecord (entity "$webhook", key its OperationId): the
body, the headers but the endpoint's own (its secret), the URL without its query, each attempt and the state.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from integrations.protocols.odata import ODataError
from integrations.protocols.odata.keys import parse_key
from sandbox.dataverse.context import entity, entity_reference, fit, remote_execution_context, request_headers
from sandbox.dataverse.store import Call, caller_of, find
from sandbox.dataverse.tables import EMULATOR, LOOKUP_VALUE, TABLES, Table, lookup_name, primary_name
from sandbox.models import EmulatorRecord, EmulatorSubscription

logger = logging.getLogger(__name__)

LOG_ENTITY = "$webhook"
MESSAGES = ("Create", "Update", "Delete")
TIMEOUT = (3.05, 10.0)  # connect, read: Dataverse waits 60 s; a sandbox subscriber must not hold a thread that long
RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds before the 2nd, 3rd and 4th attempt; then the system job has failed


# --- matching steps -----------------------------------------------------------------------------


def step_matches(event_type: str, logical_name: str, message: str) -> bool:
    """Whether a step registered as event_type ("", "account", "account:Delete") runs for this write."""
    wanted = (event_type or "").strip()
    if not wanted:
        return message in ("Create", "Update")
    table, _, step_message = wanted.partition(":")
    if table.strip().lower() != logical_name:
        return False
    if not step_message.strip():
        return message in ("Create", "Update")
    return step_message.strip().lower() == message.lower()


def registered_steps() -> list[EmulatorSubscription]:
    return list(EmulatorSubscription.objects.filter(emulator=EMULATOR, enabled=True).order_by("pk"))


def steps_for(
    logical_name: str, message: str, registered: list[EmulatorSubscription] | None = None
) -> list[EmulatorSubscription]:
    """The enabled steps that run for this write (of `registered`, else of every registered step)."""
    steps = registered_steps() if registered is None else registered
    return [step for step in steps if step_matches(step.event_type, logical_name, message)]


# --- sending ------------------------------------------------------------------------------------


@dataclass
class _Job:
    key: str  # the OperationId: the $webhook log row
    url: str
    data: bytes
    headers: dict[str, str]  # ours and the step's own
    epoch: int
    attempts: list[dict[str, Any]] = field(default_factory=list)


_sender = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dataverse-webhooks")
_lock = threading.Condition()
_state = {"epoch": 0, "pending": 0}  # pending: jobs queued, sending or waiting for a retry
_timers: set[threading.Timer] = set()


def queue_steps(
    steps: Iterable[EmulatorSubscription],
    build: Callable[[EmulatorSubscription, str], dict[str, Any]],
    *,
    organization_host: str,
    message: str,
    logical_name: str,
) -> list[str]:
    """Log each step execution now (inside the write's transaction) and send it once that commits.

    build(step, operation_id) returns the step's RemoteExecutionContext. Returns the OperationIds.
    """
    jobs: list[_Job] = []
    for step in steps:
        operation_id = str(uuid.uuid4())
        context = build(step, operation_id)
        data, ours = fit(context, request_headers(context, organization_host))
        parts = urlsplit(step.url)
        EmulatorRecord.objects.create(
            emulator=EMULATOR,
            entity=LOG_ENTITY,
            key=operation_id,
            data={
                "step": step.event_type,
                "subscription": step.pk,
                "message": message,
                "entity": logical_name,
                "id": context["PrimaryEntityId"],
                "url": f"{parts.scheme}://{parts.netloc}{parts.path}",  # a query may hold a key
                "headers": ours,
                "body": json.loads(data),
                "state": "queued",
                "attempts": [],
            },
        )
        jobs.append(_Job(operation_id, step.url, data, {**ours, **(step.headers or {})}, _state["epoch"]))
    if jobs:
        transaction.on_commit(lambda: _submit_all(jobs))
    return [job.key for job in jobs]


def _submit_all(jobs: list[_Job]) -> None:
    with _lock:
        _state["pending"] += len(jobs)
    for job in jobs:
        _sender.submit(_attempt, job)


def _attempt(job: _Job) -> None:
    """One try of one step execution; schedules the next try or records the outcome."""
    retry_in: float | None = None
    try:
        if job.epoch != _state["epoch"]:
            return  # the emulator was reset since: the system job is gone
        close_old_connections()
        started = time.monotonic()
        headers = {**job.headers, "x-request-id": str(uuid.uuid4())}
        try:
            response = requests.post(job.url, data=job.data, headers=headers, timeout=TIMEOUT, allow_redirects=False)
            outcome: dict[str, Any] = {"status": response.status_code}
            ok, transient = response.status_code < 300, response.status_code >= 500 or response.status_code == 429
        except requests.RequestException as exc:
            outcome, ok, transient = {"error": type(exc).__name__}, False, True
        job.attempts.append(
            {"at": timezone.now().isoformat(), "ms": round((time.monotonic() - started) * 1000), **outcome}
        )
        tried = len(job.attempts)
        if ok:
            state = "succeeded"
        elif transient and tried <= len(RETRY_DELAYS):
            state, retry_in = "retrying", RETRY_DELAYS[tried - 1]
        else:
            state = "failed"
            logger.warning("dataverse emulator: webhook %s to %s failed after %d attempt(s)", job.key, job.url, tried)
        EmulatorRecord.objects.filter(emulator=EMULATOR, entity=LOG_ENTITY, key=job.key).update(
            data=_logged(job, state)
        )
    except Exception:  # a background thread must log, not die silently
        logger.exception("dataverse emulator: sending webhook %s failed", job.key)
    finally:
        connection.close()
        _after_attempt(job, retry_in)


def _logged(job: _Job, state: str) -> dict[str, Any]:
    row = EmulatorRecord.objects.filter(emulator=EMULATOR, entity=LOG_ENTITY, key=job.key).first()
    data = dict(row.data) if row else {}
    return {**data, "state": state, "attempts": list(job.attempts)}


def _after_attempt(job: _Job, retry_in: float | None) -> None:
    with _lock:
        if retry_in is not None and job.epoch == _state["epoch"]:
            timer = threading.Timer(retry_in, _retry, args=(job,))
            timer.daemon = True
            _timers.add(timer)
            timer.start()  # still pending: the count goes down when the retry ends
            return
        _state["pending"] -= 1
        _lock.notify_all()


def _retry(job: _Job) -> None:
    with _lock:
        current = threading.current_thread()
        if current not in _timers:
            return  # cancelled by reset(), which has counted it off
        _timers.discard(current)  # type: ignore[arg-type]
    _sender.submit(_attempt, job)


def wait_idle(timeout: float = 30) -> bool:
    """Wait until no webhook is queued, being sent or waiting for a retry; False on timeout."""
    deadline = time.monotonic() + timeout
    with _lock:
        while _state["pending"] > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _lock.wait(left)
    return True


def reset(wait_seconds: float = 5) -> None:
    """Cancel queued and scheduled retries, and give a webhook being sent a moment to finish."""
    with _lock:
        _state["epoch"] += 1
        for timer in list(_timers):
            timer.cancel()
            _state["pending"] -= 1
        _timers.clear()
        _lock.notify_all()
    wait_idle(wait_seconds)


# --- raising them: what a write of the emulator queues ------------------------------------------------------

_BOUND = re.compile(r"(?:^|/)(?P<set>\w+)\((?P<key>[^)]*)\)\s*$")


def _bound_reference(value: Any) -> Any:
    """The EntityReference an @odata.bind value names, with the row's primary name when the row is here."""
    match = _BOUND.search(str(value))
    if match is None or match.group("set") not in TABLES:
        return value
    set_name = match.group("set")
    table = TABLES[set_name]
    try:
        key = parse_key(match.group("key"))
        record, _ = find(table, set_name, key)
    except ODataError:
        record = None
    if record is None:
        return entity_reference(table.logical_name, match.group("key"))
    return entity_reference(table.logical_name, record.key, primary_name(set_name, record.data))


def _stored_reference(record_id: Any) -> Any:
    """A stored lookup (_<lookup>_value, a bare id) as an EntityReference: the id says which table it is in."""
    if not isinstance(record_id, str):
        return record_id
    row = EmulatorRecord.objects.filter(emulator=EMULATOR, entity__in=list(TABLES), key=record_id).first()
    if row is None:
        return entity_reference(None, record_id)
    return entity_reference(TABLES[row.entity].logical_name, record_id, primary_name(row.entity, row.data))


def _image(table: Table, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """An entity image: every stored column, lookups under their own names as EntityReference."""
    attributes: dict[str, Any] = {}
    for name, value in data.items():
        lookup = LOOKUP_VALUE.match(name)
        if lookup:
            attributes[lookup.group("lookup")] = _stored_reference(value)
        else:
            attributes[name] = value
    version = data.get("versionnumber")
    return entity(table.logical_name, record_id, attributes, row_version=str(version) if version is not None else None)


def _target(
    call: Call, table: Table, message: str, record: EmulatorRecord, body: dict[str, Any], key_values: dict[str, Any]
) -> dict[str, Any]:
    """The Target of a Create/Update: what the request set (lookups as EntityReference), the id, and the
    columns the platform sets on the way (the captured Target carries modifiedon, modifiedby…)."""
    user = entity_reference("systemuser", str(call.claims.get("oid", "")))
    attributes: dict[str, Any] = dict(key_values)
    for name, value in body.items():
        if name.endswith("@odata.bind"):
            attributes[lookup_name(name.removesuffix("@odata.bind"))] = _bound_reference(value)
        elif "@" not in name:
            attributes[name] = value
    attributes[table.primary_id] = record.key
    if message == "Create":
        attributes.update(createdon=record.data.get("createdon"), createdby=user, ownerid=user)
    attributes.update(modifiedon=record.data.get("modifiedon"), modifiedby=user, modifiedonbehalfby=None)
    return entity(table.logical_name, record.key, attributes, key_attributes=key_values)


def raise_webhooks(
    call: Call,
    table: Table,
    message: str,
    record: EmulatorRecord,
    body: dict[str, Any] | None,
    *,
    before: dict[str, Any] | None = None,
    key_values: dict[str, Any] | None = None,
) -> None:
    """Queue the webhook steps registered for this write; they are sent once its transaction commits."""
    if "steps" not in call.cache:
        call.cache["steps"] = registered_steps()
    steps = steps_for(table.logical_name, message, call.cache["steps"])
    if not steps:
        return
    if message == "Delete":
        target = entity_reference(table.logical_name, record.key)
    else:
        target = _target(call, table, message, record, body or {}, key_values or {})
    pre = _image(table, record.key, before) if before is not None and message != "Create" else None
    post = _image(table, record.key, record.data) if message != "Delete" else None
    caller = caller_of(call)
    created_on = timezone.now()

    def context(step: EmulatorSubscription, operation_id: str) -> dict[str, Any]:
        return remote_execution_context(
            message=message,
            logical_name=table.logical_name,
            record_id=record.key,
            target=target,
            caller=caller,
            correlation_id=call.correlation_id,
            pre_image=pre,
            post_image=post,
            step_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"dataverse/step/{step.pk}")),
            operation_id=operation_id,
            created_on=created_on,
        )

    queue_steps(
        steps, context, organization_host=caller.organization_host, message=message, logical_name=table.logical_name
    )
