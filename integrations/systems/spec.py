"""What a system kind's package declares about itself, once, in its __init__.py."""

from __future__ import annotations

from dataclasses import dataclass, field

# The optional modules of a kind's package (integrations/systems/<kind>/) and what the registry loads of each.
MODULES = {"inbound": "inbound.FORMAT", "poll": "poll.read_changes", "keys": "keys"}


@dataclass(frozen=True)
class SystemDescriptor:
    """One system kind: its connector class, which optional modules its package has, and what it can do.

    Every part lives where the house layout puts it (integrations/systems/<kind>/{connector, inbound,
    poll, keys}.py), so a descriptor states only what differs between kinds; the registry reads the
    dotted paths below. Dotted paths keep a kind's heavy imports (zeep, msal) out of processes that
    never use it.
    """

    kind: str
    connector_class: str  # "FinOpsConnector", defined in <package>.connector
    # Of MODULES: "inbound" (an InboundFormat FORMAT, if it pushes events to the hub), "poll"
    # (read_changes, for flows with trigger "poll") and "keys" (its key normal form: canonical_key(text)
    # and canonical_value(field, value), the form the system answers with; RecordLinks, echo screening
    # and reconciliation compare keys in it).
    modules: tuple[str, ...] = ()
    # What the scenarios may ask of it: "deeplinks" (URLs into its forms), "sync_calls" (synchronous
    # service calls such as an availability check). Batch writes are the connector's batch_capable.
    capabilities: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.modules) - set(MODULES))
        if unknown:
            raise ValueError(
                f"system kind {self.kind}: no such module {', '.join(unknown)} (one of {', '.join(MODULES)})"
            )

    @property
    def package(self) -> str:
        return f"integrations.systems.{self.kind}"

    @property
    def connector(self) -> str:
        return f"{self.package}.connector.{self.connector_class}"

    @property
    def inbound(self) -> str:
        return self._path("inbound")

    @property
    def poller(self) -> str:
        return self._path("poll")

    @property
    def keys(self) -> str:
        return self._path("keys")

    def _path(self, module: str) -> str:
        """The dotted path of that part, or "" where the kind's package has no such module."""
        return f"{self.package}.{MODULES[module]}" if module in self.modules else ""
