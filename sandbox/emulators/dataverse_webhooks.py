"""Webhooks out of the Dataverse emulator, as a registered service endpoint with SDK message processing steps.

Each enabled EmulatorSubscription(emulator="dataverse") is one webhook step, asynchronous (Mode 1) and
post-operation (Stage 40), like the steps the Plug-in Registration tool registers:

    event_type ""                  Create and Update of every table
    event_type "account"           Create and Update of one table (its logical name)
    event_type "task:Update"       one message of one table: Create, Update or Delete
    url, headers                   the service endpoint and its HttpHeader authentication (sent every time)

Once the write has committed (in a $batch change set: only if the change set commits), the emulator posts
the RemoteExecutionContext Dataverse sends (remote_execution_context below; the shape of
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
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from sandbox.models import EmulatorRecord, EmulatorSubscription

logger = logging.getLogger(__name__)

EMULATOR = "dataverse"
LOG_ENTITY = "$webhook"
MESSAGES = ("Create", "Update", "Delete")
TIMEOUT = (3.05, 10.0)  # connect, read: Dataverse waits 60 s; a sandbox subscriber must not hold a thread that long
RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds before the 2nd, 3rd and 4th attempt; then the system job has failed
MAX_BODY_BYTES = 256 * 1024  # over this Dataverse drops the context's big parts (x-ms-dynamics-msg-size-exceeded)
CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
# Columns the SDK types as OptionSetValue / Money (the sandbox keeps no column metadata; these are the ones
# the scenarios use). Anything else goes as the JSON value it was written with.
OPTION_SETS = frozenset({"statecode", "statuscode", "prioritycode", "paymenttermscode", "msdyn_onholdstatus"})
MONEY = frozenset({"creditlimit", "totalamount", "price", "priceperunit", "revenue"})


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


# --- the body -----------------------------------------------------------------------------------


def wcf_date(moment: datetime) -> str:
    """/Date(ms)/, as the context's DataContract JSON writes a DateTime."""
    return f"/Date({int(moment.timestamp() * 1000)})/"


def sdk_value(name: str, value: Any) -> Any:
    """A column's value as the execution context carries it: dates as /Date(ms)/, option sets and money typed."""
    if isinstance(value, str) and len(value) > 10 and value[4:5] == "-" and value[10:11] == "T":
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return wcf_date(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    if isinstance(value, bool) or value is None:
        return value
    if name in OPTION_SETS and isinstance(value, int):
        return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": value}
    if name in MONEY and isinstance(value, int | float):
        return {"__type": f"Money:{CONTRACTS}", "Value": value}
    return value


def entity_reference(logical_name: str | None, record_id: str, name: str | None = None) -> dict[str, Any]:
    """A lookup value, or a Delete's Target."""
    return {
        "__type": f"EntityReference:{CONTRACTS}",
        "Id": record_id,
        "KeyAttributes": [],
        "LogicalName": logical_name,
        "Name": name,
        "RowVersion": None,
    }


def entity(
    logical_name: str,
    record_id: str,
    attributes: dict[str, Any],
    *,
    key_attributes: dict[str, Any] | None = None,
    row_version: str | None = None,
) -> dict[str, Any]:
    """An Entity (a Target or an image): attributes as [{"key", "value"}] pairs, typed by sdk_value."""
    return {
        "__type": f"Entity:{CONTRACTS}",
        "Attributes": [{"key": key, "value": sdk_value(key, value)} for key, value in attributes.items()],
        "EntityState": None,
        "FormattedValues": [],
        "Id": record_id,
        "KeyAttributes": [{"key": key, "value": value} for key, value in (key_attributes or {}).items()],
        "LogicalName": logical_name,
        "RelatedEntities": [],
        "RowVersion": row_version,
    }


@dataclass(frozen=True)
class Caller:
    """Who made the request, and in which organization (the Web API caller's token)."""

    user_id: str
    business_unit_id: str
    organization_id: str
    organization_name: str
    organization_host: str


def remote_execution_context(
    *,
    message: str,
    logical_name: str,
    record_id: str,
    target: dict[str, Any],
    caller: Caller,
    correlation_id: str,
    pre_image: dict[str, Any] | None = None,
    post_image: dict[str, Any] | None = None,
    step_id: str = "",
    operation_id: str = "",
    created_on: datetime | None = None,
) -> dict[str, Any]:
    """The RemoteExecutionContext an asynchronous post-operation webhook step posts for one write.

    target: an entity() on Create/Update, an entity_reference() on Delete. Images go under the names
    "PreImage" / "PostImage", as a step registers them.
    """
    output = [{"key": "id", "value": record_id}] if message == "Create" else []
    return {
        "BusinessUnitId": caller.business_unit_id,
        "CorrelationId": correlation_id,
        "Depth": 1,
        "InitiatingUserId": caller.user_id,
        "InputParameters": [{"key": "Target", "value": target}],
        "IsExecutingOffline": False,
        "IsInTransaction": False,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "MessageName": message,
        "Mode": 1,
        "OperationCreatedOn": wcf_date(created_on or timezone.now()),
        "OperationId": operation_id or str(uuid.uuid4()),
        "OrganizationId": caller.organization_id,
        "OrganizationName": caller.organization_name,
        "OutputParameters": output,
        "OwningExtension": {
            "Id": step_id or str(uuid.uuid4()),
            "KeyAttributes": [],
            "LogicalName": "sdkmessageprocessingstep",
            "Name": None,
            "RowVersion": None,
        },
        "ParentContext": None,
        "PostEntityImages": [{"key": "PostImage", "value": post_image}] if post_image else [],
        "PreEntityImages": [{"key": "PreImage", "value": pre_image}] if pre_image else [],
        "PrimaryEntityId": record_id,
        "PrimaryEntityName": logical_name,
        "RequestId": None,
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": 40,
        "UserId": caller.user_id,
    }


def request_headers(context: dict[str, Any], organization_host: str) -> dict[str, str]:
    """The headers Dataverse sends with a webhook (the docs' "Header Data"), less x-request-id (per attempt)."""
    return {
        "Content-Type": "application/json",
        "x-ms-dynamics-organization": organization_host,
        "x-ms-dynamics-entity-name": context["PrimaryEntityName"],
        "x-ms-dynamics-request-name": context["MessageName"],
        "x-ms-correlation-request-id": context["CorrelationId"],
    }


def _fit(context: dict[str, Any], headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    data = json.dumps(context).encode()
    if len(data) <= MAX_BODY_BYTES:
        return data, headers
    trimmed = {
        k: v
        for k, v in context.items()
        if k not in ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages")
    }
    return json.dumps(trimmed).encode(), {**headers, "x-ms-dynamics-msg-size-exceeded": "true"}


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
        data, ours = _fit(context, request_headers(context, organization_host))
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
