"""S/4HANA record keys in one normal form: as the entity's __metadata.uri carries it.

A single key is its value (A_SalesOrder('1') → 1, A_BusinessPartner('1000123') → 1000123); a
compound key the predicate text. SAP keys are compared as S/4 answers them: S/4 keeps case.
"""

from __future__ import annotations

import re
from typing import Any

from integrations.protocols.odata.keys import string_value

_KEY_IN_URI = re.compile(r"\(([^()]*)\)$")


def key_of_uri(uri: str) -> str:
    """The key an entity's URI carries: '1' for A_SalesOrder('1'), the predicate text for compound keys."""
    match = _KEY_IN_URI.search(uri or "")
    if not match:
        return ""
    return canonical_key(match.group(1))


def canonical_key(text: str) -> str:
    """A single key as its value (quotes dropped, also when named: SalesOrder='1' → 1); compound predicates
    and bare values unchanged. An event and an initial load name the same record by one key."""
    text = (text or "").strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    name, equals, value = text.partition("=")
    if equals and name.strip().isidentifier() and "," not in value and "=" not in value:
        text = value.strip()
    if text.startswith("'") and text.endswith("'") and "=" not in text:
        return string_value(text)
    return text


def canonical_value(field: str, value: Any) -> Any:
    return value
