"""Intercompany across an ERP migration: DK01 runs AX 2012, SE01 runs D365 F&O.

AX intercompany purchase order → F&O intercompany sales order → F&O packing slip posted →
AX product receipt → F&O customer invoice posted → AX pending vendor invoice; and the mirror
(F&O purchase order → AX sales order). One correlation id follows the order through every
step (options.chain), so the console shows the whole chain.
"""

from __future__ import annotations

from typing import Any

from integrations.scenarios.templates.builders import (
    FINOPS_INVOICES,
    business_event,
    fetch,
    finops_mapping,
    flow,
    polled,
    write,
)
from integrations.scenarios.templates.systems import AX2012, FINOPS

LINK = "DK01@AX-SE01@F&O"
# No flow of the hub writes the documents these flows read (AX purchase orders, F&O packing slips,
# invoices, purchase orders): no event of theirs can be our own write coming back, so none is screened.
NO_ECHO: list[str] = []
# Events of F&O that continue an AX order carry the F&O sales order number; the order's
# RecordLink (AX PO → F&O SO) gives the AX PO number and the chain's correlation id.
FOLLOWS_ORDER = {
    "follows": "ic-dk01-po-to-se01-so",
    "match": "target_key",
    "key": ["SalesOrderNumber"],
    "key_field": "SalesOrderNumber",
    "company": "LegalEntity",
}

PO_TO_SO = finops_mapping(
    {
        # Our own number for the IC order makes the create an idempotent upsert by key.
        "SalesOrderNumber": {"expr": "concat($ctx.source_company, '-', PurchId)", "required": True},
        "OrderingCustomerAccountNumber": {"context": "target_customer_for_source", "required": True},
        "InvoiceCustomerAccountNumber": {"context": "target_customer_for_source", "required": True},
        # The PO number stays visible to SE01 as the customer's reference.
        "CustomersOrderReference": {"path": "PurchId", "required": True},
        "CustomerRequisitionNumber": "PurchId",
        "CurrencyCode": {"path": "CurrencyCode", "default": "EUR"},
        "RequestedReceiptDate": {"path": "DeliveryDate", "type": "date"},
        "SalesOrderName": {"path": "PurchName", "max_length": 60},
        # The company link's site and warehouse: lines without their own take them (Site is mandatory).
        "DefaultShippingSiteId": {"context": "site", "required": True},
        "DefaultShippingWarehouseId": {"context": "warehouse"},
        "SalesOrderLines": {
            "each": "PurchLine",
            "fields": {
                "LineCreationSequenceNumber": {"expr": "$index + 1", "type": "integer"},
                "ItemNumber": {"path": "ItemId", "required": True},
                "OrderedSalesQuantity": {"path": "PurchQty", "type": "decimal", "as": "number", "required": True},
                "SalesUnitSymbol": {"path": "PurchUnit", "lookup": {"map": "ic-unit-ax-to-fo", "missing": "pass"}},
                "SalesPrice": {"path": "PurchPrice", "type": "decimal", "as": "number", "precision": 2},
                "LineAmount": {
                    "expr": "round(number(PurchQty) * number(PurchPrice), 2)",
                    "type": "decimal",
                    "as": "number",
                },
                "RequestedReceiptDate": {"expr": "$parent.DeliveryDate", "type": "date"},
                # The AX line's site and warehouse, else the company link's (Site is mandatory in F&O).
                "ShippingSiteId": {"expr": "coalesce(InventSiteId, $ctx.site)"},
                "ShippingWarehouseId": {"expr": "coalesce(InventLocationId, $ctx.warehouse)"},
            },
        },
    }
)


def fo_lines(entity: str, key_field: str) -> dict[str, Any]:
    """options.fetch: an F&O document's lines, read after its business event, which carries none.

    Business events are lightweight, "not intended to carry large payloads" (Business events overview):
    the event names the document (key_field) and its company; the lines are the line entity's rows.
    """
    key = {key_field: key_field}
    return {**fetch(entity, key, "lines"), "company": "BusinessEventLegalEntity", "many": True}


def ax_lines(fields: dict[str, Any]) -> dict[str, Any]:
    """An F&O document's lines (fetched.lines, see fo_lines) as AX lines: LineNum from 1, ItemId, then fields."""
    return {
        "each": "fetched.lines",
        "fields": {
            "LineNum": {"expr": "$index + 1", "type": "integer"},
            "ItemId": {"path": "ItemNumber", "required": True},
            **fields,
        },
    }


PACKING_SLIP_TO_RECEIPT = {
    "fields": {
        "PackingSlipId": {"expr": "concat(LegalEntity, '-', PackingSlipNumber)", "required": True},
        "PurchId": {"expr": "$ctx.chain.order.source_key", "required": True},
        "OrderAccount": {"context": "target_vendor_for_source", "required": True},
        "DeliveryDate": {"path": "PackingSlipDate", "type": "date"},
        "DocumentDate": {"path": "PackingSlipDate", "type": "date"},
        "VendPackingSlipTrans": ax_lines(
            {
                # The emulator ships every order line in full (docs/sandbox.md).
                "Qty": {"path": "OrderedSalesQuantity", "type": "decimal", "required": True},
                "InventTransId": "InventoryLotId",
            }
        ),
    }
}

INVOICE_TO_VENDOR_INVOICE = {
    "fields": {
        "Num": {"path": "InvoiceNumber", "required": True},
        "PurchId": {"expr": "$ctx.chain.order.source_key", "required": True},
        "InvoiceAccount": {"context": "target_vendor_for_source", "required": True},
        "OrderAccount": {"context": "target_vendor_for_source", "required": True},
        "DocumentDate": {"path": "InvoiceDate", "type": "date"},
        "TransDate": {"path": "InvoiceDate", "type": "date"},
        "CurrencyCode": {"path": "CurrencyCode", "default": "EUR"},
        "InvoiceAmount": {"path": "InvoiceAmount", "type": "decimal", "precision": 2},
        "Description": {"expr": "concat('IC invoice ', InvoiceNumber, ' for ', $ctx.chain.order.source_key)"},
    }
}

FO_PO_TO_AX_SO = {
    "fields": {
        "SalesId": {"expr": "concat($ctx.source_company, '-', PurchaseOrderNumber)", "required": True},
        "CustAccount": {"context": "target_customer_for_source", "required": True},
        "InvoiceAccount": {"context": "target_customer_for_source"},
        "PurchOrderFormNum": {"path": "PurchaseOrderNumber", "required": True},
        "CustomerRef": "PurchaseOrderNumber",
        "InterCompanyPurchId": "PurchaseOrderNumber",
        "CurrencyCode": {"path": "CurrencyCode", "default": "EUR"},
        "DeliveryDate": {"path": "RequestedDeliveryDate", "type": "date"},
        "SalesLine": ax_lines(
            {
                "SalesQty": {"path": "OrderedPurchaseQuantity", "type": "decimal", "required": True},
                "SalesUnit": {"path": "PurchaseUnitSymbol", "lookup": {"map": "ic-unit-fo-to-ax", "missing": "pass"}},
                "SalesPrice": {"path": "PurchasePrice", "type": "decimal", "precision": 2},
            }
        ),
    }
}

UNITS = {"Pcs": "ea", "Box": "box", "kg": "kg", "m": "m"}


def ax_create(service: str, key_field: str, mapping_spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write: AX DK01 creates the document with this AIF service, found again by key_field; mapped by mapping_spec."""
    return write(AX2012, service, "create", key_field), mapping_spec


def order_step(
    slug: str, name: str, source: dict[str, Any], target: tuple[dict[str, Any], dict[str, Any]], **more: Any
) -> dict[str, Any]:
    """A later step of an order's chain: F&O SE01 posts a document for one of DK01's orders, AX DK01 gets its own.

    more: further options of the step (fetch, listing).
    """
    # SE01 ships to and invoices other customers too: only documents of DK01's orders continue the chain.
    options = {"echo_of": NO_ECHO, "only_when": {"CustomerAccount": "IC-DK01"}, **more}
    return flow(slug, name, source, *target, link=LINK, options=options)


def order_steps(*steps: dict[str, Any]) -> list[dict[str, Any]]:
    """The later steps of an order's chain in their order, numbered from 2 (the AX order itself is 1)."""
    return [
        {**step, "options": {**step["options"], "chain": {**FOLLOWS_ORDER, "as": "order", "step": number}}}
        for number, step in enumerate(steps, start=2)
    ]


TEMPLATE = {
    "title": "Intercompany: AX 2012 DK01 ↔ F&O SE01",
    "description": (
        "AX intercompany purchase orders become F&O intercompany sales orders; F&O packing slips and "
        "customer invoices come back as AX product receipts and pending vendor invoices; F&O purchase "
        "orders become AX sales orders. One correlation id per order across both companies."
    ),
    "systems": [AX2012, FINOPS],
    "company_links": [
        {
            "name": LINK,
            "system_a": AX2012["slug"],
            "company_a": "DK01",
            "customer_in_a_for_b": "IC-SE01",
            "vendor_in_a_for_b": "IV-SE01",
            "system_b": FINOPS["slug"],
            "company_b": "SE01",
            "customer_in_b_for_a": "IC-DK01",
            "vendor_in_b_for_a": "IV-DK01",
            "currency": "EUR",
            "defaults": {"site": "1", "warehouse": "11"},
        }
    ],
    "value_maps": [
        {"name": "ic-unit-ax-to-fo", "description": "AX 2012 unit → F&O unit symbol", "entries": UNITS},
        {
            "name": "ic-unit-fo-to-ax",
            "description": "F&O unit symbol → AX 2012 unit",
            "entries": {fo: ax for ax, fo in UNITS.items()},
        },
    ],
    "flows": [
        flow(
            "ic-dk01-po-to-se01-so",
            "IC: AX DK01 purchase order → F&O SE01 sales order",
            polled(AX2012, "purchaseorder"),
            write(FINOPS, "SalesOrderHeadersV2", "upsert", "dataAreaId", "SalesOrderNumber"),
            PO_TO_SO,
            link=LINK,
            master="source",
            conflict_policy="master_wins",
            options={
                "echo_of": NO_ECHO,
                # Polled with AIF getChangedKeys (integrations.polling.poll); DK01 from the company link.
                # PurchaseOrderService is a CUSTOM AIF service (AX 2012 ships no purchase order document
                # service): the customer's own, with a document filter on its port (docs/sandbox.md).
                "ax_service": "PurchaseOrderService",
                # Only purchase orders to SE01's vendor account in DK01 are intercompany orders.
                "only_when": {"OrderAccount": "IV-SE01"},
                "lines": {"field": "SalesOrderLines", "entity": "SalesOrderLines"},
            },
        ),
        *order_steps(
            order_step(
                "ic-se01-packingslip-to-dk01-receipt",
                "IC: F&O SE01 packing slip posted → AX DK01 product receipt",
                business_event(
                    FINOPS, "packingslip", "SalesPackingSlipPostedBusinessEvent", record_key="/PackingSlipNumber"
                ),
                # A CUSTOM AIF service: AX 2012 ships no product receipt document service (docs/sandbox.md).
                ax_create("ProductReceiptService", "PackingSlipId", PACKING_SLIP_TO_RECEIPT),
                fetch=[fo_lines("SalesOrderLines", "SalesOrderNumber")],
            ),
            order_step(
                "ic-se01-invoice-to-dk01-vendinvoice",
                "IC: F&O SE01 customer invoice posted → AX DK01 pending vendor invoice",
                business_event(FINOPS, "invoice", "SalesOrderInvoicedBusinessEvent", record_key="/InvoiceNumber"),
                ax_create("VendVendInvoiceService", "Num", INVOICE_TO_VENDOR_INVOICE),
                listing=FINOPS_INVOICES,
            ),
        ),
        flow(
            "ic-se01-po-to-dk01-so",
            "IC mirror: F&O SE01 purchase order → AX DK01 sales order",
            business_event(
                FINOPS, "purchaseorder", "PurchaseOrderConfirmedBusinessEvent", record_key="/PurchaseOrderNumber"
            ),
            write(AX2012, "SalesOrderService", "create", "SalesId"),
            FO_PO_TO_AX_SO,
            link=LINK,
            options={
                "echo_of": NO_ECHO,
                "only_when": {"OrderVendorAccountNumber": "IV-DK01"},
                "fetch": [fo_lines("PurchaseOrderLinesV2", "PurchaseOrderNumber")],
            },
        ),
    ],
}
