"""Writing: deep insert, update (PATCH/MERGE/PUT, If-Match where the type has an ETag), delete, the application
checks that stand in for SAP's, and the business events a write raises."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from sandbox.models import EmulatorRecord
from sandbox.s4hana import pricing
from sandbox.s4hana.events import EVENTS, event_data, push_after_commit
from sandbox.s4hana.model import EntitySet, load_service
from sandbox.s4hana.reads import Context, Target, json_body, read, resolve, serialize
from sandbox.s4hana.reply import BusinessError, GatewayError, Reply
from sandbox.s4hana.store import EMULATOR, NUMBER_RANGES, entity_name, etag_of, nav_match, next_number, stamp, stored
from sandbox.s4hana.values import format_key, to_wire

SALES_ORDER_TYPES = {"OR", "TA", "CBFD", "ZOR", "CR", "DR", "RE"}


def _validate(service: str, entity_set: EntitySet, data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Application checks that stand in for the real ones (mandatory fields, order type, quantities)."""
    problems = []
    if (service, entity_set.name) == ("API_SALES_ORDER_SRV", "A_SalesOrder"):
        for name in (
            "SalesOrderType",
            "SalesOrganization",
            "DistributionChannel",
            "OrganizationDivision",
            "SoldToParty",
        ):
            if not data.get(name):
                problems.append(("V1/012", f"Enter a value for field {name}", name))
        order_type = data.get("SalesOrderType")
        if order_type and order_type not in SALES_ORDER_TYPES:
            problems.append(("V1/320", f"Sales document type {order_type} is not defined", "SalesOrderType"))
        if data.get("SoldToParty") and not _sold_to_maintained(data):
            area = " ".join(
                str(data.get(k, "")) for k in ("SalesOrganization", "DistributionChannel", "OrganizationDivision")
            )
            text = f"Sold-to party {data['SoldToParty']} not maintained for sales area {area}"
            problems.append(("V1/331", text, "SoldToParty"))
    if (service, entity_set.name) == ("API_SALES_ORDER_SRV", "A_SalesOrderItem"):
        if not data.get("Material"):
            problems.append(("V1/392", f"Enter a material for item {data.get('SalesOrderItem', '')}", "Material"))
        if Decimal(str(data.get("RequestedQuantity") or 0)) <= 0:
            problems.append(
                ("V1/204", f"Enter a quantity for item {data.get('SalesOrderItem', '')}", "RequestedQuantity")
            )
    if (service, entity_set.name) == ("API_BUSINESS_PARTNER", "A_BusinessPartner"):
        category = data.get("BusinessPartnerCategory")
        if category not in ("1", "2", "3"):
            problems.append(
                (
                    "R11/401",
                    "Business partner category must be 1 (person), 2 (organization) or 3 (group)",
                    "BusinessPartnerCategory",
                )
            )
        elif category == "1" and not data.get("LastName"):
            problems.append(("R11/402", "Enter a last name for a person", "LastName"))
        elif category == "2" and not data.get("OrganizationBPName1"):
            problems.append(("R11/403", "Enter a name for an organization", "OrganizationBPName1"))
    return problems


# The system's own customers (as an S/4 demo client has them), maintained for sales area 1710/10/00.
DEMO_CUSTOMERS = {"17100001", "17100002", "17100003", "17100004", "17100005"}
CUSTOMER_ROLES = {"FLCU01", "FLCU00"}  # customer; customer (financial accounting)


def _sold_to_maintained(order: dict[str, Any]) -> bool:
    """A sold-to party is a business partner in a customer role with sales area data for the order's area.

    SAP Help "Business Partner" / "Customer-Vendor Integration": a BP becomes a customer through the role
    FLCU01 (FLCU00 for its company code data); SD takes it as sold-to party only with sales area data
    (A_CustomerSalesArea: sales organization, distribution channel, division).
    """
    customer = str(order.get("SoldToParty"))
    if customer in DEMO_CUSTOMERS:
        return order.get("SalesOrganization") == "1710"
    bp = load_service("API_BUSINESS_PARTNER")
    roles = stored(bp.name, bp.entity_set("A_BusinessPartnerRole"), {"BusinessPartner": customer})
    if not roles.filter(data__BusinessPartnerRole__in=sorted(CUSTOMER_ROLES)).exists():
        return False
    area = {
        "Customer": customer,
        "SalesOrganization": order.get("SalesOrganization"),
        "DistributionChannel": order.get("DistributionChannel"),
        "Division": order.get("OrganizationDivision"),
    }
    return stored(bp.name, bp.entity_set("A_CustomerSalesArea"), area).exists()


def _create(
    ctx: Context, entity_set: EntitySet, body: dict[str, Any], inherited: dict[str, Any], position: int = 1
) -> EmulatorRecord:
    """Create one entity and, deep insert, the entities under its navigation properties."""
    service = ctx.service.name
    # A_Customer is sap:creatable="false" as a set, yet created by deep insert under its business partner.
    if not entity_set.creatable and not inherited:
        raise GatewayError(405, "/IWBEP/CM_MGW_RT/025", f"Creation of entity set '{entity_set.name}' is not allowed")
    data: dict[str, Any] = {}
    nested: dict[str, list[dict[str, Any]]] = {}
    for name, value in body.items():
        if name == "__metadata":
            continue
        if name in entity_set.navs:
            rows = value.get("results", value) if isinstance(value, dict) else value
            nested[name] = rows if isinstance(rows, list) else [rows]
            continue
        prop = entity_set.props.get(name)
        if prop is None:
            raise GatewayError(400, "/IWBEP/CM_MGW_RT/000", f"Property '{name}' is invalid", target=name)
        if not prop.creatable and name not in inherited:
            # sap:creatable="false": "values for this property cannot be set in a create request" (SAP
            # Annotations for OData Version 2.0, https://sap.github.io/odata-vocabularies/docs/v2-annotations.html);
            # S/4 computes them (NetAmount from pricing, stamps), so a create that carries one is refused.
            raise GatewayError(
                400,
                "/IWBEP/CM_MGW_RT/000",
                f"Property '{name}' of {entity_set.name} is not creatable (sap:creatable=\"false\")",
                target=name,
            )
        data[name] = to_wire(prop, value, entity_set.name)
    data.update(inherited)
    missing = [k for k in entity_set.keys if not data.get(k)]
    if missing and (service, entity_set.name) in NUMBER_RANGES and missing == entity_set.keys:
        data[entity_set.keys[0]] = next_number(service, entity_set)
    elif missing == [entity_set.keys[-1]] and entity_set.keys[-1].endswith("Item"):
        siblings = stored(service, entity_set, {k: data[k] for k in entity_set.keys[:-1]})
        highest = max((int(r.data.get(missing[0]) or 0) for r in siblings), default=0)
        data[missing[0]] = str(max(highest + 10, position * 10))
    missing = [k for k in entity_set.keys if not data.get(k)]
    if missing:
        raise GatewayError(
            400,
            "/IWBEP/CM_MGW_RT/000",
            f"Key property '{missing[0]}' of {entity_set.name} is missing",
            target=missing[0],
        )
    if problems := _validate(service, entity_set, data):
        raise BusinessError(problems)
    if (service, entity_set.name) == ("API_SALES_ORDER_SRV", "A_SalesOrderItem"):
        pricing.price_item(data)
    stamp(entity_set, data, ctx.user, created=True)
    key = format_key(entity_set, data)
    if stored(service, entity_set).filter(key=key).exists():
        raise GatewayError(400, "/IWBEP/CM_MGW_RT/000", f"{entity_set.name}({key}) already exists")
    record, _ = EmulatorRecord.objects.update_or_create(
        emulator=EMULATOR,
        entity=entity_name(service, entity_set),
        key=key,
        defaults={"data": data, "deleted": False, "version": 1},
    )
    for name, rows in nested.items():
        nav = entity_set.navs[name]
        child = ctx.service.entity_set(nav.target_set)
        match = nav_match(entity_set, data, child, nav.many)
        if (service, entity_set.name, name) == ("API_BUSINESS_PARTNER", "A_BusinessPartner", "to_Customer"):
            # Customer-vendor integration: the customer takes the partner's number (same number range).
            match = {"Customer": data["BusinessPartner"]}
            record.data["Customer"] = data["BusinessPartner"]
            record.save(update_fields=["data"])
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise GatewayError(400, "/IWBEP/CM_MGW_RT/000", f"Deep insert '{name}' expects objects")
            _create(ctx, child, row, match, number)
    if (service, entity_set.name) == ("API_SALES_ORDER_SRV", "A_SalesOrder"):
        _reprice_order(ctx, entity_set, record)
    if (service, entity_set.name) in EVENTS:
        ctx.events.append(("Created", event_data(service, entity_set, data)))
    return record


def _reprice_order(ctx: Context, entity_set: EntitySet, record: EmulatorRecord) -> None:
    """The order's TotalNetAmount from its items (priced as they were created, sandbox.s4hana.pricing)."""
    nav = entity_set.navs["to_Item"]
    child = ctx.service.entity_set(nav.target_set)
    items = stored(ctx.service.name, child, nav_match(entity_set, record.data, child, True))
    record.data["TotalNetAmount"] = pricing.total_of([item.data for item in items])
    record.save(update_fields=["data"])


def _reprice_header_of(ctx: Context, item: dict[str, Any]) -> None:
    header_set = ctx.service.entity_set("A_SalesOrder")
    header = stored(ctx.service.name, header_set, {"SalesOrder": item.get("SalesOrder")}).first()
    if header is not None:
        _reprice_order(ctx, header_set, header)


def _update(ctx: Context, target: Target, body: dict[str, Any], method: str, headers: dict[str, str]) -> Reply:
    entity_set, record = target.entity_set, target.record
    if not entity_set.updatable:
        raise GatewayError(405, "/IWBEP/CM_MGW_RT/025", f"Update of entity set '{entity_set.name}' is not allowed")
    if entity_set.etag_prop:
        if_match = headers.get("if-match", "")
        if not if_match:
            raise GatewayError(
                428, "/IWBEP/CM_MGW_RT/024", "Precondition required: send If-Match with the entity's ETag"
            )
        if if_match != "*" and if_match != etag_of(entity_set, record):
            raise GatewayError(412, "/IWBEP/CM_MGW_RT/022", "The ETag does not match: the entity was changed meanwhile")
    data = dict(record.data) if method in ("PATCH", "MERGE") else {k: record.data[k] for k in entity_set.keys}
    for name, value in body.items():
        if name == "__metadata":
            continue
        if name in entity_set.navs:
            raise GatewayError(400, "/IWBEP/CM_MGW_RT/000", f"Deep update of '{name}' is not supported")
        prop = entity_set.props.get(name)
        if prop is None:
            raise GatewayError(400, "/IWBEP/CM_MGW_RT/000", f"Property '{name}' is invalid", target=name)
        if name in entity_set.keys:
            if to_wire(prop, value, entity_set.name) != record.data.get(name):
                raise GatewayError(400, "/IWBEP/CM_MGW_RT/000", f"Key property '{name}' cannot be changed", target=name)
            continue
        if prop.updatable:
            data[name] = to_wire(prop, value, entity_set.name)
    if method == "PUT":  # a replace keeps what the server owns
        data |= {
            k: v
            for k, v in record.data.items()
            if k.startswith("__") or not entity_set.props.get(k, None) or not entity_set.props[k].updatable
        }
    if problems := _validate(ctx.service.name, entity_set, data):
        raise BusinessError(problems)
    priced = (ctx.service.name, entity_set.name) == ("API_SALES_ORDER_SRV", "A_SalesOrderItem")
    if priced:
        pricing.price_item(data)  # a changed quantity or material is priced again, and so is its order
    stamp(entity_set, data, ctx.user, created=False)
    record.data = data
    record.version += 1
    record.save()
    if priced:
        _reprice_header_of(ctx, data)
    if (ctx.service.name, entity_set.name) in EVENTS:
        ctx.events.append(("Changed", event_data(ctx.service.name, entity_set, data)))
    reply = Reply(204)
    if etag := etag_of(entity_set, record):
        reply.headers["ETag"] = etag
    return reply


def _delete(ctx: Context, target: Target) -> Reply:
    entity_set, record = target.entity_set, target.record
    if not entity_set.deletable:
        raise GatewayError(405, "/IWBEP/CM_MGW_RT/025", f"Deletion of entity set '{entity_set.name}' is not allowed")
    for nav in entity_set.navs.values():  # the items of a deleted order go with it
        child = ctx.service.entity_set(nav.target_set)
        if nav.many and child.keys[: len(entity_set.keys)] == entity_set.keys:
            stored(ctx.service.name, child, nav_match(entity_set, record.data, child, True)).update(deleted=True)
    record.deleted = True
    record.save(update_fields=["deleted"])
    return Reply(204)


def handle(
    ctx: Context, method: str, resource: str, query: dict[str, str], headers: dict[str, str], body: bytes
) -> Reply:
    """One OData request against the service (also each part of a $batch). Writes run in a transaction."""
    if method == "POST" and headers.get("x-http-method", "").upper() in ("MERGE", "PATCH", "PUT", "DELETE"):
        method = headers["x-http-method"].upper()
    if method in ("GET", "HEAD"):
        return read(ctx, resolve(ctx, resource), query)
    with transaction.atomic():
        target = resolve(ctx, resource, lock=method != "POST")
        if method == "POST":
            if target.record is not None:
                raise GatewayError(405, "/IWBEP/CM_MGW_RT/025", "POST is only allowed on an entity set or navigation")
            record = _create(ctx, target.entity_set, json_body(body), target.match)
            if (ctx.service.name, target.entity_set.name) == ("API_SALES_ORDER_SRV", "A_SalesOrderItem"):
                _reprice_header_of(ctx, record.data)  # an item added to an existing order
            expand = {name: {} for name, value in json_body(body).items() if name in target.entity_set.navs}
            reply = Reply(201, {"d": serialize(ctx, target.entity_set, record, expand, None)})
            reply.headers["Location"] = reply.body["d"]["__metadata"]["uri"]
            if etag := etag_of(target.entity_set, record):
                reply.headers["ETag"] = etag
        elif target.record is None:
            raise GatewayError(405, "/IWBEP/CM_MGW_RT/025", f"{method} needs a single entity, not a collection")
        elif method in ("PATCH", "MERGE", "PUT"):
            reply = _update(ctx, target, json_body(body), method, headers)
        elif method == "DELETE":
            reply = _delete(ctx, target)
        else:
            raise GatewayError(405, "/IWBEP/CM_MGW_RT/025", f"Method {method} is not supported")
        events, ctx.events = ctx.events, []
        push_after_commit(events)
    return reply
