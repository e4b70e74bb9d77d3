"""Dynamics 365 Sales / Dataverse: Web API (OData v4) out, webhooks (RemoteExecutionContext) in."""

from integrations.systems.spec import SystemDescriptor

DESCRIPTOR = SystemDescriptor(
    kind="dataverse",
    connector_class="DataverseConnector",
    modules=("inbound", "poll", "keys"),
)
