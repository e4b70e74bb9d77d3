"""Mapping engine entry point: turn a source payload into the target payload.

apply() is the one function the pipeline calls. A spec of {} copies the payload;
{"fields": {"TargetField": "source.path", ...}} copies field by field.
"""

from __future__ import annotations

from typing import Any

from integrations.errors import MappingError


def _get(payload: Any, path: str) -> Any:
    value = payload
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def apply(*, spec: dict[str, Any], payload: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Map one payload; raise MappingError naming the target field, source path and value."""
    fields = spec.get("fields")
    if not fields:
        return dict(payload)
    out: dict[str, Any] = {}
    for target, source in fields.items():
        if not isinstance(source, str):
            raise MappingError(f"field '{target}': source must be a path", field=target, value=source)
        out[target] = context.get(source[1:]) if source.startswith("$") else _get(payload, source)
    return out
