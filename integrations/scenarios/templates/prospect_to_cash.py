"""Prospect to cash: D365 Sales (Dataverse) ↔ D365 F&O SE01.

Accounts and contacts Sales → F&O in real time (Dataverse webhooks); released products
F&O → Sales incrementally (a change-tracked data project's export); quotes and orders Sales → F&O; invoices
F&O → Sales as read-only copies; F&O order holds become Sales tasks, and completing the
task clears the hold. Each entity has an owner (Flow.master) and a conflict policy.
Dataverse webhook events reach the mappings as {"event", "entity", "id", "attributes"}.
"""

from __future__ import annotations

from integrations.scenarios.templates.builders import (
    FINOPS_INVOICES,
    INVOICE_COPIES,
    LINE_PRODUCT_NUMBER,
    RETRY,
    SANDBOX_UOMS,
    WEBHOOK,
    dataverse_lines,
    finops_mapping,
    invoice_copy,
)
from integrations.scenarios.templates.systems import DATAVERSE, FINOPS

LINK = "Sales-SE01@F&O"

# Quotes and orders name their account by id; the account flow's RecordLink gives its F&O customer.
CUSTOMER_LINK = {
    "follows": "p2c-accounts-sales-to-fo",
    "match": "source_key",
    "key": ["attributes.customerid"],
    "as": "customer",
}

# F&O takes currencies and countries/regions as ISO codes and refuses names; a Sales currency lookup
# carries the currency's name, and address1_country is free text. Unmapped values pass as they are
# (a code already), so F&O names any value the maps lack.
CURRENCY_MAP = "p2c-currency-sales-to-fo"
COUNTRY_MAP = "p2c-country-sales-to-fo"
CURRENCY_CODE = {
    "path": "attributes.transactioncurrencyid.Name",
    "default": "SEK",
    "lookup": {"map": CURRENCY_MAP, "missing": "pass"},
}
CURRENCY_NAMES = {
    "Swedish Krona": "SEK",
    "Danish Krone": "DKK",
    "Norwegian Krone": "NOK",
    "Euro": "EUR",
    "US Dollar": "USD",
    "Pound Sterling": "GBP",
}
COUNTRY_NAMES = {
    "Sweden": "SE",
    "Denmark": "DK",
    "Norway": "NO",
    "Finland": "FI",
    "Germany": "DE",
    "United Kingdom": "GB",
    "United States": "US",
}

ACCOUNT_TO_CUSTOMER = finops_mapping(
    {
        "CustomerAccount": {"path": "attributes.accountnumber", "required": True},
        "OrganizationName": {"path": "attributes.name", "required": True, "max_length": 100},
        "CustomerGroupId": {"path": "attributes.msdyn_customergroupid.Name", "default": "30"},
        "SalesCurrencyCode": CURRENCY_CODE,
        "PrimaryContactEmail": "attributes.emailaddress1",
        "PrimaryContactPhone": "attributes.telephone1",
        "AddressCity": "attributes.address1_city",
        "AddressZipCode": "attributes.address1_postalcode",
        "AddressStreet": "attributes.address1_line1",
        # Sales keeps the country as text ("Sweden"); F&O takes the ISO code.
        "AddressCountryRegionISOCode": {
            "path": "attributes.address1_country",
            "default": "SE",
            "lookup": {"map": COUNTRY_MAP, "missing": "pass"},
        },
        "CreditLimit": {"path": "attributes.creditlimit", "type": "decimal", "as": "number", "precision": 2},
    },
    omit_nulls=True,
)

# F&O owns the credit side of a customer (dual-write maps these both ways); only those fields come back.
CUSTOMER_CREDIT_TO_ACCOUNT = {
    "fields": {
        "accountnumber": {"path": "CustomerAccount", "required": True},
        "creditlimit": {"path": "CreditLimit", "type": "decimal", "as": "number"},
        "msdyn_creditrating": "CreditRating",
        "msdyn_onholdstatus": "OnHoldStatus",
    },
    "omit_nulls": True,
}

CONTACT_TO_CONTACT_PERSON = finops_mapping(
    {
        # ContactPersonId is 20 characters in F&O: a stable id derived from the Dataverse contact id.
        "ContactPersonId": {"expr": "concat('CP-', upper(substr(replace(id, '-', ''), 0, 17)))", "required": True},
        "FirstName": "attributes.firstname",
        "LastName": {"path": "attributes.lastname", "required": True},
        "ContactPersonName": {"paths": ["attributes.firstname", "attributes.lastname"], "join": " "},
        # The contact's account, as the account flow delivered it to F&O (absent for a contact without one).
        "AssociatedContactType": {"expr": "$ctx.chain.customer.target.CustomerAccount ? 'Customer' : null"},
        "AssociatedContactNumber": {"expr": "$ctx.chain.customer.target.CustomerAccount"},
        "PrimaryEmailAddress": "attributes.emailaddress1",
        "PrimaryPhoneNumber": "attributes.telephone1",
        "JobTitle": "attributes.jobtitle",
    },
    omit_nulls=True,
)

# F&O unit symbol → the Sales unit (uom) row to bind. The GUIDs are the sandbox's; on a real
# environment an operator enters that environment's uomid values (GET uoms?$select=name).
UOM_MAP = "p2c-uom-fo-to-sales"
UOM_IDS = {symbol: f"/uoms({uomid})" for symbol, uomid in SANDBOX_UOMS.items()}
# And back: a Sales line's unit (its _uomid_value) → the F&O unit symbol.
LINE_UOM_MAP = "p2c-uom-sales-to-fo"

PRODUCT_TO_SALES = {
    "fields": {
        "productnumber": {"path": "ItemNumber", "required": True},
        "name": {"expr": "coalesce(ProductName, SearchName, ItemNumber)", "max_length": 100},
        "description": "ProductDescription",
        "price": {"path": "SalesPrice", "type": "decimal", "as": "number", "precision": 2},
        # A lookup: bound to the uom row ("/uoms(<id>)"), never set as text; the value map names the rows.
        # F&O symbols are mixed case ("Pcs"); the map's keys are lower case, as F&O compares them.
        "defaultuomid@odata.bind": {"expr": "lower(coalesce(SalesUnitSymbol, 'ea'))", "lookup": {"map": UOM_MAP}},
        "quantitydecimal": {"const": 2},
    },
    "omit_nulls": True,
}


def sales_lines(quantity_field: str) -> dict:
    """The order's or quote's detail rows (fetched.lines, see dataverse_lines) as F&O lines.

    A line names a catalogue product (productid, its number expanded) or is a write-in product whose
    productdescription carries the item number (isproductoverridden).
    """
    return {
        "each": "fetched.lines",
        "fields": {
            "LineCreationSequenceNumber": {"expr": "$index + 1", "type": "integer"},
            "ItemNumber": LINE_PRODUCT_NUMBER,
            quantity_field: {"path": "quantity", "type": "decimal", "as": "number", "required": True},
            "SalesUnitSymbol": {
                "path": "_uomid_value",
                "default": "ea",
                "lookup": {"map": LINE_UOM_MAP, "missing": "default", "default": "ea"},
            },
            "SalesPrice": {"path": "priceperunit", "type": "decimal", "as": "number", "precision": 2},
        },
    }


ORDER_LINES = sales_lines("OrderedSalesQuantity")
QUOTE_LINES = sales_lines("RequestedSalesQuantity")


def sales_document(fields: dict, lines_field: str, lines: dict) -> dict:
    """A Sales quote or order as its F&O header: fields, then its currency and its lines under lines_field."""
    return finops_mapping({**fields, "CurrencyCode": CURRENCY_CODE, lines_field: lines}, omit_nulls=True)


QUOTE_TO_FO = sales_document(
    {
        "SalesQuotationNumber": {"path": "attributes.quotenumber", "required": True},
        "RequestingCustomerAccountNumber": {"expr": "$ctx.chain.customer.target.CustomerAccount", "required": True},
        "QuotationName": {"path": "attributes.name", "max_length": 60},
        "QuotationExpiryDate": {"path": "attributes.expireson", "type": "date"},
    },
    "SalesQuotationLines",
    QUOTE_LINES,
)

ORDER_TO_FO = sales_document(
    {
        "SalesOrderNumber": {"path": "attributes.ordernumber", "required": True},
        # The order's account, as the account flow delivered it to F&O (its RecordLink).
        "OrderingCustomerAccountNumber": {"expr": "$ctx.chain.customer.target.CustomerAccount", "required": True},
        "InvoiceCustomerAccountNumber": {"expr": "$ctx.chain.customer.target.CustomerAccount"},
        "CustomersOrderReference": "attributes.name",
        "RequestedReceiptDate": {"path": "attributes.requestdeliveryby", "type": "date"},
        "DefaultShippingSiteId": {"context": "site", "required": True},
        "DefaultShippingWarehouseId": {"context": "warehouse"},
    },
    "SalesOrderLines",
    ORDER_LINES,
)


def sales_document_flow(entity: str, document: str, mapping: dict, *, detail: str, header: str) -> dict:
    """A Sales quote or order → its F&O document: the header upserted by number, the lines read as detail rows."""
    label = {
        "quote": ("quotes", "Sales quote", "sales quotation"),
        "salesorder": ("orders", "Sales order", "sales order"),
    }
    plural, source_name, target_name = label[entity]
    return {
        "slug": f"p2c-{plural}-sales-to-fo",
        "name": f"P2C: {source_name} → F&O {target_name}",
        "entity": entity,
        "source": DATAVERSE["slug"],
        "target": FINOPS["slug"],
        "company_link": LINK,
        "trigger": "webhook",
        "target_entity": f"{document}HeadersV2",
        "target_operation": "upsert",
        "target_key_fields": ["dataAreaId", f"{document}Number"],
        "mapping_spec": mapping,
        "master": "source",
        "conflict_policy": "park",
        "retry_policy": RETRY,
        "options": {
            "lines": {"field": f"{document}Lines", "entity": f"{document}Lines"},
            "links": [CUSTOMER_LINK],
            "fetch": [dataverse_lines(detail, header)],
        },
        "inbound": WEBHOOK,
    }


INVOICE_TO_SALES = invoice_copy(
    {
        "invoicenumber": {"path": "InvoiceNumber", "required": True},
        "name": {"expr": "concat('F&O invoice ', InvoiceNumber)"},
        "description": {
            "expr": "concat('Read-only copy of F&O ', LegalEntity, ' invoice for order ', SalesOrderNumber)"
        },
        "totalamount": {"path": "InvoiceAmount", "type": "decimal", "as": "number", "precision": 2},
        "datedelivered": {"path": "InvoiceDate", "type": "date"},
        "icb_salesordernumber": "SalesOrderNumber",
        "icb_customeraccount": "CustomerAccount",
    }
)

HOLD_TO_TASK = {
    "fields": {
        "icb_externalkey": {"expr": "concat(LegalEntity, '|', SalesOrderNumber, '|', HoldCode)", "required": True},
        "subject": {"expr": "concat('Order ', SalesOrderNumber, ' on hold: ', coalesce(HoldReason, HoldCode))"},
        "description": {"expr": "concat('F&O ', LegalEntity, ' placed order ', SalesOrderNumber, ' on hold.')"},
        "scheduledend": {"path": "EventTime", "type": "datetime"},
        "prioritycode": {"const": 2},
        # A hold placed again after it was cleared reopens its task.
        "statecode": {"const": 0},
        "statuscode": {"const": 2},
    },
}

# The custom service's parameters, as F&O custom services name them (_dataAreaId, …).
TASK_TO_CLEAR_HOLD = {
    "fields": {
        "_dataAreaId": {"expr": "split(attributes.icb_externalkey, '|', 0)", "required": True},
        "_salesOrderNumber": {"expr": "split(attributes.icb_externalkey, '|', 1)", "required": True},
        "_holdCode": {"expr": "split(attributes.icb_externalkey, '|', 2)", "required": True},
        "_clearedBy": {"const": "icbridge (Sales task completed)"},
    },
}

TEMPLATE = {
    "title": "Prospect to cash: D365 Sales ↔ F&O SE01",
    "description": (
        "Accounts and contacts from Sales to F&O by webhook; products from F&O to Sales incrementally; "
        "quotes and orders to F&O; invoices back as read-only copies; order holds as Sales tasks."
    ),
    "systems": [DATAVERSE, FINOPS],
    "company_links": [
        {
            "name": LINK,
            "system_a": DATAVERSE["slug"],
            "company_a": "SALES",
            "system_b": FINOPS["slug"],
            "company_b": "SE01",
            "currency": "SEK",
            # site / warehouse: the order header's defaults, which its lines take (Site is a mandatory dimension).
            "defaults": {"customer_group": "30", "site": "1", "warehouse": "11"},
        }
    ],
    "value_maps": [
        {"name": UOM_MAP, "description": "F&O unit symbol → Sales unit (uoms row to bind)", "entries": UOM_IDS},
        {
            "name": LINE_UOM_MAP,
            "description": "Sales line unit (_uomid_value) → F&O unit symbol",
            "entries": {uomid: symbol for symbol, uomid in SANDBOX_UOMS.items()},
        },
        {"name": CURRENCY_MAP, "description": "Sales currency name → ISO 4217 code", "entries": CURRENCY_NAMES},
        {"name": COUNTRY_MAP, "description": "Sales country (text) → ISO 3166 code", "entries": COUNTRY_NAMES},
    ],
    "flows": [
        {
            "slug": "p2c-accounts-sales-to-fo",
            "name": "P2C: Sales account → F&O customer",
            "entity": "account",
            "source": DATAVERSE["slug"],
            "target": FINOPS["slug"],
            "company_link": LINK,
            "trigger": "webhook",
            "target_entity": "CustomersV3",
            "target_operation": "upsert",
            "target_key_fields": ["dataAreaId", "CustomerAccount"],
            "mapping_spec": ACCOUNT_TO_CUSTOMER,
            # Sales owns accounts: a customer edited in F&O since our last write is parked for an operator.
            "master": "source",
            "conflict_policy": "park",
            "retry_policy": RETRY,
            # Our writes of F&O's credit fields into Sales accounts fire account webhooks too: those are echoes.
            "options": {
                "deep_link": {"entity": "account"},
                "echo_of": ["p2c-customers-fo-to-sales"],
                # A Sales account deleted puts its F&O customer on hold (F&O keeps customers with history).
                "webhook_messages": ["Create", "Update", "Delete"],
                "on_delete": {"action": "block", "set": {"OnHoldStatus": "All"}},
            },
            "inbound": WEBHOOK,
        },
        {
            "slug": "p2c-customers-fo-to-sales",
            "name": "P2C: F&O customer credit → Sales account",
            "entity": "customer",
            "source": FINOPS["slug"],
            "target": DATAVERSE["slug"],
            "company_link": LINK,
            "trigger": "poll",
            "target_entity": "accounts",
            "target_operation": "update",
            "target_key_fields": ["accountnumber"],
            "mapping_spec": CUSTOMER_CREDIT_TO_ACCOUNT,
            "master": "source",
            "conflict_policy": "master_wins",
            "retry_policy": RETRY,
            # Our own writes of accounts into F&O come back through F&O's change feed: skip those.
            "options": {
                # The intercompany customer lives in F&O only (the intercompany template): no Sales account.
                "only_when": {"CustomerAccount": {"not": ["IC-DK01"]}},
                "echo_of": ["p2c-accounts-sales-to-fo"],
                # Read by integrations.systems.finops.poll: an incremental export of a data project over
                # CustomersV3 with change tracking enabled (an F&O administrator sets both up; the demo
                # installer does it in the sandbox). F&O entities have no modified date/time to filter on.
                "poll": {"entity": "CustomersV3", "key": ["CustomerAccount"], "company": "SE01"},
                "package_project": "ICB-P2C-Customers",
            },
        },
        {
            "slug": "p2c-contacts-sales-to-fo",
            "name": "P2C: Sales contact → F&O contact person",
            "entity": "contact",
            "source": DATAVERSE["slug"],
            "target": FINOPS["slug"],
            "company_link": LINK,
            "trigger": "webhook",
            "target_entity": "ContactPersonsV2",
            "target_operation": "upsert",
            "target_key_fields": ["dataAreaId", "ContactPersonId"],
            "mapping_spec": CONTACT_TO_CONTACT_PERSON,
            "master": "source",
            "conflict_policy": "master_wins",
            "retry_policy": RETRY,
            "options": {
                "links": [{**CUSTOMER_LINK, "key": ["attributes.parentcustomerid"], "optional": True}],
            },
            "inbound": WEBHOOK,
        },
        {
            "slug": "p2c-products-fo-to-sales",
            "name": "P2C: F&O released product → Sales product",
            "entity": "product",
            "source": FINOPS["slug"],
            "target": DATAVERSE["slug"],
            "company_link": LINK,
            "trigger": "poll",
            "target_entity": "products",
            "target_operation": "upsert",
            "target_key_fields": ["productnumber"],
            "mapping_spec": PRODUCT_TO_SALES,
            # F&O owns the catalogue: a product changed in Sales keeps F&O's version on the next sync.
            "master": "source",
            "conflict_policy": "master_wins",
            "retry_policy": RETRY,
            # Changes come from a change-tracked data project's incremental export (as the credit flow).
            "options": {
                "poll": {"entity": "ReleasedProductsV2", "key": ["ItemNumber"], "company": "SE01"},
                "package_project": "ICB-P2C-ReleasedProducts",
            },
        },
        sales_document_flow("quote", "SalesQuotation", QUOTE_TO_FO, detail="quotedetails", header="quoteid"),
        sales_document_flow("salesorder", "SalesOrder", ORDER_TO_FO, detail="salesorderdetails", header="salesorderid"),
        {
            "slug": "p2c-invoices-fo-to-sales",
            "name": "P2C: F&O customer invoice → Sales invoice (read-only copy)",
            "entity": "invoice",
            "source": FINOPS["slug"],
            **INVOICE_COPIES,
            "company_link": LINK,
            "trigger": "business_event",
            "mapping_spec": INVOICE_TO_SALES,
            "master": "source",
            "conflict_policy": "master_wins",
            "retry_policy": RETRY,
            "options": {
                "event_types": ["SalesOrderInvoicedBusinessEvent"],
                # Intercompany invoices go to DK01's books (the intercompany template), not to Sales.
                "only_when": {"CustomerAccount": {"not": ["IC-DK01"]}},
                "listing": FINOPS_INVOICES,
            },
            "inbound": {"auth_type": "none", "record_key_pointer": "/InvoiceNumber"},
        },
        {
            "slug": "p2c-holds-fo-to-sales-tasks",
            "name": "P2C: F&O order hold → Sales task",
            "entity": "orderhold",
            "source": FINOPS["slug"],
            "target": DATAVERSE["slug"],
            "company_link": LINK,
            "trigger": "business_event",
            "target_entity": "tasks",
            "target_operation": "upsert",
            "target_key_fields": ["icb_externalkey"],
            "mapping_spec": HOLD_TO_TASK,
            "master": "source",
            "conflict_policy": "master_wins",
            "retry_policy": RETRY,
            "options": {
                "event_types": ["SalesOrderHoldPlacedBusinessEvent"],
                # Holds are listed as the hold-placed events that would have announced them (options.listing).
                "listing": {
                    "entity": "SalesOrderHolds",
                    "key": ["SalesOrderNumber", "HoldCode"],
                    "event": {
                        "SalesOrderNumber": "SalesOrderNumber",
                        "LegalEntity": "dataAreaId",
                        "HoldCode": "HoldCode",
                        "HoldReason": "HoldReason",
                        "EventTime": "PlacedDateTime",
                    },
                },
            },
            # An order may be on several holds at once, each cleared by itself: a hold is its order and code.
            "inbound": {"auth_type": "none", "record_key_pointer": "/SalesOrderNumber,/HoldCode"},
        },
        {
            "slug": "p2c-tasks-sales-to-fo-holds",
            "name": "P2C: completed Sales task → F&O hold cleared",
            "entity": "task",
            "source": DATAVERSE["slug"],
            "target": FINOPS["slug"],
            "company_link": LINK,
            "trigger": "webhook",
            "target_entity": "IcbOrderHoldServices/IcbOrderHoldService/clearHold",
            "target_operation": "action",
            "target_key_fields": [],
            "mapping_spec": TASK_TO_CLEAR_HOLD,
            "master": "source",
            "conflict_policy": "master_wins",
            "retry_policy": RETRY,
            # A completed task is an Update: the webhook step takes only those. A hold placed again updates
            # its task too: that one is our own echo (and not completed).
            "options": {
                "webhook_messages": ["Update"],
                "echo_of": ["p2c-holds-fo-to-sales-tasks"],
                "only_when": {"statecode": 1},
                # The hold's task (its RecordLink) puts the clearing into the hold's chain.
                "chain": {"follows": "p2c-holds-fo-to-sales-tasks", "match": "target_key", "key": ["id"], "as": "hold"},
            },
            "inbound": WEBHOOK,
        },
    ],
}
