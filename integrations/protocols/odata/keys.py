"""Key predicates and literals, written and read.

v4 (Dataverse, F&O): accounts(<guid>), accounts(accountnumber='A1'),
CustomersV3(dataAreaId='SE01',CustomerAccount='C1'): named parts, strings quoted with quotes doubled,
numbers and booleans bare.
v2 (SAP Gateway): A_SalesOrder('1') — a single key is written without its name —,
A_SalesOrderItem(SalesOrder='1',SalesOrderItem='10').
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote

from integrations.protocols.odata.errors import ODataError

_KEY_PART = re.compile(r"\s*(?:(?P<name>\w+)\s*=\s*)?(?P<value>'(?:[^']|'')*'|[^,']+)\s*(?:,|$)")
_URL_SAFE = "'=,"  # what stays readable when a key goes into a URL


def string_literal(value: Any) -> str:
    """'x' with quotes doubled: O'Neil → 'O''Neil'."""
    return "'" + str(value).replace("'", "''") + "'"


def string_value(raw: str) -> str:
    """The text of a quoted literal: 'O''Neil' → O'Neil."""
    return raw[1:-1].replace("''", "'")


def literal(value: Any) -> str:
    """A v4 literal: true/false, numbers bare, anything else a quoted string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return string_literal(value)


def v2_literal(value: Any, edm_type: str | None = None) -> str:
    """A v2 key literal: quoted for Edm.String (or, with no type known, for a str), bare otherwise."""
    text = edm_type == "Edm.String" if edm_type else isinstance(value, str)
    return string_literal(value) if text else str(value)


def format_key(values: Mapping[str, Any], *, url: bool = False) -> str:
    """A v4 named key: a='x',b=2. url=True percent-encodes each literal as a URL path wants it."""
    parts = []
    for name, value in values.items():
        rendered = literal(value)
        parts.append(f"{name}={quote(rendered, safe=_URL_SAFE) if url else rendered}")
    return ",".join(parts)


def format_v2_key(values: Mapping[str, Any], types: Mapping[str, str] | None = None) -> str:
    """A v2 key: '1' for a single key, SalesOrder='1',SalesOrderItem='10' for several (types: Edm type by name)."""
    types = types or {}
    if len(values) == 1:
        [(name, value)] = values.items()
        return v2_literal(value, types.get(name))
    return ",".join(f"{name}={v2_literal(value, types.get(name))}" for name, value in values.items())


def key_parts(text: str) -> list[tuple[str | None, str]]:
    """(name or None, raw literal) of each part of a key predicate; ODataError where it cannot be read."""
    if not text.strip():
        raise ODataError("empty key in ()")
    parts = []
    position = 0
    while position < len(text):
        match = _KEY_PART.match(text, position)
        if not match or match.end() == position:
            raise ODataError(f"cannot read key '{text}' at position {position}")
        parts.append((match.group("name"), match.group("value").strip()))
        position = match.end()
    return parts


def parse_key(text: str) -> dict[str, Any] | str:
    """A v4 key: `<guid>` → the guid (lower case); `a='x',b=2` → {"a": "x", "b": 2}; ODataError otherwise."""
    text = unquote(text).strip()
    parts = key_parts(text)
    if any(name is None for name, _ in parts):
        if len(parts) > 1:
            raise ODataError(f"key '{text}' mixes a bare value with named parts")
        return str(_typed(parts[0][1])).lower()
    return {name: _typed(raw) for name, raw in parts}


def parse_v2_key(text: str, names: Sequence[str]) -> dict[str, str]:
    """A v2 key of an entity whose key properties are `names`: values as text; ODataError if they differ."""
    parts = key_parts(text)
    if len(parts) == 1 and parts[0][0] is None and len(names) == 1:
        parts = [(names[0], parts[0][1])]
    values = {}
    for name, raw in parts:
        if name not in names:
            raise ODataError(f"Invalid key predicate '{text}'")
        values[name] = string_value(raw) if raw.startswith("'") else raw
    if set(values) != set(names):
        raise ODataError(f"Invalid key predicate '{text}'")
    return values


def _typed(raw: str) -> Any:
    if raw.startswith("'"):
        return string_value(raw)
    if re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if re.fullmatch(r"-?\d+\.\d+", raw):
        return float(raw)
    return raw
