"""Structured logs: correlation and message ids on every record, JSON on request, secrets never written.

Used from settings.LOGGING:
  ContextFilter   gives every record message_id / correlation_id / flow (from extra=…, "-" when absent),
                  so plain format strings can always name them.
  RedactionFilter masks tokens, passwords, keys and signatures in the message, its arguments and extras.
  JsonFormatter   one JSON object per line (LOG_FORMAT=json).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest

CONTEXT_FIELDS = ("message_id", "correlation_id", "flow")
MASK = "***"

# Keys whose values are secrets wherever they appear: JSON, query strings, headers, kwargs.
SECRET_KEYS = (
    r"password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|id_token|api[_-]?key|apikey"
    r"|authorization|x-functions-key|signature|x-csrf-token|cookie|set-cookie"
)
_PATTERNS = [
    # Authorization: Bearer eyJ… / Basic dXNl…
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    # "password": "x" / 'token': 'x' (JSON and Python reprs)
    (re.compile(rf"(?i)([\"']?(?:{SECRET_KEYS})[\"']?\s*[:=]\s*[\"'])[^\"']*([\"'])"), r"\1" + MASK + r"\2"),
    # password=x&… in query strings and form bodies; Header: value
    (re.compile(rf"(?i)\b((?:{SECRET_KEYS})\s*[=:]\s*)(?![\"'\s])[^\s&,;\"']+"), r"\1" + MASK),
    # Keys carried in URLs: Dataverse/Azure Functions ?code=, SAS ?sig=, ?key=
    (re.compile(r"(?i)([?&](?:code|sig|key|apikey|api_key|token)=)[^&\s\"']+"), r"\1" + MASK),
    # JWTs anywhere
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK),
]
_SECRET_KEY_RE = re.compile(rf"(?i)^(?:{SECRET_KEYS})$")


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            k: MASK if isinstance(k, str) and _SECRET_KEY_RE.match(k) else _redact_value(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(v) for v in value)
    return value


class ContextFilter(logging.Filter):
    """Every record carries the context fields, so formats and JSON can always name them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, "-")
        return True


class RedactionFilter(logging.Filter):
    """Mask secrets in the final message and the exception text; runs before any handler formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format: keep the raw text, masked
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key in _RESERVED:
                continue
            if isinstance(key, str) and _SECRET_KEY_RE.match(key):
                setattr(record, key, MASK)
            elif isinstance(value, (str, dict, list, tuple)):
                setattr(record, key, _redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields and any other extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = _json_value(value)
        if record.exc_text or record.exc_info:
            entry["exception"] = redact(record.exc_text or self.formatException(record.exc_info))
        return json.dumps(entry, default=lambda value: redact(str(value)))


def _json_value(value: Any) -> Any:
    """An extra as JSON: a request (django.request passes one on every 4xx/5xx) as its method and path only."""
    if isinstance(value, HttpRequest):
        return f"{value.method} {value.path}"
    if isinstance(value, (str, int, float, bool, type(None), dict, list, tuple)):
        return value
    return redact(str(value))  # its str() may hold a URL with its query (a WSGIRequest repr does)
