"""What the emulator answers: a Reply, and SAP Gateway's errors (GatewayError, its JSON body)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.http import HttpResponse, JsonResponse

from integrations.protocols.odata.errors import v2_error

COMPONENTS = {"API_SALES_ORDER_SRV": "SD-SLS-API", "API_BUSINESS_PARTNER": "LO-MD-BP"}


class GatewayError(ValueError):
    """A request SAP Gateway would refuse; carries the status, SAP message code and text."""

    def __init__(self, status: int, code: str, message: str, *, target: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target


class BusinessError(GatewayError):
    """Several messages from the application, as SAP returns them in errordetails."""

    def __init__(self, details: list[tuple[str, str, str]]) -> None:
        code, message, target = details[0]
        super().__init__(400, code, message, target=target)
        self.details = details


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able, bytes or None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def content(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()

    def to_http(self) -> HttpResponse:
        response = HttpResponse(self.content(), status=self.status, content_type=self.content_type)
        for name, value in self.headers.items():
            response[name] = value
        response["dataserviceversion"] = "2.0"
        return response


def sap_error(
    status: int, code: str, message: str, *, service: str = "", details: list[dict[str, Any]] | None = None
) -> JsonResponse:
    """SAP Gateway's error JSON (see tests/fixtures/s4hana/odata-v2-error-404-resource-not-found.json)."""
    details = details if details is not None else [{"code": code, "message": message, "target": ""}]
    innererror = {
        "application": {
            "component_id": COMPONENTS.get(service, ""),
            "service_namespace": "/SAP/",
            "service_id": service,
            "service_version": "0001",
        },
        "transactionid": uuid.uuid4().hex.upper(),
        "timestamp": datetime.now(UTC).strftime("%Y%m%d%H%M%S.%f"),
        "Error_Resolution": {
            "SAP_Transaction": 'For backend administrators: use ADT feed reader "SAP Gateway Error Log" '
            "or run transaction /IWFND/ERROR_LOG on SAP Gateway hub system and search for entries with "
            "the timestamp above for more details",
            "SAP_Note": "See SAP Note 1797736 for error analysis (https://service.sap.com/sap/support/notes/1797736)",
        },
        "errordetails": [
            {
                "ContentID": detail.get("ContentID", ""),
                "code": detail["code"],
                "message": detail["message"],
                "longtext_url": "",
                "propertyref": detail.get("target", ""),
                "severity": "error",
                "transition": False,
                "target": detail.get("target", ""),
            }
            for detail in details
        ],
    }
    body = v2_error(code, message, innererror=innererror)
    return JsonResponse(body, status=status)


def fault_body(status: int, text: str) -> HttpResponse:
    return sap_error(status, "/IWFND/CM_BEC/026" if status >= 500 else "/IWFND/CM_CONSUMER/429", text)


def error_reply(service: str, error: GatewayError, content_id: str = "") -> Reply:
    """The error as SAP answers it; in a $batch, each detail names the request's Content-ID."""
    details = getattr(error, "details", None) or [(error.code, error.message, error.target)]
    response = sap_error(
        error.status,
        error.code,
        error.message,
        service=service,
        details=[{"code": c, "message": m, "target": t, "ContentID": content_id} for c, m, t in details],
    )
    return Reply(error.status, response.content)
