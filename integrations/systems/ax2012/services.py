"""AX 2012's document services as the hub knows them: a flow's entity → its AIF service, and each service's key."""

from __future__ import annotations

# Flow.entity → AIF document service, when the flow does not name one in options["ax_service"].
AX_SERVICES = {
    "salesorder": "SalesOrderService",
    "purchaseorder": "PurchaseOrderService",
    "customer": "CustomerService",
    "vendor": "VendorService",
    "productreceipt": "ProductReceiptService",
    "vendorinvoice": "VendVendInvoiceService",
}

# The key field of AX's standard documents; System.settings "ax_key_fields" adds or overrides.
KEY_FIELDS = {
    "SalesOrderService": "SalesId",
    "PurchaseOrderService": "PurchId",
    "CustomerService": "AccountNum",
    "VendorService": "AccountNum",
    "ProductReceiptService": "PackingSlipId",
    "VendVendInvoiceService": "Num",
}


def service_of(entity: str) -> str:
    """The AIF service a flow's entity names: its own name when it is one (PurchaseOrderService), else by entity."""
    return AX_SERVICES.get(entity.lower(), entity)
