"""The system kinds icbridge speaks: the one registration of each.

Adding a system is one package, integrations/systems/<kind>/ (its descriptor in __init__.py:
connector, inbound event format, poller, capabilities), its emulator under sandbox/<kind>/,
its tests, and one line here. System.Kind and every lookup by kind read this table.
"""

from __future__ import annotations

# kind → label; the order is the choices' order (a change is a migration of System.kind).
KINDS: dict[str, str] = {
    "ax2012": "Dynamics AX 2012 (AIF)",
    "finops": "Dynamics 365 Finance & Operations",
    "dataverse": "Dynamics 365 Sales / Dataverse",
    "s4hana": "SAP S/4HANA",
    "recorder": "Recorder (sandbox test target)",
}
