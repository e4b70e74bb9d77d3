"""Order to cash: D365 (Dataverse) ↔ SAP S/4HANA.

Business partners both ways (our own writes never echo back, neither S/4's events about the partners
we write nor the D365 webhooks about the accounts and orders we update); sales orders D365 → S/4 as one
deep insert of A_SalesOrder with to_Item, using value maps (D365 unit → S/4 unit, payment terms)
and a conditional SalesOrderType (large orders get their own type); outbound deliveries and
billing documents (with the accounting document S/4 posts for them) come back to D365. S/4's
events carry only a key: options.fetch reads the documents they name before mapping.
"""

from __future__ import annotations

from typing import Any

from integrations.scenarios.templates.builders import (
    INVOICE_COPIES,
    LINE_PRODUCT_NUMBER,
    RETRY,
    SANDBOX_UOMS,
    WEBHOOK,
    dataverse_lines,
    fetch,
    invoice_copy,
)
from integrations.scenarios.templates.systems import DATAVERSE, S4HANA

LINK = "Sales-1710@S/4"
# Orders above this net value are SAP order type "ZOR" (own pricing and credit checks) instead of "OR".
LARGE_ORDER_TOTAL = 50000
ORDERS = "o2c-orders-d365-to-s4"

ACCOUNT_TO_BP = {
    "fields": {
        # D365's account number is the business partner number (external number range in S/4).
        "BusinessPartner": {"path": "attributes.accountnumber", "required": True, "max_length": 10},
        "BusinessPartnerCategory": {"const": "2"},
        "BusinessPartnerGrouping": {"const": "BP02"},
        "OrganizationBPName1": {"path": "attributes.name", "required": True, "max_length": 40},
        "SearchTerm1": {"expr": "upper(substr(attributes.name, 0, 20))"},
        # S/4 takes a partner as sold-to party only in the customer role with sales area data: created in
        # the same deep insert (API_BUSINESS_PARTNER: to_BusinessPartnerRole, to_Customer/to_CustomerSalesArea).
        "to_BusinessPartnerRole": {"const": [{"BusinessPartnerRole": "FLCU01"}, {"BusinessPartnerRole": "FLCU00"}]},
        "to_Customer": {
            "fields": {
                "to_CustomerSalesArea": {
                    # One sales area per account: "[*]" makes the account number a one-line list.
                    "each": "attributes.accountnumber[*]",
                    "fields": {
                        "SalesOrganization": {"context": "sales_organization", "required": True},
                        "DistributionChannel": {"context": "distribution_channel", "required": True},
                        "Division": {"context": "division", "required": True},
                        "Currency": {"const": "USD"},
                    },
                }
            }
        },
    },
    "omit_nulls": True,
}

# S/4 events carry only the key; options.fetch reads the business partner (payload_fetched, read as fetched.bp).
BP_TO_ACCOUNT = {
    "fields": {
        "accountnumber": {"path": "fetched.bp.BusinessPartner", "required": True},
        "name": {"path": "fetched.bp.OrganizationBPName1", "required": True},
    },
    "omit_nulls": True,
}

ORDER_TO_S4 = {
    "fields": {
        "SalesOrderType": {
            "cases": [{"when": f"number(coalesce(attributes.totalamount, 0)) > {LARGE_ORDER_TOTAL}", "then": "ZOR"}],
            "else": "OR",
        },
        "SalesOrganization": {"context": "sales_organization", "required": True},
        "DistributionChannel": {"context": "distribution_channel", "required": True},
        "OrganizationDivision": {"context": "division", "required": True},
        # The order's account, as the account flow created it in S/4 (its RecordLink).
        "SoldToParty": {"expr": "$ctx.chain.customer.target_key", "required": True},
        # The D365 order number stays the customer's reference: the key a redelivery finds the order by.
        "PurchaseOrderByCustomer": {"path": "attributes.ordernumber", "required": True, "max_length": 35},
        "CustomerPaymentTerms": {
            "path": "attributes.paymenttermscode",
            "type": "string",
            "lookup": {"map": "o2c-payment-terms-d365-to-s4", "missing": "default", "default": "0001"},
        },
        "RequestedDeliveryDate": {"path": "attributes.requestdeliveryby", "type": "date", "format": "odata"},
        "TransactionCurrency": {"path": "attributes.transactioncurrencyid.Name", "default": "USD"},
        # The order's salesorderdetail rows (options.fetch): a catalogue product's number (expanded), or a
        # write-in product's productdescription, is the material number.
        "to_Item": {
            "each": "fetched.lines",
            "fields": {
                "SalesOrderItem": {"expr": "string(($index + 1) * 10)"},
                "Material": LINE_PRODUCT_NUMBER,
                "RequestedQuantity": {"path": "quantity", "type": "decimal", "required": True},
                "RequestedQuantityUnit": {"path": "_uomid_value", "lookup": {"map": "o2c-uom-d365-to-s4"}},
                # No NetAmount: S/4 prices the item itself (sap:creatable="false" in $metadata).
            },
        },
    },
    "omit_nulls": True,
}


def document_fetch(
    entity: str, item_entity: str, key: dict[str, str], name: str, order_key: str
) -> list[dict[str, Any]]:
    """Read the document an event names (as fetched.<name>), its first item, and the sales order the item names."""
    return [
        fetch(entity, key, name),
        fetch(item_entity, key, "item", first=True),
        fetch("API_SALES_ORDER_SRV/A_SalesOrder", {"SalesOrder": f"fetched.item.{order_key}"}, "order"),
    ]


# The delivery's first item names the sales order; the order gives the D365 order number back.
DELIVERY_FETCH = document_fetch(
    "API_OUTBOUND_DELIVERY_SRV/A_OutbDeliveryHeader",
    "API_OUTBOUND_DELIVERY_SRV/A_OutbDeliveryItem",
    {"DeliveryDocument": "data.OutboundDelivery"},
    "delivery",
    "ReferenceSDDocument",
)

DELIVERY_TO_ORDER = {
    "fields": {
        "ordernumber": {"path": "fetched.order.PurchaseOrderByCustomer", "required": True},
        "icb_deliverydocument": {"path": "fetched.delivery.DeliveryDocument", "required": True},
        "icb_goodsmovementstatus": "fetched.delivery.OverallGoodsMovementStatus",
        "icb_deliverydate": {"path": "fetched.delivery.ActualGoodsMovementDate", "type": "date"},
    },
    "omit_nulls": True,
}

BILLING_FETCH = document_fetch(
    "API_BILLING_DOCUMENT_SRV/A_BillingDocument",
    "API_BILLING_DOCUMENT_SRV/A_BillingDocumentItem",
    {"BillingDocument": "data.BillingDocument"},
    "billing",
    "SalesDocument",
)

# S/4 posts the billing document to accounting at once: its AccountingDocument is the FI document.
BILLING_TO_INVOICE = invoice_copy(
    {
        "invoicenumber": {"path": "fetched.billing.BillingDocument", "required": True},
        "name": {"expr": "concat('S/4 billing document ', fetched.billing.BillingDocument)"},
        "icb_salesordernumber": "fetched.order.PurchaseOrderByCustomer",
        "totalamount": {"path": "fetched.billing.TotalNetAmount", "type": "decimal", "as": "number"},
        "datedelivered": {"path": "fetched.billing.BillingDocumentDate", "type": "date"},
        "icb_accountingdocument": "fetched.billing.AccountingDocument",
        "icb_accountingstatus": "fetched.billing.AccountingPostingStatus",
    }
)

TEMPLATE = {
    "title": "Order to cash: D365 ↔ SAP S/4HANA",
    "description": (
        "Business partners both ways; D365 sales orders to S/4 as one deep insert with items, value maps "
        "for units and payment terms and a conditional order type; deliveries, billing and accounting "
        "documents back to D365."
    ),
    "systems": [DATAVERSE, S4HANA],
    "company_links": [
        {
            "name": LINK,
            "system_a": DATAVERSE["slug"],
            "company_a": "SALES",
            "system_b": S4HANA["slug"],
            "company_b": "1710",
            "currency": "USD",
            "defaults": {"sales_organization": "1710", "distribution_channel": "10", "division": "00"},
        }
    ],
    "value_maps": [
        {
            "name": "o2c-uom-d365-to-s4",
            "description": "D365 unit (a line's _uomid_value) → S/4 unit",
            "entries": {
                SANDBOX_UOMS[name]: unit
                for name, unit in {"ea": "EA", "pcs": "PC", "box": "BOX", "kg": "KG", "m": "M"}.items()
            },
        },
        {
            "name": "o2c-payment-terms-d365-to-s4",
            "description": "D365 payment terms (paymenttermscode) → S/4 CustomerPaymentTerms",
            "entries": {"1": "0001", "2": "0002", "3": "0004", "4": "0003"},
        },
    ],
    "flows": [
        {
            "slug": "o2c-accounts-d365-to-s4",
            "name": "O2C: D365 account → S/4 business partner",
            "entity": "account",
            "source": DATAVERSE["slug"],
            "target": S4HANA["slug"],
            "company_link": LINK,
            "trigger": "webhook",
            "target_entity": "API_BUSINESS_PARTNER/A_BusinessPartner",
            "target_operation": "upsert",
            "target_key_fields": ["BusinessPartner"],
            "mapping_spec": ACCOUNT_TO_BP,
            "master": "source",
            "conflict_policy": "master_wins",
            "retry_policy": RETRY,
            # S/4 business partners we write into D365 accounts fire account webhooks: those are echoes.
            "options": {
                "echo_of": ["o2c-bp-s4-to-d365"],
                # API_BUSINESS_PARTNER refuses DELETE of a business partner: a deleted account blocks it.
                "webhook_messages": ["Create", "Update", "Delete"],
                "on_delete": {"action": "block", "set": {"BusinessPartnerIsBlocked": True}},
            },
            "inbound": WEBHOOK,
        },
        {
            "slug": "o2c-bp-s4-to-d365",
            "name": "O2C: S/4 business partner → D365 account",
            "entity": "businesspartner",
            "source": S4HANA["slug"],
            "target": DATAVERSE["slug"],
            "company_link": LINK,
            "trigger": "business_event",
            "target_entity": "accounts",
            "target_operation": "upsert",
            "target_key_fields": ["accountnumber"],
            "mapping_spec": BP_TO_ACCOUNT,
            "master": "source",
            "conflict_policy": "master_wins",
            "retry_policy": RETRY,
            "options": {
                "event_types": [
                    "sap.s4.beh.businesspartner.v1.BusinessPartner.Created.v1",
                    "sap.s4.beh.businesspartner.v1.BusinessPartner.Changed.v1",
                ],
                # Our own writes of accounts into S/4 make S/4 emit BusinessPartner events: skip those.
                "echo_of": ["o2c-accounts-d365-to-s4"],
                "fetch": [
                    {
                        "entity": "API_BUSINESS_PARTNER/A_BusinessPartner",
                        "key": {"BusinessPartner": "data.BusinessPartner"},
                        "as": "bp",
                    }
                ],
            },
            "inbound": {"auth_type": "none"},
        },
        {
            "slug": ORDERS,
            "name": "O2C: D365 sales order → S/4 sales order (deep insert)",
            "entity": "salesorder",
            "source": DATAVERSE["slug"],
            "target": S4HANA["slug"],
            "company_link": LINK,
            "trigger": "webhook",
            "target_entity": "API_SALES_ORDER_SRV/A_SalesOrder",
            # Upsert: a D365 Update (or a reconciliation repair) PATCHes the order found by its customer
            # reference and then its items one by one (OData v2 has no deep update); a new order is one deep insert.
            "target_operation": "upsert",
            "target_key_fields": ["PurchaseOrderByCustomer"],
            "mapping_spec": ORDER_TO_S4,
            "master": "source",
            "conflict_policy": "master_wins",
            "retry_policy": RETRY,
            "options": {
                # S/4's deliveries we write onto the D365 order fire salesorder webhooks: those are echoes.
                "echo_of": ["o2c-deliveries-s4-to-d365"],
                # A D365 order deleted deletes the S/4 order (A_SalesOrder is deletable, with its items).
                "webhook_messages": ["Create", "Update", "Delete"],
                "on_delete": {"action": "delete"},
                "fetch": [dataverse_lines("salesorderdetails", "salesorderid")],
                "links": [
                    {
                        "follows": "o2c-accounts-d365-to-s4",
                        "match": "source_key",
                        "key": ["attributes.customerid"],
                        "as": "customer",
                    }
                ],
            },
            "inbound": WEBHOOK,
        },
        {
            "slug": "o2c-deliveries-s4-to-d365",
            "name": "O2C: S/4 outbound delivery → D365 order",
            "entity": "delivery",
            "source": S4HANA["slug"],
            "target": DATAVERSE["slug"],
            "company_link": LINK,
            "trigger": "business_event",
            "target_entity": "salesorders",
            "target_operation": "update",
            "target_key_fields": ["ordernumber"],
            "mapping_spec": DELIVERY_TO_ORDER,
            "retry_policy": RETRY,
            "options": {
                "event_types": ["sap.s4.beh.outbounddelivery.v1.OutboundDelivery.Created.v1"],
                "fetch": DELIVERY_FETCH,
                "chain": {
                    "follows": ORDERS,
                    "match": "target_key",
                    "key": ["fetched.item.ReferenceSDDocument"],
                    "as": "order",
                    "step": 2,
                },
            },
            "inbound": {"auth_type": "none"},
        },
        {
            "slug": "o2c-billing-s4-to-d365",
            "name": "O2C: S/4 billing and accounting document → D365 invoice",
            "entity": "billingdocument",
            "source": S4HANA["slug"],
            **INVOICE_COPIES,
            "company_link": LINK,
            "trigger": "business_event",
            "mapping_spec": BILLING_TO_INVOICE,
            "retry_policy": RETRY,
            "options": {
                "event_types": ["sap.s4.beh.billingdocument.v1.BillingDocument.Created.v1"],
                "fetch": BILLING_FETCH,
                "chain": {
                    "follows": ORDERS,
                    "match": "target_key",
                    "key": ["fetched.item.SalesDocument"],
                    "as": "order",
                    "step": 3,
                },
            },
            "inbound": {"auth_type": "none"},
        },
    ],
}
