"""The pieces the templates share, so that each flow and mapping states only what is its own.

flow(): a flow reads from one system (polled or business_event), writes to another (write), maps with
its mapping spec and retries like every flow of the templates (RETRY). Mapping fragments: fetch (one
options.fetch read; dataverse_lines, an order's or quote's detail rows), finops_mapping (an F&O
record's dataAreaId) and invoice_copy (a Dataverse invoice).
"""

from __future__ import annotations

import uuid
from typing import Any

from integrations.scenarios.templates.systems import DATAVERSE

RETRY = {"max_attempts": 10, "backoff": {"1": 5, "3": 30, "5": 300}, "jitter": 0.2}
# What the sandbox's Dataverse webhook steps send: the inbound credential as an HttpHeader.
WEBHOOK = {"auth_type": "header", "credential_name": "x-icbridge-key", "secret": "icbridge-sandbox-webhook-key"}


def polled(system: dict[str, Any], entity: str) -> dict[str, Any]:
    """Read: the hub polls the system for what changed."""
    return {"entity": entity, "source": system["slug"], "trigger": "poll"}


def business_event(system: dict[str, Any], entity: str, *event_types: str, record_key: str = "") -> dict[str, Any]:
    """Read: the system pushes these business events; record_key points at the record's number in one."""
    inbound = {"auth_type": "none", "record_key_pointer": record_key} if record_key else {"auth_type": "none"}
    read = {"entity": entity, "source": system["slug"], "trigger": "business_event", "inbound": inbound}
    return {**read, "options": {"event_types": list(event_types)}} if event_types else read


def write(system: dict[str, Any], entity: str, operation: str, *key_fields: str) -> dict[str, Any]:
    """Write: operation on the target's entity (or service), the record found by key_fields."""
    return {
        "target": system["slug"],
        "target_entity": entity,
        "target_operation": operation,
        "target_key_fields": list(key_fields),
    }


def flow(
    slug: str,
    name: str,
    source: dict[str, Any],
    target: dict[str, Any],
    mapping_spec: dict[str, Any],
    *,
    link: str,
    options: dict[str, Any] | None = None,
    **policy: str,
) -> dict[str, Any]:
    """One flow of a template (templates/__init__ lists its keys); policy: master and conflict_policy."""
    read = dict(source)
    read_options = read.pop("options", {})
    return {
        "slug": slug,
        "name": name,
        **read,
        "company_link": link,
        **target,
        "mapping_spec": mapping_spec,
        **policy,
        "retry_policy": RETRY,
        "options": {**read_options, **(options or {})},
    }


def fetch(entity: str, key: dict[str, str], name: str, *, first: bool = False) -> dict[str, Any]:
    """One options.fetch read: the entity's record by key (values are paths in the event), as fetched.<name>."""
    read = {"entity": entity, "key": key, "as": name}
    return {**read, "first": True} if first else read


def dataverse_lines(entity: str, header_lookup: str) -> dict[str, Any]:
    """Read a Dataverse order's or quote's lines (its salesorderdetail / quotedetail rows) as fetched.lines.

    A webhook names only the header (its id); the lines are rows of their own whose lookup to the header
    reads back as _<lookup>_value ("salesorderdetail EntityType", "quotedetail EntityType"). A line of a
    catalogue product names it by its productid lookup: the product's number is read with the line
    ($expand, "Join tables using the Web API"); a write-in line carries it as productdescription.
    """
    rule = {**fetch(entity, {f"_{header_lookup}_value": "id"}, "lines"), "many": True}
    return {**rule, "expand": "productid($select=productnumber)"}


# A line's item number: its catalogue product's number (dataverse_lines expands it), else a write-in line's
# productdescription (isproductoverridden).
LINE_PRODUCT_NUMBER = {"expr": "coalesce(productid.productnumber, productdescription)", "required": True}


# The sandbox's Dataverse unit (uom) rows: uomid by unit name. On a real environment an operator enters
# that environment's uomid values (GET uoms?$select=name) in the value maps built from these.
SANDBOX_UOMS = {
    name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"icbridge-sandbox/uom/{name}"))
    for name in ("ea", "pcs", "box", "kg", "m")
}


def finops_mapping(fields: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A mapping to an F&O record: its dataAreaId (legal entity) is the company link's target company."""
    return {"fields": {"dataAreaId": {"context": "target_company", "required": True}, **fields}, **spec}


# Where invoice_copy mappings write: Dataverse invoices, one per invoice number.
INVOICE_COPIES = {
    "target": DATAVERSE["slug"],
    "target_entity": "invoices",
    "target_operation": "upsert",
    "target_key_fields": ["invoicenumber"],
}


# F&O's posted invoices, each read as the SalesOrderInvoicedBusinessEvent that announced it (options.listing):
# what a load or reconciliation of an invoice flow lists, so an invoice whose event never came is found.
FINOPS_INVOICES = {
    "entity": "SalesInvoiceHeadersV2",
    "key": ["InvoiceNumber"],
    "event": {
        "InvoiceNumber": "InvoiceNumber",
        "SalesOrderNumber": "SalesOrderNumber",
        "LegalEntity": "dataAreaId",
        "CustomerAccount": "InvoiceCustomerAccountNumber",
        "InvoiceDate": "InvoiceDate",
        "InvoiceAmount": "TotalInvoiceAmount",
        "CurrencyCode": "CurrencyCode",
    },
}


def invoice_copy(fields: dict[str, Any]) -> dict[str, Any]:
    """A mapping to a Dataverse invoice that copies another system's: icb_readonly marks it read-only."""
    return {"fields": {**fields, "icb_readonly": {"const": True}}, "omit_nulls": True}
