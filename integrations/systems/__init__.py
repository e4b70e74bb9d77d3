"""The system kinds' registry: each kind's descriptor, and its connector built once per System per process.

A kind registers once, in integrations.kinds; its package integrations.systems.<kind> holds the
descriptor (connector, inbound format, poller, capabilities). Nothing else is keyed by kind.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from integrations.kinds import KINDS

if TYPE_CHECKING:
    from integrations.models import System
    from integrations.protocols.events import InboundFormat
    from integrations.protocols.transport import Connector
    from integrations.systems.spec import SystemDescriptor

_cache: dict[int, tuple[object, Connector]] = {}
_lock = threading.Lock()


def _load(dotted: str) -> Any:
    module_name, name = dotted.rsplit(".", 1)
    return getattr(import_module(module_name), name)


@cache
def descriptor(kind: str) -> SystemDescriptor:
    """The descriptor of a registered kind; KeyError for a kind nobody registered."""
    if kind not in KINDS:
        raise KeyError(f"no system kind '{kind}' is registered (integrations.kinds)")
    return import_module(f"{__name__}.{kind}").DESCRIPTOR


def descriptors() -> list[SystemDescriptor]:
    return [descriptor(kind) for kind in KINDS]


def kinds_with(capability: str) -> list[str]:
    return [d.kind for d in descriptors() if capability in d.capabilities]


def has(kind: str, capability: str) -> bool:
    return kind in KINDS and capability in descriptor(kind).capabilities


def inbound_format(kind: str) -> InboundFormat | None:
    """The kind's sender format, or None for a kind that does not push events to the hub."""
    path = descriptor(kind).inbound
    return _load(path) if path else None


def inbound_formats() -> list[InboundFormat]:
    """Every registered sender format, in registration order."""
    return [fmt for fmt in map(inbound_format, KINDS) if fmt]


def poller(kind: str) -> Any:
    """The kind's poll(*, flow) function, or None for a kind that pushes or is never a source."""
    path = descriptor(kind).poller if kind in KINDS else ""
    return _load(path) if path else None


def pollable_kinds() -> list[str]:
    return [d.kind for d in descriptors() if d.poller]


def canonical_key(kind: str, text: str) -> str:
    """A record key of this kind's system in its normal form (the form the system answers with)."""
    module = descriptor(kind).keys if kind in KINDS and text else ""
    return import_module(module).canonical_key(text) if module else text


def canonical_value(kind: str, field: str, value: Any) -> Any:
    """One key field's value in this kind's normal form, for field-by-field comparison."""
    module = descriptor(kind).keys if kind in KINDS else ""
    return import_module(module).canonical_value(field, value) if module else value


def connector_class(kind: str) -> type[Connector]:
    return _load(descriptor(kind).connector)


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
