"""Reading stored events: dotted paths into a payload, and the event as the pipeline maps it.

Shared by the scenario rules (chains, echo) and the pipeline's prepare stage, so neither imports
the other for them.
"""

from __future__ import annotations

from typing import Any

from integrations.models import Message


def payload_value(payload: Any, path: str) -> Any:
    """A dotted path into a payload: dict keys, list indices, and Dataverse key/value attribute lists."""
    value = payload
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdecimal() and len(part) < 10 and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, list) and all(isinstance(item, dict) and "key" in item for item in value):
            # Dataverse RemoteExecutionContext: [{"key": "accountid", "value": ...}, ...]
            value = next((item.get("value") for item in value if item["key"] == part), None)
            if value is None:
                return None
        else:
            return None
    return value


def message_payload(message: Message) -> dict[str, Any]:
    """The event as received (payload_in) with what the source or a read-back added (payload_fetched).

    payload_fetched holds whole top-level keys ("attributes" of a completed truncated event,
    "fetched" documents of a key-only one); they replace the received event's keys of that name.
    """
    received = message.payload_in if isinstance(message.payload_in, dict) else {}
    fetched = message.payload_fetched if isinstance(message.payload_fetched, dict) else None
    return {**received, **fetched} if fetched else received
