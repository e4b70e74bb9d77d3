"""Golden files: every shipped example spec, run on its input fixtures, gives exactly the stored output or error."""

from __future__ import annotations

import pytest

from integrations import mapping
from integrations.errors import MappingError
from tests.mapping.conftest import EXAMPLES, GOLDEN, example_spec, load

CASES = sorted(
    (folder.name, path.name.removesuffix(".input.json"))
    for folder in GOLDEN.iterdir()
    if folder.is_dir()
    for path in folder.glob("*.input.json")
)


def test_every_shipped_example_has_golden_cases_that_map_and_that_fail():
    examples = {path.stem for path in EXAMPLES.glob("*.json")}
    covered = {name for name, _ in CASES}
    assert examples == covered
    for name in examples:
        folder = GOLDEN / name
        assert list(folder.glob("*.expected.json")), f"{name} has no expected output"
        assert list(folder.glob("*.error.txt")), f"{name} has no failing input"


def test_every_shipped_example_validates_against_the_database(golden_value_maps):
    for path in EXAMPLES.glob("*.json"):
        assert mapping.validate_spec(load(path)) == [], path.name


@pytest.mark.parametrize(("example", "case"), CASES)
def test_example_maps_its_fixture_exactly(golden_value_maps, example, case):
    folder = GOLDEN / example
    spec = example_spec(example)
    payload = load(folder / f"{case}.input.json")
    context = load(folder / "context.json")
    expected = folder / f"{case}.expected.json"

    if expected.exists():
        assert mapping.apply(spec=spec, payload=payload, context=context) == load(expected)
    else:
        with pytest.raises(MappingError) as failure:
            mapping.apply(spec=spec, payload=payload, context=context)
        assert failure.value.message == (folder / f"{case}.error.txt").read_text(encoding="utf-8").strip()
