"""One error shape for every refusal of the API: {"error": "what is wrong", "field": "where" or null}."""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from integrations.protocols.events import EventError

logger = logging.getLogger(__name__)
# OperationalError is what psycopg raises for a refused or dropped connection (and SQLite for a locked file).
DatabaseUnavailable = (OperationalError, InterfaceError)
DATABASE_RETRY_AFTER = 30


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What is wrong, in plain words.")
    field = serializers.CharField(allow_null=True, help_text="Where: the field, header or parameter; null if none.")


def _first_error(detail: Any, path: str = "") -> tuple[str, str | None]:
    """The first message of a nested ValidationError detail, with the dotted path of its field."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            child = path if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
            return _first_error(value, child)
    if isinstance(detail, list) and detail:
        if all(isinstance(item, str) for item in detail):
            text = str(detail[0])
            return (f"field '{path}': {text}" if path else text), (path or None)
        for index, item in enumerate(detail):
            if item:
                return _first_error(item, f"{path}[{index}]" if path else str(index))
    return str(detail), (path or None)


def error_response(text: str, *, field: str | None, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response({"error": text, "field": field}, status=status, headers=headers)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler for the webhook and operator views; anything unexpected stays a 500."""
    if isinstance(exc, EventError):
        return error_response(exc.text, field=exc.field, status=400)
    if isinstance(exc, DatabaseUnavailable):
        # Nothing was stored: the sender should send again, a little later.
        logger.error("database unavailable: %s", type(exc).__name__)
        return error_response(
            "the hub cannot reach its database; nothing was stored, send again later",
            field=None,
            status=503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "not found")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if isinstance(exc, exceptions.Throttled):
        wait = math.ceil(exc.wait or 1)
        headers["Retry-After"] = str(wait)
        return error_response(f"too many requests; retry in {wait} s", field=None, status=429, headers=headers)
    if isinstance(exc, exceptions.ValidationError):
        text, field = _first_error(exc.detail)
        return error_response(text, field=field, status=exc.status_code, headers=headers)
    field = getattr(exc, "field", None)
    detail = exc.detail
    text = str(detail if not isinstance(detail, list | dict) else _first_error(detail)[0])
    return error_response(text, field=field, status=exc.status_code, headers=headers)
