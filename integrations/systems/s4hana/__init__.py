"""SAP S/4HANA: OData v2 APIs out (CSRF, deep insert, $batch), Event Mesh CloudEvents in."""

from integrations.systems.spec import SystemDescriptor

DESCRIPTOR = SystemDescriptor(
    kind="s4hana",
    keys="integrations.systems.s4hana.keys",
    connector="integrations.systems.s4hana.connector.S4HanaConnector",
    inbound="integrations.systems.s4hana.inbound.FORMAT",
)
