"""Type converters and date formats used by mapping fields and expressions.

Every converter takes any JSON value and returns the converted value, None for
"no value" (None or ""), or raises ConversionError with a sentence for the
operator. Nothing else escapes: the property tests feed them arbitrary input.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

TYPES = ("string", "integer", "decimal", "boolean", "date", "datetime")
# Named output formats for date and datetime; anything else must be a strftime pattern (it holds a %).
DATE_FORMATS = ("iso", "odata", "odata_offset", "epoch_ms")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Microsoft JSON dates (WCF DataContractJsonSerializer, Dataverse webhooks, F&O business events)
# and SAP OData v2 Edm.DateTime/DateTimeOffset: milliseconds since the Unix epoch in UTC,
# optionally followed by the sender's UTC offset as ±HHMM (informational; the instant is the ms).
MS_DATE = re.compile(r"^\\?/Date\((-?\d{1,15})(?:([+-])(\d{2})(\d{2}))?\)\\?/$")
TRUE_WORDS = frozenset({"true", "1", "yes", "y", "x", "on"})  # "X" is SAP's flag for true
FALSE_WORDS = frozenset({"false", "0", "no", "n", "off"})
MAX_PRECISION = 12
MAX_EXPONENT = 40


class ConversionError(ValueError):
    """The value cannot become the wanted type; the text says why."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def to_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ConversionError(f"{_short(value)} is not a finite number")
        return format(value, "f")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConversionError(f"{_short(value)} is not a finite number")
        return format(Decimal(repr(value)), "f")
    if isinstance(value, (datetime, date)):
        return format_iso(value)
    raise ConversionError(f"{type(value).__name__} {_short(value)} cannot become a string")


def to_decimal(value: Any) -> Decimal | None:
    kind = type(value)
    if kind is str and value:
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ConversionError(f"{_short(value)} is not a number") from None
    elif kind is int:
        result = Decimal(value)
    elif value is None or value == "":
        return None
    elif isinstance(value, bool):
        raise ConversionError(f"{_short(value)} is a boolean, not a number")
    elif isinstance(value, Decimal):
        result = value
    elif isinstance(value, float):
        return float_to_decimal(value)
    elif isinstance(value, int):
        result = Decimal(value)
    else:
        raise ConversionError(f"{type(value).__name__} {_short(value)} is not a number")
    if not result.is_finite():
        raise ConversionError(f"{_short(value)} is not a finite number")
    # ERP amounts have at most 38 digits; "1e999999999" would print as a gigabyte of zeros.
    if result and not -MAX_EXPONENT <= result.adjusted() <= MAX_EXPONENT:
        raise ConversionError(f"{_short(value)} is out of range for an amount")
    return result


_FLOATS: dict[float, Decimal] = {}


def float_to_decimal(value: float) -> Decimal:
    """The Decimal a JSON number means (17.55, not its binary expansion); cached, as prices repeat."""
    found = _FLOATS.get(value)
    if found is not None:
        return found
    if value - value != 0:
        raise ConversionError(f"{_short(value)} is not a finite number")
    result = Decimal(repr(value))
    if result and not -MAX_EXPONENT <= result.adjusted() <= MAX_EXPONENT:
        raise ConversionError(f"{_short(value)} is out of range for an amount")
    if len(_FLOATS) >= 50_000:
        _FLOATS.clear()
    _FLOATS[value] = result
    return result


def quantize(value: Decimal, precision: int) -> Decimal:
    """Round half up to `precision` decimals, the way invoices round."""
    try:
        return value.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise ConversionError(f"{_short(value)} is too large for {precision} decimals") from None


def to_integer(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConversionError(f"{_short(value)} is a boolean, not a whole number")
    if isinstance(value, int):
        return value
    number = to_decimal(value)
    if number != number.to_integral_value():
        raise ConversionError(f"{_short(value)} is not a whole number")
    if abs(number.adjusted()) > 30:
        raise ConversionError(f"{_short(value)} is out of range for a whole number")
    return int(number)


def to_boolean(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ConversionError(f"{_short(value)} is not a boolean (true/false, 1/0, yes/no, X)")


def get_zone(name: str) -> timezone | ZoneInfo:
    if name.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConversionError(f"unknown time zone {name!r}") from None


def _from_ms_date(match: re.Match[str]) -> datetime:
    ms, sign, hours, minutes = match.groups()
    try:
        instant = EPOCH + timedelta(milliseconds=int(ms))
    except OverflowError:
        raise ConversionError(f"/Date({ms})/ is out of range") from None
    if sign is None:
        return instant
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    if offset >= timedelta(hours=24):
        raise ConversionError(f"offset {sign}{hours}{minutes} is not a valid UTC offset")
    try:
        return instant.astimezone(timezone(-offset if sign == "-" else offset))
    except OverflowError:
        raise ConversionError(f"/Date({ms})/ is out of range") from None


def to_datetime(value: Any, *, assume_tz: timezone | ZoneInfo = UTC) -> datetime | None:
    """An aware datetime from ISO 8601, /Date(ms)/ or /Date(ms±hhmm)/; naive input is read in assume_tz."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime(value.year, value.month, value.day, tzinfo=assume_tz)
    elif isinstance(value, str):
        text = value.strip()
        match = MS_DATE.match(text)
        if match:
            return _from_ms_date(match)
        try:
            result = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" and text else text)
        except ValueError:
            raise ConversionError(f"{_short(value)} is not a date and time (ISO 8601 or /Date(ms)/)") from None
    else:
        raise ConversionError(f"{type(value).__name__} {_short(value)} is not a date and time")
    if result.tzinfo is None:
        result = result.replace(tzinfo=assume_tz)
    return result


def to_date(value: Any) -> date | None:
    """A calendar date; a datetime gives its date as written (in its own offset)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        match = MS_DATE.match(text)
        if match:
            return _from_ms_date(match).date()
        if len(text) == 10:
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise ConversionError(f"{_short(value)} is not a date (YYYY-MM-DD)") from None
    return to_datetime(value).date()


def to_epoch_ms(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_iso(value: date | datetime) -> str:
    if isinstance(value, datetime):
        # Milliseconds are what Microsoft and SAP carry; print no more digits than the value has.
        spec = "seconds" if not value.microsecond else "milliseconds" if not value.microsecond % 1000 else "auto"
        text = value.isoformat(timespec=spec)
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return value.isoformat()


def format_value(value: date | datetime, fmt: str) -> str | int:
    """Render a date or datetime in a named format or a strftime pattern."""
    if isinstance(value, datetime):
        as_datetime = value
    else:
        as_datetime = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if fmt == "iso":
        return format_iso(value)
    if fmt == "odata":
        return f"/Date({to_epoch_ms(as_datetime)})/"
    if fmt == "odata_offset":
        offset = as_datetime.utcoffset() or timedelta(0)
        minutes = int(offset.total_seconds() // 60)
        sign = "-" if minutes < 0 else "+"
        hours, minutes = divmod(abs(minutes), 60)
        return f"/Date({to_epoch_ms(as_datetime)}{sign}{hours:02d}{minutes:02d})/"
    if fmt == "epoch_ms":
        return to_epoch_ms(as_datetime)
    try:
        return value.strftime(fmt)
    except (ValueError, OverflowError) as exc:
        raise ConversionError(f"cannot format {format_iso(value)} with {fmt!r}: {exc}") from None


def check_format(fmt: Any) -> str | None:
    """None if fmt is a usable date format, else why not."""
    if not isinstance(fmt, str) or not fmt:
        return "format must be a non-empty string"
    if fmt in DATE_FORMATS or "%" in fmt:
        return None
    return f"format {fmt!r} is not one of {', '.join(DATE_FORMATS)} and not a strftime pattern (no %)"


def convert(value: Any, type_name: str) -> Any:
    """Convert to one of TYPES (without output formatting)."""
    return CONVERTERS[type_name](value)


CONVERTERS = {
    "string": to_string,
    "integer": to_integer,
    "decimal": to_decimal,
    "boolean": to_boolean,
    "date": to_date,
    "datetime": to_datetime,
}
