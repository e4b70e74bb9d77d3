"""Intercompany across an ERP migration: DK01 runs AX 2012, SE01 runs D365 F&O.

AX intercompany purchase order → F&O intercompany sales order → F&O packing slip posted →
AX product receipt → F&O customer invoice posted → AX pending vendor invoice; and the mirror
(F&O purchase order → AX sales order). One correlation id follows the order through every
step (options.chain), so the console shows the whole chain.
"""

from __future__ import annotations

from integrations.scenarios.templates.systems import AX2012, FINOPS

LINK = "DK01@AX-SE01@F&O"
# No flow of the hub writes the documents these flows read (AX purchase orders, F&O packing slips,
# invoices, purchase orders): no event of theirs can be our own write coming back, so none is screened.
NO_ECHO: list[str] = []
RETRY = {"max_attempts": 10, "backoff": {"1": 5, "3": 30, "5": 300}, "jitter": 0.2}
# Events of F&O that continue an AX order carry the F&O sales order number; the order's
# RecordLink (AX PO → F&O SO) gives the AX PO number and the chain's correlation id.
FOLLOWS_ORDER = {
    "follows": "ic-dk01-po-to-se01-so",
    "match": "target_key",
    "key": ["SalesOrderNumber"],
    "key_field": "SalesOrderNumber",
    "company": "LegalEntity",
}

PO_TO_SO = {
    "fields": {
        "dataAreaId": {"context": "target_company", "required": True},
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
                "ShippingSiteId": {"path": "InventSiteId", "default": ""},
                "ShippingWarehouseId": {"path": "InventLocationId", "default": ""},
            },
        },
    }
}

PACKING_SLIP_TO_RECEIPT = {
    "fields": {
        "PackingSlipId": {"expr": "concat(LegalEntity, '-', PackingSlipNumber)", "required": True},
        "PurchId": {"expr": "$ctx.chain.order.source_key", "required": True},
        "OrderAccount": {"context": "target_vendor_for_source", "required": True},
        "DeliveryDate": {"path": "PackingSlipDate", "type": "date"},
        "DocumentDate": {"path": "PackingSlipDate", "type": "date"},
        "VendPackingSlipTrans": {
            "each": "Lines",
            "fields": {
                "LineNum": {"expr": "$index + 1", "type": "integer"},
                "ItemId": {"path": "ItemNumber", "required": True},
                "Qty": {"path": "Quantity", "type": "decimal", "required": True},
                "InventTransId": "InventoryLotId",
            },
        },
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
        "SalesLine": {
            "each": "Lines",
            "fields": {
                "LineNum": {"expr": "$index + 1", "type": "integer"},
                "ItemId": {"path": "ItemNumber", "required": True},
                "SalesQty": {"path": "OrderedPurchaseQuantity", "type": "decimal", "required": True},
                "SalesUnit": {"path": "PurchaseUnitSymbol", "lookup": {"map": "ic-unit-fo-to-ax", "missing": "pass"}},
                "SalesPrice": {"path": "PurchasePrice", "type": "decimal", "precision": 2},
            },
        },
    }
}

UNITS = {"Pcs": "ea", "Box": "box", "kg": "kg", "m": "m"}

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
        {
            "slug": "ic-dk01-po-to-se01-so",
            "name": "IC: AX DK01 purchase order → F&O SE01 sales order",
            "entity": "purchaseorder",
            "source": AX2012["slug"],
            "target": FINOPS["slug"],
            "company_link": LINK,
            "trigger": "poll",
            "target_entity": "SalesOrderHeadersV2",
            "target_operation": "upsert",
            "target_key_fields": ["dataAreaId", "SalesOrderNumber"],
            "mapping_spec": PO_TO_SO,
            "master": "source",
            "conflict_policy": "master_wins",
            "retry_policy": RETRY,
            "options": {
                "echo_of": NO_ECHO,
                # Polled with AIF getChangedKeys (integrations.polling.poll); DK01 from the company link.
                "ax_service": "PurchaseOrderService",
                # Only purchase orders to SE01's vendor account in DK01 are intercompany orders.
                "only_when": {"OrderAccount": "IV-SE01"},
                "lines": {"field": "SalesOrderLines", "entity": "SalesOrderLines"},
            },
        },
        {
            "slug": "ic-se01-packingslip-to-dk01-receipt",
            "name": "IC: F&O SE01 packing slip posted → AX DK01 product receipt",
            "entity": "packingslip",
            "source": FINOPS["slug"],
            "target": AX2012["slug"],
            "company_link": LINK,
            "trigger": "business_event",
            "target_entity": "ProductReceiptService",
            "target_operation": "create",
            "target_key_fields": ["PackingSlipId"],
            "mapping_spec": PACKING_SLIP_TO_RECEIPT,
            "retry_policy": RETRY,
            "options": {
                "echo_of": NO_ECHO,
                "chain": {**FOLLOWS_ORDER, "as": "order", "step": 2},
                "event_types": ["SalesPackingSlipPostedBusinessEvent"],
                # SE01 ships to other customers too: only orders of DK01 continue this chain.
                "only_when": {"CustomerAccount": "IC-DK01"},
            },
            "inbound": {"auth_type": "none", "record_key_pointer": "/PackingSlipNumber"},
        },
        {
            "slug": "ic-se01-invoice-to-dk01-vendinvoice",
            "name": "IC: F&O SE01 customer invoice posted → AX DK01 pending vendor invoice",
            "entity": "invoice",
            "source": FINOPS["slug"],
            "target": AX2012["slug"],
            "company_link": LINK,
            "trigger": "business_event",
            "target_entity": "VendVendInvoiceService",
            "target_operation": "create",
            "target_key_fields": ["Num"],
            "mapping_spec": INVOICE_TO_VENDOR_INVOICE,
            "retry_policy": RETRY,
            "options": {
                "echo_of": NO_ECHO,
                "chain": {**FOLLOWS_ORDER, "as": "order", "step": 3},
                "event_types": ["SalesOrderInvoicedBusinessEvent"],
                "only_when": {"CustomerAccount": "IC-DK01"},
            },
            "inbound": {"auth_type": "none", "record_key_pointer": "/InvoiceNumber"},
        },
        {
            "slug": "ic-se01-po-to-dk01-so",
            "name": "IC mirror: F&O SE01 purchase order → AX DK01 sales order",
            "entity": "purchaseorder",
            "source": FINOPS["slug"],
            "target": AX2012["slug"],
            "company_link": LINK,
            "trigger": "business_event",
            "target_entity": "SalesOrderService",
            "target_operation": "create",
            "target_key_fields": ["SalesId"],
            "mapping_spec": FO_PO_TO_AX_SO,
            "retry_policy": RETRY,
            "options": {
                "echo_of": NO_ECHO,
                "event_types": ["PurchaseOrderConfirmedBusinessEvent"],
                "only_when": {"OrderVendorAccountNumber": "IV-DK01"},
            },
            "inbound": {"auth_type": "none", "record_key_pointer": "/PurchaseOrderNumber"},
        },
    ],
}
