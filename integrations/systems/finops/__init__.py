"""Dynamics 365 Finance & Operations: OData data entities and custom services out, business events in,
change feeds polled, deep links into its forms, synchronous service calls."""

from integrations.systems.spec import SystemDescriptor

DESCRIPTOR = SystemDescriptor(
    kind="finops",
    connector_class="FinOpsConnector",
    modules=("inbound", "poll", "keys"),
    capabilities=frozenset({"deeplinks", "sync_calls"}),
)
