"""What the OData v4 emulators (Dataverse, F&O) share: the call they answer, $select and $orderby."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from django.http import HttpRequest

from integrations.protocols.odata.batch import BatchRequest
from sandbox.models import EmulatorRecord


def service_root(request: HttpRequest, path: str) -> str:
    """The service root as the caller sees it: http(s)://host/sandbox/<emulator>/<service path>."""
    scheme = "https" if request.is_secure() else "http"
    return f"{scheme}://{request.get_host()}/sandbox/{path}"


@dataclass
class Call:
    """One request, from HTTP or from a $batch part; emulators add what else they carry."""

    method: str
    path: str  # after the service root
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    root: str  # the service root as the caller sees it

    @classmethod
    def of(cls, request: HttpRequest, path: str, root: str, **extra: Any) -> Self:
        return cls(
            method=request.method or "GET",
            path=path,
            query={k: v for k, v in request.GET.items()},
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.body,
            root=root,
            **extra,
        )

    def part(self, request: BatchRequest, marker: str, headers: dict[str, str], **extra: Any) -> Self:
        """The call of one $batch part: its URL taken relative to the service (the path after `marker`)."""
        parts = urlsplit(request.url)
        relative = parts.path
        relative = relative.split(marker, 1)[1] if marker in relative else relative.lstrip("/")
        return replace(
            self,
            method=request.method,
            path=unquote(relative),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            body=request.body,
            **extra,
        )


def select_fields(record: dict[str, Any], select: str | None, always: tuple[str, ...] = ()) -> dict[str, Any]:
    """$select: the named columns (plus annotations and the always-present ones)."""
    if not select:
        return dict(record)
    wanted = [name.strip() for name in select.split(",") if name.strip()]
    keep = {*wanted, *always}
    return {name: value for name, value in record.items() if name in keep or name.startswith("@")} | {
        name: None for name in wanted if name not in record
    }


def order_by(records: list[EmulatorRecord], orderby: str, sort_value: Callable[[Any], Any]) -> None:
    """Sort rows in place by $orderby (a, b desc); sort_value(column value) is what is compared."""
    for clause in reversed([c.strip() for c in orderby.split(",") if c.strip()]):
        name, _, direction = clause.partition(" ")
        records.sort(key=lambda r, n=name: sort_value(r.data.get(n)), reverse=direction.strip().lower() == "desc")
