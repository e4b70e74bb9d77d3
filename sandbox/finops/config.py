"""The environment's settings (the application user's default company, the currency) and number sequences."""

from __future__ import annotations

from typing import Any

from sandbox.finops.model import DEFAULT_COMPANY, EMULATOR
from sandbox.models import EmulatorRecord


def config_row(name: str) -> EmulatorRecord | None:
    return EmulatorRecord.objects.filter(emulator=EMULATOR, entity="$config", company="", key=name).first()


def settings_get() -> dict[str, Any]:
    row = config_row("settings")
    return {"default_company": DEFAULT_COMPANY, "currency": "EUR", **(row.data if row else {})}


def configure(*, default_company: str | None = None, currency: str | None = None) -> dict[str, Any]:
    """Set the application user's default company (reads without cross-company see only it) and currency."""
    values = settings_get()
    if default_company is not None:
        values["default_company"] = default_company.lower()
    if currency is not None:
        values["currency"] = currency
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
