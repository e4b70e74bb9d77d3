"""OData v2 pieces of the S/4HANA emulator: the model read from the real $metadata, values, $filter, $batch.

- load_service: entity sets, keys, typed properties (sap:creatable/updatable, ConcurrencyMode) and
  navigation properties (resolved through AssociationSets) from an .edmx in s4hana_metadata/.
- to_wire: a JSON value checked against its Edm type and stored in v2 JSON form ("/Date(ms)/", decimals
  as strings), as SAP Gateway answers them.
- parse_filter: $filter (eq ne gt ge lt le, and or not, parentheses, substringof/startswith/endswith,
  tolower/toupper; literals 'x', datetime'…', datetimeoffset'…', guid'…', 12.5M, true/false/null).
- parse_batch / render_batch: multipart/mixed with change sets; CRLF or LF line ends.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

METADATA_DIR = Path(__file__).resolve().parent / "s4hana_metadata"
EDM = "http://schemas.microsoft.com/ado/2008/09/edm"
SAP = "http://www.sap.com/Protocols/SAPData"
META = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"


class ODataError(ValueError):
    """A request SAP Gateway would refuse; carries the status, SAP message code and text."""

    def __init__(self, status: int, code: str, message: str, *, target: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target


# --- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prop:
    name: str
    type: str
    nullable: bool = True
    max_length: int | None = None
    creatable: bool = True
    updatable: bool = True
    concurrency: bool = False


@dataclass(frozen=True)
class Nav:
    name: str
    target_set: str
    many: bool


@dataclass
class EntitySet:
    name: str
    type_name: str  # qualified: API_SALES_ORDER_SRV.A_SalesOrderType
    keys: list[str]
    props: dict[str, Prop]
    navs: dict[str, Nav] = field(default_factory=dict)
    creatable: bool = True
    updatable: bool = True
    deletable: bool = True

    @property
    def etag_prop(self) -> str | None:
        return next((p.name for p in self.props.values() if p.concurrency), None)


@dataclass
class Service:
    name: str
    namespace: str
    metadata: bytes
    sets: dict[str, EntitySet]

    def entity_set(self, name: str) -> EntitySet:
        found = self.sets.get(name)
        if found is None:
            raise ODataError(404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{name}'")
        return found


def _flag(element: etree._Element, name: str) -> bool:
    return element.get(f"{{{SAP}}}{name}", "true") != "false"


@cache
def load_service(name: str) -> Service:
    """The service as its $metadata describes it (parsed once per process)."""
    path = METADATA_DIR / f"{name}.edmx"
    if not path.is_file():
        raise ODataError(404, "/IWFND/MED/170", f"No service found for namespace '', name '{name}', version '0001'")
    raw = path.read_bytes()
    root = etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True))
    schema = root.find(f".//{{{EDM}}}Schema")
    namespace = schema.get("Namespace")
    types: dict[str, etree._Element] = {t.get("Name"): t for t in schema.findall(f"{{{EDM}}}EntityType")}
    associations = {a.get("Name"): a for a in schema.findall(f"{{{EDM}}}Association")}
    container = schema.find(f"{{{EDM}}}EntityContainer")
    association_sets = {
        a.get("Association").rsplit(".", 1)[-1]: {e.get("Role"): e.get("EntitySet") for e in a.findall(f"{{{EDM}}}End")}
        for a in container.findall(f"{{{EDM}}}AssociationSet")
    }
    sets: dict[str, EntitySet] = {}
    for element in container.findall(f"{{{EDM}}}EntitySet"):
        type_name = element.get("EntityType")
        entity_type = types[type_name.rsplit(".", 1)[-1]]
        props = {}
        for p in entity_type.findall(f"{{{EDM}}}Property"):
            max_length = p.get("MaxLength")
            props[p.get("Name")] = Prop(
                name=p.get("Name"),
                type=p.get("Type"),
                nullable=p.get("Nullable", "true") != "false",
                max_length=int(max_length) if max_length and max_length.isdigit() else None,
                creatable=_flag(p, "creatable"),
                updatable=_flag(p, "updatable"),
                concurrency=p.get("ConcurrencyMode") == "Fixed",
            )
        navs = {}
        for n in entity_type.findall(f"{{{EDM}}}NavigationProperty"):
            relationship = n.get("Relationship").rsplit(".", 1)[-1]
            target_set = association_sets.get(relationship, {}).get(n.get("ToRole"))
            association = associations.get(relationship)
            if target_set is None or association is None:
                continue
            end = next(e for e in association.findall(f"{{{EDM}}}End") if e.get("Role") == n.get("ToRole"))
            navs[n.get("Name")] = Nav(n.get("Name"), target_set, end.get("Multiplicity") == "*")
        sets[element.get("Name")] = EntitySet(
            name=element.get("Name"),
            type_name=type_name,
            keys=[k.get("Name") for k in entity_type.find(f"{{{EDM}}}Key").findall(f"{{{EDM}}}PropertyRef")],
            props=props,
            navs=navs,
            creatable=_flag(element, "creatable"),
            updatable=_flag(element, "updatable"),
            deletable=_flag(element, "deletable"),
        )
    return Service(name=name, namespace=namespace, metadata=raw, sets=sets)


def available_services() -> list[str]:
    return sorted(p.stem for p in METADATA_DIR.glob("*.edmx"))


# --- values --------------------------------------------------------------------------------------

_DATE_JSON = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_TIME = re.compile(r"^PT(\d{1,2})H(\d{1,2})M(\d{1,2}(?:\.\d+)?)S$")


def datetime_to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def parse_datetime(value: str) -> datetime:
    """/Date(ms)/, /Date(ms+0000)/ or ISO 8601 → aware datetime."""
    match = _DATE_JSON.match(value)
    if match:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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

    def bad(reason: str) -> ODataError:
        return ODataError(
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


def comparable(prop: Prop | None, value: Any) -> Any:
    """A stored wire value in a form Python can compare."""
    if value is None or prop is None:
        return value
    if prop.type in ("Edm.Decimal", "Edm.Double", "Edm.Int64"):
        return Decimal(str(value))
    if prop.type in ("Edm.DateTime", "Edm.DateTimeOffset"):
        return datetime_to_ms(parse_datetime(str(value)))
    return value


# --- keys ----------------------------------------------------------------------------------------

_KEY_PART = re.compile(r"\s*(?:(\w+)\s*=\s*)?('(?:[^']|'')*'|[^,]+)\s*(?:,|$)")


def format_key(entity_set: EntitySet, values: dict[str, Any]) -> str:
    """A_SalesOrderItem(SalesOrder='1',SalesOrderItem='10'); a single key is written without its name."""

    def literal(name: str) -> str:
        value = values[name]
        if entity_set.props[name].type == "Edm.String":
            return "'" + str(value).replace("'", "''") + "'"
        return str(value)

    if len(entity_set.keys) == 1:
        return literal(entity_set.keys[0])
    return ",".join(f"{name}={literal(name)}" for name in entity_set.keys)


def parse_key(entity_set: EntitySet, text: str) -> dict[str, Any]:
    parts = [(m.group(1), m.group(2).strip()) for m in _KEY_PART.finditer(text) if m.group(2).strip()]
    if len(parts) == 1 and parts[0][0] is None and len(entity_set.keys) == 1:
        parts = [(entity_set.keys[0], parts[0][1])]
    values = {}
    for name, raw in parts:
        if name not in entity_set.keys:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/021", f"Invalid key predicate '{text}' for {entity_set.name}")
        values[name] = raw[1:-1].replace("''", "'") if raw.startswith("'") else raw
    if set(values) != set(entity_set.keys):
        raise ODataError(400, "/IWBEP/CM_MGW_RT/021", f"Invalid key predicate '{text}' for {entity_set.name}")
    return values


# --- $filter -------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<typed>(?:datetimeoffset|datetime|guid|time)'[^']*')
      | (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?[mMdDlLfF]?(?![\w]))
      | (?P<name>[A-Za-z_][\w/]*)
      | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
}
Predicate = Callable[[dict[str, Any]], Any]


def parse_filter(text: str, entity_set: EntitySet) -> Predicate:
    """Compile $filter into a predicate over a stored record; a bad expression says where it broke."""
    tokens: list[tuple[str, str, int]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"Invalid filter expression at position {position}: '{text}'")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind), match.start(kind)))
        position = match.end()
    index = 0

    def peek() -> tuple[str, str, int] | None:
        return tokens[index] if index < len(tokens) else None

    def take(expected: str | None = None) -> tuple[str, str, int]:
        nonlocal index
        token = peek()
        if token is None or (expected and token[1] != expected):
            where = token[2] if token else len(text)
            raise ODataError(
                400, "/IWBEP/CM_MGW_RT/000", f"Invalid filter expression: expected {expected or 'a term'} at {where}"
            )
        index += 1
        return token

    def operand() -> tuple[Predicate, Prop | None]:
        kind, value, at = take()
        if kind == "punct" and value == "(":
            inner = expression()
            take(")")
            return inner, None
        if kind == "string":
            literal = value[1:-1].replace("''", "'")
            return (lambda _r: literal), None
        if kind == "typed":
            prefix, raw = value.split("'", 1)
            raw = raw[:-1]
            if prefix in ("datetime", "datetimeoffset"):
                ms = datetime_to_ms(parse_datetime(raw))
                return (lambda _r: ms), None
            return (lambda _r: raw), None
        if kind == "number":
            number = Decimal(value.rstrip("mMdDlLfF"))
            return (lambda _r: number), None
        if kind == "name":
            if value in ("true", "false"):
                flag = value == "true"
                return (lambda _r: flag), None
            if value == "null":
                return (lambda _r: None), None
            if peek() and peek()[1] == "(":
                return function(value, at), None
            prop = entity_set.props.get(value)
            if prop is None:
                raise ODataError(
                    400, "/IWBEP/CM_MGW_RT/000", f"Property '{value}' not found in type '{entity_set.type_name}'"
                )
            return (lambda r, p=prop: comparable(p, r.get(p.name))), prop
        raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"Invalid filter expression at position {at}: '{value}'")

    def function(name: str, at: int) -> Predicate:
        take("(")
        args = [operand()[0]]
        while peek() and peek()[1] == ",":
            take(",")
            args.append(operand()[0])
        take(")")
        as_text = [lambda r, a=a: "" if a(r) is None else str(a(r)) for a in args]
        functions: dict[str, tuple[int, Predicate]] = {
            "substringof": (2, lambda r: as_text[0](r) in as_text[1](r)),
            "startswith": (2, lambda r: as_text[0](r).startswith(as_text[1](r))),
            "endswith": (2, lambda r: as_text[0](r).endswith(as_text[1](r))),
            "tolower": (1, lambda r: as_text[0](r).lower()),
            "toupper": (1, lambda r: as_text[0](r).upper()),
        }
        if name not in functions or functions[name][0] != len(args):
            raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"Unsupported filter function '{name}' at position {at}")
        return functions[name][1]

    def comparison() -> Predicate:
        if peek() and peek()[1] == "not":
            take("not")
            inner = comparison()
            return lambda r: not inner(r)
        left, left_prop = operand()
        token = peek()
        if token and token[1] in _COMPARE:
            op = _COMPARE[take()[1]]
            right, right_prop = operand()
            prop = left_prop or right_prop

            def convert(value: Any) -> Any:
                if prop and prop.type in ("Edm.Decimal", "Edm.Double", "Edm.Int64") and isinstance(value, str):
                    try:
                        return Decimal(value)
                    except InvalidOperation:
                        return value
                return value

            return lambda r: op(convert(left(r)), convert(right(r)))
        return left

    def conjunction() -> Predicate:
        left = comparison()
        while peek() and peek()[1] == "and":
            take("and")
            right, first = comparison(), left
            left = lambda r, a=first, b=right: bool(a(r)) and bool(b(r))  # noqa: E731
        return left

    def expression() -> Predicate:
        left = conjunction()
        while peek() and peek()[1] == "or":
            take("or")
            right, first = conjunction(), left
            left = lambda r, a=first, b=right: bool(a(r)) or bool(b(r))  # noqa: E731
        return left

    predicate = expression()
    if peek() is not None:
        raise ODataError(
            400, "/IWBEP/CM_MGW_RT/000", f"Invalid filter expression: unexpected '{peek()[1]}' at {peek()[2]}"
        )
    return predicate


# --- $batch --------------------------------------------------------------------------------------


@dataclass
class BatchRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str = ""


@dataclass
class BatchPart:
    """A lone retrieve request, or a change set (requests that succeed or fail together)."""

    requests: list[BatchRequest]
    changeset: bool


@dataclass
class BatchResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def _boundary(content_type: str) -> str:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise ODataError(400, "/IWBEP/CM_MGW_RT/000", "The $batch request has no multipart boundary")
    return match.group(1)


def _split(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"The $batch body has no parts for boundary '{boundary}'")
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        parts.append(chunk.lstrip(b"\r\n") if chunk.startswith((b"\r\n", b"\n")) else chunk)
    return parts


def _head_and_body(chunk: bytes) -> tuple[dict[str, str], list[str], bytes]:
    normal = chunk.replace(b"\r\n", b"\n")
    head, _, rest = normal.partition(b"\n\n")
    lines = head.decode("utf-8", "replace").split("\n")
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, lines, rest


def _http_request(chunk: bytes, content_id: str) -> BatchRequest:
    _, _, inner = _head_and_body(chunk)
    inner_headers, lines, body = _head_and_body(inner)
    request_line = lines[0].strip() if lines else ""
    pieces = request_line.split()
    if len(pieces) < 2:
        raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"Invalid request line in $batch part: '{request_line}'")
    body = body.rstrip(b"\n")
    return BatchRequest(
        pieces[0].upper(), pieces[1], inner_headers, body, content_id or inner_headers.get("content-id", "")
    )


def parse_batch(body: bytes, content_type: str) -> list[BatchPart]:
    parts = []
    for chunk in _split(body, _boundary(content_type)):
        headers, _, rest = _head_and_body(chunk)
        part_type = headers.get("content-type", "")
        if part_type.startswith("multipart/mixed"):
            requests = [
                _http_request(c, _head_and_body(c)[0].get("content-id", "")) for c in _split(rest, _boundary(part_type))
            ]
            if any(r.method == "GET" for r in requests):
                raise ODataError(400, "/IWBEP/CM_MGW_RT/000", "A change set must not contain GET requests")
            parts.append(BatchPart(requests, changeset=True))
        elif part_type.startswith("application/http"):
            request = _http_request(chunk, headers.get("content-id", ""))
            if request.method != "GET":
                raise ODataError(400, "/IWBEP/CM_MGW_RT/000", "Modifying requests must be inside a change set")
            parts.append(BatchPart([request], changeset=False))
        else:
            raise ODataError(400, "/IWBEP/CM_MGW_RT/000", f"Unsupported $batch part content type '{part_type}'")
    return parts


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    412: "Precondition Failed",
    428: "Precondition Required",
    500: "Internal Server Error",
}


def _render_response(response: BatchResponse) -> str:
    lines = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    lines.append(f"Content-Length: {len(response.body)}")
    return (
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        + "\r\n".join(lines)
        + "\r\n\r\n"
        + response.body.decode()
    )


def render_batch(results: list[tuple[bool, list[BatchResponse]]]) -> tuple[bytes, str]:
    """(body, content type) of a $batch answer: one part per request or change set, CRLF line ends."""
    boundary = f"batch_{uuid.uuid4()}"
    out = []
    for changeset, responses in results:
        out.append(f"--{boundary}\r\n")
        if changeset and not (len(responses) == 1 and responses[0].status >= 400):
            inner = f"changeset_{uuid.uuid4()}"
            out.append(f"Content-Type: multipart/mixed; boundary={inner}\r\n\r\n")
            for response in responses:
                out.append(f"--{inner}\r\n{_render_response(response)}\r\n")
            out.append(f"--{inner}--\r\n")
        else:  # a failed change set is answered by its one error, as SAP Gateway does
            out.append(_render_response(responses[0]) + "\r\n")
    out.append(f"--{boundary}--\r\n")
    return "".join(out).encode(), f"multipart/mixed; boundary={boundary}"
