"""The business chain of one correlation id, read back for the operator (console, API, chain page).

The chain's flows come from the flows' chain rules (integrations.scenarios.chains), so a step
that has not happened yet shows as waiting.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from integrations.flow_options import ChainRule, FlowOptionsError
from integrations.models import Flow, Message, RecordLink

Status = Message.Status


class ChainNotFound(Exception):
    pass


@dataclass
class ChainStep:
    flow: Flow
    label: str
    state: str  # a Message status, or "waiting" when no message has arrived for this step
    optional: bool = False
    message: Message | None = None
    link: RecordLink | None = None
    at: datetime | None = None

    @property
    def source_key(self) -> str:
        return self.message.source_record_key if self.message else ""

    @property
    def target_key(self) -> str:
        if self.link and self.link.target_key:
            return self.link.target_key
        return self.message.target_record_key if self.message else ""

    @property
    def error(self) -> str:
        return self.message.last_error if self.message else ""


@dataclass
class Chain:
    correlation_id: str
    steps: list[ChainStep] = field(default_factory=list)

    @property
    def state(self) -> str:
        """complete, attention (a step failed, died or conflicts), or in_progress."""
        if any(step.state in Message.NEEDS_ATTENTION for step in self.steps):
            return "attention"
        if all(step.state in Message.TERMINAL for step in self.steps if not step.optional):
            return "complete"
        return "in_progress"


def chain_rule(flow: Flow) -> ChainRule | None:
    """The flow's options.chain; None also when its options do not fit the schema, so one misconfigured
    flow shows as a step of its own instead of breaking every chain page (its messages fail, naming the key)."""
    try:
        return flow.opts.chain
    except FlowOptionsError:
        return None


def _step(flow: Flow) -> int:
    rule = chain_rule(flow)
    return rule.step if rule else 99


def _chain_flows(seed: list[Flow]) -> list[Flow]:
    """Every flow of the chains the seed flows belong to, roots first, then in step order."""
    all_flows = {flow.slug: flow for flow in Flow.objects.select_related("source", "target")}
    children: dict[str, list[Flow]] = {}
    for flow in all_flows.values():
        rule = chain_rule(flow)
        if rule:
            children.setdefault(rule.follows, []).append(flow)
    roots: list[Flow] = []
    for flow in seed:
        current, seen = flow, set()
        while (rule := chain_rule(current)) and rule.follows in all_flows and current.slug not in seen:
            seen.add(current.slug)
            current = all_flows[rule.follows]
        if current not in roots:
            roots.append(current)
    ordered: list[Flow] = []
    queue = deque(roots)
    while queue:
        flow = queue.popleft()
        if flow in ordered:
            continue
        ordered.append(flow)
        queue.extend(sorted(children.get(flow.slug, []), key=lambda f: (_step(f), f.slug)))
    return ordered


def chain_for(correlation_id: str) -> Chain:
    """The ordered steps of one business transaction, each with its state and cross-references.

    1. Messages with the correlation id, oldest first; none at all is ChainNotFound.
    2. The chain's flows come from the flows' chain rules, so steps that have not happened yet show as waiting.
    3. Each message step carries its RecordLink (source key → target key) when one was written.
    """
    messages = list(
        Message.objects.filter(correlation_id=correlation_id)
        .select_related("flow__source", "flow__target")
        .order_by("created_at", "pk")
    )
    if not messages:
        raise ChainNotFound(f"no message carries correlation id '{correlation_id}'")
    links = {
        (link.flow_id, link.source_key): link
        for link in RecordLink.objects.filter(
            flow__in={m.flow_id for m in messages}, source_key__in={m.source_record_key for m in messages}
        )
    }
    by_flow: dict[int, list[Message]] = {}
    for message in messages:
        by_flow.setdefault(message.flow_id, []).append(message)
    chain = Chain(correlation_id=correlation_id)
    flows = _chain_flows([m.flow for m in messages])
    for flow in [*flows, *(m.flow for m in messages if m.flow not in flows)]:
        if any(step.flow == flow for step in chain.steps):
            continue
        rule = chain_rule(flow)
        optional = bool(rule and rule.optional)
        found = [m for m in by_flow.get(flow.pk, []) if m.status != Status.DISCARDED] or by_flow.get(flow.pk, [])
        if not found:
            chain.steps.append(ChainStep(flow=flow, label=flow.name, state="waiting", optional=optional))
            continue
        for message in found:
            chain.steps.append(
                ChainStep(
                    flow=flow,
                    label=flow.name,
                    state=message.status,
                    optional=optional,
                    message=message,
                    link=links.get((flow.pk, message.source_record_key)),
                    at=message.delivered_at or message.created_at,
                )
            )
    return chain


def chain_as_dict(chain: Chain) -> dict[str, Any]:
    """The chain as JSON for the API and for tests."""
    return {
        "correlation_id": chain.correlation_id,
        "state": chain.state,
        "steps": [
            {
                "flow": step.flow.slug,
                "label": step.label,
                "state": step.state,
                "optional": step.optional,
                "message_id": step.message.pk if step.message else None,
                "source_key": step.source_key,
                "target_key": step.target_key,
                "at": step.at.isoformat() if step.at else None,
                "error": step.error,
            }
            for step in chain.steps
        ],
    }
