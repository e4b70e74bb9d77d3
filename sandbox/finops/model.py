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
    # Shared by every legal entity (its table saves no data per company): no dataAreaId in its key or rows.
    shared: bool = False

    def company_of(self, company: str) -> str:
        """The company a row of this entity is kept under: "" for a shared entity."""
        return "" if self.shared else company


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
    # The "Units" data entity (UnitOfMeasureEntity). F&O shares units across legal entities; the emulator stores
    # each under the company that wrote it and the line checks read every company's (sandbox.finops.lines).
    # Units are shared: UnitOfMeasureEntity is keyed by UnitSymbol alone and its rows carry no dataAreaId
    # (a captured GET data/UnitsOfMeasure(UnitSymbol='ea'), public D365FO notes "Works with Units").
    "UnitsOfMeasure": Entity(("UnitSymbol",), "UnitOfMeasureEntity", shared=True),
}
UNITS_ENTITY = "UnitsOfMeasure"
# Lines need their header first (no deep insert on F&O entities): header → line entity, parent key.
LINE_PARENTS: dict[str, tuple[str, str]] = {
    "SalesOrderLines": ("SalesOrderHeadersV2", "SalesOrderNumber"),
    "SalesQuotationLines": ("SalesQuotationHeadersV2", "SalesQuotationNumber"),
    "PurchaseOrderLinesV2": ("PurchaseOrderHeadersV2", "PurchaseOrderNumber"),
}
# A sales order line takes its site and warehouse from its order header when it names none (SalesLine is
# initialised from SalesTable), and Site is a mandatory inventory dimension: with neither, F&O refuses the
# line with "Inventory dimension Site is mandatory and must consequently be specified." ("Sales order lines
# V2" names the line's fields; the error text as in "Statement posting errors due to unavailable inventory
# or update conflicts", Commerce). line entity → (line field, header field defaulting it, mandatory dimension).
LINE_DEFAULTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "SalesOrderLines": (
        ("ShippingSiteId", "DefaultShippingSiteId", "Site"),
        ("ShippingWarehouseId", "DefaultShippingWarehouseId", ""),
    ),
}
# Line entity → its unit field: each line's ItemNumber must be a released product of its company and its unit a
# unit of measure ("Sales order lines V2" SalesUnitSymbol; "Purchase order lines V2" PurchaseUnitSymbol).
LINE_UNITS: dict[str, str] = {
    "SalesOrderLines": "SalesUnitSymbol",
    "SalesQuotationLines": "SalesUnitSymbol",
    "PurchaseOrderLinesV2": "PurchaseUnitSymbol",
}
_ENTITY_PATH = re.compile(r"^(?P<set>\w+)(?:\((?P<key>.*)\))?$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

# Reference data the emulator checks codes against (F&O: the Currency and LogisticsAddressCountryRegion
# tables). F&O stores ISO codes: a currency is its ISO 4217 code (CurrencyCode), a country/region its
# ISO 3166 code (AddressCountryRegionISOCode, 2 letters) or F&O id (AddressCountryRegionId, 3 letters);
# a name ("Danish Krone", "Denmark") is not found in the relating table. The lists are the common codes,
# not all of ISO (a simplification, docs/sandbox.md). "Currencies and exchange rates" / "Configure
# country/region" https://learn.microsoft.com/dynamics365/finance/general-ledger/currencies-exchange-rates
CURRENCIES = frozenset(
    "AUD BRL CAD CHF CNY CZK DKK EUR GBP HKD HUF INR ISK JPY KRW MXN NOK NZD PLN RON SEK SGD THB TRY USD ZAR".split()
)
COUNTRIES = {  # ISO 3166 alpha-2 → alpha-3 (F&O's country/region id)
    "AT": "AUT", "AU": "AUS", "BE": "BEL", "BR": "BRA", "CA": "CAN", "CH": "CHE", "CN": "CHN", "CZ": "CZE",
    "DE": "DEU", "DK": "DNK", "EE": "EST", "ES": "ESP", "FI": "FIN", "FR": "FRA", "GB": "GBR", "IE": "IRL",
    "IN": "IND", "IS": "ISL", "IT": "ITA", "JP": "JPN", "LT": "LTU", "LV": "LVA", "MX": "MEX", "NL": "NLD",
    "NO": "NOR", "NZ": "NZL", "PL": "POL", "PT": "PRT", "SE": "SWE", "SG": "SGP", "US": "USA", "ZA": "ZAF",
}  # fmt: skip
