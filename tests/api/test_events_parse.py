"""The event parsers on their own: typed Dataverse values, times, JSON pointers, key fitting."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.protocols.events import (
    EventError,
    body_parse,
    iso_to_micros,
    key_fit,
    wcf_date,
)
from integrations.systems.dataverse.inbound import dataverse_value
from integrations.systems.finops.inbound import finops_event
from integrations.systems.s4hana.inbound import sap_event

XRM = "http://schemas.microsoft.com/xrm/2011/Contracts"


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ({"__type": f"OptionSetValue:{XRM}", "Value": 100000001}, 100000001),
        ({"__type": f"Money:{XRM}", "Value": 12.5}, 12.5),
        ({"__type": f"OptionSetValueCollection:{XRM}", "Value": [{"Value": 1}, {"Value": 2}]}, [1, 2]),
        ({"__type": f"BooleanManagedProperty:{XRM}", "Value": True}, True),
        ("/Date(1506409448000-0700)/", "2017-09-26T07:04:08Z"),
        ("/Date(-2208988800000)/", "1900-01-01T00:00:00Z"),
        ("not a /Date(1)/ at all", "not a /Date(1)/ at all"),
        (
            {
                "__type": f"EntityReference:{XRM}",
                "Id": "a",
                "LogicalName": "account",
                "Name": None,
                "KeyAttributes": [],
            },
            {"LogicalName": "account", "Id": "a", "Name": None},
        ),
        (
            {
                "__type": f"EntityCollection:{XRM}",
                "Entities": [{"Attributes": [{"key": "name", "value": "x"}], "Id": "1", "LogicalName": "account"}],
            },
            [{"LogicalName": "account", "Id": "1", "attributes": {"name": "x"}}],
        ),
        ({"__type": f"Unknown:{XRM}", "Thing": "/Date(0)/"}, {"Thing": "1970-01-01T00:00:00Z"}),
    ],
)
def test_dataverse_typed_values_become_plain_json(value: Any, plain: Any) -> None:
    assert dataverse_value(value) == plain


def test_wcf_date_out_of_range_is_not_a_date() -> None:
    assert wcf_date("/Date(99999999999999999999)/") is None


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        ("2020-12-31T13:59:15Z", 1609423155000000),
        ("2020-12-31T14:59:15+01:00", 1609423155000000),
        ("2020-12-31T13:59:15", 1609423155000000),
        ("/Date(1609423155000)/", 1609423155000000),
        ("yesterday", None),
        (42, None),
    ],
)
def test_times_become_comparable_versions(value: Any, micros: int | None) -> None:
    assert iso_to_micros(value) == micros


def test_key_fit_keeps_short_keys_and_separates_long_ones() -> None:
    assert key_fit("abc") == "abc"
    first, second = key_fit("x" * 300 + "1"), key_fit("x" * 300 + "2")
    assert len(first) == 255
    assert first != second


def test_cloudevent_missing_type_names_it() -> None:
    with pytest.raises(EventError) as caught:
        sap_event({"specversion": "1.0", "id": "1", "source": "/s"})
    assert (caught.value.text, caught.value.field) == ("field 'type' is missing", "type")


def test_cloudevent_with_a_bad_time_names_it() -> None:
    with pytest.raises(EventError) as caught:
        sap_event({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "time": "noon"})
    assert caught.value.field == "time"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"id": 1e400}', "too large"),
        (b'{"id": ' + b"9" * 5000 + b"}", "5000 digits"),
        (b'{"id": -1e999}', "too large"),
    ],
)
def test_numbers_no_column_can_hold_are_refused_as_bad_input(body, says):
    with pytest.raises(EventError) as refused:
        body_parse(body)
    assert says in refused.value.text


def test_a_control_number_beyond_bigint_is_refused_naming_the_field():
    envelope = {"BusinessEventId": "X", "EventId": "e1", "ControlNumber": 2**63}
    with pytest.raises(EventError) as refused:
        finops_event(envelope)
    assert refused.value.field == "ControlNumber"
