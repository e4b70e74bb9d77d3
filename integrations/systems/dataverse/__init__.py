"""Dynamics 365 Sales / Dataverse: Web API (OData v4) out, webhooks (RemoteExecutionContext) in."""

from integrations.systems.spec import SystemDescriptor

DESCRIPTOR = SystemDescriptor(
    kind="dataverse",
    keys="integrations.systems.dataverse.keys",
    connector="integrations.systems.dataverse.connector.DataverseConnector",
    inbound="integrations.systems.dataverse.inbound.FORMAT",
    poller="integrations.systems.dataverse.poll.read_changes",
)
