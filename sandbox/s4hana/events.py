"""Business events out of the emulator: CloudEvents pushed after commit to EmulatorSubscription rows
(emulator "s4hana") with a bounded timeout."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import requests
from django.db import transaction

from sandbox.models import EmulatorSubscription
from sandbox.s4hana.model import EntitySet
from sandbox.s4hana.store import CLIENT, EMULATOR, SYSTEM_ID

logger = logging.getLogger(__name__)

EVENT_SOURCE = f"/default/sap.s4.beh/{SYSTEM_ID}CLNT{CLIENT}"
PUSH_TIMEOUT_SECONDS = 3.0
# Entity sets whose writes raise business events: event type prefix and the data key.
EVENTS = {
    ("API_SALES_ORDER_SRV", "A_SalesOrder"): ("sap.s4.beh.salesorder.v1.SalesOrder", "SalesOrder"),
    ("API_BUSINESS_PARTNER", "A_BusinessPartner"): ("sap.s4.beh.businesspartner.v1.BusinessPartner", "BusinessPartner"),
    ("API_OUTBOUND_DELIVERY_SRV", "A_OutbDeliveryHeader"): (
        "sap.s4.beh.outbounddelivery.v1.OutboundDelivery",
        "OutboundDelivery",
    ),
    ("API_BILLING_DOCUMENT_SRV", "A_BillingDocument"): (
        "sap.s4.beh.billingdocument.v1.BillingDocument",
        "BillingDocument",
    ),
}


def event_data(service: str, entity_set: EntitySet, data: dict[str, Any]) -> dict[str, Any]:
    prefix, name = EVENTS[(service, entity_set.name)]
    return {"type_prefix": prefix, "data": {name: data[entity_set.keys[0]]}}


def push_events(events: list[tuple[str, dict[str, Any]]]) -> None:
    """After commit: send each event to its subscribers, in a thread so the OData answer is not held up."""
    cloud_events = []
    for action, event in events:
        cloud_events.append(
            {
                "type": f"{event['type_prefix']}.{action}.v1",
                "specversion": "1.0",
                "source": EVENT_SOURCE,
                "id": str(uuid.uuid4()),
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "datacontenttype": "application/json",
                "data": event["data"],
            }
        )
    subscriptions = list(EmulatorSubscription.objects.filter(emulator=EMULATOR, enabled=True))
    deliveries = [
        (s.url, s.headers, ce)
        for ce in cloud_events
        for s in subscriptions
        if not s.event_type or s.event_type == ce["type"]
    ]
    if deliveries:
        threading.Thread(target=_send, args=(deliveries,), daemon=True, name="s4hana-events").start()


def _send(deliveries: list[tuple[str, dict[str, str], dict[str, Any]]]) -> None:
    with requests.Session() as session:
        for url, headers, cloud_event in deliveries:
            try:
                response = session.post(
                    url,
                    data=json.dumps(cloud_event),
                    headers={"Content-Type": "application/cloudevents+json", **headers},
                    timeout=PUSH_TIMEOUT_SECONDS,
                )
                if response.status_code >= 300:
                    logger.warning(
                        "s4hana event %s refused by subscriber: HTTP %s", cloud_event["type"], response.status_code
                    )
            except requests.RequestException as exc:
                logger.warning("s4hana event %s not delivered: %s", cloud_event["type"], type(exc).__name__)


def push_after_commit(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Push the events once the surrounding transaction commits (not at all if it rolls back)."""
    if events:
        transaction.on_commit(lambda: push_events(events))
