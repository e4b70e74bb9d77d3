"""Dynamics AX 2012: AIF document services over SOAP (zeep); no push, so it is polled (getChangedKeys)."""

from integrations.systems.spec import SystemDescriptor

DESCRIPTOR = SystemDescriptor(kind="ax2012", connector_class="Ax2012Connector", modules=("poll", "keys"))
