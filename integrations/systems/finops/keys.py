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

from integrations.protocols.odata import keys
from integrations.protocols.odata.errors import ODataError

COMPANY = "dataAreaId"


def format_key(company: str, key: dict[str, Any]) -> str:
    """dataAreaId='se01',SalesOrderNumber='SO-1': the normal form (company lower-cased, quotes doubled)."""
    values = {COMPANY: str(company or key.get(COMPANY, "")).lower()}
    values.update((name, value) for name, value in key.items() if name != COMPANY)
    return keys.format_key(values, url=True)


def company_filter(company: str, fields: dict[str, Any]) -> str:
    """$filter for the rows of one company (dataAreaId lower case, as F&O holds it) with these field values."""
    clauses = [f"{COMPANY} eq {keys.literal(company.lower())}"]
    clauses += [f"{name} eq {keys.literal(value)}" for name, value in fields.items() if name != COMPANY]
    return " and ".join(clauses)


def parse_key(text: str) -> dict[str, Any]:
    """The fields of a key predicate (URL-quoted or not): {"dataAreaId": "se01", "CustomerAccount": "C-1"}."""
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    parsed = keys.parse_key(text)
    if not isinstance(parsed, dict):
        raise ValueError(f"{text!r} is not a named F&O key")
    return parsed


def canonical_key(text: str) -> str:
    """Any F&O key text (from a Location, a poll, an old RecordLink, an event) in the normal form."""
    if not text or "=" not in text:
        return text
    try:
        fields = parse_key(text)
    except (ValueError, ODataError):
        return text
    if COMPANY not in fields:
        return text
    return format_key(str(fields.pop(COMPANY)), fields)


def canonical_value(field: str, value: Any) -> Any:
    """One key field's value as F&O answers it (dataAreaId lower case), for field-by-field comparison."""
    return str(value).lower() if field == COMPANY and isinstance(value, str) else value
