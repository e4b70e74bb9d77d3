"""SAP S/4HANA: OData v2 APIs out (CSRF, deep insert, $batch), Event Mesh CloudEvents in."""

from integrations.systems.spec import SystemDescriptor

DESCRIPTOR = SystemDescriptor(kind="s4hana", connector_class="S4HanaConnector", modules=("inbound", "keys"))
