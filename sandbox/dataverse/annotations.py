"""Instance annotations a read answers when `Prefer: odata.include-annotations` asks for them.

A lookup's `_<lookup>_value` carries the related row's table and its primary name:
`_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname: "account"` and
`_customerid_value@OData.Community.Display.V1.FormattedValue: "Contoso"`. The preference names terms: "*" is
all of them, "Microsoft.Dynamics.CRM.*" a namespace, and a leading "-" leaves a term or namespace out ("-*":
none). "Select columns using OData" (formatted values, lookup property values):
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/select-columns
Simplified (docs/sandbox.md): only lookups are annotated, and only those naming a row of a table the sandbox
holds; no formatted values of choices, money or dates, no associatednavigationproperty.
"""

from __future__ import annotations

from typing import Any

from sandbox.dataverse.store import Call
from sandbox.dataverse.tables import EMULATOR, LOOKUP_TARGETS, LOOKUP_VALUE, TABLES, primary_name
from sandbox.models import EmulatorRecord

LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
FORMATTED = "OData.Community.Display.V1.FormattedValue"
PREFERENCE = "odata.include-annotations"


def _wanted(call: Call) -> tuple[list[str], str]:
    """The terms the caller's preference takes, and the preference as it came (to say it was applied)."""
    asked = call.prefer().get(PREFERENCE)
    if not asked:
        return [], ""
    patterns = [part.strip() for part in asked.split(",") if part.strip()]

    def matches(pattern: str, term: str) -> bool:
        return pattern == "*" or pattern == term or (pattern.endswith(".*") and term.startswith(pattern[:-1]))

    terms = [
        term
        for term in (LOGICAL_NAME, FORMATTED)
        if any(matches(p, term) for p in patterns) and not any(matches(p[1:], term) for p in patterns if p[:1] == "-")
    ]
    return terms, asked


def annotate(call: Call, values: list[dict[str, Any]]) -> str:
    """The answered rows' lookups annotated in place (one query for the page); the Preference-Applied entry,
    or "" when no annotation was asked for."""
    terms, asked = _wanted(call)
    if not asked:
        return ""
    ids = {value for row in values for name, value in row.items() if LOOKUP_VALUE.match(name) and value}
    rows = EmulatorRecord.objects.filter(
        emulator=EMULATOR, entity__in=list(TABLES), deleted=False, key__in=[str(i) for i in ids]
    )
    related = {(record.entity, record.key): record for record in rows}
    by_id = {key: record for (_, key), record in related.items()}
    for row in values:
        for name, value in list(row.items()):
            match = LOOKUP_VALUE.match(name)
            if not match or not isinstance(value, str):
                continue
            # A lookup with one target table is read there; a polymorphic one (customerid) wherever the id is.
            target = LOOKUP_TARGETS.get(match.group("lookup"))
            record = related.get((target, value)) if target else by_id.get(value)
            if record is None:
                continue
            annotations = {
                LOGICAL_NAME: TABLES[record.entity].logical_name,
                FORMATTED: primary_name(record.entity, record.data),
            }
            row.update({f"{name}@{term}": annotations[term] for term in terms if annotations[term] is not None})
    return f'{PREFERENCE}="{asked}"'
