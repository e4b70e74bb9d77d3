"""Business events out of the F&O emulator: the JSON envelope F&O sends, pushed after commit to each
enabled EmulatorSubscription(emulator="finops") whose event_type is blank or the BusinessEventId, from a
small thread pool with a bounded timeout; each event and its deliveries are logged (EmulatorRecord "$event")."""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import requests
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from sandbox.finops.config import next_number
from sandbox.finops.model import EMULATOR
from sandbox.models import EmulatorRecord, EmulatorSubscription

logger = logging.getLogger(__name__)

EVENT_TIMEOUT = (2.0, 5.0)  # connect, read: a slow subscriber never holds a worker for long

_pusher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="finops-events")


def date_ms(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)})/"


def business_event(event_id: str, company: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The envelope F&O sends: the standard header fields, then the event's own (identifiers, dates, amounts).

    Business events are "lightweight and nimble", not "intended to carry large payloads" ("Business events
    overview"); a contract holds scalar data members ("Business events developer documentation"). So an
    event field that is a list or an object (an order's lines) is refused: the receiver reads those with
    OData after the event.
    """
    if structured := [name for name, value in fields.items() if isinstance(value, list | dict)]:
        raise ValueError(f"business event {event_id}: {', '.join(structured)} is not a scalar contract field")
    moment = timezone.now()
    return {
        "BusinessEventId": event_id,
        "BusinessEventLegalEntity": company.upper(),
        "ContextRecordSubject": "",
        "ControlNumber": 5637144576 + next_number("control"),
        "EventId": str(uuid.uuid4()).upper(),
        "EventTime": date_ms(moment),
        "EventTimeIso8601": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "InitiatingUserAADObjectId": "{00000000-0000-0000-0000-000000000000}",
        "MajorVersion": 0,
        "MinorVersion": 0,
        "ParentContextRecordSubjects": [],
        **fields,
    }


def raise_event(envelope: dict[str, Any]) -> None:
    """Push the event to its subscribers once the surrounding transaction has committed."""
    subscriptions = [
        (s.url, dict(s.headers or {}))
        for s in EmulatorSubscription.objects.filter(emulator=EMULATOR, enabled=True)
        if not s.event_type or s.event_type == envelope["BusinessEventId"]
    ]
    EmulatorRecord.objects.create(
        emulator=EMULATOR,
        entity="$event",
        company=envelope["BusinessEventLegalEntity"].lower(),
        key=envelope["EventId"],
        data={"envelope": envelope, "deliveries": []},
    )
    if subscriptions:
        transaction.on_commit(lambda: _pusher.submit(_push, envelope, subscriptions))


def _push(envelope: dict[str, Any], subscriptions: list[tuple[str, dict[str, str]]]) -> None:
    close_old_connections()
    try:
        deliveries = []
        for url, headers in subscriptions:
            started = time.monotonic()
            try:
                response = requests.post(url, json=envelope, headers=headers, timeout=EVENT_TIMEOUT)
                outcome = {"status": response.status_code}
            except requests.RequestException as exc:
                outcome = {"error": type(exc).__name__}
            deliveries.append({"url": url, "ms": round((time.monotonic() - started) * 1000), **outcome})
        EmulatorRecord.objects.filter(emulator=EMULATOR, entity="$event", key=envelope["EventId"]).update(
            data={"envelope": envelope, "deliveries": deliveries}
        )
    except Exception:  # a background thread must log, not die silently
        logger.exception("finops emulator: pushing business event %s failed", envelope.get("BusinessEventId"))
    finally:
        connection.close()
