"""OData v4 pieces shared by the Microsoft emulators (Dataverse Web API, F&O data entities).

- parse_filter / evaluate: a small $filter language (eq ne gt ge lt le, and or not, parentheses,
  contains / startswith / endswith) evaluated over JSON documents.
- parse_key: entity keys as in accounts(<guid>), accounts(accountnumber='A1') or
  CustomersV3(dataAreaId='SE01',CustomerAccount='C1').
- parse_batch / render_batch: multipart/mixed $batch bodies with change sets, CRLF or LF line ends.

The AX/S4 emulators speak OData v2 and keep their own helpers.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from django.http import HttpResponse


class ODataError(ValueError):
    """Bad query or body; `message` says what and where."""


# --- $filter -------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
      | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?(?![\w]))
      | (?P<name>[A-Za-z_@][\w./@]*)
      | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"contains", "startswith", "endswith", "tolower", "toupper"}
_MISSING = object()


@dataclass(frozen=True)
class Token:
    kind: str
    value: Any
    position: int


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match:
            raise ODataError(f"$filter: cannot read '{text[position : position + 20].strip()}' at position {position}")
        kind = match.lastgroup or ""
        raw = match.group(kind)
        start = match.start(kind)
        if kind == "string":
            value: Any = raw[1:-1].replace("''", "'")
        elif kind == "number":
            digits = raw.rstrip("mMdDfFlL")
            value = float(digits) if any(c in digits for c in ".eE") else int(digits)
        elif kind == "datetime":
            value = _parse_datetime(raw)
        elif kind == "guid":
            value = raw.lower()
        else:
            value = raw
        tokens.append(Token(kind, value, start))
        position = match.end()
    return tokens


def _parse_datetime(raw: str) -> datetime:
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ODataError(f"$filter: '{raw}' is not a valid DateTimeOffset") from exc


class _Parser:
    """Recursive descent: or → and → not → comparison → primary."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
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

    def parse(self) -> tuple:
        if not self.tokens:
            raise ODataError("$filter is empty")
        node = self.parse_or()
        if self.peek() is not None:
            token = self.take()
            raise ODataError(f"$filter: unexpected '{token.value}' at position {token.position}")
        return node

    def parse_or(self) -> tuple:
        node = self.parse_and()
        while self.keyword("or"):
            node = ("or", node, self.parse_and())
        return node

    def parse_and(self) -> tuple:
        node = self.parse_not()
        while self.keyword("and"):
            node = ("and", node, self.parse_not())
        return node

    def parse_not(self) -> tuple:
        if self.keyword("not"):
            return ("not", self.parse_not())
        return self.parse_comparison()

    def parse_comparison(self) -> tuple:
        left = self.parse_primary()
        operator = self.keyword(*_COMPARISONS)
        if operator is None:
            return left
        return (operator, left, self.parse_primary())

    def parse_primary(self) -> tuple:
        token = self.take()
        if token.value == "(" and token.kind == "punct":
            node = self.parse_or()
            self.expect(")")
            return node
        if token.kind == "name":
            lowered = token.value.lower()
            nxt = self.peek()
            if lowered in _FUNCTIONS and nxt and nxt.value == "(":
                self.take()
                args = [self.parse_or()]
                while (nxt := self.peek()) and nxt.value == ",":
                    self.take()
                    args.append(self.parse_or())
                self.expect(")")
                return ("call", lowered, args)
            if lowered in ("true", "false"):
                return ("literal", lowered == "true")
            if lowered == "null":
                return ("literal", None)
            return ("field", token.value)
        if token.kind in ("string", "number", "guid", "datetime"):
            return ("literal", token.value)
        raise ODataError(f"$filter: unexpected '{token.value}' at position {token.position}")


def parse_filter(text: str) -> tuple:
    """Parse a $filter expression into a small tree; ODataError says where it went wrong."""
    return _Parser(text).parse()


def _comparable(value: Any) -> Any:
    if isinstance(value, str):
        try:
            if re.match(r"^\d{4}-\d{2}-\d{2}T", value):
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return value
    return value


def _compare(operator: str, left: Any, right: Any) -> bool:
    if operator == "eq":
        return _equal(left, right)
    if operator == "ne":
        return not _equal(left, right)
    left, right = _comparable(left), _comparable(right)
    if left is None or right is None:
        return False
    try:
        if operator == "gt":
            return left > right
        if operator == "ge":
            return left >= right
        if operator == "lt":
            return left < right
        return left <= right
    except TypeError:
        return False


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.lower() == right.lower()  # Dataverse and F&O compare strings case-insensitively
    if isinstance(left, datetime) or isinstance(right, datetime):
        return _comparable(left) == _comparable(right)
    return left == right


def evaluate(node: tuple, record: dict[str, Any]) -> Any:
    """Value of a parsed $filter node for one record (fields looked up case-sensitively)."""
    kind = node[0]
    if kind == "literal":
        return node[1]
    if kind == "field":
        return record.get(node[1])
    if kind == "and":
        return bool(evaluate(node[1], record)) and bool(evaluate(node[2], record))
    if kind == "or":
        return bool(evaluate(node[1], record)) or bool(evaluate(node[2], record))
    if kind == "not":
        return not evaluate(node[1], record)
    if kind == "call":
        args = [evaluate(arg, record) for arg in node[2]]
        name = node[1]
        if name in ("tolower", "toupper"):
            value = args[0]
            return (value.lower() if name == "tolower" else value.upper()) if isinstance(value, str) else value
        if len(args) != 2:
            raise ODataError(f"$filter: {name}() takes two arguments")
        haystack, needle = args
        if not isinstance(haystack, str) or not isinstance(needle, str):
            return False
        haystack, needle = haystack.lower(), needle.lower()
        if name == "contains":
            return needle in haystack
        if name == "startswith":
            return haystack.startswith(needle)
        return haystack.endswith(needle)
    return _compare(kind, evaluate(node[1], record), evaluate(node[2], record))


def fields_of(node: tuple) -> set[str]:
    """Every field name a filter reads (to reject unknown ones with a clear error)."""
    if node[0] == "field":
        return {node[1]}
    if node[0] == "literal":
        return set()
    if node[0] == "call":
        return set().union(*(fields_of(arg) for arg in node[2]))
    return set().union(*(fields_of(child) for child in node[1:] if isinstance(child, tuple)))


# --- keys ---------------------------------------------------------------------------------------

_KEY_PART = re.compile(r"\s*(?:(?P<name>\w+)\s*=\s*)?(?P<value>'(?:[^']|'')*'|[^,']+)\s*(?:,|$)")


def parse_key(text: str) -> dict[str, Any] | str:
    """`<guid>` → the guid; `a='x',b=2` → {"a": "x", "b": 2}; ODataError on anything else."""
    text = unquote(text).strip()
    if not text:
        raise ODataError("empty key in ()")
    parts: dict[str, Any] = {}
    position = 0
    while position < len(text):
        match = _KEY_PART.match(text, position)
        if not match or match.end() == position:
            raise ODataError(f"cannot read key '{text}' at position {position}")
        name, raw = match.group("name"), match.group("value").strip()
        value: Any
        if raw.startswith("'"):
            value = raw[1:-1].replace("''", "'")
        elif re.fullmatch(r"-?\d+", raw):
            value = int(raw)
        elif re.fullmatch(r"-?\d+\.\d+", raw):
            value = float(raw)
        else:
            value = raw
        if name is None:
            if parts or match.end() < len(text):
                raise ODataError(f"key '{text}' mixes a bare value with named parts")
            return str(value).lower()
        parts[name] = value
        position = match.end()
    return parts


def format_key(values: dict[str, Any]) -> str:
    """The inverse of parse_key for named keys: a='x',b=2 (quotes doubled)."""
    out = []
    for name, value in values.items():
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, int | float):
            rendered = str(value)
        else:
            rendered = "'" + str(value).replace("'", "''") + "'"
        out.append(f"{name}={rendered}")
    return ",".join(out)


def select_fields(record: dict[str, Any], select: str | None, always: tuple[str, ...] = ()) -> dict[str, Any]:
    """$select: the named columns (plus annotations and the always-present ones)."""
    if not select:
        return dict(record)
    wanted = [name.strip() for name in select.split(",") if name.strip()]
    keep = {*wanted, *always}
    return {name: value for name, value in record.items() if name in keep or name.startswith("@")} | {
        name: None for name in wanted if name not in record
    }


# --- $batch -------------------------------------------------------------------------------------


@dataclass
class BatchRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str = ""


@dataclass
class BatchChangeSet:
    requests: list[BatchRequest] = field(default_factory=list)


@dataclass
class BatchResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    content_id: str = ""


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def boundary_of(content_type: str) -> str:
    match = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not match:
        raise ODataError("Content-Type must be multipart/mixed with a boundary parameter")
    return match.group(1)


def _split_headers(block: str) -> tuple[dict[str, str], str]:
    """Headers up to the first empty line, then the rest (line ends already normalised to LF)."""
    head, _, rest = block.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ODataError(f"$batch: header line without ':' — '{line[:60]}'")
        headers[name.strip().lower()] = value.strip()
    return headers, rest


def _parts(body: str, boundary: str) -> list[str]:
    delimiter = f"--{boundary}"
    if delimiter not in body:
        raise ODataError(f"$batch: boundary '{boundary}' not found in the body")
    chunks = body.split(delimiter)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith("--"):
            break  # the close delimiter
        parts.append(chunk.removeprefix("\n"))
    return parts


def _parse_http_part(text: str, content_id: str) -> BatchRequest:
    request_line, _, rest = text.lstrip("\n").partition("\n")
    pieces = request_line.split()
    if len(pieces) < 2:
        raise ODataError(f"$batch: bad request line '{request_line[:80]}'")
    # A request line "GET /api/... HTTP/1.1" followed directly by a blank line has no headers.
    headers, body = ({}, rest[1:]) if rest.startswith("\n") else _split_headers(rest)
    return BatchRequest(
        method=pieces[0].upper(),
        url=pieces[1],
        headers=headers,
        body=body.strip("\n").encode(),
        content_id=content_id,
    )


def parse_batch(body: bytes, content_type: str) -> list[BatchRequest | BatchChangeSet]:
    """Split a $batch body into requests and change sets; accepts CRLF (real traffic) and LF (docs)."""
    text = body.decode("utf-8").replace("\r\n", "\n")
    items: list[BatchRequest | BatchChangeSet] = []
    for part in _parts(text, boundary_of(content_type)):
        headers, rest = _split_headers(part)
        part_type = headers.get("content-type", "")
        if part_type.startswith("multipart/mixed"):
            changeset = BatchChangeSet()
            for inner in _parts(rest, boundary_of(part_type)):
                inner_headers, inner_rest = _split_headers(inner)
                if not inner_headers.get("content-type", "").startswith("application/http"):
                    raise ODataError("$batch: every change set part must be Content-Type: application/http")
                request = _parse_http_part(inner_rest, inner_headers.get("content-id", ""))
                if request.method == "GET":
                    raise ODataError("$batch: GET requests are not allowed inside a change set")
                changeset.requests.append(request)
            items.append(changeset)
        elif part_type.startswith("application/http"):
            items.append(_parse_http_part(rest, headers.get("content-id", "")))
        else:
            raise ODataError(f"$batch: unexpected part Content-Type '{part_type}'")
    return items


def _render_response(response: BatchResponse) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if response.content_id:
        lines.append(f"Content-ID: {response.content_id}")
    lines += ["", f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}".rstrip()]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    lines += ["", response.body.decode() if response.body else ""]
    return "\r\n".join(lines) + "\r\n"


def render_batch(results: list[BatchResponse | list[BatchResponse]]) -> tuple[str, str]:
    """The multipart/mixed answer (always CRLF) and its Content-Type."""
    batch_boundary = f"batchresponse_{uuid.uuid4()}"
    out: list[str] = []
    for result in results:
        out.append(f"--{batch_boundary}\r\n")
        if isinstance(result, list):
            changeset_boundary = f"changesetresponse_{uuid.uuid4()}"
            out.append(f"Content-Type: multipart/mixed; boundary={changeset_boundary}\r\n\r\n")
            for response in result:
                out.append(f"--{changeset_boundary}\r\n")
                out.append(_render_response(response))
            out.append(f"--{changeset_boundary}--\r\n")
        else:
            out.append(_render_response(result))
    out.append(f"--{batch_boundary}--\r\n")
    return "".join(out), f"multipart/mixed; boundary={batch_boundary}"


def parse_batch_response(body: bytes, content_type: str) -> list[BatchResponse]:
    """Flatten a $batch answer into its responses in order (change set members inline)."""
    text = body.decode("utf-8").replace("\r\n", "\n")
    responses: list[BatchResponse] = []

    def one(block: str, content_id: str) -> BatchResponse:
        status_line, _, rest = block.lstrip("\n").partition("\n")
        pieces = status_line.split(" ", 2)
        if len(pieces) < 2 or not pieces[1].isdigit():
            raise ODataError(f"$batch response: bad status line '{status_line[:80]}'")
        headers, payload = _split_headers(rest)
        return BatchResponse(int(pieces[1]), headers, payload.strip("\n").encode(), content_id)

    for part in _parts(text, boundary_of(content_type)):
        headers, rest = _split_headers(part)
        part_type = headers.get("content-type", "")
        if part_type.startswith("multipart/mixed"):
            for inner in _parts(rest, boundary_of(part_type)):
                inner_headers, inner_rest = _split_headers(inner)
                responses.append(one(inner_rest, inner_headers.get("content-id", "")))
        else:
            responses.append(one(rest, headers.get("content-id", "")))
    return responses


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


Dispatch = Callable[[BatchRequest], BatchResponse]


@dataclass
class Result:
    """One OData answer of an emulator, built by its handlers and turned into a Django response once."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, value: Any, status: int = 200, **headers: str) -> Result:
        return cls(
            status,
            {"Content-Type": "application/json; odata.metadata=minimal", "OData-Version": "4.0", **headers},
            json_bytes(value),
        )

    def to_http(self) -> HttpResponse:
        response = HttpResponse(self.body, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        if not self.body:
            del response["Content-Type"]
        return response
