"""The poll cursor of a flow, leased to one poll at a time.

A poll asks its source over HTTP, which may take as long as the System's timeout, several times. A row
lock would hold a database transaction open all that while, and on SQLite (`make run`) an open write
transaction locks the whole database, the sandbox emulator answering the poll included. So the cursor is
leased instead: a conditional UPDATE takes it, the poll runs with no transaction open, and the lease is
given back at the end. A poll that died keeps the cursor only until its lease runs out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from django.db.models import Q
from django.utils import timezone

from integrations.models import AxPollCursor, Flow

MIN_LEASE_SECONDS = 60.0


def lease_seconds(flow: Flow) -> float:
    """Long enough for a poll's calls to its source (about ten of them at the System's timeout)."""
    return max(MIN_LEASE_SECONDS, 10 * float(flow.source.timeout_seconds or 0))


@contextmanager
def cursor_lease(flow: Flow) -> Iterator[AxPollCursor | None]:
    """The flow's cursor while this poll holds it; None when another poll holds it now."""
    AxPollCursor.objects.get_or_create(flow=flow)
    now = timezone.now()
    until = now + dt.timedelta(seconds=lease_seconds(flow))
    free = Q(polling_until__isnull=True) | Q(polling_until__lt=now)
    if not AxPollCursor.objects.filter(free, flow=flow).update(polling_until=until):
        yield None
        return
    cursor = AxPollCursor.objects.get(flow=flow)
    try:
        yield cursor
    finally:
        # Only our own lease: one that ran out may have been taken by another poll since.
        AxPollCursor.objects.filter(flow=flow, polling_until=until).update(polling_until=None)
