"""Dataverse record keys in one normal form: the primary id GUID as the Web API answers it.

Dataverse answers GUIDs in lower case without braces (OData-EntityId, <table>id columns); events,
SDK clients and operators may write {B5A4...} or upper case. Alternate-key text is kept as it is.
"""

from __future__ import annotations

import uuid
from typing import Any


def canonical_key(text: str) -> str:
    """A GUID lower case without braces; anything else (an alternate key) unchanged.

    A record's primary id written as a one-field predicate (accountid='<guid>', the initial load's form)
    is that GUID: a webhook, a change-tracking poll and a load name one record by one key.
    """
    try:
        return str(uuid.UUID(text.strip().strip("{}")))
    except (ValueError, AttributeError):
        pass
    name, equals, value = text.partition("=")
    if equals and name.strip().isidentifier() and "," not in value:
        try:
            return str(uuid.UUID(value.strip().strip("'").strip("{}")))
        except ValueError:
            return text
    return text


def canonical_value(field: str, value: Any) -> Any:
    """A GUID-valued field as Dataverse answers it; other values unchanged."""
    return canonical_key(value) if isinstance(value, str) and len(value.strip("{} ")) == 36 else value
