"""The tables the Dataverse emulator holds, their keys and navigation properties."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

EMULATOR = "dataverse"
ORGANIZATION = "icbridgesandbox"  # the environment's unique name (OrganizationName in webhooks)
API = "api/data/v9.2"
MAX_PAGE_SIZE = 5000
MAX_BATCH_REQUESTS = 1000


@dataclass(frozen=True)
class Table:
    logical_name: str
    primary_id: str
    alternate_keys: tuple[tuple[str, ...], ...]
    required: tuple[str, ...]
    max_lengths: dict[str, int] = field(default_factory=dict)
    # Declared columns (besides the primary id and lookups): a write of any other is refused. None = not declared.
    columns: frozenset[str] | None = None
    # Columns the platform computes (read-only): a $select may name them, a write may not.
    computed: frozenset[str] = frozenset()


# The writable line columns the hub's flows use, from "salesorderdetail EntityType" / "quotedetail EntityType"
# (Web API reference): a write-in line sets productdescription with isproductoverridden=true instead of productid.
_DETAIL_COLUMNS = frozenset(
    {
        "description",
        "isproductoverridden",
        "ispriceoverridden",
        "lineitemnumber",
        "manualdiscountamount",
        "priceperunit",
        "productdescription",
        "quantity",
        "requestdeliveryby",
        "sequencenumber",
        "tax",
    }
)

# The header columns of an order or a quote ("salesorder EntityType" / "quote EntityType", Web API reference),
# and the custom icb_ columns the hub writes back onto an order (its S/4 delivery). Lines are not a column:
# they are salesorderdetail / quotedetail rows, so an invented lines column is refused like any other.
_SALES_HEADER_COLUMNS = frozenset(
    {
        *(f"{side}_{part}" for side in ("billto", "shipto") for part in ("name", "line1", "line2", "city")),
        *(f"{side}_{part}" for side in ("billto", "shipto") for part in ("postalcode", "country", "telephone")),
        "description",
        "discountamount",
        "discountpercentage",
        "freightamount",
        "freighttermscode",
        "name",
        "paymenttermscode",
        "prioritycode",
        "requestdeliveryby",
        "shippingmethodcode",
        "statecode",
        "statuscode",
        "totalamount",
        "willcall",
    }
)
_ORDER_COLUMNS = _SALES_HEADER_COLUMNS | {
    "datefulfilled",
    "ordernumber",
    "submitdate",
    "icb_deliverydate",
    "icb_deliverydocument",
    "icb_goodsmovementstatus",
}
_QUOTE_COLUMNS = _SALES_HEADER_COLUMNS | {"closedon", "effectivefrom", "effectiveto", "expireson", "quotenumber"}
# Product columns ("product EntityType", Web API reference): the standard ones a catalogue sync writes.
_PRODUCT_COLUMNS = frozenset(
    {
        "currentcost",
        "description",
        "name",
        "price",
        "productnumber",
        "productstructure",
        "producttypecode",
        "quantitydecimal",
        "standardcost",
        "statecode",
        "statuscode",
        "stockvolume",
        "stockweight",
        "validfromdate",
        "validtodate",
        "vendorname",
        "vendorpartnumber",
    }
)
# Columns the platform sets on every (user-owned) row, read-only: a $select may name them on any table.
SYSTEM_COLUMNS = frozenset(
    {
        "createdon",
        "modifiedon",
        "versionnumber",
        "importsequencenumber",
        "overriddencreatedon",
        "timezoneruleversionnumber",
        "utcconversiontimezonecode",
        *(
            f"_{lookup}_value"
            for lookup in ("createdby", "modifiedby", "createdonbehalfby", "modifiedonbehalfby", "ownerid")
        ),
        *(f"_{lookup}_value" for lookup in ("owningbusinessunit", "owninguser", "owningteam")),
    }
)
# Computed amounts and names of the sales tables (salesorder, quote, salesorderdetail EntityType: read-only).
_HEADER_COMPUTED = frozenset(
    {"exchangerate", "totalamountlessfreight", "totaldiscountamount", "totallineitemamount", "totaltax"}
)
_DETAIL_COMPUTED = frozenset({"baseamount", "exchangerate", "extendedamount", "volumediscountamount"})

TABLES: dict[str, Table] = {
    "accounts": Table("account", "accountid", (("accountnumber",),), ("name",), {"name": 160, "accountnumber": 20}),
    "contacts": Table(
        "contact", "contactid", (("emailaddress1",), ("msdyn_contactpersonid",)), ("lastname",), {"lastname": 50}
    ),
    "products": Table(
        "product",
        "productid",
        (("productnumber",),),
        ("name",),
        {"name": 100, "productnumber": 100},
        _PRODUCT_COLUMNS,
        frozenset({"quantityonhand"}),
    ),
    "quotes": Table(
        "quote", "quoteid", (("quotenumber",),), ("name",), {"name": 300}, _QUOTE_COLUMNS, _HEADER_COMPUTED
    ),
    "salesorders": Table(
        "salesorder", "salesorderid", (("ordernumber",),), ("name",), {"name": 300}, _ORDER_COLUMNS, _HEADER_COMPUTED
    ),
    "invoices": Table("invoice", "invoiceid", (("invoicenumber",),), ("name",), {"name": 300}),
    # Order and quote lines are rows of their own, bound to the header (the order/quote Product tables).
    "salesorderdetails": Table(
        "salesorderdetail",
        "salesorderdetailid",
        (),
        (),
        {},
        _DETAIL_COLUMNS,
        _DETAIL_COMPUTED | {"salesorderdetailname"},
    ),
    "quotedetails": Table(
        "quotedetail", "quotedetailid", (), (), {}, _DETAIL_COLUMNS, _DETAIL_COMPUTED | {"quotedetailname"}
    ),
    # Tasks have no standard alternate key; icb_externalkey is the custom one the hub writes holds by.
    "tasks": Table("task", "activityid", (("icb_externalkey",),), ("subject",), {"subject": 200}),
}

_ATTRIBUTE = re.compile(r"^[a-z_][a-z0-9_]*$")
# A lookup as a row answers it: _<lookup>_value (group "lookup").
LOOKUP_VALUE = re.compile(r"^_(?P<lookup>\w+)_value$")
# Greedy key: a ")" inside a quoted key value still belongs to the key.
_ENTITY_PATH = re.compile(r"^(?P<set>\w+)(?:\((?P<key>.*)\))?(?:/(?P<navigation>\w+))?$")
# Collection-valued navigation properties: (table, property) → (related table, its lookup column).
NAVIGATION = {
    ("accounts", "Account_Tasks"): ("tasks", "_regardingobjectid_value"),
    ("accounts", "contact_customer_accounts"): ("contacts", "_parentcustomerid_value"),
    ("accounts", "order_customer_accounts"): ("salesorders", "_customerid_value"),
    ("accounts", "quote_customer_accounts"): ("quotes", "_customerid_value"),
    ("accounts", "invoice_customer_accounts"): ("invoices", "_customerid_value"),
    ("salesorders", "SalesOrder_Tasks"): ("tasks", "_regardingobjectid_value"),
    ("salesorders", "order_details"): ("salesorderdetails", "_salesorderid_value"),
    ("quotes", "quote_details"): ("quotedetails", "_quoteid_value"),
}

PRIMARY_NAMES = {"contacts": "fullname", "tasks": "subject"}

# Lookup columns (single-valued navigation properties) per table. A lookup is set with
# "<navigation>@odata.bind": "/<entity set>(<id>)" and read back as _<lookup>_value, never set as text.
# "Associate and disassociate table rows using the Web API"
# https://learn.microsoft.com/power-apps/developer/data-platform/webapi/associate-disassociate-entities-using-web-api
_SALES_DOCUMENT = ("customerid", "pricelevelid", "transactioncurrencyid", "opportunityid", "ownerid")
LOOKUPS: dict[str, tuple[str, ...]] = {
    "accounts": ("primarycontactid", "parentaccountid", "transactioncurrencyid", "defaultpricelevelid", "ownerid"),
    "contacts": ("parentcustomerid", "transactioncurrencyid", "ownerid"),
    "products": ("defaultuomid", "defaultuomscheduleid", "pricelevelid", "transactioncurrencyid", "subjectid"),
    "quotes": _SALES_DOCUMENT,
    "salesorders": (*_SALES_DOCUMENT, "quoteid"),
    "invoices": (*_SALES_DOCUMENT, "salesorderid"),
    "salesorderdetails": ("salesorderid", "productid", "uomid", "transactioncurrencyid"),
    "quotedetails": ("quoteid", "productid", "uomid", "transactioncurrencyid"),
    "tasks": ("regardingobjectid", "ownerid"),
}


# The table a simple lookup names, for the lookups a query may $expand (query.expansions).
LOOKUP_TARGETS = {
    "productid": "products",
    "primarycontactid": "contacts",
    "parentaccountid": "accounts",
    "salesorderid": "salesorders",
    "quoteid": "quotes",
}


def lookup_name(navigation: str) -> str:
    """The lookup column behind a single-valued navigation property.

    Polymorphic lookups name their navigation <lookup>_<target table>[_<source table>]
    (regardingobjectid_account_task, parentcustomerid_account): the column is the part before the target.
    """
    for table in TABLES.values():
        marker = f"_{table.logical_name}"
        if marker in navigation:
            return navigation.split(marker, 1)[0]
    return navigation


def primary_name(set_name: str, data: dict[str, Any]) -> str | None:
    name = data.get(PRIMARY_NAMES.get(set_name, "name"))
    if name is None and set_name == "contacts":  # fullname is composed from the name parts
        name = " ".join(str(data[part]) for part in ("firstname", "lastname") if data.get(part)) or None
    return name if isinstance(name, str) else None
