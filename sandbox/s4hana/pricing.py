"""Pricing, simplified: one PR00 price condition record per material, net value = price × quantity.

Real S/4 prices a sales order item through its pricing procedure (condition technique: access sequence,
condition records per sales organization, customer and material; SAP Help "Pricing and Conditions",
"Condition Technique"). The emulator keeps one condition record per material in the sales
organization's currency and no discounts, surcharges or taxes: enough for order and billing totals that
are real numbers. NetAmount and TotalNetAmount are computed here, never taken from the request
(sap:creatable="false" in API_SALES_ORDER_SRV's $metadata).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

# Condition type PR00 (price) per material, per 1 unit: the demo's items (integrations/scenarios/traffic.py).
PRICE_CONDITIONS: dict[str, Decimal] = {
    "A0001": Decimal("12.50"),
    "A0002": Decimal("7.90"),
    "B0110": Decimal("64.00"),
    "C0420": Decimal("3.35"),
    "D1000": Decimal("1.20"),
}
CENTS = Decimal("0.01")


def price_item(item: dict[str, Any]) -> None:
    """Set an item's NetAmount from its material's condition record (0 when the material has none:
    S/4 then marks the item's pricing incomplete, which the emulator does not model)."""
    price = PRICE_CONDITIONS.get(str(item.get("Material") or ""), Decimal(0))
    quantity = Decimal(str(item.get("RequestedQuantity") or 0))
    item["NetAmount"] = format((price * quantity).quantize(CENTS), "f")


def total_of(items: list[dict[str, Any]]) -> str:
    """The header's TotalNetAmount: the sum of its items' net values."""
    return format(sum((Decimal(str(i.get("NetAmount") or 0)) for i in items), Decimal(0)).quantize(CENTS), "f")
