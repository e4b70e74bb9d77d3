"""Mapping engine entry point: turn a source payload into the target payload.

apply() is the one function the pipeline calls. A spec of {} copies the payload
unchanged; any other spec is compiled once (keyed by its content, so each saved
version compiles once per process) and run. docs/mapping.md describes specs.
"""

from __future__ import annotations

import marshal
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from integrations.errors import MappingError
from integrations.mapping.compiler import CompiledSpec, FieldFailure, SpecError, compile_spec
from integrations.mapping.syntax import Failure

__all__ = ["CompiledSpec", "SpecError", "apply", "compiled", "describe_value", "validate_spec"]

CACHE_SIZE = 512
_cache: dict[bytes, CompiledSpec] = {}
_cache_lock = threading.Lock()


def compiled(spec: dict[str, Any]) -> CompiledSpec:
    """The compiled spec from the cache, compiling it on first use; raises SpecError."""
    # marshal (format 2: no object references, so equal data gives equal bytes) is a faithful
    # serialisation of JSON data and about six times cheaper than a JSON dump; a spec whose
    # keys come in another order only compiles once more.
    try:
        key = marshal.dumps(spec, 2)
    except ValueError:  # not plain JSON data (a caller's own objects): compile every time
        return compile_spec(spec)
    found = _cache.get(key)
    if found is not None:
        return found
    result = compile_spec(spec)
    with _cache_lock:
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        _cache[key] = result
    return result


def describe_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def apply(
    *,
    spec: dict[str, Any],
    payload: dict[str, Any],
    context: dict[str, Any],
    value_maps: Callable[[str], dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Map one payload; raise MappingError naming the target field, source path and value.

    value_maps supplies ValueMap tables by name; by default they come from the database (cached).
    """
    if not spec:
        copied = dict(payload) if isinstance(payload, dict) else payload
        check_output(copied)
        return copied
    try:
        program = compiled(spec)
    except SpecError as exc:
        first = exc.errors[0]
        field = first.split("'")[1] if first.startswith("field '") else ""
        raise MappingError(f"The mapping spec is invalid: {'; '.join(exc.errors)}", field=field) from None
    if value_maps is None:
        from integrations.mapping import valuemaps

        if program.value_maps:
            valuemaps.sync()  # once per payload: a value map fixed a moment ago, in any process, is read
        value_maps = valuemaps.get_table
    try:
        result = program.run(payload, context or {}, value_maps)
    except FieldFailure as exc:
        source = exc.path or "-"
        raise MappingError(
            f"field '{exc.field}': {exc.failure.reason} (source '{source}', value {describe_value(exc.value)})",
            field=exc.field,
            path=exc.path or "",
            value=exc.value,
        ) from None
    except Failure as exc:  # outside any field: the spec root or a value map that vanished
        raise MappingError(exc.reason, path=exc.path or "", value=exc.value) from None
    check_output(result)
    return result


# A whole number copied through (from a fetched record, say) may have at most this many digits: what the
# ingest takes (protocols.events.MAX_INT_DIGITS); JSON, PostgreSQL and every target then hold it.
MAX_OUTPUT_INT = 10**100


def check_output(value: Any, field: str = "") -> None:
    """Raise MappingError naming the field of a value no target, nor the outbox, can hold.

    A whole number beyond 100 digits, a number that is not finite, text with a NUL: each would fail
    later, where it cannot be named (the JSON encoder, PostgreSQL, the target), and fail again on retry.
    """
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            check_output(item, f"{field}.{key}" if field else str(key))
    elif kind is list:
        for index, item in enumerate(value):
            check_output(item, f"{field}[{index}]")
    elif kind is int:
        if not -MAX_OUTPUT_INT < value < MAX_OUTPUT_INT:
            raise MappingError(f"field '{field}': a whole number of over 100 digits cannot be carried", field=field)
    elif kind is float:
        if value - value != 0:
            raise MappingError(f"field '{field}': {value!r} is not a finite number", field=field, value=value)
    elif kind is str:
        if "\x00" in value:
            raise MappingError(f"field '{field}': the text holds a NUL character, which cannot be stored", field=field)
    elif isinstance(value, Decimal) and not value.is_finite():
        raise MappingError(f"field '{field}': {value!r} is not a finite number", field=field, value=value)


def validate_spec(spec: Any, *, check_value_maps: bool = True) -> list[str]:
    """Every problem in a spec, one sentence each naming its field; [] if it is good to save."""
    if spec == {}:
        return []
    try:
        program = compile_spec(spec)
    except SpecError as exc:
        return exc.errors
    if check_value_maps and program.value_maps:
        from integrations.mapping import valuemaps

        missing = sorted(program.value_maps - valuemaps.existing(program.value_maps))
        return [
            f"field '{field}': value map '{name}' does not exist" for name in missing for field in _users(spec, name)
        ]
    return []


def _users(spec: dict[str, Any], name: str) -> list[str]:
    """The fields whose rule names a value map, for the error text."""
    found: list[str] = []
    quoted = (f"'{name}'", f'"{name}"')

    def walk(fields: dict[str, Any], prefix: str) -> None:
        for field, rule in fields.items():
            own = {k: v for k, v in rule.items() if k != "fields"} if isinstance(rule, dict) else rule
            if any(q in repr(own) for q in quoted):
                found.append(f"{prefix}{field}")
            if isinstance(rule, dict) and isinstance(rule.get("fields"), dict):
                walk(rule["fields"], f"{prefix}{field}{'[]' if 'each' in rule else ''}.")

    walk(spec.get("fields") or {}, "")
    return found or ["(spec)"]
