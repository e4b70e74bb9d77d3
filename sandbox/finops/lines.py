"""The rules every line entity row obeys, whichever way it is written (OData create or update, $batch, a package
import): its header exists, it takes the header's defaults, its item is a released product of the line's company
and its unit is a unit of measure."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox.common.result import Result
from sandbox.finops.auth import write_failed
from sandbox.finops.model import ENTITIES, LINE_DEFAULTS, LINE_PARENTS, LINE_UNITS, UNITS_ENTITY, Entity
from sandbox.finops.store import folded, rows, write

_HEADER_NAMES = {
    "SalesOrderHeadersV2": "Sales order",
    "SalesQuotationHeadersV2": "Sales quotation",
    "PurchaseOrderHeadersV2": "Purchase order",
}


@dataclass
class References:
    """What the line checks read, loaded once (at the first line row) for the duration of one package import.

    A miss falls back to a query, so a product or unit written earlier in the same import is found.
    """

    company: str
    items: set[str] = field(default_factory=set)
    units: set[str] = field(default_factory=set)  # lower case: F&O compares unit symbols case-insensitively
    headers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    loaded: bool = False

    def load(self) -> References:
        if not self.loaded:
            self.items = set(rows("ReleasedProductsV2").filter(company=self.company).values_list("key", flat=True))
            self.units = {symbol.lower() for symbol in rows(UNITS_ENTITY).values_list("key", flat=True)}
            self.loaded = True
        return self


def _item_exists(company: str, item: str, known: References | None) -> bool:
    item = folded(item)  # the store's key form: item numbers compare case-insensitively, as in F&O
    if known is not None and known.company == company and item in known.load().items:
        return True
    found = rows("ReleasedProductsV2").filter(company=company, key=item).exists()
    if found and known is not None and known.company == company:
        known.items.add(item)
    return found


def _unit_exists(unit: str, known: References | None) -> bool:
    if known is not None and unit.lower() in known.load().units:
        return True
    # Units of measure are shared by every legal entity (UnitOfMeasure has no dataAreaId: model.ENTITIES).
    # iexact: the unit symbol is compared case-insensitively, 'pcs' is the unit 'Pcs'.
    found = rows(UNITS_ENTITY).filter(key__iexact=unit).exists()
    if found and known is not None:
        known.units.add(unit.lower())
    return found


def _header(name: str, company: str, number: str, known: References | None) -> dict[str, Any] | None:
    header_entity = LINE_PARENTS[name][0]
    number = folded(number)
    if known is not None and (header_entity, number) in known.headers:
        return known.headers[(header_entity, number)]
    record = rows(header_entity).filter(company=company, key=number).first()
    if record is None:
        return None  # not remembered: the header may come later in the same import
    if known is not None:
        known.headers[(header_entity, number)] = record.data
    return record.data


def line_check(
    name: str,
    company: str,
    values: dict[str, Any],
    *,
    current: dict[str, Any] | None = None,
    known: References | None = None,
) -> Result | None:
    """Refuse a line row F&O refuses; None for a row that is not a line, or one F&O takes.

    `current` is the stored line an update changes (None: the row creates one).
    1. A new line's header must exist (no line without its order), and it takes the header's defaults
       (model.LINE_DEFAULTS); a mandatory inventory dimension left empty refuses the row.
    2. An update is checked as the line it leaves: its required fields and mandatory dimension still filled,
       its header (if it names another) existing; fields it does not name keep their values, defaults included.
    3. The item must be a released product of the line's company ("Sales order lines V2": ITEMNUMBER is a
       foreign key to a product, which F&O validates against the released products), the unit a unit of
       measure (the "Units" entity, UnitsOfMeasure); each is checked where the row names it.
    Unknown values answer F&O's relation check text, "The value '…' in field '…' is not found in the relating
    table '…'." (as for currencies, store._code_failure).
    """
    entity = ENTITIES[name]
    unit_field = LINE_UNITS.get(name)
    if name not in LINE_PARENTS and unit_field is None:
        return None
    if name in LINE_PARENTS and (current is None or LINE_PARENTS[name][1] in values):
        header_name, parent_key = LINE_PARENTS[name]
        header = _header(name, company, str(values.get(parent_key, "")), known)
        if header is None:
            return write_failed(entity, f"{_HEADER_NAMES[header_name]} {values.get(parent_key)} does not exist.")
        if current is None and (failure := _default_from_header(entity, LINE_DEFAULTS.get(name, ()), values, header)):
            return failure
    if current is not None:
        after = {**current, **values}
        for field_name in (*entity.required, *([unit_field] if unit_field in values else [])):
            if after.get(field_name) in (None, ""):
                return write_failed(entity, f"Field '{field_name}' must be filled in.")
        for field_name, _, dimension in LINE_DEFAULTS.get(name, ()):
            if dimension and after.get(field_name) in (None, ""):
                return _dimension_missing(entity, dimension)
    if unit_field is None:
        return None
    item = values.get("ItemNumber")
    if item not in (None, "") and not _item_exists(company, str(item), known):
        return _not_found(entity, item, "ItemNumber", "Released products")
    unit = values.get(unit_field)
    if unit not in (None, "") and not _unit_exists(str(unit), known):
        return _not_found(entity, unit, unit_field, "Units")
    return None


def failure_text(failure: Result) -> str:
    """What a refused row's error says, as GetExecutionErrors lists it: the infolog text, else the message."""
    body = json.loads(failure.body)["error"]
    return body.get("innererror", {}).get("message") or body["message"]


def _not_found(entity: Entity, value: Any, field_name: str, table: str) -> Result:
    return write_failed(
        entity, f"The value '{value}' in field '{field_name}' is not found in the relating table '{table}'."
    )


def _dimension_missing(entity: Entity, dimension: str) -> Result:
    return write_failed(entity, f"Inventory dimension {dimension} is mandatory and must consequently be specified.")


def _default_from_header(
    entity: Entity, defaults: tuple[tuple[str, str, str], ...], values: dict[str, Any], header: dict[str, Any]
) -> Result | None:
    """Fill the line's fields its header defaults (model.LINE_DEFAULTS); a mandatory dimension left empty refuses."""
    for field_name, header_field, dimension in defaults:
        if values.get(field_name) in (None, ""):
            values[field_name] = header.get(header_field) or ""
        if dimension and not values[field_name]:
            return _dimension_missing(entity, dimension)
    return None


def reference_data_seed(
    *, companies: Iterable[str], items: Iterable[tuple[str, str, Any]], units: Iterable[str]
) -> int:
    """Release these items (number, sales unit, price) in each company and create the units; returns rows written.

    What an F&O administrator sets up before order lines can name them (Released products, Units). Re-runnable:
    an item or unit already there is left as it is.
    """
    written = 0
    products, unit_entity = ENTITIES["ReleasedProductsV2"], ENTITIES[UNITS_ENTITY]
    items = list(items)
    for company in {c.lower() for c in companies}:
        present = set(rows("ReleasedProductsV2").filter(company=company).values_list("key", flat=True))
        for number, unit, price in items:
            if folded(number) not in present:
                values = {"ItemNumber": number, "ProductName": f"Demo item {number}", "SalesUnitSymbol": unit,
                          "PurchaseUnitSymbol": unit, "SalesPrice": float(price)}  # fmt: skip
                write("ReleasedProductsV2", products, company, None, values)
                written += 1
    known = {symbol.lower() for symbol in rows(UNITS_ENTITY).values_list("key", flat=True)}
    for symbol in units:  # once: units are shared by every legal entity
        if symbol.lower() not in known:
            write(UNITS_ENTITY, unit_entity, "", None, {"UnitSymbol": symbol, "UnitDescription": symbol})
            known.add(symbol.lower())
            written += 1
    return written
