"""Custom services (/api/services/<group>/<service>/<operation>): listing them, and calling an operation."""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction
from django.http import HttpRequest

from sandbox.common.result import Result
from sandbox.finops.auth import error
from sandbox.finops.config import customization_deployed
from sandbox.finops.operations import (
    ServiceFault,
    check_availability,
    clear_hold,
    confirm_sales_order,
    place_hold,
    post_invoice,
    post_packing_slip,
)

ORDER = [("_dataAreaId", "String"), ("_salesOrderNumber", "String")]
SERVICES: dict[str, dict[str, dict[str, tuple[Any, list[tuple[str, str]], str]]]] = {
    "IcbAvailabilityServices": {
        "IcbAvailabilityService": {
            "checkAvailability": (
                check_availability,
                [("_dataAreaId", "String"), ("_itemNumber", "String"), ("_quantity", "Real")],
                "IcbAvailabilityContract",
            ),
        }
    },
    "IcbSandboxServices": {
        "IcbSalesOrderService": {
            **{
                op: (fn, ORDER, "IcbDocumentContract")
                for op, fn in (
                    ("confirm", confirm_sales_order),
                    ("postPackingSlip", post_packing_slip),
                    ("postInvoice", post_invoice),
                )
            },
            "placeHold": (place_hold, [*ORDER, ("_holdCode", "String"), ("_holdReason", "String")], "IcbHoldContract"),
        }
    },
    "IcbOrderHoldServices": {
        "IcbOrderHoldService": {
            "clearHold": (
                clear_hold,
                [*ORDER, ("_holdCode", "String"), ("_clearedBy", "String")],
                "IcbHoldContract",
            ),
        }
    },
}


# Service groups that are customer customizations (sandbox.finops.config.CUSTOMIZATIONS), not standard F&O.
CUSTOM_GROUPS = {"IcbOrderHoldServices": "order_holds"}


def _service_fault(text: str) -> Result:
    return Result.json(
        {
            "Message": f"An exception occured when invoking the operation - {text}",
            "ExceptionType": "XppServicesException",
            "ExceptionMessage": text,
            "StackTrace": "",
        },
        500,
    )


def services(request: HttpRequest, rest: str) -> Result:
    parts = [p for p in rest.split("/") if p]
    # An environment without a customization has no such service group (CUSTOM_GROUPS).
    available = {
        g: v for g, v in SERVICES.items() if g not in CUSTOM_GROUPS or customization_deployed(CUSTOM_GROUPS[g])
    }
    if request.method == "GET" or not parts:
        if not parts:
            return Result.json({"ServiceGroups": [{"Name": g} for g in available]})
        group = available.get(parts[0])
        if group is None:
            return error(404, f"Service group '{parts[0]}' not found.")
        if len(parts) == 1:
            return Result.json({"Services": [{"Name": s} for s in group]})
        operations = group.get(parts[1])
        if operations is None:
            return error(404, f"Service '{parts[1]}' not found in group '{parts[0]}'.")
        if len(parts) == 2:
            return Result.json({"Operations": [{"Name": o} for o in operations]})
        operation = operations.get(parts[2])
        if operation is None:
            return error(404, f"Operation '{parts[2]}' not found in service '{parts[1]}'.")
        return Result.json(
            {
                "Parameters": [{"Name": n, "Type": t} for n, t in operation[1]],
                "Return": {"Name": "return", "Type": operation[2]},
            }
        )
    if len(parts) != 3:
        return error(404, "Call an operation as /api/services/<group>/<service>/<operation>.")
    operation = available.get(parts[0], {}).get(parts[1], {}).get(parts[2])
    if operation is None:
        return error(404, f"Operation '{'/'.join(parts)}' not found.")
    try:
        params = json.loads(request.body or b"{}")
    except ValueError:
        return _service_fault("The request body is not valid JSON.")
    if not isinstance(params, dict):
        return _service_fault("The request body must be a JSON object of parameters.")
    try:
        with transaction.atomic():
            return Result.json(operation[0](params))
    except ServiceFault as exc:
        return _service_fault(str(exc))
