"""The environment's settings (the application user's default company, the currency) and number sequences."""

from __future__ import annotations

from typing import Any

from sandbox.finops.model import DEFAULT_COMPANY, EMULATOR
from sandbox.models import EmulatorRecord


def config_row(name: str) -> EmulatorRecord | None:
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity="$config", company="", key=name).first()


# Customer customizations the environment has deployed, not standard F&O. "order_holds": the X++ service
# IcbOrderHoldServices/IcbOrderHoldService/clearHold and the custom business event
# SalesOrderHoldPlacedBusinessEvent (standard F&O has neither; a customer writes them, see "Business events
# developer documentation" https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/business-events/business-events-dev-doc
# and "Service endpoints" for custom services). On by default, as the prospect-to-cash template needs them.
CUSTOMIZATIONS = ("order_holds",)


def settings_get() -> dict[str, Any]:
    row = config_row("settings")
    defaults = {
        "default_company": DEFAULT_COMPANY,
        "currency": "EUR",
        "customizations": list(CUSTOMIZATIONS),
        "job_seconds": 0.0,
    }
    return {**defaults, **(row.data if row else {})}


def customization_deployed(name: str) -> bool:
    return name in settings_get()["customizations"]


def configure(
    *,
    default_company: str | None = None,
    currency: str | None = None,
    customizations: list[str] | None = None,
    job_seconds: float | None = None,
) -> dict[str, Any]:
    """Set the application user's default company (reads without cross-company see only it), the currency,
    which customizations (CUSTOMIZATIONS) the environment has deployed, and how long a data management
    execution's batch job runs (0: inside the ExportToPackage / ImportFromPackage call)."""
    values = settings_get()
    if job_seconds is not None:
        if job_seconds < 0:
            raise ValueError(f"job_seconds must be 0 or more, got {job_seconds}")
        values["job_seconds"] = float(job_seconds)
    if default_company is not None:
        values["default_company"] = default_company.lower()
    if currency is not None:
        values["currency"] = currency
    if customizations is not None:
        unknown = set(customizations) - set(CUSTOMIZATIONS)
        if unknown:
            raise ValueError(f"unknown customization(s): {', '.join(sorted(unknown))}")
        values["customizations"] = list(customizations)
    EmulatorRecord.objects.update_or_create(
        emulator=EMULATOR, entity="$config", company="", key="settings", defaults={"data": values}
    )
    return values


def next_number(counter: str) -> int:
    """A per-emulator number sequence (control numbers, packing slips, invoices), safe under concurrency."""
    row, _ = EmulatorRecord.objects.select_for_update().get_or_create(
        emulator=EMULATOR, entity="$config", company="", key="counters", defaults={"data": {}}
    )
    value = int(row.data.get(counter, 0)) + 1
    row.data[counter] = value
    row.save(update_fields=["data", "modified_at"])
    return value
