"""Preview: what a flow's mapping (or a draft of it) makes of a sample payload; nothing is sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from integrations import mapping
from integrations.errors import MappingError
from integrations.models import Flow
from integrations.pipeline.prepare import mapping_context


@dataclass
class Preview:
    """What a spec makes of a sample payload; nothing is sent."""

    output: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    error_field: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"errors": self.errors} if self.errors else {"output": self.output}


def mapping_preview(*, flow: Flow, payload: Any, spec: dict[str, Any] | None = None) -> Preview:
    """Map a sample payload with the flow's current spec, or a draft; the flow's CompanyLink is the context."""
    draft = flow.mapping_spec if spec is None else spec
    if not isinstance(payload, dict):
        return Preview(errors=["the sample payload must be a JSON object"])
    problems = mapping.validate_spec(draft)
    if problems:
        return Preview(errors=problems)
    try:
        output = mapping.apply(spec=draft, payload=payload, context=mapping_context(flow))
    except MappingError as exc:
        return Preview(errors=[exc.message], error_field=exc.field)
    return Preview(output=output)
