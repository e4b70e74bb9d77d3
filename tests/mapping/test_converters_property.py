"""Property tests of the type converters and date formats: round trips, and a clear error for anything else."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations import mapping
from integrations.errors import MappingError
from integrations.mapping import convert

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
# Strings that look almost like the formats we parse, to reach the parsers' edges.
NEAR_MISSES = st.one_of(
    st.from_regex(r"\A/Date\(-?\d{0,16}([+-]\d{0,5})?\)/\Z"),
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?\Z"),
    st.from_regex(r"\A[+-]?\d{0,40}(\.\d{0,20})?([eE][+-]?\d{1,6})?\Z"),
)
MOMENTS = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)).map(
    lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000)
)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
TYPES = st.sampled_from(convert.TYPES)
FORMATS = st.sampled_from([*convert.DATE_FORMATS, "%Y-%m-%d %H:%M", "%d.%m.%Y"])


@settings(max_examples=300)
@given(value=st.one_of(JSON, NEAR_MISSES), type_name=TYPES)
def test_a_converter_returns_or_raises_a_conversion_error_never_anything_else(value, type_name):
    try:
        convert.convert(value, type_name)
    except convert.ConversionError as exc:
        problem = str(exc)
    else:
        problem = "none"
    assert problem


@settings(max_examples=300)
@given(value=st.one_of(JSON, NEAR_MISSES), type_name=TYPES, fmt=FORMATS, precision=st.integers(0, 6))
def test_a_mapped_field_fails_only_with_a_mapping_error_naming_the_field(value, type_name, fmt, precision):
    rule = {"path": "v", "type": type_name}
    if type_name in ("date", "datetime"):
        rule["format"] = fmt
    if type_name == "decimal":
        rule["precision"] = precision
    try:
        out = mapping.apply(spec={"fields": {"Target": rule}}, payload={"v": value}, context={})
    except MappingError as exc:
        failure: MappingError | None = exc
    else:
        failure = None
        assert set(out) == {"Target"}
    if failure is not None:
        assert failure.message.startswith("field 'Target': ")
        assert failure.path == "v"


@given(moment=MOMENTS, offset=OFFSETS)
def test_datetimes_round_trip_through_every_notation(moment, offset):
    local = moment.astimezone(offset)

    for fmt in ("iso", "odata", "odata_offset"):
        text = convert.format_value(local, fmt)
        assert convert.to_datetime(text) == moment, (fmt, text)
    kept = convert.to_datetime(convert.format_value(local, "odata_offset"))
    assert kept.utcoffset() == local.utcoffset()
    assert convert.to_datetime(f"/Date({convert.format_value(local, 'epoch_ms')})/") == moment


@given(day=st.dates(min_value=date(1900, 1, 1), max_value=date(9999, 12, 31)))
def test_dates_round_trip_through_iso_and_odata(day):
    assert convert.to_date(convert.format_value(day, "iso")) == day
    assert convert.to_date(convert.format_value(day, "odata")) == day


@given(number=st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**12), max_value=10**12))
def test_decimals_round_trip_through_text_and_keep_their_precision(number):
    text = convert.to_string(number)

    assert convert.to_decimal(text) == number
    assert convert.quantize(number, 2) == number.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")


@given(value=st.integers(min_value=-(10**18), max_value=10**18))
def test_integers_round_trip_through_text_and_decimal_text(value):
    assert convert.to_integer(str(value)) == value
    assert convert.to_integer(f"{value}.000") == value


@given(value=st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v == 0 or 1e-30 < abs(v) < 1e30))
def test_floats_become_the_decimal_they_print_as(value):
    assert convert.to_decimal(value) == Decimal(repr(value))


@given(flag=st.booleans())
def test_booleans_round_trip_through_text(flag):
    assert convert.to_boolean(convert.to_string(flag)) is flag


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/Date(1506409448000-0700)/", datetime(2017, 9, 26, 0, 4, 8, tzinfo=timezone(timedelta(hours=-7)))),
        ("/Date(1472796947125+0000)/", datetime(2016, 9, 2, 6, 15, 47, 125000, tzinfo=UTC)),
        ("\\/Date(1471392000000)\\/", datetime(2016, 8, 17, tzinfo=UTC)),
        ("/Date(-86400000)/", datetime(1969, 12, 31, tzinfo=UTC)),
        ("2017-09-26T07:04:08.1234567Z", datetime(2017, 9, 26, 7, 4, 8, 123456, tzinfo=UTC)),
    ],
)
def test_microsoft_sap_and_iso_notations(text, expected):
    parsed = convert.to_datetime(text)

    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/Date(abc)/", "'/Date(abc)/' is not a date and time (ISO 8601 or /Date(ms)/)"),
        ("/Date(1+2500)/", "offset +2500 is not a valid UTC offset"),
        ("/Date(999999999999999)/", "/Date(999999999999999)/ is out of range"),
        ("2026-02-30", "'2026-02-30' is not a date (YYYY-MM-DD)"),
    ],
)
def test_bad_dates_say_why(value, message):
    with pytest.raises(convert.ConversionError) as failure:
        convert.to_date(value)

    assert str(failure.value) == message
