"""The inbound ports' configuration an AX administrator sets up: document filters and the App Proxy front.

"Configuring AIF for change tracking" (AX 2012): "You must create at least one document filter. Otherwise,
no entity keys are returned from the getChangedKeys service operation." Filters are defined per port per
document service (AifDocumentFilter table) and also narrow getKeys. Here a port is named after its service
and a filter is a dict of field → value every returned document must equal ({} is a filter without ranges:
every document passes).

App Proxy: when AX is published through Azure AD Application Proxy with pre-authentication, the proxy lets
through only user tokens (delegated: scp, upn), never app-only client-credentials tokens.
"""

from __future__ import annotations

from typing import Any

from sandbox.ax2012.aif import EMULATOR
from sandbox.models import EmulatorRecord

DOCUMENT_FILTER = "AifDocumentFilter"
FRONT = "AifFront"


def set_document_filters(service: str, filters: list[dict[str, Any]] | None) -> None:
    """Configure the port's document filters; None removes them (getChangedKeys then answers no keys)."""
    if filters is None:
        EmulatorRecord.objects.filter(emulator=EMULATOR, entity=DOCUMENT_FILTER, key=service).delete()
        return
    EmulatorRecord.objects.update_or_create(
        emulator=EMULATOR,
        entity=DOCUMENT_FILTER,
        company="",
        key=service,
        defaults={"data": {"filters": [{str(k): str(v) for k, v in f.items()} for f in filters]}},
    )


def document_filters(service: str) -> list[dict[str, str]] | None:
    """The port's filters, or None when the administrator created none."""
    record = EmulatorRecord.objects.filter(emulator=EMULATOR, entity=DOCUMENT_FILTER, key=service).first()
    return None if record is None else list(record.data.get("filters", []))


def passes(fields: dict[str, Any], filters: list[dict[str, str]]) -> bool:
    """A document passes when it matches any one filter (each filter's ranges all hold)."""
    return any(all(str(fields.get(name, "")) == value for name, value in f.items()) for f in filters)


def set_app_proxy(enabled: bool) -> None:
    """Publish the AIF site through Azure AD Application Proxy (user tokens only) or not."""
    EmulatorRecord.objects.update_or_create(
        emulator=EMULATOR, entity=FRONT, company="", key="app_proxy", defaults={"data": {"enabled": enabled}}
    )


def behind_app_proxy() -> bool:
    record = EmulatorRecord.objects.filter(emulator=EMULATOR, entity=FRONT, key="app_proxy").first()
    return bool(record and record.data.get("enabled"))
