"""The emulators the hub serves under /sandbox/<name>/: the one registration of each.

Adding an emulator is one package, sandbox/<name>/ (its DESCRIPTOR in __init__.py: name, URL module,
reset), and one line below. The URL conf, the control API and the console read this list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import import_module

EMULATORS: tuple[str, ...] = ("recorder", "azuread", "dataverse", "finops", "ax2012", "s4hana")


@dataclass(frozen=True)
class Emulator:
    name: str  # its URL prefix (/sandbox/<name>/) and FaultSettings.emulator
    urls: str  # the module of its urlpatterns
    reset: Callable[[], None]  # delete its data (the control API's reset; faults are cleared by the caller)


@cache
def descriptor(name: str) -> Emulator:
    """The descriptor of a registered emulator; KeyError for a name nobody registered."""
    if name not in EMULATORS:
        raise KeyError(f"no emulator '{name}' is registered (sandbox.registry)")
    found = import_module(f"sandbox.{name}").DESCRIPTOR
    if found.name != name:
        raise KeyError(f"sandbox.{name} describes itself as '{found.name}'")
    return found


def descriptors() -> list[Emulator]:
    return [descriptor(name) for name in EMULATORS]
