"""Follow-on documents of a sales order, as posting in SAP would create them: an outbound delivery (VL01N +
goods issue) and a billing document (F2, posted to accounting); order to cash reads them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from sandbox.common.faults import with_faults
from sandbox.models import EmulatorRecord
from sandbox.s4hana.auth import authenticate, unauthorized
from sandbox.s4hana.events import event_data, push_after_commit
from sandbox.s4hana.model import EntitySet, load_service
from sandbox.s4hana.reads import json_body
from sandbox.s4hana.reply import GatewayError, fault_body, sap_error
from sandbox.s4hana.store import EMULATOR, entity_name, get, next_number, stamp, stored
from sandbox.s4hana.values import format_key


def _order_and_items(sales_order: str) -> tuple[EmulatorRecord, list[EmulatorRecord]]:
    service = load_service("API_SALES_ORDER_SRV")
    order = get(service.name, service.sets["A_SalesOrder"], {"SalesOrder": sales_order})
    items = list(stored(service.name, service.sets["A_SalesOrderItem"], {"SalesOrder": sales_order}).order_by("key"))
    return order, items


Fields = dict[str, Any]


def _post_document(
    sales_order: str,
    user: str,
    names: tuple[str, str, str],
    header_fields: Callable[[EmulatorRecord, list[EmulatorRecord], str, str], Fields],
    item_fields: Callable[[EmulatorRecord, EmulatorRecord, str, int], Fields],
) -> EmulatorRecord:
    """A document (service, header set, item set) with an item per order item, and its Created event.

    header_fields(order, order items, number, today) and item_fields(order, order item, number, position).
    """
    order, items = _order_and_items(sales_order)
    service_name, header_name, item_name = names
    service = load_service(service_name)
    header_set, item_set = service.sets[header_name], service.sets[item_name]
    today = f"/Date({int(datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)})/"
    with transaction.atomic():
        number = next_number(service.name, header_set)
        data = header_fields(order, items, number, today)
        stamp(header_set, data, user, created=True)
        header = _store(service.name, header_set, data)
        for position, item in enumerate(items, start=1):
            _store(service.name, item_set, item_fields(order, item, number, position))
        push_after_commit([("Created", event_data(service.name, header_set, data))])
    return header


def _store(service: str, entity_set: EntitySet, data: Fields) -> EmulatorRecord:
    return EmulatorRecord.objects.create(
        emulator=EMULATOR, entity=entity_name(service, entity_set), key=format_key(entity_set, data), data=data
    )


def _from_order(order: EmulatorRecord) -> Fields:
    """What a follow-on document takes from its order's header."""
    return {"SalesOrganization": order.data.get("SalesOrganization"), "SoldToParty": order.data.get("SoldToParty")}


def _from_item(sales_order: str, item: EmulatorRecord, quantity: str, unit: str) -> Fields:
    """What a follow-on document's item takes from the order's item (its quantity and unit under these names)."""
    return {
        "Material": item.data.get("Material"),
        quantity: item.data.get("RequestedQuantity"),
        unit: item.data.get("RequestedQuantityUnit", ""),
        "ReferenceSDDocument": sales_order,
        "ReferenceSDDocumentItem": item.data.get("SalesOrderItem"),
    }


def create_outbound_delivery(*, sales_order: str, user: str = "ICBRIDGE") -> EmulatorRecord:
    """A delivery for every item of the order, goods issue posted (as VL01N + PGI would)."""

    def header(order: EmulatorRecord, _items: list[EmulatorRecord], number: str, today: str) -> Fields:
        dates = {"DeliveryDate": today, "ActualGoodsMovementDate": today}
        status = {"OverallGoodsMovementStatus": "C", "OverallSDProcessStatus": "C"}
        party = {**_from_order(order), "ShipToParty": order.data.get("SoldToParty")}
        return {"DeliveryDocument": number, "DeliveryDocumentType": "LF", **party, **dates, **status}

    def item(_order: EmulatorRecord, item: EmulatorRecord, number: str, position: int) -> Fields:
        fields = _from_item(sales_order, item, "ActualDeliveryQuantity", "DeliveryQuantityUnit")
        return {"DeliveryDocument": number, "DeliveryDocumentItem": str(position * 10), **fields}

    names = ("API_OUTBOUND_DELIVERY_SRV", "A_OutbDeliveryHeader", "A_OutbDeliveryItem")
    return _post_document(sales_order, user, names, header, item)


def create_billing_document(*, sales_order: str, user: str = "ICBRIDGE") -> EmulatorRecord:
    """An invoice (F2) for the order's items, posted to accounting."""

    def header(order: EmulatorRecord, items: list[EmulatorRecord], number: str, today: str) -> Fields:
        total = sum((Decimal(str(i.data.get("NetAmount") or 0)) for i in items), Decimal(0))
        kind = {"SDDocumentCategory": "M", "BillingDocumentCategory": "L", "BillingDocumentType": "F2"}
        amount = {
            "TotalNetAmount": format(total, "f"),
            "TransactionCurrency": order.data.get("TransactionCurrency", ""),
        }
        posted = {"AccountingDocument": number, "AccountingPostingStatus": "C", "OverallBillingStatus": "C"}
        return {
            "BillingDocument": number,
            **kind,
            "BillingDocumentDate": today,
            **_from_order(order),
            **amount,
            **posted,
        }

    def item(order: EmulatorRecord, item: EmulatorRecord, number: str, position: int) -> Fields:
        fields = _from_item(sales_order, item, "BillingQuantity", "BillingQuantityUnit")
        amount = {
            "NetAmount": item.data.get("NetAmount", "0"),
            "TransactionCurrency": order.data.get("TransactionCurrency", ""),
        }
        sales = {"SalesDocument": sales_order, "SalesDocumentItem": item.data.get("SalesOrderItem")}
        return {"BillingDocument": number, "BillingDocumentItem": str(position * 10), **fields, **amount, **sales}

    names = ("API_BILLING_DOCUMENT_SRV", "A_BillingDocument", "A_BillingDocumentItem")
    return _post_document(sales_order, user, names, header, item)


@csrf_exempt
@with_faults(EMULATOR, fault_body)
def emulator_operation(request: HttpRequest, operation: str) -> HttpResponse:
    user = authenticate(request)
    if user is None:
        return unauthorized()
    if request.method != "POST":
        return sap_error(405, "/IWBEP/CM_MGW_RT/025", "use POST")
    try:
        sales_order = str(json_body(request.body).get("SalesOrder") or "")
        if not sales_order:
            raise GatewayError(400, "/IWBEP/CM_MGW_RT/000", "field 'SalesOrder' is missing")
        create = create_outbound_delivery if operation == "outbound-deliveries" else create_billing_document
        record = create(sales_order=sales_order, user=user)
    except GatewayError as error:
        return sap_error(error.status, error.code, error.message)
    return JsonResponse({"d": {k: v for k, v in record.data.items() if not k.startswith("__")}}, status=201)
