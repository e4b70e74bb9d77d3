"""Source paths: `Header.Lines[0].ItemId`, `Lines[*].Amount`, `["@odata.etag"]`.

A path compiles once into a getter. Reading is forgiving about the envelopes
the systems wrap records in, so specs name business fields, not transport:

- OData v2 collections `{"results": [...]}` read as the list inside.
- Dataverse KeyValuePair lists `[{"key": "firstname", "value": "James"}, ...]`
  read like objects: `InputParameters.Target.Attributes.firstname`.
- A missing step gives None (the field's default/required rules decide).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

WILDCARD = object()
_STEP = re.compile(
    r"""
    (?P<name>[A-Za-z_@$][\w@$-]*)             # a plain key (Dataverse and SAP names, @odata, $-variables)
  | \[(?P<index>-?\d+)\]                      # a list index
  | \[(?P<star>\*)\]                          # every item of a list
  | \[(?P<quote>["'])(?P<quoted>.*?)(?P=quote)\]  # a key with dots or spaces: ["@odata.etag"]
    """,
    re.VERBOSE,
)
# OData v2 adds these beside "results" in a collection ($inlinecount, server paging).
_COLLECTION_KEYS = frozenset({"results", "__count", "__next"})


class PathError(ValueError):
    """A path that cannot be parsed; the text says where."""


def parse(path: str) -> tuple[Any, ...]:
    """Split a path into steps: str keys, int indexes and WILDCARD."""
    if not isinstance(path, str) or not path.strip():
        raise PathError("path must be a non-empty string")
    steps: list[Any] = []
    pos = 0
    expect_step = True
    while pos < len(path):
        if not expect_step:
            if path[pos] == ".":
                pos += 1
                expect_step = True
                if pos == len(path):
                    raise PathError(f"path {path!r} ends with '.'")
                continue
            if path[pos] != "[":
                raise PathError(f"path {path!r}: unexpected {path[pos]!r} at position {pos}")
        match = _STEP.match(path, pos)
        if not match or (match.group("name") and not expect_step):
            raise PathError(f"path {path!r}: cannot read a step at position {pos}")
        if match.group("name"):
            steps.append(match.group("name"))
        elif match.group("index") is not None:
            steps.append(int(match.group("index")))
        elif match.group("star"):
            steps.append(WILDCARD)
        else:
            steps.append(match.group("quoted"))
        pos = match.end()
        expect_step = False
    return tuple(steps)


def unwrap(value: Any) -> Any:
    """The list inside an OData v2 collection wrapper, else the value itself."""
    if (
        type(value) is dict
        and "results" in value
        and type(value["results"]) is list
        and value.keys() <= _COLLECTION_KEYS
    ):
        return value["results"]
    return value


def _step(value: Any, step: Any) -> Any:
    kind = type(value)
    if kind is dict:
        if type(step) is str:
            found = value.get(step)
            if found is None:
                return None
            return unwrap(found) if type(found) is dict else found
        value = unwrap(value)
        kind = type(value)
    if kind is list:
        if type(step) is int:
            try:
                found = value[step]
            except IndexError:
                return None
            return unwrap(found) if type(found) is dict else found
        # A Dataverse KeyValuePair list: find the pair with this key.
        for pair in value:
            if type(pair) is dict and pair.get("key") == step:
                found = pair.get("value")
                return unwrap(found) if type(found) is dict else found
    return None


def compile_path(path: str) -> Callable[[Any], Any]:
    """A fast getter for one path; raises PathError for a bad path.

    The getter takes (data) or (data, env), so it can stand as a field's or an expression's
    source without a wrapping call.
    """
    steps = parse(path)
    if WILDCARD in steps:
        star = steps.index(WILDCARD)
        head = compile_steps(steps[:star])
        rest = steps[star + 1 :]
        tail = compile_path_steps(rest) if rest else None

        def get_many(data: Any, env: Any = None) -> Any:
            items = unwrap(head(data))
            if type(items) is not list:
                return None if items is None else [items] if tail is None else [tail(items)]
            if tail is None:
                return list(items)
            return [tail(item) for item in items]

        return get_many
    return compile_steps(steps)


def compile_path_steps(steps: tuple[Any, ...]) -> Callable[[Any], Any]:
    return compile_path(".".join(_render(s) for s in steps).replace(".[", "["))


def _render(step: Any) -> str:
    if step is WILDCARD:
        return "[*]"
    if type(step) is int:
        return f"[{step}]"
    return step if re.fullmatch(r"[A-Za-z_@$][\w@$-]*", step) else f'["{step}"]'


def compile_steps(steps: tuple[Any, ...]) -> Callable[[Any], Any]:
    if not steps:
        return lambda data, env=None: data
    if len(steps) == 1 and type(steps[0]) is str:
        key = steps[0]

        def get_one(data: Any, env: Any = None) -> Any:
            # The common case, a plain key of a plain object, without a loop.
            if type(data) is dict:
                found = data.get(key)
                return unwrap(found) if type(found) is dict else found
            return _step(data, key)

        return get_one

    def get(data: Any, env: Any = None) -> Any:
        for step in steps:
            if data is None:
                return None
            if type(data) is dict and type(step) is str:
                data = data.get(step)
                if type(data) is dict:
                    data = unwrap(data)
            else:
                data = _step(data, step)
        return data

    return get
