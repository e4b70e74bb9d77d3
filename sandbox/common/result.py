"""One answer of an emulator, built by its handlers and turned into a Django response once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpResponse


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


@dataclass
class Result:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, value: Any, status: int = 200, **headers: str) -> Result:
        """An OData v4 JSON answer (minimal metadata)."""
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
