"""Realistic demo traffic against the sandbox, so an operator sees the scenario flows move.

Everything goes through the systems' own APIs (our connectors against the emulators), the
way users of those systems would cause it: AX users enter intercompany purchase orders (the
poller picks them up), Sales users create accounts and orders (Dataverse posts its webhook —
the emulator has no service endpoints, so we post the RemoteExecutionContext it would send).
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.utils import timezone

from integrations import errors
from integrations.connectors import get_connector
from integrations.connectors.base import DeliveryRequest
from integrations.models import CompanyLink, Flow, InboundEndpoint

logger = logging.getLogger(__name__)

ITEMS = [
    ("A0001", "Pcs", "12.50"),
    ("A0002", "Pcs", "7.90"),
    ("B0110", "Box", "64.00"),
    ("C0420", "kg", "3.35"),
    ("D1000", "m", "1.20"),
]


@dataclass
class TrafficReport:
    created: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{len(self.created)} document(s) created"
        return text + (f", {len(self.failed)} failed: {'; '.join(self.failed[:3])}" if self.failed else "")


def _ensure(connector: Any, request: DeliveryRequest, report: TrafficReport, label: str) -> None:
    """Upsert one piece of master data; a failure is reported, not raised (the demo goes on)."""
    try:
        connector.deliver(request)
    except errors.DuplicateError:
        pass  # already there
    except errors.ConnectorError as exc:
        report.failed.append(f"{label}: {exc.message}")


def intercompany_master_data(*, link: CompanyLink, report: TrafficReport) -> None:
    """DK01's vendor and customer accounts for SE01 in AX; SE01's customer for DK01 and the items in F&O."""
    ax, fo = get_connector(link.system_a), get_connector(link.system_b)
    vendor = link.vendor_in_a_for_b
    _ensure(
        ax,
        DeliveryRequest(
            entity="VendorService",
            operation="upsert",
            payload={"AccountNum": vendor, "Name": f"{link.company_b} (intercompany)", "VendGroup": "IC"},
            key={"AccountNum": vendor},
            idempotency_key=f"seed-vendor-{link.company_a}-{vendor}",
            company=link.company_a,
        ),
        report,
        f"AX vendor {vendor}",
    )
    _ensure(
        ax,
        DeliveryRequest(
            entity="CustomerService",
            operation="upsert",
            payload={
                "AccountNum": link.customer_in_a_for_b,
                "Name": f"{link.company_b} (intercompany)",
                "CustGroup": "IC",
                "Currency": link.currency or "EUR",
            },
            key={"AccountNum": link.customer_in_a_for_b},
            idempotency_key=f"seed-customer-{link.company_a}-{link.customer_in_a_for_b}",
            company=link.company_a,
        ),
        report,
        f"AX customer {link.customer_in_a_for_b}",
    )
    customer = link.customer_in_b_for_a
    _ensure(
        fo,
        DeliveryRequest(
            entity="CustomersV3",
            operation="upsert",
            payload={
                "dataAreaId": link.company_b,
                "CustomerAccount": customer,
                "OrganizationName": f"{link.company_a} (intercompany)",
                "CustomerGroupId": "IC",
                "SalesCurrencyCode": link.currency or "EUR",
            },
            key={"dataAreaId": link.company_b, "CustomerAccount": customer},
            idempotency_key=f"seed-customer-{link.company_b}-{customer}",
            company=link.company_b,
        ),
        report,
        f"F&O customer {customer}",
    )
    for item, unit, price in ITEMS:
        _ensure(
            fo,
            DeliveryRequest(
                entity="ReleasedProductsV2",
                operation="upsert",
                payload={
                    "dataAreaId": link.company_b,
                    "ItemNumber": item,
                    "ProductName": f"Demo item {item}",
                    "SalesUnitSymbol": unit,
                    "SalesPrice": float(price),
                },
                key={"dataAreaId": link.company_b, "ItemNumber": item},
                idempotency_key=f"seed-item-{link.company_b}-{item}",
                company=link.company_b,
            ),
            report,
            f"F&O item {item}",
        )


def purchase_order_document(*, vendor: str, rng: random.Random, today: date | None = None) -> dict[str, Any]:
    """One AX purchase order with 1-4 lines, as an AX user would enter it."""
    today = today or timezone.now().date()
    lines = []
    for number, (item, unit, price) in enumerate(rng.sample(ITEMS, rng.randint(1, 4)), start=1):
        quantity = rng.randint(1, 40)
        lines.append(
            {
                "LineNumber": str(number),
                "ItemId": item,
                "PurchQty": str(quantity),
                "PurchUnit": unit,
                "PurchPrice": price,
                "LineAmount": f"{quantity * float(price):.2f}",
            }
        )
    return {
        "OrderAccount": vendor,
        "PurchName": "Intercompany replenishment",
        "CurrencyCode": "EUR",
        "DeliveryDate": (today + timedelta(days=rng.randint(3, 21))).isoformat(),
        "PurchLine": lines,
    }


def intercompany_orders(*, count: int, link: CompanyLink, seed: int | None = None) -> TrafficReport:
    """Enter `count` intercompany purchase orders in AX (company A of the link) through AIF."""
    report = TrafficReport()
    intercompany_master_data(link=link, report=report)
    rng = random.Random(seed)
    ax = get_connector(link.system_a)
    for _ in range(count):
        request = DeliveryRequest(
            entity="PurchaseOrderService",
            operation="create",
            payload=purchase_order_document(vendor=link.vendor_in_a_for_b, rng=rng),
            key={},
            idempotency_key=f"demo-po-{uuid.uuid4()}",
            company=link.company_a,
        )
        try:
            report.created.append(ax.deliver(request).target_key)
        except errors.ConnectorError as exc:
            report.failed.append(f"AX purchase order: {exc.message}")
    return report


# --- Dataverse webhooks ------------------------------------------------------------------------------------------


def _ms_date(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)})/"


def remote_execution_context(
    *, entity: str, record_id: str, message_name: str, attributes: dict[str, Any], organization: str = "icbridge"
) -> dict[str, Any]:
    """The body a Dataverse webhook step posts (RemoteExecutionContext), for one record."""
    now = datetime.now(tz=UTC)
    target = {
        "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
        "Attributes": [{"key": key, "value": value} for key, value in {**attributes, f"{entity}id": record_id}.items()],
        "EntityState": None,
        "FormattedValues": [],
        "Id": record_id,
        "KeyAttributes": [],
        "LogicalName": entity,
        "RelatedEntities": [],
        "RowVersion": str(attributes.get("versionnumber", "")) or None,
    }
    return {
        "BusinessUnitId": str(uuid.uuid4()),
        "CorrelationId": str(uuid.uuid4()),
        "Depth": 1,
        "InitiatingUserId": str(uuid.uuid4()),
        "InputParameters": [{"key": "Target", "value": target}],
        "IsExecutingOffline": False,
        "IsInTransaction": False,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "MessageName": message_name,
        "Mode": 1,
        "OperationCreatedOn": _ms_date(now),
        "OperationId": str(uuid.uuid4()),
        "OrganizationId": str(uuid.uuid5(uuid.NAMESPACE_DNS, organization)),
        "OrganizationName": organization,
        "OutputParameters": [],
        "OwningExtension": {"Id": str(uuid.uuid4()), "LogicalName": "sdkmessageprocessingstep", "Name": "icbridge"},
        "ParentContext": None,
        "PostEntityImages": [],
        "PreEntityImages": [],
        "PrimaryEntityId": record_id,
        "PrimaryEntityName": entity,
        "RequestId": str(uuid.uuid4()),
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": 40,
        "UserId": str(uuid.uuid4()),
    }


def hub_url(flow: Flow, base_url: str = "") -> str:
    """The hub's root: given, else the one serving the flow's sandbox source, else ICBRIDGE_PUBLIC_URL."""
    if base_url:
        return base_url.rstrip("/")
    head, sandbox, _ = flow.source.base_url.partition("/sandbox/")
    return head if sandbox else settings.PUBLIC_URL


def dataverse_webhook_post(*, flow: Flow, body: dict[str, Any], base_url: str = "") -> requests.Response:
    """Post a RemoteExecutionContext to the flow's webhook, with the credentials its endpoint wants."""
    url = f"{hub_url(flow, base_url)}/api/webhooks/dataverse/{flow.slug}"
    headers = {
        "x-ms-dynamics-organization": body.get("OrganizationName", ""),
        "x-ms-dynamics-entity-name": body.get("PrimaryEntityName", ""),
        "x-ms-dynamics-request-name": body.get("MessageName", ""),
        "x-ms-correlation-request-id": body.get("CorrelationId", ""),
    }
    endpoint = InboundEndpoint.objects.filter(flow=flow).first()
    if endpoint is not None and endpoint.auth_type == InboundEndpoint.AuthType.HEADER:
        headers[endpoint.credential_name or "x-icbridge-key"] = endpoint.secret or ""
    return requests.post(url, json=body, headers=headers, timeout=10)


def entity_reference(logical_name: str, record_id: str, name: str) -> dict[str, Any]:
    """A lookup value as a webhook's Target carries it."""
    return {
        "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
        "Id": record_id,
        "KeyAttributes": [],
        "LogicalName": logical_name,
        "Name": name,
        "RowVersion": None,
    }


def dataverse_record_and_webhook(
    *,
    flow: Flow,
    entity_set: str,
    entity: str,
    key: dict[str, Any],
    values: dict[str, Any],
    references: dict[str, Any] | None = None,
    base_url: str = "",
) -> str:
    """Write a record to Dataverse (as a Sales user would) and post the webhook Dataverse would send.

    references: lookups as the webhook shows them (EntityReference), set in the write by @odata.bind.
    """
    result = get_connector(flow.source).deliver(
        DeliveryRequest(
            entity=entity_set,
            operation="upsert",
            payload=values,
            key=key,
            idempotency_key=f"demo-{entity}-{uuid.uuid4()}",
        )
    )
    attributes = {**values, **(result.body or {})}
    attributes = {k: v for k, v in attributes.items() if "@" not in k and not k.startswith("_")}
    attributes.update(references or {})
    version = str(result.etag).removeprefix("W/").strip('"')
    if version.isdigit():
        attributes["versionnumber"] = int(version)
    body = remote_execution_context(
        entity=entity,
        record_id=result.target_key,
        message_name="Create" if result.created else "Update",
        attributes=attributes,
    )
    response = dataverse_webhook_post(flow=flow, body=body, base_url=base_url)
    if response.status_code >= 300:
        raise errors.RejectedError(f"webhook for {entity} {result.target_key} answered {response.status_code}")
    return result.target_key


# Per template: the account flow and the order flow that Sales webhooks feed.
SALES_FLOWS = {
    "prospect_to_cash": ("p2c-accounts-sales-to-fo", "p2c-orders-sales-to-fo"),
    "order_to_cash": ("o2c-accounts-d365-to-s4", "o2c-orders-d365-to-s4"),
}
CITIES = [("Malmö", "211 20", "SE"), ("Göteborg", "411 03", "SE"), ("Aarhus", "8000", "DK"), ("Boston", "02110", "US")]
NAMES = ["Contoso", "Fabrikam", "Northwind", "Litware", "Adventure Works", "Tailspin", "Wingtip", "Proseware"]


def sales_orders(*, count: int, template: str, seed: int | None = None, base_url: str = "") -> TrafficReport:
    """Create `count` Sales accounts and one order each in Dataverse, each followed by its webhook."""
    report = TrafficReport()
    account_slug, order_slug = SALES_FLOWS[template]
    accounts = Flow.objects.select_related("source").filter(slug=account_slug).first()
    orders = Flow.objects.select_related("source").filter(slug=order_slug).first()
    if accounts is None or orders is None:
        report.failed.append(f"template {template} is not installed (no flow {account_slug} / {order_slug})")
        return report
    rng = random.Random(seed)
    for _ in range(count):
        number = rng.randint(100_000, 999_999)
        city, postcode, country = rng.choice(CITIES)
        account_number = f"C-{number}"
        account_name = f"{rng.choice(NAMES)} {number}"
        try:
            account_id = dataverse_record_and_webhook(
                flow=accounts,
                entity_set="accounts",
                entity="account",
                key={"accountnumber": account_number},
                values={
                    "accountnumber": account_number,
                    "name": account_name,
                    "address1_city": city,
                    "address1_postalcode": postcode,
                    "address1_country": country,
                    "emailaddress1": f"orders{number}@example.com",
                },
                base_url=base_url,
            )
            lines = [
                {
                    "productnumber": item,
                    "quantity": rng.randint(1, 20),
                    "uomid": unit.lower(),
                    "priceperunit": float(price),
                }
                for item, unit, price in rng.sample(ITEMS, rng.randint(1, 3))
            ]
            total = sum(line["quantity"] * line["priceperunit"] for line in lines)
            order_number = f"ORD-{number}"
            dataverse_record_and_webhook(
                flow=orders,
                entity_set="salesorders",
                entity="salesorder",
                key={"ordernumber": order_number},
                values={
                    "ordernumber": order_number,
                    "name": f"Web order {number}",
                    "totalamount": round(total, 2),
                    "paymenttermscode": rng.choice([1, 2, 3]),
                    "requestdeliveryby": (timezone.now().date() + timedelta(days=rng.randint(2, 14))).isoformat(),
                    "customerid_account@odata.bind": f"/accounts({account_id})",
                    # Sandbox simplification: the order lines travel with the order (a plugin serialises them).
                    "icb_lines": lines,
                },
                references={"customerid": entity_reference("account", account_id, account_name)},
                base_url=base_url,
            )
            report.created.append(order_number)
        except (errors.ConnectorError, requests.RequestException) as exc:
            report.failed.append(f"{template} order {number}: {getattr(exc, 'message', str(exc))}")
    return report
