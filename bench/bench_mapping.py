"""Benchmark the mapping engine: transforms per second for the standard sales order mapping.

The standard order is an F&O sales order header with 30 mapped fields and 5 lines mapped to an
S/4 A_SalesOrder deep insert (integrations/mapping/examples/finops-salesorder-to-s4-salesorder.json
plus header fields up to 30): conversions, a value map per line, a conditional order type,
calculated amounts and dates. Runs on one core, no database.

    .venv/bin/python bench/bench_mapping.py [--seconds 3]

Prints the results and writes them to bench/results/mapping.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from itertools import cycle
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "icbridge.settings")

import django  # noqa: E402

django.setup()

from integrations import mapping  # noqa: E402
from integrations.mapping import valuemaps  # noqa: E402
from integrations.mapping.compiler import compile_spec  # noqa: E402

EXAMPLE = ROOT / "integrations" / "mapping" / "examples" / "finops-salesorder-to-s4-salesorder.json"
CONTEXT = {
    "source_company": "usmf",
    "target_company": "1710",
    "target_customer_for_source": "17100001",
    "currency": "USD",
    "sales_organization": "1710",
    "distribution_channel": "10",
    "division": "00",
    "plant": "1710",
    "large_order_threshold": "10000",
}
MAPS = valuemaps.static(
    {
        "uom-d365-to-s4": {"ea": "EA", "pcs": "PC", "kg": "KG", "box": "KAR"},
        "finops-paymentterms-to-s4": {"Net30": "0004"},
    }
)


def standard_spec() -> dict[str, Any]:
    """The shipped example, with more header fields up to 30, as a real order mapping has."""
    spec = json.loads(EXAMPLE.read_text())
    extra = {
        "SalesDistrict": {"path": "SalesDistrictId", "default": ""},
        "SalesOffice": {"path": "SalesOfficeId", "default": ""},
        "SalesGroup": {"path": "SalesGroupId", "default": ""},
        "ShippingCondition": {"path": "ShippingConditionCode", "type": "string", "max_length": 2},
        "CompleteDeliveryIsDefined": {"path": "IsCompleteDeliveryRequired", "type": "boolean", "default": False},
        "IncotermsLocation1": {"path": "DeliveryAddressCity", "max_length": 70},
        "IncotermsTransferLocation": {"path": "DeliveryAddressCity", "max_length": 70},
        "PricingDate": {"path": "OrderCreationDateTime", "type": "date", "format": "odata"},
        "CustomerPurchaseOrderType": {"const": "IC"},
        "HeaderBillingBlockReason": {"path": "BillingBlock", "default": ""},
        "DeliveryBlockReason": {"path": "DeliveryBlock", "default": ""},
        "AssignmentReference": {"expr": "dataAreaId & '-' & SalesOrderNumber"},
        "TotalNetAmount": {
            "expr": "sum(SalesOrderLines, OrderedSalesQuantity * SalesPrice)",
            "type": "decimal",
            "precision": 2,
        },
        "TotalTaxAmount": {
            "expr": "sum(SalesOrderLines, OrderedSalesQuantity * SalesPrice) * 0.25",
            "type": "decimal",
            "precision": 2,
        },
        "LineCount": {"expr": "count(SalesOrderLines)", "type": "integer"},
        "CustomerAccount": {"path": "OrderingCustomerAccountNumber", "required": True},
        "ContactEmail": {"expr": "lower(trim(CustomerEmail))"},
    }
    spec["fields"] = {
        **{k: v for k, v in spec["fields"].items() if k != "to_Item"},
        **extra,
        "to_Item": spec["fields"]["to_Item"],
    }
    header = [name for name in spec["fields"] if name != "to_Item"]
    assert len(header) == 30, len(header)
    return spec


def standard_order(n: int = 0) -> dict[str, Any]:
    """Order number n: its own creation time, dates, quantities and prices, so no cache sees repeats."""
    lines = [
        {
            "LineNumber": line,
            "ItemNumber": f"TG{(n + line) % 500:03d}",
            "LineDescription": f"Trading good {line}",
            "OrderedSalesQuantity": (n % 7 + 1) * line,
            "SalesUnitSymbol": ("pcs", "kg", "ea", "box", "pcs")[line - 1],
            "SalesPrice": round(17.55 + n * 0.37 + line, 2),
            "LineDiscountPercentage": line % 3 * 5,
            "ShippingSiteId": None if line % 2 else "1720",
        }
        for line in range(1, 6)
    ]
    created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=17 * n)
    return {
        "dataAreaId": "usmf",
        "SalesOrderNumber": f"{n:06d}",
        "OrderingCustomerAccountNumber": "US-027",
        "CurrencyCode": "USD",
        "OrderCreationDateTime": created.isoformat().replace("+00:00", "Z"),
        "RequestedShippingDate": (created + timedelta(days=n % 30)).isoformat().replace("+00:00", "Z"),
        "PaymentTermsName": "Net30",
        "DeliveryTermsCode": "EXW",
        "SalesOrderOriginCode": "",
        "ShippingConditionCode": "01",
        "IsCompleteDeliveryRequired": "No",
        "DeliveryAddressCity": "Palo Alto",
        "CustomerEmail": " Orders@Contoso.example ",
        "SalesOrderLines": lines,
    }


def measure(fn: Any, seconds: float, rounds: int = 3) -> tuple[int, float]:
    """Best of a few rounds, in CPU time of this process: the machine is shared, and a
    neighbour's load should not count as the engine's cost."""
    best: tuple[int, float] | None = None
    for _ in range(rounds):
        count = 0
        start = time.process_time()
        deadline = start + seconds / rounds
        while True:
            for _ in range(200):
                fn()
            count += 200
            now = time.process_time()
            if now >= deadline:
                break
        if best is None or count / (now - start) > best[0] / best[1]:
            best = (count, now - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()

    spec = standard_spec()
    # 20,000 distinct orders, more than one run maps, so every date is parsed afresh.
    orders = [standard_order(n) for n in range(20_000)]
    started = time.perf_counter()
    program = compile_spec(spec)
    compile_ms = (time.perf_counter() - started) * 1000
    output = program.run(orders[0], CONTEXT, MAPS)
    assert len(output["to_Item"]) == 5, output
    assert output["SalesOrderType"] == "OR", output

    # Warm up, then measure the compiled transform and the full apply() (cache lookup included),
    # each on its own pass over the orders.
    pending = cycle(orders)
    measure(lambda: program.run(next(pending), CONTEXT, MAPS), 0.3)
    pending = cycle(orders)
    runs, elapsed = measure(lambda: program.run(next(pending), CONTEXT, MAPS), args.seconds)
    pending = cycle(orders)
    apply_runs, apply_elapsed = measure(
        lambda: mapping.apply(spec=spec, payload=next(pending), context=CONTEXT, value_maps=MAPS), args.seconds
    )
    result = {
        "benchmark": "mapping",
        "spec": "finops-salesorder-to-s4-salesorder + header fields: 30 header fields, 5 lines x 7 fields",
        "orders": "20,000 distinct orders (own dates, quantities, prices), mapped in turn",
        "compile_ms": round(compile_ms, 3),
        "transforms_per_second": round(runs / elapsed),
        "microseconds_per_transform": round(elapsed / runs * 1e6, 2),
        "clock": "CPU time of this process, best of 3 rounds",
        "apply_transforms_per_second": round(apply_runs / apply_elapsed),
        "apply_microseconds_per_transform": round(apply_elapsed / apply_runs * 1e6, 2),
        "target_transforms_per_second": 10_000,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    result["meets_target"] = result["apply_transforms_per_second"] >= result["target_transforms_per_second"]
    out = ROOT / "bench" / "results" / "mapping.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"compile: {result['compile_ms']} ms (once per spec version)")
    print(
        f"transform: {result['transforms_per_second']:,} /s ({result['microseconds_per_transform']} µs each); "
        f"apply() with cache lookup: {result['apply_transforms_per_second']:,} /s "
        f"({result['apply_microseconds_per_transform']} µs each); target 10,000 /s"
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
