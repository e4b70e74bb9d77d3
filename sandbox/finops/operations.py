"""The custom service operations: an item's availability, and what F&O users do to a sales order that the hub
hears of — confirm it, post its packing slip and invoice, put it on hold and clear the hold — each raising its
business event."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils import timezone

from sandbox.finops.config import customization_deployed, next_number, settings_get
from sandbox.finops.events import business_event, date_ms, raise_event
from sandbox.finops.model import ENTITIES
from sandbox.finops.store import folded, now_iso, record_key, rows, write
from sandbox.models import EmulatorRecord


class ServiceFault(Exception):
    """An X++ exception inside a custom service operation: 500 with the XppServicesException body."""


def param(params: dict[str, Any], name: str, kind: type = str) -> Any:
    if name not in params or params[name] in (None, ""):
        raise ServiceFault(f"Parameter '{name}' is missing.")
    value = params[name]
    if kind is Decimal:
        try:
            return Decimal(str(value))
        except ArithmeticError as exc:
            raise ServiceFault(f"Parameter '{name}' must be a number, got {value!r}.") from exc
    return str(value)


def check_availability(params: dict[str, Any]) -> dict[str, Any]:
    """Available quantity (WarehousesOnHandV2) and sales price (ReleasedProductsV2) of one item."""
    company = param(params, "_dataAreaId").lower()
    item = param(params, "_itemNumber")
    quantity = param(params, "_quantity", Decimal)
    product = rows("ReleasedProductsV2").filter(company=company, key=folded(item)).first()
    if product is None:
        raise ServiceFault(f"Item number {item} does not exist in company {company}.")
    on_hand = sum(
        Decimal(str(r.data.get("AvailableOnHandQuantity") or 0))
        for r in rows("WarehousesOnHandV2").filter(company=company, data__ItemNumber__iexact=item)
    )
    price = Decimal(str(product.data.get("SalesPrice") or 0))
    return {
        "$id": "1",
        "dataAreaId": company,
        "ItemNumber": item,
        "RequestedQuantity": float(quantity),
        "AvailableQuantity": float(on_hand),
        "IsAvailable": on_hand >= quantity,
        "UnitPrice": float(price),
        "NetAmount": float(price * quantity),
        "CurrencyCode": product.data.get("SalesCurrencyCode") or settings_get()["currency"],
    }


def _sales_order(params: dict[str, Any]) -> tuple[str, EmulatorRecord]:
    company = param(params, "_dataAreaId").lower()
    number = param(params, "_salesOrderNumber")
    header = rows("SalesOrderHeadersV2").select_for_update().filter(company=company, key=folded(number)).first()
    if header is None:
        raise ServiceFault(f"Sales order {number} does not exist in company {company}.")
    return company, header


def number_of(header: EmulatorRecord) -> str:
    """The order's number as it was written (the store's key is case folded)."""
    return str(header.data.get("SalesOrderNumber") or header.key)


def _order_fields(company: str, header: EmulatorRecord) -> dict[str, Any]:
    return {
        "SalesOrderNumber": number_of(header),
        "LegalEntity": company.upper(),
        "CustomerAccount": header.data.get("OrderingCustomerAccountNumber", ""),
        "CustomerRequisitionNumber": header.data.get("CustomerRequisitionNumber", ""),
        "CustomersOrderReference": header.data.get("CustomersOrderReference", ""),
    }


def _set_status(company: str, header: EmulatorRecord, **values: Any) -> None:
    write("SalesOrderHeadersV2", ENTITIES["SalesOrderHeadersV2"], company, header, values)


def _lines(company: str, header: EmulatorRecord) -> list[EmulatorRecord]:
    return list(rows("SalesOrderLines").filter(company=company, data__SalesOrderNumber__iexact=number_of(header)))


def _announce(
    event_id: str, company: str, header: EmulatorRecord, answer: dict[str, Any], fields: dict[str, Any]
) -> dict[str, Any]:
    """Raise the order's business event (the header's fields, then these); the operation's answer names it."""
    event = business_event(event_id, company, {**_order_fields(company, header), **fields})
    raise_event(event)
    return {"$id": "1", "SalesOrderNumber": number_of(header), **answer, "EventId": event["EventId"]}


def confirm_sales_order(params: dict[str, Any]) -> dict[str, Any]:
    company, header = _sales_order(params)
    number = f"{number_of(header)}-{next_number(f'confirmation:{company}:{header.key}')}"
    _set_status(company, header, DocumentStatus="Confirmation")
    fields = {"ConfirmationNumber": number}
    return _announce("SalesOrderConfirmedBusinessEvent", company, header, {"DocumentNumber": number}, fields)


def post_packing_slip(params: dict[str, Any]) -> dict[str, Any]:
    company, header = _sales_order(params)
    number = f"PS{next_number(f'packingslip:{company}'):06d}"
    _set_status(company, header, SalesOrderStatus="Delivered", DocumentStatus="PackingSlip")
    # The event names the order and the packing slip, not its lines: a receiver reads the order's lines
    # (SalesOrderLines) with OData, as every line is shipped in full here (docs/sandbox.md).
    fields = {"PackingSlipNumber": number, "PackingSlipDate": date_ms(timezone.now())}
    return _announce("SalesPackingSlipPostedBusinessEvent", company, header, {"DocumentNumber": number}, fields)


def post_invoice(params: dict[str, Any]) -> dict[str, Any]:
    company, header = _sales_order(params)
    number = f"CIV{next_number(f'invoice:{company}'):06d}"
    lines = _lines(company, header)
    amount = sum(
        Decimal(str(line.data.get("OrderedSalesQuantity") or 0)) * Decimal(str(line.data.get("SalesPrice") or 0))
        for line in lines
    )
    currency = header.data.get("CurrencyCode") or settings_get()["currency"]
    invoice_date = timezone.now().date().isoformat()
    write(
        "SalesInvoiceHeadersV2",
        ENTITIES["SalesInvoiceHeadersV2"],
        company,
        None,
        {
            "InvoiceNumber": number,
            "SalesOrderNumber": number_of(header),
            "InvoiceCustomerAccountNumber": header.data.get("OrderingCustomerAccountNumber", ""),
            "InvoiceDate": f"{invoice_date}T12:00:00Z",
            "TotalInvoiceAmount": float(amount),
            "CurrencyCode": currency,
        },
    )
    _set_status(company, header, SalesOrderStatus="Invoiced", DocumentStatus="Invoice")
    fields = {"InvoiceDate": date_ms(timezone.now()), "InvoiceAmount": float(amount), "CurrencyCode": currency}
    return _announce(
        "SalesOrderInvoicedBusinessEvent",
        company,
        header,
        {"DocumentNumber": number},
        {"InvoiceNumber": number, **fields},
    )


def _hold_key(params: dict[str, Any]) -> tuple[str, EmulatorRecord, str]:
    company, header = _sales_order(params)
    return company, header, param(params, "_holdCode")


def _hold_key_of(header: EmulatorRecord, code: str) -> str:
    return record_key(ENTITIES["SalesOrderHolds"], {"SalesOrderNumber": number_of(header), "HoldCode": code})


def place_hold(params: dict[str, Any]) -> dict[str, Any]:
    """An F&O user puts the order on hold (Sales order > Order holds); raises SalesOrderHoldPlacedBusinessEvent."""
    company, header, code = _hold_key(params)
    reason = str(params.get("_holdReason") or "")
    entity = ENTITIES["SalesOrderHolds"]
    existing = rows("SalesOrderHolds").filter(company=company, key=_hold_key_of(header, code)).first()
    if existing is not None and not existing.data.get("IsCleared"):
        raise ServiceFault(f"Sales order {number_of(header)} is already on hold {code}.")
    placed = now_iso()
    write(
        "SalesOrderHolds",
        entity,
        company,
        existing,
        {
            "SalesOrderNumber": number_of(header),
            "HoldCode": code,
            "HoldReason": reason,
            "IsCleared": False,
            "PlacedDateTime": placed,
            "ClearedBy": "",
            "ClearedDateTime": None,
        },
    )
    _set_status(company, header, OrderHoldCode=code)
    fields = {"HoldCode": code, "HoldReason": reason}
    if not customization_deployed("order_holds"):  # the hold-placed event is a customization (config.py)
        return {"$id": "1", "SalesOrderNumber": number_of(header), "HoldCode": code}
    return _announce("SalesOrderHoldPlacedBusinessEvent", company, header, {"HoldCode": code}, fields)


def clear_hold(params: dict[str, Any]) -> dict[str, Any]:
    """The customer's X++ service behind "clear hold": clears one hold; clearing a cleared hold changes nothing."""
    company, header, code = _hold_key(params)
    holds = rows("SalesOrderHolds").select_for_update()
    hold = holds.filter(company=company, key=_hold_key_of(header, code)).first()
    if hold is None:
        raise ServiceFault(f"Sales order {number_of(header)} has no hold {code}.")
    answer = {"$id": "1", "SalesOrderNumber": number_of(header), "HoldCode": code}
    if hold.data.get("IsCleared"):
        return {**answer, "Cleared": True, "AlreadyCleared": True, "ClearedBy": hold.data.get("ClearedBy", "")}
    cleared_by = str(params.get("_clearedBy") or "")
    write(
        "SalesOrderHolds",
        ENTITIES["SalesOrderHolds"],
        company,
        hold,
        {"IsCleared": True, "ClearedBy": cleared_by, "ClearedDateTime": now_iso()},
    )
    still_held = rows("SalesOrderHolds").filter(
        company=company, data__SalesOrderNumber__iexact=number_of(header), data__IsCleared=False
    )
    _set_status(company, header, OrderHoldCode=still_held.values_list("data__HoldCode", flat=True).first() or "")
    return {**answer, "Cleared": True, "AlreadyCleared": False, "ClearedBy": cleared_by}
