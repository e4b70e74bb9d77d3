"""What a system kind's package declares about itself, once, in its __init__.py."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SystemDescriptor:
    """One system kind: where its connector, inbound format and poller live, and what it can do.

    Dotted paths keep a kind's heavy imports (zeep, msal) out of processes that never use it.
    """

    kind: str
    connector: str  # "integrations.systems.finops.connector.FinOpsConnector"
    inbound: str = ""  # its sender format (an InboundFormat), if it pushes events to the hub
    poller: str = ""  # poll(*, flow) for flows with trigger "poll", if it must be polled
    # Its key normal form: a module with canonical_key(text) and canonical_value(field, value), the form
    # the system answers with; RecordLinks, echo screening and reconciliation compare keys in it.
    keys: str = ""
    # What the scenarios may ask of it: "deeplinks" (URLs into its forms), "sync_calls" (synchronous
    # service calls such as an availability check). Batch writes are the connector's batch_capable.
    capabilities: frozenset[str] = field(default_factory=frozenset)
