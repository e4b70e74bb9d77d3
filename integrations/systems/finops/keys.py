"""F&O record keys in one normal form: the form F&O answers with.

A data entity's key is dataAreaId plus its own key fields, written as the OData key predicate the
connector addresses it by: dataAreaId='se01',CustomerAccount='C-1' (quotes doubled, numbers bare,
URL-quoted as in the request path). F&O answers dataAreaId in lower case whatever case it was sent
in (https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/odata, "cross-company"),
so the normal form lowercases it; every other value is kept as it is. RecordLinks, echo screening and
reconciliation compare keys in this form only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

COMPANY = "dataAreaId"


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def format_key(company: str, key: dict[str, Any]) -> str:
    """dataAreaId='se01',SalesOrderNumber='SO-1': the normal form (company lower-cased, quotes doubled)."""
    values = {**key, COMPANY: str(company or key.get(COMPANY, "")).lower()}
    ordered = {COMPANY: values.pop(COMPANY), **values}
    return ",".join(f"{name}={quote(_render(value), safe=chr(39) + '=,')}" for name, value in ordered.items())


def parse_key(text: str) -> dict[str, Any]:
    """The fields of a key predicate (quoted or not): {"dataAreaId": "se01", "CustomerAccount": "C-1"}."""
    text = unquote(text.strip())
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    fields: dict[str, Any] = {}
    position = 0
    while position < len(text):
        equals = text.index("=", position)
        name = text[position:equals].strip()
        position = equals + 1
        if text[position : position + 1] == "'":
            value, position = _quoted(text, position)
        else:
            end = text.find(",", position)
            end = len(text) if end < 0 else end
            raw = text[position:end].strip()
            value = int(raw) if raw.lstrip("-").isdigit() else raw
            position = end
        fields[name] = value
        position += 1  # the comma
    return fields


def _quoted(text: str, start: int) -> tuple[str, int]:
    chars: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == "'":
            if text[position + 1 : position + 2] == "'":
                chars.append("'")
                position += 2
                continue
            return "".join(chars), position + 1
        chars.append(char)
        position += 1
    raise ValueError(f"unterminated quote in key {text!r}")


def canonical_key(text: str) -> str:
    """Any F&O key text (from a Location, a poll, an old RecordLink, an event) in the normal form."""
    if not text or "=" not in text:
        return text
    try:
        fields = parse_key(text)
    except ValueError:
        return text
    if COMPANY not in fields:
        return text
    return format_key(str(fields.pop(COMPANY)), fields)


def canonical_value(field: str, value: Any) -> Any:
    """One key field's value as F&O answers it (dataAreaId lower case), for field-by-field comparison."""
    return str(value).lower() if field == COMPANY and isinstance(value, str) else value
