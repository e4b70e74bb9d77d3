"""$batch bodies, v2 and v4 alike: multipart/mixed of application/http parts, change sets as nested multiparts.

Requests: encode_requests (a client's $batch) and decode_requests (a server reading one).
Answers: encode_responses (a server's answer, a failed change set answered by its one failing response)
and decode_responses (a client reading one, change set members inline, in order).

Encoding writes CRLF line ends; decoding accepts CRLF (the wire) or LF (documentation samples). Format:
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/execute-batch-operations-using-web-api
https://www.odata.org/documentation/odata-version-2-0/batch-processing/
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from integrations.protocols.odata.errors import ODataError


@dataclass
class BatchRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)  # decoded: lower-case names
    body: bytes = b""
    content_id: str = ""


@dataclass
class ChangeSet:
    """Requests that succeed or fail together."""

    requests: list[BatchRequest] = field(default_factory=list)


@dataclass
class BatchResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # decoded: names as the server wrote them
    body: bytes = b""
    content_id: str = ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.text) if self.text.strip() else None


REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    428: "Precondition Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# --- writing ------------------------------------------------------------------------------------


def encode_requests(items: Sequence[BatchRequest | ChangeSet]) -> tuple[bytes, str]:
    """A $batch body and its Content-Type; every part gets a Content-ID (its own, else its number from 1)."""
    boundary = f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    numbers = iter(range(1, 1_000_000))

    def part(request: BatchRequest) -> list[str]:
        number = next(numbers)
        return [
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {request.content_id or number}",
            "",
            f"{request.method} {request.url} HTTP/1.1",
            *(f"{name}: {value}" for name, value in request.headers.items()),
            "",
            request.body.decode(),
        ]

    for item in items:
        lines.append(f"--{boundary}")
        if isinstance(item, ChangeSet):
            inner = f"changeset_{uuid.uuid4()}"
            lines += [f"Content-Type: multipart/mixed; boundary={inner}", ""]
            for request in item.requests:
                lines += [f"--{inner}", *part(request)]
            lines += [f"--{inner}--", ""]
        else:
            lines += part(item)
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode(), f"multipart/mixed; boundary={boundary}"


def encode_responses(items: Sequence[BatchResponse | Sequence[BatchResponse]]) -> tuple[bytes, str]:
    """A $batch answer and its Content-Type: a list is a change set's answers, a lone response stands alone."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    out: list[str] = []
    for item in items:
        out.append(f"--{boundary}\r\n")
        if isinstance(item, BatchResponse):
            out.append(_response_part(item))
            continue
        inner = f"changesetresponse_{uuid.uuid4()}"
        out.append(f"Content-Type: multipart/mixed; boundary={inner}\r\n\r\n")
        for response in item:
            out.append(f"--{inner}\r\n")
            out.append(_response_part(response))
        out.append(f"--{inner}--\r\n")
    out.append(f"--{boundary}--\r\n")
    return "".join(out).encode(), f"multipart/mixed; boundary={boundary}"


def _response_part(response: BatchResponse) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if response.content_id:
        lines.append(f"Content-ID: {response.content_id}")
    lines += ["", f"HTTP/1.1 {response.status} {REASONS.get(response.status, '')}".rstrip()]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    lines += ["", response.body.decode() if response.body else ""]
    return "\r\n".join(lines) + "\r\n"


# --- reading ------------------------------------------------------------------------------------


def boundary_of(content_type: str) -> str:
    match = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not match:
        raise ODataError("Content-Type must be multipart/mixed with a boundary parameter")
    return match.group(1)


def decode_requests(body: bytes, content_type: str) -> list[BatchRequest | ChangeSet]:
    """The requests and change sets of a $batch body; ODataError (or UnicodeDecodeError) if it cannot be read."""
    items: list[BatchRequest | ChangeSet] = []
    for headers, rest in _parts(_text(body), boundary_of(content_type), lower=True):
        part_type = headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            changeset = ChangeSet()
            for inner_headers, inner_rest in _parts(rest, boundary_of(part_type), lower=True):
                if not inner_headers.get("content-type", "").lower().startswith("application/http"):
                    raise ODataError("$batch: every change set part must be Content-Type: application/http")
                request = _request(inner_rest, inner_headers.get("content-id", ""))
                if request.method == "GET":
                    raise ODataError("$batch: GET requests are not allowed inside a change set")
                changeset.requests.append(request)
            items.append(changeset)
        elif part_type.lower().startswith("application/http"):
            items.append(_request(rest, headers.get("content-id", "")))
        else:
            raise ODataError(f"$batch: unexpected part Content-Type '{part_type}'")
    return items


def decode_responses(body: bytes, content_type: str) -> list[BatchResponse]:
    """Every application/http answer of a $batch answer, in order (change set members inline)."""
    responses: list[BatchResponse] = []
    for headers, rest in _parts(_text(body), boundary_of(content_type), lower=False):
        part_type = _header(headers, "content-type")
        if part_type.lower().startswith("multipart/mixed"):
            for inner_headers, inner_rest in _parts(rest, boundary_of(part_type), lower=False):
                if _header(inner_headers, "content-type").lower().startswith("application/http"):
                    responses.append(_response(inner_rest, _header(inner_headers, "content-id")))
        elif part_type.lower().startswith("application/http"):
            responses.append(_response(rest, _header(headers, "content-id")))
    return responses


def _text(body: bytes) -> str:
    return body.decode("utf-8").replace("\r\n", "\n")


def _parts(text: str, boundary: str, *, lower: bool) -> Iterator[tuple[dict[str, str], str]]:
    """(headers, content) of each part between the boundary's delimiter lines, up to the close delimiter."""
    delimiters = list(re.finditer(rf"(?m)^--{re.escape(boundary)}(--)?[ \t]*(?:\n|$)", text))
    if not delimiters:
        raise ODataError(f"$batch: boundary '{boundary}' not found in the body")
    for start, end in zip(delimiters, [*delimiters[1:], None], strict=True):
        if start.group(1):
            return  # the close delimiter
        content = text[start.end() : end.start() if end else len(text)].removesuffix("\n")
        yield _split_headers(content, lower=lower, strict=lower)


def _split_headers(block: str, *, lower: bool, strict: bool) -> tuple[dict[str, str], str]:
    """Headers up to the first empty line, then the rest; a block that starts with one has no headers."""
    if block.startswith("\n"):
        return {}, block[1:]
    head, _, rest = block.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            if strict:
                raise ODataError(f"$batch: header line without ':' — '{line[:60]}'")
            continue
        headers[name.strip().lower() if lower else name.strip()] = value.strip()
    return headers, rest


def _header(headers: dict[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name), "")


def _request(text: str, content_id: str) -> BatchRequest:
    request_line, _, rest = text.lstrip("\n").partition("\n")
    pieces = request_line.split()
    if len(pieces) < 2:
        raise ODataError(f"$batch: bad request line '{request_line[:80]}'")
    headers, body = _split_headers(rest, lower=True, strict=True)
    return BatchRequest(
        method=pieces[0].upper(),
        url=pieces[1],
        headers=headers,
        body=body.strip("\n").encode(),
        content_id=content_id or headers.get("content-id", ""),
    )


def _response(text: str, content_id: str) -> BatchResponse:
    status_line, _, rest = text.lstrip("\n").partition("\n")
    pieces = status_line.split(" ", 2)
    if len(pieces) < 2 or not pieces[1].isdigit():
        raise ODataError(f"$batch answer: bad status line '{status_line[:80]}'")
    headers, body = _split_headers(rest, lower=False, strict=False)
    return BatchResponse(int(pieces[1]), headers, body.strip("\n").encode(), content_id)
