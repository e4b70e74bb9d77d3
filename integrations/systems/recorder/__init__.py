"""The sandbox recorder: a plain JSON target that logs every write (tests and the demo)."""

from integrations.systems.spec import SystemDescriptor

DESCRIPTOR = SystemDescriptor(kind="recorder", connector_class="RecorderConnector")
