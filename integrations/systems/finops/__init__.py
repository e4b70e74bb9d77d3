"""Dynamics 365 Finance & Operations: OData data entities and custom services out, business events in,
change feeds polled, deep links into its forms, synchronous service calls."""

from integrations.systems.spec import SystemDescriptor

DESCRIPTOR = SystemDescriptor(
    kind="finops",
    keys="integrations.systems.finops.keys",
    connector="integrations.systems.finops.connector.FinOpsConnector",
    inbound="integrations.systems.finops.inbound.FORMAT",
    poller="integrations.systems.finops.poll.read_changes",
    capabilities=frozenset({"deeplinks", "sync_calls"}),
)
