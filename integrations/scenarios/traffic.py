"""Realistic demo traffic against the sandbox, so an operator sees the scenario flows move.

Everything goes through the systems' own APIs (our connectors against the emulators), the
way users of those systems would cause it: AX users enter intercompany purchase orders (the
poller picks them up), Sales users create accounts and orders in Dataverse, whose webhook steps
(registered by templates_install in the emulator) tell the hub.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import Any

from django.utils import timezone

from integrations import errors
from integrations.models import CompanyLink, Flow, System
from integrations.protocols.transport import Connector, DeliveryRequest
from integrations.scenarios.templates.builders import SANDBOX_UOMS
from integrations.systems import get_connector
from integrations.systems.dataverse.connector import DataverseConnector

logger = logging.getLogger(__name__)

ITEMS = [
    ("A0001", "Pcs", "12.50"),
    ("A0002", "Pcs", "7.90"),
    ("B0110", "Box", "64.00"),
    ("C0420", "kg", "3.35"),
    ("D1000", "m", "1.20"),
]
# The F&O units the demo's lines name: the items' own, and what the templates' unit maps give (Pcs → ea in the
# intercompany map, the Sales units in lower case, which F&O matches case-insensitively).
UNITS = ("ea", "Pcs", "Box", "kg", "m")


@dataclass
class TrafficReport:
    created: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{len(self.created)} document(s) created"
        return text + (f", {len(self.failed)} failed: {'; '.join(self.failed[:3])}" if self.failed else "")


def _seed(
    connector: Any,
    report: TrafficReport,
    system: str,
    company: str,
    entity: str,
    seed: str,
    key: dict[str, str],
    fields: dict[str, Any],
) -> None:
    """Upsert one piece of master data, its key plus fields; a failure is reported, not raised (the demo goes on).

    "seed-<seed>-<company>-<last key value>" is its idempotency key, so a second run writes nothing twice.
    """
    ident = list(key.values())[-1]
    request = DeliveryRequest(
        entity=entity,
        operation="upsert",
        payload={**key, **fields},
        key=key,
        idempotency_key=f"seed-{seed}-{company}-{ident}",
        company=company,
    )
    try:
        connector.deliver(request)
    except errors.DuplicateError:
        pass  # already there
    except errors.ConnectorError as exc:
        report.failed.append(f"{system} {seed} {ident}: {exc.message}")


def intercompany_master_data(*, link: CompanyLink, report: TrafficReport) -> None:
    """DK01's vendor and customer accounts for SE01 in AX; SE01's customer for DK01 and the items in F&O."""
    in_ax = partial(_seed, get_connector(link.system_a), report, "AX", link.company_a)
    in_fo = partial(_seed, get_connector(link.system_b), report, "F&O", link.company_b)
    currency = link.currency or "EUR"
    se01, dk01 = f"{link.company_b} (intercompany)", f"{link.company_a} (intercompany)"
    in_ax("VendorService", "vendor", {"AccountNum": link.vendor_in_a_for_b}, {"Name": se01, "VendGroup": "IC"})
    in_ax(
        "CustomerService",
        "customer",
        {"AccountNum": link.customer_in_a_for_b},
        {"Name": se01, "CustGroup": "IC", "Currency": currency},
    )
    in_fo(
        "CustomersV3",
        "customer",
        {"dataAreaId": link.company_b, "CustomerAccount": link.customer_in_b_for_a},
        {"OrganizationName": dk01, "CustomerGroupId": "IC", "SalesCurrencyCode": currency},
    )
    finops_items(connector=get_connector(link.system_b), company=link.company_b, report=report)


def finops_items(*, connector: Connector, company: str, report: TrafficReport) -> None:
    """F&O users release the demo's items in the company: F&O refuses an order line naming an unreleased item."""
    for item, unit, price in ITEMS:
        _seed(
            connector,
            report,
            "F&O",
            company,
            "ReleasedProductsV2",
            "item",
            {"dataAreaId": company, "ItemNumber": item},
            {"ProductName": f"Demo item {item}", "SalesUnitSymbol": unit, "SalesPrice": float(price)},
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


# --- Dataverse: Sales users ---------------------------------------------------------------------------------------

# The Sales users sign in with an app registration of their own, not the hub's: their changes reach the hub
# through the webhooks Dataverse sends (the steps templates_install registers), as another user's.
SALES_USERS_CLIENT_ID = "4f1c6a32-1c2b-4d1e-9d3f-1cb1d9e0a5a1"
SALES_USERS_SECRET = "icbridge-sandbox-sales-users"  # noqa: S105 - an app of the demo's own emulator
_sales_users: dict[tuple[Any, ...], Connector] = {}


def sales_user(system: System) -> Connector:
    """A Web API client of this Dataverse that works as the Sales users do.

    Against the sandbox it signs in with the Sales users' own app registration (registered in the Azure
    AD emulator here); against any other Dataverse it is the hub's own connector.
    """
    _, sandbox, rest = system.auth_url.partition("/sandbox/azuread/")
    if not sandbox or system.kind != System.Kind.DATAVERSE:
        return get_connector(system)
    from sandbox import azuread

    tenant = rest.strip("/").split("/")[0]
    azuread.register_app(
        client_id=SALES_USERS_CLIENT_ID,
        client_secret=SALES_USERS_SECRET,
        tenant=tenant,
        display_name="D365 Sales users",
    )
    stamp = (system.base_url, system.auth_url, system.scope, system.timeout_seconds, str(system.settings))
    if stamp not in _sales_users:
        users = System(
            name=f"{system.name} (Sales users)",
            slug=f"{system.slug}-sales-users",
            kind=system.kind,
            base_url=system.base_url,
            auth_type=System.AuthType.CLIENT_CREDENTIALS,
            auth_url=system.auth_url,
            client_id=SALES_USERS_CLIENT_ID,
            secret=SALES_USERS_SECRET,
            scope=system.scope,
            settings=system.settings,
            timeout_seconds=system.timeout_seconds,
        )
        _sales_users[stamp] = DataverseConnector(users)
    return _sales_users[stamp]


def dataverse_record(
    *, system: System, entity_set: str, key: dict[str, Any], values: dict[str, Any], user: Connector | None = None
) -> str:
    """A Sales user saves a record in Dataverse (an upsert by alternate key, a create without key); returns its id.

    Dataverse then sends its webhooks by itself. Lookups are set the Web API way,
    "customerid_account@odata.bind": "/accounts(<id>)".
    """
    result = (user or sales_user(system)).deliver(
        DeliveryRequest(
            entity=entity_set,
            operation="upsert" if key else "create",
            payload=values,
            key=key,
            idempotency_key=f"demo-{entity_set}-{uuid.uuid4()}",
        )
    )
    return result.target_key


# Per template: the account flow and the order flow that Sales webhooks feed.
SALES_FLOWS = {
    "prospect_to_cash": ("p2c-accounts-sales-to-fo", "p2c-orders-sales-to-fo"),
    "order_to_cash": ("o2c-accounts-d365-to-s4", "o2c-orders-d365-to-s4"),
}
# Sales keeps address1_country as text, the way users type it (the templates map it to an ISO code).
CITIES = [
    ("Malmö", "211 20", "Sweden"),
    ("Göteborg", "411 03", "Sweden"),
    ("Aarhus", "8000", "Denmark"),
    ("Boston", "02110", "United States"),
]
NAMES = ["Contoso", "Fabrikam", "Northwind", "Litware", "Adventure Works", "Tailspin", "Wingtip", "Proseware"]


def _catalogue(user: Connector) -> dict[str, str]:
    """The Sales product catalogue: productid by productnumber (the products the P2C product flow brought)."""
    try:
        rows = user.query("products", select="productid,productnumber")
        return {row["productnumber"]: row["productid"] for row in rows if row.get("productnumber")}
    except errors.ConnectorError:
        return {}


def _product_of_line(item: str, catalogue: dict[str, str]) -> dict[str, Any]:
    """A catalogue product where Sales has the item, as its users pick one; else a write-in product
    (isproductoverridden), whose productdescription carries the item number."""
    if item in catalogue:
        return {"productid@odata.bind": f"/products({catalogue[item]})"}
    return {"productdescription": item, "isproductoverridden": True}


def sales_orders(*, count: int, template: str, seed: int | None = None) -> TrafficReport:
    """Create `count` Sales accounts and one order each in Dataverse; Dataverse's webhooks tell the hub."""
    report = TrafficReport()
    account_slug, order_slug = SALES_FLOWS[template]
    accounts = Flow.objects.select_related("source").filter(slug=account_slug).first()
    orders = Flow.objects.select_related("source", "target", "company_link").filter(slug=order_slug).first()
    if accounts is None or orders is None:
        report.failed.append(f"template {template} is not installed (no flow {account_slug} / {order_slug})")
        return report
    rng = random.Random(seed)
    user = sales_user(accounts.source)
    if orders.target.kind == System.Kind.FINOPS and (link := orders.company_link) is not None:
        company = link.company_b if link.system_b_id == orders.target_id else link.company_a
        finops_items(connector=get_connector(orders.target), company=company, report=report)

    def save(entity_set: str, key: dict[str, Any], values: dict[str, Any]) -> str:
        """The Sales user saves one record, found again by its number (key); returns its id."""
        return dataverse_record(
            system=accounts.source, entity_set=entity_set, key=key, values={**key, **values}, user=user
        )

    catalogue = _catalogue(user)
    for _ in range(count):
        number = rng.randint(100_000, 999_999)
        city, postcode, country = rng.choice(CITIES)
        account_number = f"C-{number}"
        account_name = f"{rng.choice(NAMES)} {number}"
        try:
            account_id = save(
                "accounts",
                {"accountnumber": account_number},
                {
                    "name": account_name,
                    "address1_city": city,
                    "address1_postalcode": postcode,
                    "address1_country": country,
                    "emailaddress1": f"orders{number}@example.com",
                },
            )
            lines = [
                {
                    **_product_of_line(item, catalogue),
                    "quantity": rng.randint(1, 20),
                    "uomid@odata.bind": f"/uoms({SANDBOX_UOMS[unit.lower()]})",
                    "priceperunit": float(price),
                }
                for item, unit, price in rng.sample(ITEMS, rng.randint(1, 3))
            ]
            total = sum(line["quantity"] * line["priceperunit"] for line in lines)
            order_number = f"ORD-{number}"
            # One POST with the lines nested (a deep insert, "Create related table rows in one operation"):
            # the order's single Create webhook finds its salesorderdetail rows already there.
            save(
                "salesorders",
                {},
                {
                    "ordernumber": order_number,
                    "name": f"Web order {number}",
                    "totalamount": round(total, 2),
                    "paymenttermscode": rng.choice([1, 2, 3]),
                    "requestdeliveryby": (timezone.now().date() + timedelta(days=rng.randint(2, 14))).isoformat(),
                    "customerid_account@odata.bind": f"/accounts({account_id})",
                    "order_details": lines,
                },
            )
            report.created.append(order_number)
        except errors.ConnectorError as exc:
            report.failed.append(f"{template} order {number}: {exc.message}")
    return report
