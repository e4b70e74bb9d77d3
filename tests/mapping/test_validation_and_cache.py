"""Spec validation messages, and compile/value-map caching."""

from __future__ import annotations

import copy

import pytest

from integrations import mapping
from integrations.errors import MappingError
from integrations.mapping import valuemaps
from integrations.models import ValueMap, ValueMapEntry


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"path": "a", "tpye": "string"}, "field 'F': unknown key(s) 'tpye'"),
        (
            {"path": "a", "const": 1},
            "field 'F': give exactly one source (path, paths, const, context, expr, cases, each, "
            "fields); found path, const",
        ),
        ({"path": "a."}, "field 'F': path 'a.' ends with '.'"),
        ({"path": "a[1"}, "field 'F': path 'a[1': cannot read a step at position 1"),
        (
            {"path": "a", "type": "date", "format": "dd.mm.yyyy"},
            "field 'F': format 'dd.mm.yyyy' is not one of iso, odata, odata_offset, epoch_ms and not a "
            "strftime pattern (no %)",
        ),
        ({"path": "a", "type": "datetime", "tz": "Mars/Olympus"}, "field 'F': unknown time zone 'Mars/Olympus'"),
        (
            {"path": "a", "type": "decimal", "precision": 20},
            "field 'F': 'precision' must be a whole number from 0 to 12",
        ),
        ({"path": "a", "precision": 2}, "field 'F': 'precision' goes with type decimal"),
        ({"path": "a", "format": "iso"}, "field 'F': 'format' goes with type date or datetime"),
        (
            {"path": "a", "type": "boolean", "default": "maybe"},
            "field 'F': default 'maybe' does not fit type boolean: 'maybe' is not a boolean "
            "(true/false, 1/0, yes/no, X)",
        ),
        (
            {"path": "a", "lookup": {"map": "m", "missing": "ignore"}},
            "field 'F': lookup 'missing' must be one of error, default, pass, not 'ignore'",
        ),
        (
            {"path": "a", "lookup": {"map": "m", "missing": "default"}},
            "field 'F': lookup with missing=default needs a 'default'",
        ),
        (
            {"cases": [{"when": "a > 1"}], "else": "X"},
            'field \'F\': case 1 must be {"when": expression, "then": value}',
        ),
        (
            {"expr": "round(a, 2, 3)"},
            "field 'F': expr 'round(a, 2, 3)': round() takes 1 to 2 argument(s), got 3: round(number[, "
            "places]), half up",
        ),
        (
            {"expr": "lookup(mapname, a)"},
            "field 'F': expr 'lookup(mapname, a)': argument 1 of lookup() must be a quoted text: "
            "lookup('value-map', key[, default])",
        ),
        (
            {"expr": "$nope.x"},
            "field 'F': expr '$nope.x': unknown variable $nope (known: $root, $parent, $ctx, $index)",
        ),
        ({"expr": "a +"}, "field 'F': expr 'a +': unexpected end"),
        ({"expr": "a ; b"}, "field 'F': expr 'a ; b': cannot read '; b' at position 1"),
        ({"each": "Lines"}, "field 'F': 'each' needs 'fields': the rules for one line"),
        (
            {"each": "Lines", "fields": {"X": "x"}, "type": "string"},
            "field 'F': type cannot apply to a list of lines or an object",
        ),
        ({"path": "a", "split": {"sep": ""}}, "field 'F': split 'sep' must be non-empty text"),
        (42, "field 'F': a rule must be a path, '=expression' or an object, not int"),
    ],
)
def test_a_bad_rule_is_refused_with_a_message_naming_the_field(rule, message):
    assert mapping.validate_spec({"fields": {"F": rule}}, check_value_maps=False) == [message]


def test_problems_inside_lines_name_the_line_field():
    spec = {"fields": {"Items": {"each": "Lines", "fields": {"Qty": {"path": "q", "type": "number"}}}}}

    assert mapping.validate_spec(spec, check_value_maps=False) == [
        "field 'Items[].Qty': unknown type 'number' (known: string, integer, decimal, boolean, date, datetime)"
    ]


def test_every_problem_is_listed_at_once():
    spec = {"fields": {"A": "=x(", "B": {"path": ""}}, "extra": 1}

    assert len(mapping.validate_spec(spec, check_value_maps=False)) == 3


def test_the_top_level_must_be_a_spec():
    assert mapping.validate_spec([], check_value_maps=False) == ["the mapping spec must be a JSON object"]
    assert mapping.validate_spec({"fields": {}}, check_value_maps=False) == [
        "'fields' must be an object with at least one target field"
    ]
    assert mapping.validate_spec({}) == []


def test_a_spec_compiles_once_and_equal_specs_share_it():
    spec = {"fields": {"A": "a", "B": {"path": "b", "type": "integer"}}}

    first = mapping.compiled(spec)

    assert mapping.compiled(copy.deepcopy(spec)) is first
    assert mapping.compiled({"fields": {"A": "a"}}) is not first


def test_an_invalid_stored_spec_fails_the_message_not_the_worker():
    with pytest.raises(MappingError) as failure:
        mapping.apply(spec={"fields": {"A": "=nosuch()"}}, payload={}, context={})

    assert failure.value.message.startswith("The mapping spec is invalid: field 'A': expr 'nosuch()': unknown function")
    assert failure.value.field == "A"


def test_value_map_changes_reach_the_engine_at_once(make_value_map):
    value_map = make_value_map("uom", {"pcs": "ST"})
    spec = {"fields": {"U": {"path": "u", "lookup": "uom"}}}
    assert mapping.apply(spec=spec, payload={"u": "pcs"}, context={}) == {"U": "ST"}

    entry = ValueMapEntry.objects.get(value_map=value_map, source_value="pcs")
    entry.target_value = "PC"
    entry.save()

    assert mapping.apply(spec=spec, payload={"u": "pcs"}, context={}) == {"U": "PC"}


def test_value_maps_are_read_once_then_only_their_stamp_per_payload(make_value_map, django_assert_num_queries):
    make_value_map("uom", {"pcs": "PC"})
    spec = {"fields": {"U": {"path": "u", "lookup": "uom"}, "V": {"path": "v", "lookup": "uom"}}}
    valuemaps.clear()

    # The map, then its entries; each later payload reads the cached maps' stamps (one query), and the
    # second field and every lookup hit the cache.
    with django_assert_num_queries(4):
        for _ in range(3):
            mapping.apply(spec=spec, payload={"u": "pcs", "v": "pcs"}, context={})


def test_a_value_map_changed_in_another_process_is_read_by_the_next_payload(make_value_map):
    from django.utils import timezone

    value_map = make_value_map("uom", {"pcs": "PC"})
    spec = {"fields": {"U": {"path": "u", "lookup": "uom"}}}
    assert mapping.apply(spec=spec, payload={"u": "pcs"}, context={}) == {"U": "PC"}

    # What another worker's save leaves in the database; this process hears no signal of it.
    ValueMapEntry.objects.filter(value_map=value_map, source_value="pcs").update(target_value="ST")
    ValueMap.objects.filter(pk=value_map.pk).update(updated_at=timezone.now())

    assert mapping.apply(spec=spec, payload={"u": "pcs"}, context={}) == {"U": "ST"}


def test_saving_an_entry_moves_its_maps_stamp(make_value_map):
    value_map = make_value_map("uom", {"pcs": "PC"})
    before = ValueMap.objects.get(pk=value_map.pk).updated_at

    ValueMapEntry.objects.create(value_map=value_map, source_value="kg", target_value="KGM")

    assert ValueMap.objects.get(pk=value_map.pk).updated_at > before


def test_of_two_cached_maps_only_the_one_changed_elsewhere_is_read_again(make_value_map, django_assert_num_queries):
    from django.utils import timezone

    uom, country = make_value_map("uom", {"pcs": "PC"}), make_value_map("country", {"DK": "DNK"})
    spec = {"fields": {"U": {"path": "u", "lookup": "uom"}, "C": {"path": "c", "lookup": "country"}}}
    valuemaps.clear()
    assert mapping.apply(spec=spec, payload={"u": "pcs", "c": "DK"}, context={}) == {"U": "PC", "C": "DNK"}

    # What another worker's save leaves in the database; this process hears no signal of it.
    ValueMapEntry.objects.filter(value_map=country, source_value="DK").update(target_value="DEN")
    ValueMap.objects.filter(pk=country.pk).update(updated_at=timezone.now())

    # The stamps of both (one query), then only the changed map and its entries.
    with django_assert_num_queries(3):
        assert mapping.apply(spec=spec, payload={"u": "pcs", "c": "DK"}, context={}) == {"U": "PC", "C": "DEN"}
    assert uom.name in valuemaps._tables


def test_a_cached_map_deleted_elsewhere_fails_the_next_payload(make_value_map):
    value_map = make_value_map("uom", {"pcs": "PC"})
    spec = {"fields": {"U": {"path": "u", "lookup": "uom"}}}
    assert mapping.apply(spec=spec, payload={"u": "pcs"}, context={}) == {"U": "PC"}

    # What another process's delete leaves in the database; this process hears no signal of it.
    ValueMapEntry.objects.filter(value_map=value_map)._raw_delete(using="default")
    ValueMap.objects.filter(pk=value_map.pk)._raw_delete(using="default")

    with pytest.raises(MappingError, match="value map 'uom' does not exist"):
        mapping.apply(spec=spec, payload={"u": "pcs"}, context={})
