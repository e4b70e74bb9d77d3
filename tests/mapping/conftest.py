"""Helpers for mapping tests: the shipped example specs and their golden files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from integrations.mapping import valuemaps
from integrations.models import ValueMap, ValueMapEntry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "integrations" / "mapping" / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def example_spec(name: str) -> dict[str, Any]:
    return load(EXAMPLES / f"{name}.json")


@pytest.fixture(autouse=True)
def _fresh_value_map_cache() -> None:
    valuemaps.clear()


@pytest.fixture
def make_value_map(db: None) -> Callable[..., ValueMap]:
    def make(name: str, entries: dict[str, str]) -> ValueMap:
        value_map = ValueMap.objects.create(name=name)
        ValueMapEntry.objects.bulk_create(
            ValueMapEntry(value_map=value_map, source_value=k, target_value=v) for k, v in entries.items()
        )
        return value_map

    return make


@pytest.fixture
def golden_value_maps(make_value_map: Callable[..., ValueMap]) -> None:
    """The value maps the example specs use, as database rows (the engine's real source)."""
    for name, entries in load(GOLDEN / "valuemaps.json").items():
        make_value_map(name, entries)
