"""The data entities the F&O emulator holds: their keys, the AOT tables named in errors, what F&O numbers."""

from __future__ import annotations

import re
from dataclasses import dataclass

EMULATOR = "finops"
DEFAULT_COMPANY = "usmf"
PAGE_SIZE = 10_000  # F&O answers at most 10,000 rows per page


@dataclass(frozen=True)
class Entity:
    keys: tuple[str, ...]  # besides dataAreaId
    table: str  # the AOT entity, named in write errors
    required: tuple[str, ...] = ()
    generated: str = ""  # a key F&O numbers itself when a POST leaves it out


ENTITIES: dict[str, Entity] = {
    "CustomersV3": Entity(("CustomerAccount",), "CustCustomerV3Entity", ("CustomerGroupId",)),
    "ReleasedProductsV2": Entity(("ItemNumber",), "EcoResReleasedProductV2Entity"),
    "WarehousesOnHandV2": Entity(
        ("ItemNumber", "InventorySiteId", "InventoryWarehouseId"), "InventWarehouseOnHandV2Entity"
    ),
    "SalesOrderHeadersV2": Entity(
        ("SalesOrderNumber",), "SalesOrderHeaderV2Entity", ("OrderingCustomerAccountNumber",), "SalesOrderNumber"
    ),
    "SalesOrderLines": Entity(
        ("InventoryLotId",), "SalesOrderLineEntity", ("SalesOrderNumber", "ItemNumber"), "InventoryLotId"
    ),
    "PurchaseOrderHeadersV2": Entity(
        ("PurchaseOrderNumber",),
        "PurchPurchaseOrderHeaderV2Entity",
        ("OrderVendorAccountNumber",),
        "PurchaseOrderNumber",
    ),
    "PurchaseOrderLinesV2": Entity(
        ("PurchaseOrderNumber", "LineNumber"), "PurchPurchaseOrderLineV2Entity", ("ItemNumber",)
    ),
    "SalesInvoiceHeadersV2": Entity(("InvoiceNumber",), "SalesInvoiceHeaderV2Entity"),
    "ContactPersonsV2": Entity(("ContactPersonId",), "ContactPersonV2Entity", (), "ContactPersonId"),
    "SalesQuotationHeadersV2": Entity(
        ("SalesQuotationNumber",),
        "SalesQuotationHeaderV2Entity",
        ("RequestingCustomerAccountNumber",),
        "SalesQuotationNumber",
    ),
    "SalesQuotationLines": Entity(
        ("InventoryLotId",), "SalesQuotationLineEntity", ("SalesQuotationNumber", "ItemNumber"), "InventoryLotId"
    ),
    # Order holds (MCRHoldCodeTrans); placed and cleared through the services below, readable here.
    "SalesOrderHolds": Entity(("SalesOrderNumber", "HoldCode"), "MCRHoldCodeTransEntity"),
    "VendorInvoiceHeaders": Entity(("HeaderReference",), "VendorInvoiceHeaderEntity", ("InvoiceAccount",)),
}
# Lines need their header first (no deep insert on F&O entities): header → line entity, parent key.
LINE_PARENTS: dict[str, tuple[str, str]] = {
    "SalesOrderLines": ("SalesOrderHeadersV2", "SalesOrderNumber"),
    "SalesQuotationLines": ("SalesQuotationHeadersV2", "SalesQuotationNumber"),
}
_ENTITY_PATH = re.compile(r"^(?P<set>\w+)(?:\((?P<key>.*)\))?$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
