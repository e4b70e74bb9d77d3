"""What a system's poller answers: the changed records since a cursor, and where the next poll starts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PolledRecord:
    payload: dict[str, Any]
    idempotency_key: str  # holds the record's version: a change read twice is stored once
    source_record_key: str
    source_version: int | None = None
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass
class PollBatch:
    records: list[PolledRecord]
    cursor: dt.datetime | None  # the next poll reads changes after this; None keeps the cursor
    changed: int = 0  # how many changes the source reported (deleted records included)
    token: str | None = None  # a change-tracking source's resume point (a delta link); None keeps the stored one
