"""Property values, keys and $filter as SAP Gateway reads them: a JSON value checked against its Edm type and
stored in v2 JSON form ("/Date(ms)/", decimals as strings), key predicates, and $filter with Edm typing."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from integrations.protocols.odata import ODataError, filter, keys
from integrations.protocols.odata.edm import datetime_to_ms, parse_datetime
from sandbox.s4hana.model import EntitySet, Prop
from sandbox.s4hana.reply import GatewayError

_TIME = re.compile(r"^PT(\d{1,2})H(\d{1,2})M(\d{1,2}(?:\.\d+)?)S$")


def initial_value(prop: Prop) -> Any:
    """ABAP's initial value as SAP Gateway renders a property that was never set."""
    return {
        "Edm.String": "",
        "Edm.Boolean": False,
        "Edm.Decimal": "0",
        "Edm.Time": "PT00H00M00S",
        "Edm.Guid": "00000000-0000-0000-0000-000000000000",
        "Edm.Byte": 0,
        "Edm.Int16": 0,
        "Edm.Int32": 0,
        "Edm.Int64": "0",
        "Edm.Double": "0",
    }.get(prop.type)


def to_wire(prop: Prop, value: Any, where: str) -> Any:
    """Check one JSON value against its Edm type; return it in the form SAP answers with."""

    def bad(reason: str) -> GatewayError:
        return GatewayError(
            400,
            "/IWBEP/CM_MGW_RT/000",
            f"Invalid value {value!r} for property '{prop.name}' of {where}: {reason}",
            target=prop.name,
        )

    if value is None:
        if not prop.nullable:
            raise bad("the property is not nullable")
        return None
    kind = prop.type
    try:
        if kind == "Edm.String":
            if not isinstance(value, str):
                raise bad("expected a string")
            if prop.max_length and len(value) > prop.max_length:
                raise bad(f"longer than {prop.max_length} characters")
            return value
        if kind == "Edm.Boolean":
            if not isinstance(value, bool):
                raise bad("expected true or false")
            return value
        if kind == "Edm.Decimal":
            if isinstance(value, bool):
                raise bad("expected a decimal")
            number = Decimal(str(value))
            if not number.is_finite():
                raise bad("expected a finite decimal")
            return format(number.normalize(), "f") if number == number.to_integral() else str(number)
        if kind in ("Edm.Byte", "Edm.Int16", "Edm.Int32"):
            if isinstance(value, bool):
                raise bad("expected an integer")
            return int(value)
        if kind == "Edm.Int64":
            return str(int(value))
        if kind == "Edm.Double":
            return str(float(value))
        if kind == "Edm.DateTime":
            return f"/Date({datetime_to_ms(parse_datetime(str(value)))})/"
        if kind == "Edm.DateTimeOffset":
            return f"/Date({datetime_to_ms(parse_datetime(str(value)))}+0000)/"
        if kind == "Edm.Time":
            if not _TIME.match(str(value)):
                raise bad("expected a duration like PT13H30M00S")
            return str(value)
        if kind == "Edm.Guid":
            return str(uuid.UUID(str(value)))
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise bad(f"not a valid {kind}") from exc
    return value


def format_key(entity_set: EntitySet, values: dict[str, Any]) -> str:
    """A_SalesOrderItem(SalesOrder='1',SalesOrderItem='10'); a single key is written without its name."""
    return keys.format_v2_key(
        {name: values[name] for name in entity_set.keys},
        {name: entity_set.props[name].type for name in entity_set.keys},
    )


def parse_key(entity_set: EntitySet, text: str) -> dict[str, Any]:
    try:
        return keys.parse_v2_key(text, entity_set.keys)
    except ODataError as exc:
        raise GatewayError(
            400, "/IWBEP/CM_MGW_RT/021", f"Invalid key predicate '{text}' for {entity_set.name}"
        ) from exc


def parse_filter(text: str, entity_set: EntitySet) -> filter.Predicate:
    """$filter over the entity set's records: its properties' Edm types type the comparisons."""

    def edm_type(name: str) -> str:
        prop = entity_set.props.get(name)
        if prop is None:
            raise GatewayError(
                400, "/IWBEP/CM_MGW_RT/000", f"Property '{name}' not found in type '{entity_set.type_name}'"
            )
        return prop.type

    try:
        return filter.parse_filter(text, filter.V2(edm_type))
    except ODataError as exc:
        raise GatewayError(400, "/IWBEP/CM_MGW_RT/000", f"Invalid filter expression: {exc}") from exc
