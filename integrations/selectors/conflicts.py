"""A conflict, field by field: ours (what we would write) against theirs (the target now)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from integrations.models import Message


def is_annotation(name: str) -> bool:
    """OData annotations and metadata (@odata.etag, x@OData.Community.Display.V1.FormattedValue, __metadata)."""
    return name.startswith("@") or "@odata." in name.lower() or name == "__metadata"


@dataclass
class FieldDiff:
    field: str
    ours: str
    theirs: str
    state: str  # "same", "changed", "case" (differs only in letter case), "ours-only", "theirs-only"

    @property
    def differs(self) -> bool:
        # A field only one side has is not a change: we do not write it, or the target does not return it.
        return self.state in ("changed", "case")


def _shown(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _state(name: str, ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    if name not in theirs:
        return "ours-only"
    if name not in ours:
        return "theirs-only"
    a, b = ours[name], theirs[name]
    if a == b:
        return "same"
    if isinstance(a, str) and isinstance(b, str) and a.casefold() == b.casefold():
        return "case"
    return "changed"


def conflict_diff(*, message: Message) -> list[FieldDiff]:
    """Every business field of either side, annotations left out; the differing ones say how they differ."""
    ours = message.payload_out if isinstance(message.payload_out, dict) else {}
    theirs = message.target_snapshot if isinstance(message.target_snapshot, dict) else {}
    names = sorted(name for name in set(ours) | set(theirs) if not is_annotation(name))
    return [
        FieldDiff(
            field=name,
            ours=_shown(ours[name]) if name in ours else "—",
            theirs=_shown(theirs[name]) if name in theirs else "—",
            state=_state(name, ours, theirs),
        )
        for name in names
    ]
