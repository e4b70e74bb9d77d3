"""OData v2 Edm values as SAP Gateway writes them in JSON: /Date(ms)/ date-times, decimals as strings."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

NUMERIC = frozenset({"Edm.Decimal", "Edm.Double", "Edm.Int64"})  # written as JSON strings in v2
DATE_TIMES = frozenset({"Edm.DateTime", "Edm.DateTimeOffset"})
_DATE_JSON = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def datetime_to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def parse_datetime(value: str) -> datetime:
    """/Date(ms)/, /Date(ms+0000)/ or ISO 8601 → aware datetime."""
    match = _DATE_JSON.match(value)
    if match:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def comparable(edm_type: str | None, value: Any) -> Any:
    """A stored wire value of this Edm type in a form Python can compare (numbers, ms since the epoch)."""
    if value is None or edm_type is None:
        return value
    if edm_type in NUMERIC:
        return Decimal(str(value))
    if edm_type in DATE_TIMES:
        return datetime_to_ms(parse_datetime(str(value)))
    return value
