"""The emulator's records (EmulatorRecord, entity "<SERVICE>/<EntitySet>", key the v2 key predicate), number
ranges, ETags and the fields the server stamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from django.db import IntegrityError, transaction

from sandbox.models import EmulatorRecord
from sandbox.s4hana.model import EntitySet
from sandbox.s4hana.reply import GatewayError
from sandbox.s4hana.values import format_key

EMULATOR = "s4hana"
SYSTEM_ID, CLIENT = "S4D", "100"


# First number of each internally numbered document (SAP number ranges).
NUMBER_RANGES = {
    ("API_SALES_ORDER_SRV", "A_SalesOrder"): 1,
    ("API_BUSINESS_PARTNER", "A_BusinessPartner"): 1000000,
    ("API_OUTBOUND_DELIVERY_SRV", "A_OutbDeliveryHeader"): 80000000,
    ("API_BILLING_DOCUMENT_SRV", "A_BillingDocument"): 90000000,
}


def entity_name(service: str, entity_set: EntitySet) -> str:
    return f"{service}/{entity_set.name}"


def stored(service: str, entity_set: EntitySet, match: dict[str, Any] | None = None):
    queryset = EmulatorRecord.objects.filter(emulator=EMULATOR, entity=entity_name(service, entity_set), deleted=False)
    for name, value in (match or {}).items():
        queryset = queryset.filter(**{f"data__{name}": value})
    return queryset


def get(service: str, entity_set: EntitySet, keys: dict[str, Any], *, lock: bool = False) -> EmulatorRecord:
    queryset = stored(service, entity_set)
    if lock:
        queryset = queryset.select_for_update()
    record = queryset.filter(key=format_key(entity_set, keys)).first()
    if record is None:
        raise GatewayError(
            404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{entity_set.type_name.rsplit('.', 1)[-1]}'"
        )
    return record


def next_number(service: str, entity_set: EntitySet) -> str:
    counter_key = f"{service}/{entity_set.name}"
    try:
        with transaction.atomic():
            EmulatorRecord.objects.get_or_create(
                emulator=EMULATOR,
                entity="number_range",
                key=counter_key,
                defaults={"data": {"next": NUMBER_RANGES[(service, entity_set.name)]}},
            )
    except IntegrityError:
        pass
    counter = EmulatorRecord.objects.select_for_update().get(emulator=EMULATOR, entity="number_range", key=counter_key)
    number = int(counter.data["next"])
    counter.data = {"next": number + 1}
    counter.save(update_fields=["data"])
    return str(number)


def nav_match(entity_set: EntitySet, data: dict[str, Any], target: EntitySet, many: bool) -> dict[str, Any]:
    """Which target records a navigation reaches: those sharing the parent's key (header → items)."""
    if many:
        names = [k for k in entity_set.keys if k in target.props]
    else:
        names = [k for k in target.keys if k in entity_set.props]
    return {name: data.get(name) for name in names}


def etag_of(entity_set: EntitySet, record: EmulatorRecord) -> str:
    if not entity_set.etag_prop:
        return ""
    moment = datetime.fromisoformat(record.data["__ts"])
    text = f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"
    return f"W/\"datetimeoffset'{quote(text, safe='')}'\""


def stamp(entity_set: EntitySet, data: dict[str, Any], user: str, *, created: bool) -> None:
    """Fields the server sets itself (creation and change stamps, the ETag's timestamp)."""
    now = datetime.now(UTC)
    today_ms = int(datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp() * 1000)
    data["__ts"] = now.isoformat()
    stamps = {
        "LastChangeDateTime": f"/Date({int(now.timestamp() * 1000)}+0000)/",
        "LastChangeDate": f"/Date({today_ms})/",
        "LastChangedByUser": user,
    }
    if created:
        stamps |= {"CreationDate": f"/Date({today_ms})/", "CreatedByUser": user}
    for name, value in stamps.items():
        if name in entity_set.props:
            data[name] = value
