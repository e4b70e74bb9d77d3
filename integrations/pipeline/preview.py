"""Preview: what a flow's mapping (or a draft of it) makes of a sample payload; nothing is sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from integrations import mapping
from integrations.errors import MappingError, TransientError
from integrations.models import Flow, Message
from integrations.pipeline.prepare import mapping_context
from integrations.scenarios import chains


@dataclass
class Preview:
    """What a spec makes of a sample payload; nothing is sent."""

    output: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    error_field: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"errors": self.errors} if self.errors else {"output": self.output}


def mapping_preview(*, flow: Flow, payload: Any, spec: dict[str, Any] | None = None) -> Preview:
    """Map a sample payload with the flow's current spec, or a draft, in the context the pipeline gives it.

    The context is the flow's CompanyLink and, for a flow that continues a chain, the chain's links.
    """
    draft = flow.mapping_spec if spec is None else spec
    if not isinstance(payload, dict):
        return Preview(errors=["the sample payload must be a JSON object"])
    problems = mapping.validate_spec(draft)
    if problems:
        return Preview(errors=problems)
    try:
        chain = _chain_context(flow, payload)
        output = mapping.apply(spec=draft, payload=payload, context={**mapping_context(flow), **chain})
    except MappingError as exc:
        return Preview(errors=[exc.message], error_field=exc.field)
    except TransientError as exc:  # the chain's link is not written yet: say which, as the pipeline would
        return Preview(errors=[f"chain context: {exc}"])
    return Preview(output=output)


def _chain_context(flow: Flow, payload: dict[str, Any]) -> dict[str, Any]:
    """What message_prepare adds for a chained flow: the links ($ctx.chain.<as>…) the sample's keys find.

    An unsaved Message carries the sample: message_link_context writes only to a stored message (its
    correlation id), so the preview changes nothing.
    """
    if not flow.opts.chain and not flow.opts.links:
        return {}
    return chains.message_link_context(message=Message(flow=flow, payload_in=payload, correlation_id=""))
