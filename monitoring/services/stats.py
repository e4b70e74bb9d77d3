"""Numbers for the dashboard and the metrics endpoint, read straight from the database.

Every query is bounded by a time window on an indexed column (Message.created_at, delivered_at,
Attempt.started_at) or by an indexed status, so a large message table costs no full scan.
Percentiles use PostgreSQL's percentile_cont; on SQLite (the embedded demo) they are computed
in Python from the window's rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, DurationField, ExpressionWrapper, F, FloatField, Q
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone

from integrations.models import Attempt, Flow, Message

Status = Message.Status
FAILED = (Status.FAILED, Status.DEAD)
OPEN = (Status.RECEIVED, Status.TRANSFORMED, Status.DELIVERING, Status.RETRYING)

WINDOWS = {
    # name: (length, bucket length, TruncX for the buckets)
    "hour": (timedelta(hours=1), timedelta(minutes=5), TruncMinute),
    "day": (timedelta(days=1), timedelta(hours=1), TruncHour),
    "week": (timedelta(days=7), timedelta(hours=6), TruncHour),
}


class Percentile(Aggregate):
    """percentile_cont(p) WITHIN GROUP (ORDER BY expr) — PostgreSQL's ordered-set aggregate."""

    function = "percentile_cont"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, percentile: float, **extra: Any) -> None:
        super().__init__(expression, percentile=float(percentile), **extra)


def _percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation, the same definition as percentile_cont."""
    if not values:
        return None
    ordered = sorted(values)
    rank = p * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def latency_by(
    queryset: Any, group: str, value: str | Any, *, output: Any = None, sqlite_value: Any = None
) -> dict[Any, dict[str, float | None]]:
    """p50/p95 of `value` per `group`; the values are milliseconds or durations."""
    if connection.vendor == "postgresql":
        rows = queryset.values(group).annotate(
            p50=Percentile(value, 0.5, output_field=output or FloatField()),
            p95=Percentile(value, 0.95, output_field=output or FloatField()),
        )
        return {row[group]: {"p50": _seconds(row["p50"]), "p95": _seconds(row["p95"])} for row in rows.order_by()}
    grouped: dict[Any, list[float]] = {}
    for key, raw in queryset.values_list(group, sqlite_value or value)[:200_000]:
        seconds = _seconds(raw)
        if seconds is not None:
            grouped.setdefault(key, []).append(seconds)
    return {k: {"p50": _percentile(v, 0.5), "p95": _percentile(v, 0.95)} for k, v in grouped.items()}


def latency_total(queryset: Any, value: str) -> dict[str, float | None]:
    """p50/p95 of `value` over the whole queryset."""
    if connection.vendor == "postgresql":
        row = queryset.aggregate(
            p50=Percentile(value, 0.5, output_field=FloatField()),
            p95=Percentile(value, 0.95, output_field=FloatField()),
        )
        return {"p50": _seconds(row["p50"]), "p95": _seconds(row["p95"])}
    values = [float(v) for v in queryset.values_list(value, flat=True)[:200_000] if v is not None]
    return {"p50": _percentile(values, 0.5), "p95": _percentile(values, 0.95)}


@dataclass
class Row:
    """One flow or one system over the window."""

    label: str
    received: int = 0
    delivered: int = 0
    failed: int = 0
    backlog: int = 0
    dead: int = 0
    attempts_p50_ms: float | None = None
    attempts_p95_ms: float | None = None
    e2e_p50_s: float | None = None
    e2e_p95_s: float | None = None
    url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.delivered + self.failed

    @property
    def success_rate(self) -> float | None:
        return round(100.0 * self.delivered / self.finished, 1) if self.finished else None

    @property
    def failure_rate(self) -> float | None:
        return round(100.0 * self.failed / self.finished, 1) if self.finished else None


@dataclass
class Dashboard:
    window: str
    since: datetime
    flows: list[Row]
    systems: list[Row]
    totals: Row
    series: dict[str, list[tuple[datetime, float]]]


def _e2e() -> ExpressionWrapper:
    return ExpressionWrapper(F("delivered_at") - F("created_at"), output_field=DurationField())


def dashboard(*, window: str = "hour", flow: Flow | None = None) -> Dashboard:
    """Per flow and per target system: throughput, success/failure, latency, backlog, dead letters.

    The charts' series are for every flow, or for `flow` alone.
    """
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
    length, bucket, trunc = WINDOWS[window]
    now = timezone.now()
    since = now - length
    flows = {f.pk: f for f in Flow.objects.select_related("source", "target")}
    rows = {pk: Row(label=flow.name) for pk, flow in flows.items()}

    for flow_id, n in Message.objects.filter(created_at__gte=since).values_list("flow_id").annotate(n=Count("id")):
        rows[flow_id].received = n
    for flow_id, n in (
        Message.objects.filter(delivered_at__gte=since, status=Status.DELIVERED)
        .values_list("flow_id")
        .annotate(n=Count("id"))
    ):
        rows[flow_id].delivered = n
    # updated_at is when it failed: the last write to a failed or dead row is the failure.
    for flow_id, n in (
        Message.objects.filter(status__in=FAILED, updated_at__gte=since).values_list("flow_id").annotate(n=Count("id"))
    ):
        rows[flow_id].failed = n
    for flow_id, status, n in (
        Message.objects.filter(status__in=(*OPEN, Status.DEAD))
        .values_list("flow_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        if status == Status.DEAD:
            rows[flow_id].dead = n
        else:
            rows[flow_id].backlog += n
    attempts = Attempt.objects.filter(started_at__gte=since)
    for flow_id, lat in latency_by(attempts, "message__flow_id", "duration_ms").items():
        rows[flow_id].attempts_p50_ms, rows[flow_id].attempts_p95_ms = lat["p50"], lat["p95"]
    delivered = Message.objects.filter(delivered_at__gte=since, status=Status.DELIVERED)
    for flow_id, lat in latency_by(delivered, "flow_id", _e2e(), output=DurationField(), sqlite_value=_e2e()).items():
        rows[flow_id].e2e_p50_s, rows[flow_id].e2e_p95_s = lat["p50"], lat["p95"]

    systems: dict[int, Row] = {}
    for pk, row in rows.items():
        flow = flows[pk]
        row.url = f"/admin/integrations/message/?flow__id__exact={pk}"
        row.extra = {"source": flow.source.name, "target": flow.target.name}
        system = systems.setdefault(flow.target_id, Row(label=flow.target.name))
        for name in ("received", "delivered", "failed", "backlog", "dead"):
            setattr(system, name, getattr(system, name) + getattr(row, name))
    for system_id, lat in latency_by(attempts, "message__flow__target_id", "duration_ms").items():
        if system_id in systems:
            systems[system_id].attempts_p50_ms, systems[system_id].attempts_p95_ms = lat["p50"], lat["p95"]
    for system_id, lat in latency_by(
        delivered, "flow__target_id", _e2e(), output=DurationField(), sqlite_value=_e2e()
    ).items():
        if system_id in systems:
            systems[system_id].e2e_p50_s, systems[system_id].e2e_p95_s = lat["p50"], lat["p95"]

    totals = Row(label="All flows")
    for row in rows.values():
        for name in ("received", "delivered", "failed", "backlog", "dead"):
            setattr(totals, name, getattr(totals, name) + getattr(row, name))
    overall = latency_total(attempts, "duration_ms")
    totals.attempts_p50_ms, totals.attempts_p95_ms = overall["p50"], overall["p95"]

    active = [row for row in rows.values() if row.received or row.delivered or row.failed or row.backlog or row.dead]
    return Dashboard(
        window=window,
        since=since,
        flows=sorted(active, key=lambda r: (-r.received, r.label)),
        systems=sorted(systems.values(), key=lambda r: r.label),
        totals=totals,
        series=_series(since, now, bucket, trunc, flow=flow),
    )


def _bucketed(counts: Any, since: datetime, now: datetime, bucket: timedelta) -> list[tuple[datetime, float]]:
    """Fold per-minute/hour counts into fixed buckets, empty buckets included, oldest first."""
    start = since - timedelta(seconds=since.timestamp() % bucket.total_seconds())
    slots: dict[datetime, float] = {}
    at = start
    while at <= now:
        slots[at] = 0
        at += bucket
    for when, n in counts:
        if when is None:
            continue
        slot = start + bucket * int((when - start) / bucket)
        if slot in slots:
            slots[slot] += n
    return sorted(slots.items())


def _series(
    since: datetime, now: datetime, bucket: timedelta, trunc: Any, flow: Flow | None = None
) -> dict[str, list[tuple[datetime, float]]]:
    messages = Message.objects.filter(flow=flow) if flow is not None else Message.objects.all()

    def counted(qs: Any, column: str) -> list[tuple[datetime, float]]:
        rows = qs.annotate(at=trunc(column)).values_list("at").annotate(n=Count("id")).order_by()
        return _bucketed(rows, since, now, bucket)

    delivered = messages.filter(delivered_at__gte=since, status=Status.DELIVERED)
    series = {
        "received": counted(messages.filter(created_at__gte=since), "created_at"),
        "delivered": counted(delivered, "delivered_at"),
        "failed": counted(messages.filter(status__in=FAILED, updated_at__gte=since), "updated_at"),
    }
    series["wait_max_s"] = _longest_wait(delivered, messages, series["received"], now, bucket)
    # p95 attempt latency per bucket, in milliseconds.
    attempts = Attempt.objects.filter(started_at__gte=since).annotate(at=trunc("started_at"))
    if flow is not None:
        attempts = attempts.filter(message__flow=flow)
    by_slot = latency_by(attempts, "at", "duration_ms")
    folded: dict[datetime, float] = {}
    start = since - timedelta(seconds=since.timestamp() % bucket.total_seconds())
    for when, lat in by_slot.items():
        slot = start + bucket * int((when - start) / bucket)
        folded[slot] = max(folded.get(slot, 0), lat["p95"] or 0)
    series["latency_p95_ms"] = [(slot, folded.get(slot, 0)) for slot, _ in series["received"]]
    return series


def _longest_wait(
    delivered: Any, messages: Any, slots: list[tuple[datetime, float]], now: datetime, bucket: timedelta
) -> list[tuple[datetime, float]]:
    """Backlog age per bucket: the longest a message delivered in it had waited, in seconds.

    The last bucket also counts what still waits now (its age so far), so an outage shows while it lasts.
    """
    starts = [slot for slot, _ in slots]
    if not starts:
        return []
    worst = dict.fromkeys(starts, 0.0)
    start = starts[0]
    for created, done in delivered.values_list("created_at", "delivered_at").iterator(chunk_size=2000):
        slot = start + bucket * int((done - start) / bucket)
        if slot in worst:
            worst[slot] = max(worst[slot], (done - created).total_seconds())
    oldest = messages.filter(status__in=OPEN).order_by("created_at").values_list("created_at", flat=True).first()
    if oldest is not None:
        worst[starts[-1]] = max(worst[starts[-1]], (now - oldest).total_seconds())
    return sorted(worst.items())


def throttled_by_system(*, since: datetime) -> dict[str, int]:
    return dict(
        Attempt.objects.filter(started_at__gte=since)
        .filter(Q(response_status=429) | Q(error_class__endswith="ThrottledError"))
        .values_list("message__flow__target__slug")
        .annotate(n=Count("id"))
        .order_by()
    )
