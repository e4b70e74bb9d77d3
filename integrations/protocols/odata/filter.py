"""The $filter subset: one parser for both versions, compiled into a predicate over a JSON record.

Grammar (or → and → not → comparison → operand): eq ne gt ge lt le, and or not, parentheses, function
calls; keywords in any case. What differs between the versions is the dialect:

- V4 (Dataverse, F&O): literals 'x', 12, 1.5, <guid>, 2024-05-01T10:00:00Z, true/false/null; strings
  compare case-insensitively; contains / startswith / endswith / tolower / toupper.
- V2 (SAP Gateway): literals 'x', 12.5M (a Decimal), datetime'…', datetimeoffset'…', guid'…', time'…';
  a property's Edm type (the `types` hook) makes stored values and the literals compared with them
  comparable; substringof / startswith / endswith / tolower / toupper, case-sensitive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from integrations.protocols.odata import edm
from integrations.protocols.odata.errors import ODataError
from integrations.protocols.odata.keys import string_value

Record = Mapping[str, Any]
Predicate = Callable[[Record], Any]

_PATTERNS = {
    "typed": r"(?:datetimeoffset|datetime|guid|time)'[^']*'",
    "string": r"'(?:[^']|'')*'",
    "guid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-])",
    "datetime": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?",
    "number": r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?(?![\w])",
    "name": r"[A-Za-z_@][\w./@]*",
    "punct": r"[(),]",
}
_ORDER = {
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}
_COMPARISONS = {"eq", "ne", *_ORDER}
_COUNTS = {1: "one argument", 2: "two arguments"}


@dataclass(frozen=True)
class Field:
    """How a dialect reads a property: its value in a record, and what it does to values compared with it."""

    get: Predicate
    coerce: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Token:
    kind: str
    value: str
    position: int


class Dialect:
    """What a version makes of the shared grammar: its literals, fields, comparisons and functions."""

    kinds: tuple[str, ...] = ()
    # name → (number of arguments, None for any; the function over the arguments' values)
    functions: Mapping[str, tuple[int | None, Callable[..., Any]]] = {}

    def __init__(self) -> None:
        self.pattern = _pattern(self.kinds)

    def literal(self, token: Token) -> Any:
        raise NotImplementedError

    def field(self, name: str) -> Field:
        return Field(lambda record: record.get(name))

    def equal(self, left: Any, right: Any) -> bool:
        return left == right

    def ordered(self, value: Any) -> Any:
        """A value as the order comparisons (gt ge lt le) see it."""
        return value


@cache
def _pattern(kinds: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\s*(?:" + "|".join(f"(?P<{kind}>{_PATTERNS[kind]})" for kind in kinds) + ")")


def _same(value: Any) -> Any:
    return value


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _ci(test: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    def call(haystack: Any, needle: Any) -> bool:
        if not isinstance(haystack, str) or not isinstance(needle, str):
            return False
        return test(haystack.lower(), needle.lower())

    return call


def _case(convert: Callable[[str], str]) -> Callable[..., Any]:
    return lambda value, *_: convert(value) if isinstance(value, str) else value


class V4(Dialect):
    kinds = ("string", "guid", "datetime", "number", "name", "punct")
    functions = {
        "contains": (2, _ci(lambda haystack, needle: needle in haystack)),
        "startswith": (2, _ci(str.startswith)),
        "endswith": (2, _ci(str.endswith)),
        "tolower": (None, _case(str.lower)),
        "toupper": (None, _case(str.upper)),
    }

    def literal(self, token: Token) -> Any:
        raw = token.value
        if token.kind == "string":
            return string_value(raw)
        if token.kind == "number":
            digits = raw.rstrip("mMdDfFlL")
            return float(digits) if any(c in digits for c in ".eE") else int(digits)
        if token.kind == "datetime":
            try:
                return datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError as exc:
                raise ODataError(f"$filter: '{raw}' is not a valid DateTimeOffset") from exc
        return raw.lower()  # a guid

    def equal(self, left: Any, right: Any) -> bool:
        if isinstance(left, str) and isinstance(right, str):
            return left.lower() == right.lower()  # Dataverse and F&O compare strings case-insensitively
        if isinstance(left, datetime) or isinstance(right, datetime):
            return self.ordered(left) == self.ordered(right)
        return left == right

    def ordered(self, value: Any) -> Any:
        if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}T", value):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return value
        return value


class V2(Dialect):
    """types(name) → the property's Edm type; it raises the caller's error for a property the type lacks."""

    kinds = ("typed", "string", "number", "name", "punct")
    functions = {
        "substringof": (2, lambda needle, haystack: _text(needle) in _text(haystack)),
        "startswith": (2, lambda value, prefix: _text(value).startswith(_text(prefix))),
        "endswith": (2, lambda value, suffix: _text(value).endswith(_text(suffix))),
        "tolower": (1, lambda value: _text(value).lower()),
        "toupper": (1, lambda value: _text(value).upper()),
    }

    def __init__(self, types: Callable[[str], str]) -> None:
        super().__init__()
        self.types = types

    def literal(self, token: Token) -> Any:
        raw = token.value
        if token.kind == "string":
            return string_value(raw)
        if token.kind == "number":
            return Decimal(raw.rstrip("mMdDlLfF"))
        prefix, text = raw.split("'", 1)
        text = text[:-1]
        if prefix in ("datetime", "datetimeoffset"):
            try:
                return edm.datetime_to_ms(edm.parse_datetime(text))
            except ValueError as exc:
                raise ODataError(f"$filter: '{raw}' is not a valid {prefix}") from exc
        return text  # guid'…', time'…'

    def field(self, name: str) -> Field:
        edm_type = self.types(name)

        def coerce(value: Any) -> Any:
            if isinstance(value, str):
                try:
                    return Decimal(value)
                except InvalidOperation:
                    return value
            return value

        return Field(
            lambda record: edm.comparable(edm_type, record.get(name)), coerce if edm_type in edm.NUMERIC else None
        )


def parse_filter(text: str, dialect: Dialect) -> Predicate:
    """Compile $filter into a predicate over a record; ODataError says where the expression broke."""
    return _Parser(text, dialect).parse()


def _tokenize(text: str, pattern: re.Pattern[str]) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text) and text[position:].strip():
        match = pattern.match(text, position)
        if not match:
            raise ODataError(f"$filter: cannot read '{text[position : position + 20].strip()}' at position {position}")
        kind = match.lastgroup or ""
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, dialect: Dialect) -> None:
        self.text = text
        self.dialect = dialect
        self.tokens = _tokenize(text, dialect.pattern)
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise ODataError(f"$filter: unexpected end of expression '{self.text}'")
        self.index += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token.value != value:
            raise ODataError(f"$filter: expected '{value}' at position {token.position}, found '{token.value}'")

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token and token.kind == "name" and token.value.lower() in words:
            self.index += 1
            return token.value.lower()
        return None

    def parse(self) -> Predicate:
        if not self.tokens:
            raise ODataError("$filter is empty")
        predicate = self.parse_or()
        if (token := self.peek()) is not None:
            raise ODataError(f"$filter: unexpected '{token.value}' at position {token.position}")
        return predicate

    def parse_or(self) -> Predicate:
        return self._chain("or", self.parse_and, any)

    def parse_and(self) -> Predicate:
        return self._chain("and", self.parse_not, all)

    def _chain(self, word: str, operand: Callable[[], Predicate], combine: Callable[[Any], bool]) -> Predicate:
        """operand (word operand)…, left to right; combine (any, all) short-circuits as `or` / `and` do."""
        left = operand()
        while self.keyword(word):
            right, first = operand(), left
            left = lambda r, a=first, b=right: combine(f(r) for f in (a, b))  # noqa: E731
        return left

    def parse_not(self) -> Predicate:
        if self.keyword("not"):
            inner = self.parse_not()
            return lambda r: not inner(r)
        return self.parse_comparison()

    def parse_comparison(self) -> Predicate:
        left, left_field = self.parse_operand()
        operator = self.keyword(*_COMPARISONS)
        if operator is None:
            return left
        right, right_field = self.parse_operand()
        typed = left_field or right_field  # the first field operand types the comparison (v2: numbers)
        coerce = typed.coerce if typed and typed.coerce else _same
        dialect = self.dialect
        if operator in ("eq", "ne"):
            negate = operator == "ne"
            return lambda r: dialect.equal(coerce(left(r)), coerce(right(r))) != negate
        test = _ORDER[operator]

        def ordered(record: Record) -> bool:
            a, b = dialect.ordered(coerce(left(record))), dialect.ordered(coerce(right(record)))
            if a is None or b is None:
                return False
            try:
                return test(a, b)
            except TypeError:
                return False

        return ordered

    def parse_operand(self) -> tuple[Predicate, Field | None]:
        token = self.take()
        if token.kind == "punct" and token.value == "(":
            inner = self.parse_or()
            self.expect(")")
            return inner, None
        if token.kind == "name":
            lowered = token.value.lower()
            following = self.peek()
            if following is not None and following.value == "(":
                return self.parse_call(token), None
            if lowered in ("true", "false", "null"):
                constant = None if lowered == "null" else lowered == "true"
                return (lambda _r: constant), None
            field = self.dialect.field(token.value)
            return field.get, field
        if token.kind != "punct":
            value = self.dialect.literal(token)
            return (lambda _r: value), None
        raise ODataError(f"$filter: unexpected '{token.value}' at position {token.position}")

    def parse_call(self, name: Token) -> Predicate:
        function = self.dialect.functions.get(name.value.lower())
        if function is None:
            raise ODataError(f"$filter: unsupported function '{name.value}' at position {name.position}")
        self.expect("(")
        args = [self.parse_or()]
        while (token := self.peek()) is not None and token.value == ",":
            self.take()
            args.append(self.parse_or())
        self.expect(")")
        count, call = function
        if count is not None and len(args) != count:
            raise ODataError(f"$filter: {name.value.lower()}() takes {_COUNTS.get(count, count)}")
        return lambda r: call(*(arg(r) for arg in args))
