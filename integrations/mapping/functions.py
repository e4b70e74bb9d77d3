"""The expression language's runtime: number and text helpers, and FUNCTIONS, the only callables it reaches."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, DivisionByZero, InvalidOperation
from typing import Any

from integrations.mapping import convert
from integrations.mapping.syntax import Env, Failure, Node

# --- runtime helpers -----------------------------------------------------------------------------

# Numbers the engine computes with stay below 10 ** (MAX_EXPONENT + 1): no ERP amount or quantity comes
# near it (.NET decimal, F&O real and SAP DEC all hold less), and PostgreSQL, JSON and Python print it.
LARGEST = Decimal(10) ** (convert.MAX_EXPONENT + 1)
_LARGEST_INT = 10 ** (convert.MAX_EXPONENT + 1)
# pad_left / pad_right widths: wider than any ERP text field, far below what would exhaust a worker.
MAX_WIDTH = 10_000


def number(value: Any, node: Node) -> Decimal:
    """A Decimal for arithmetic, or a Failure naming the operand."""
    kind = type(value)
    if kind is Decimal:
        return value
    if kind is int:
        if -_LARGEST_INT < value < _LARGEST_INT:
            return Decimal(value)
        raise Failure(
            f"'{node.text}' is a number of {len(str(abs(value))) if value.bit_length() < 14_000 else 'over 4,000'} "
            f"digits, out of range for an amount (at most {convert.MAX_EXPONENT + 1})",
            path=node.text,
            value=value,
        )
    if kind is float and value - value == 0:  # finite
        return convert.float_to_decimal(value)
    try:
        result = convert.to_decimal(value)
    except convert.ConversionError as exc:
        raise Failure(str(exc), path=node.text, value=value) from None
    if result is None:
        raise Failure(f"'{node.text}' is empty; a number is needed", path=node.text, value=value)
    return result


def truthy(value: Any) -> bool:
    if type(value) is Decimal:
        return value != 0
    return bool(value)


def compare_values(left: Any, right: Any, op: str, nodes: list[Node]) -> bool:
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if left is None or right is None:
        return False  # nothing is larger or smaller than a missing value
    if isinstance(left, str) and isinstance(right, str):
        a, b = left, right
    else:
        a, b = number(left, nodes[0]), number(right, nodes[1])
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _equal(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return left is right
    numeric = (int, float, Decimal)
    if (
        isinstance(left, numeric)
        and not isinstance(left, bool)
        or isinstance(right, numeric)
        and not isinstance(right, bool)
    ):
        try:
            a, b = convert.to_decimal(left), convert.to_decimal(right)
        except convert.ConversionError:
            return False
        return a == b
    return left == right


def arith(op: str, a: Decimal, b: Decimal, nodes: list[Node]) -> Decimal:
    try:
        if op == "+":
            result = a + b
        elif op == "-":
            result = a - b
        elif op == "*":
            result = a * b
        elif op == "/":
            result = a / b
        else:
            result = a % b
    except (DivisionByZero, InvalidOperation):
        raise Failure(f"division by zero ('{nodes[1].text}' is 0)", path=nodes[1].text, value=b) from None
    return in_range(result, f"{nodes[0].text} {op} {nodes[1].text}")


def in_range(value: Decimal, what: str) -> Decimal:
    """The value, or a Failure when it is beyond what any target (or PostgreSQL's numeric in JSON) holds."""
    if -LARGEST < value < LARGEST:
        return value
    raise Failure(
        f"the result of '{what}' is out of range for an amount (at most {convert.MAX_EXPONENT + 1} digits)",
        path=what,
        value=value,
    )


def as_text(value: Any) -> str:
    if value is None:
        return ""
    try:
        return convert.to_string(value)
    except convert.ConversionError as exc:
        raise Failure(str(exc), value=value) from None


# --- functions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Function:
    min_args: int
    max_args: int
    impl: Callable[..., Any]
    # Index of an argument evaluated once per list item (sum(Lines, Qty * Price)), or None.
    per_item: int | None = None
    # Indexes of arguments that must be text literals (value map names, formats).
    literal_args: tuple[int, ...] = ()
    doc: str = ""


def as_items(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict) and "results" in value:
        value = value["results"]
    return value if isinstance(value, list) else [value]


def _aggregate(kind: str) -> Callable[..., Any]:
    def run(values: list[Any], nodes: list[Node]) -> Any:
        if kind == "count":
            return Decimal(len(values))
        numbers = [number(v, nodes[-1]) for v in values if v is not None and v != ""]
        if kind == "sum":
            return in_range(sum(numbers, Decimal(0)), f"sum({', '.join(n.text for n in nodes if n.text)})")
        if not numbers:
            return None
        if kind == "min":
            return min(numbers)
        if kind == "max":
            return max(numbers)
        return sum(numbers, Decimal(0)) / len(numbers)

    return run


def _round(value: Any, places: Any = Decimal(0), *, nodes: list[Node]) -> Decimal | None:
    if value is None:
        return None
    digits = int(number(places, nodes[1] if len(nodes) > 1 else nodes[0]))
    try:
        return convert.quantize(number(value, nodes[0]), digits)
    except convert.ConversionError as exc:
        raise Failure(str(exc), path=nodes[0].text, value=value) from None


def _substr(value: Any, start: Any, length: Any = None, *, nodes: list[Node]) -> str | None:
    if value is None:
        return None
    text = as_text(value)
    begin = int(number(start, nodes[1]))
    if length is None:
        return text[begin:]
    return text[begin : begin + int(number(length, nodes[2]))]


def _split(value: Any, sep: Any, index: Any = None, *, nodes: list[Node]) -> Any:
    if value is None:
        return None
    text = as_text(value).replace("\r\n", "\n")
    parts = [part.strip() for part in text.split(as_text(sep))] if sep else text.split()
    if index is None:
        return parts
    position = int(number(index, nodes[2]))
    return parts[position] if -len(parts) <= position < len(parts) else None


def _pad(side: str) -> Callable[..., Any]:
    def run(value: Any, width: Any, char: Any = " ", *, nodes: list[Node]) -> str | None:
        if value is None:
            return None
        size = int(number(width, nodes[1]))
        if size > MAX_WIDTH:  # a width from the payload must not exhaust the worker's memory
            raise Failure(f"pad width {size} is out of range (at most {MAX_WIDTH})", path=nodes[1].text, value=width)
        fill = as_text(char)[:1] or " "
        return as_text(value).rjust(size, fill) if side == "left" else as_text(value).ljust(size, fill)

    return run


def lookup_value(name: Any, key: Any, *default: Any, env: Env, nodes: list[Node]) -> Any:
    table = env.maps(name)
    text = as_text(key)
    if text in table:
        return table[text]
    if default:
        return default[0]
    raise Failure(f"no entry for {text!r} in value map '{name}'", path=nodes[1].text, value=key)


def _format_date(value: Any, fmt: Any, zone: Any = None, *, nodes: list[Node]) -> Any:
    if value is None:
        return None
    try:
        moment = convert.to_datetime(value)
        if zone is not None:
            moment = moment.astimezone(convert.get_zone(as_text(zone)))
        if convert.check_format(fmt):
            raise convert.ConversionError(convert.check_format(fmt))
        return convert.format_value(moment, fmt)
    except convert.ConversionError as exc:
        raise Failure(str(exc), path=nodes[0].text, value=value) from None


def _to(type_name: str) -> Callable[..., Any]:
    def run(value: Any, *, nodes: list[Node]) -> Any:
        try:
            result = convert.convert(value, type_name)
        except convert.ConversionError as exc:
            raise Failure(str(exc), path=nodes[0].text, value=value) from None
        if type_name == "integer" and result is not None:
            return Decimal(result)
        return result

    return run


def _coalesce(values: tuple[Any, ...]) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    return None


def _contains(value: Any, part: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, list):
        return any(_equal(item, part) for item in value)
    return as_text(part) in as_text(value)


FUNCTIONS: dict[str, Function] = {
    "sum": Function(1, 2, _aggregate("sum"), per_item=1, doc="sum(list[, expr per item])"),
    "count": Function(1, 1, _aggregate("count"), doc="count(list)"),
    "min": Function(1, 2, _aggregate("min"), per_item=1, doc="min(list[, expr per item])"),
    "max": Function(1, 2, _aggregate("max"), per_item=1, doc="max(list[, expr per item])"),
    "avg": Function(1, 2, _aggregate("avg"), per_item=1, doc="avg(list[, expr per item])"),
    "join": Function(
        2,
        2,
        lambda values, sep: as_text(sep).join(as_text(v) for v in as_items(values) if v not in (None, "")),
        doc="join(list, separator)",
    ),
    "concat": Function(1, 20, lambda *values: "".join(as_text(v) for v in values), doc="concat(a, b, ...)"),
    "coalesce": Function(
        1,
        20,
        lambda *values: _coalesce(values),
        doc="coalesce(a, b, ...): the first non-empty value",
    ),
    "if": Function(3, 3, None, doc="if(condition, then, else)"),
    "round": Function(1, 2, _round, doc="round(number[, places]), half up"),
    "floor": Function(
        1, 1, lambda v, *, nodes: None if v is None else Decimal(math.floor(number(v, nodes[0]))), doc="floor(number)"
    ),
    "ceil": Function(
        1, 1, lambda v, *, nodes: None if v is None else Decimal(math.ceil(number(v, nodes[0]))), doc="ceil(number)"
    ),
    "abs": Function(1, 1, lambda v, *, nodes: None if v is None else abs(number(v, nodes[0])), doc="abs(number)"),
    "upper": Function(1, 1, lambda v: None if v is None else as_text(v).upper(), doc="upper(text)"),
    "lower": Function(1, 1, lambda v: None if v is None else as_text(v).lower(), doc="lower(text)"),
    "trim": Function(1, 1, lambda v: None if v is None else as_text(v).strip(), doc="trim(text)"),
    "length": Function(
        1, 1, lambda v: Decimal(len(v)) if isinstance(v, list) else Decimal(len(as_text(v))), doc="length(text or list)"
    ),
    "substr": Function(2, 3, _substr, doc="substr(text, start[, length]), 0-based"),
    "replace": Function(
        3,
        3,
        lambda v, old, new: None if v is None else as_text(v).replace(as_text(old), as_text(new)),
        doc="replace(text, old, new)",
    ),
    "split": Function(2, 3, _split, doc="split(text, separator[, index]): a list, or the part at index"),
    "pad_left": Function(2, 3, _pad("left"), doc="pad_left(text, width[, char])"),
    "pad_right": Function(2, 3, _pad("right"), doc="pad_right(text, width[, char])"),
    "contains": Function(2, 2, _contains, doc="contains(text or list, part)"),
    "starts_with": Function(
        2, 2, lambda v, p: v is not None and as_text(v).startswith(as_text(p)), doc="starts_with(text, prefix)"
    ),
    "ends_with": Function(
        2, 2, lambda v, p: v is not None and as_text(v).endswith(as_text(p)), doc="ends_with(text, suffix)"
    ),
    "lookup": Function(2, 3, lookup_value, literal_args=(0,), doc="lookup('value-map', key[, default])"),
    "format_date": Function(2, 3, _format_date, literal_args=(1,), doc="format_date(value, format[, time zone])"),
    "number": Function(1, 1, _to("decimal"), doc="number(value)"),
    "integer": Function(1, 1, _to("integer"), doc="integer(value)"),
    "string": Function(1, 1, _to("string"), doc="string(value)"),
    "boolean": Function(1, 1, _to("boolean"), doc="boolean(value)"),
}
NEEDS_NODES = {
    "round",
    "floor",
    "ceil",
    "abs",
    "substr",
    "split",
    "pad_left",
    "pad_right",
    "format_date",
    "number",
    "integer",
    "string",
    "boolean",
}
