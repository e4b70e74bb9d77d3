"""Connector registry: one module per system kind, built once per System per process."""

from __future__ import annotations

import threading
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from integrations.models import System
    from integrations.protocols.transport import Connector

# Dotted paths keep a connector's heavy imports (zeep, msal) out of processes that never use it.
CONNECTORS: dict[str, str] = {
    "recorder": "integrations.systems.recorder.connector.RecorderConnector",
    "dataverse": "integrations.systems.dataverse.connector.DataverseConnector",
    "finops": "integrations.systems.finops.connector.FinOpsConnector",
    "ax2012": "integrations.systems.ax2012.connector.Ax2012Connector",
    "s4hana": "integrations.systems.s4hana.connector.S4HanaConnector",
}

_cache: dict[int, tuple[object, Connector]] = {}
_lock = threading.Lock()


def connector_class(kind: str) -> type[Connector]:
    module_name, class_name = CONNECTORS[kind].rsplit(".", 1)
    return getattr(import_module(module_name), class_name)


def get_connector(system: System) -> Connector:
    """The process's connector for this System, rebuilt when the System was edited."""
    stamp = (system.updated_at, system.kind)
    with _lock:
        cached = _cache.get(system.pk)
        if cached and cached[0] == stamp:
            return cached[1]
        if cached:
            cached[1].close()
        connector = connector_class(system.kind)(system)
        _cache[system.pk] = (stamp, connector)
        return connector


def clear_cache() -> None:
    with _lock:
        for _, connector in _cache.values():
            connector.close()
        _cache.clear()
