"""Prometheus metrics computed from the database at scrape time.

Workers are separate processes, so in-process counters would only see the web process; the
database sees everything. Each family is one indexed query over open statuses or a short window.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from integrations.models import Attempt, Message
from monitoring.models import Alert
from monitoring.services.stats import throttled_by_system

Status = Message.Status
# Attempt duration buckets, seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
NOT_FINISHED = (*Message.DELIVERABLE, Status.DELIVERING, *Message.NEEDS_ATTENTION)


def _broker_queue_depth() -> int | None:
    """Tasks waiting in the Redis broker list; None for the filesystem broker."""
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        return None
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        return int(client.llen(settings.CELERY_TASK_DEFAULT_QUEUE))
    finally:
        client.close()


class DatabaseCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        now = timezone.now()
        window = timedelta(seconds=settings.ICBRIDGE_METRICS_WINDOW_SECONDS)
        since = now - window
        window_label = f"{int(window.total_seconds())}s"

        open_messages = GaugeMetricFamily(
            "icbridge_messages", "Messages not yet finished, by flow and status.", labels=["flow", "status"]
        )
        for flow, status, n in (
            Message.objects.filter(status__in=NOT_FINISHED)
            .values_list("flow__slug", "status")
            .annotate(n=Count("id"))
            .order_by()
        ):
            open_messages.add_metric([flow, status], n)
        yield open_messages

        recent = GaugeMetricFamily(
            "icbridge_messages_recent",
            "Messages received within the window, by flow and current status.",
            labels=["flow", "status", "window"],
        )
        for flow, status, n in (
            Message.objects.filter(created_at__gte=since)
            .values_list("flow__slug", "status")
            .annotate(n=Count("id"))
            .order_by()
        ):
            recent.add_metric([flow, status, window_label], n)
        yield recent

        latency = GaugeHistogramMetricFamily(
            "icbridge_delivery_latency_seconds",
            "Delivery attempt duration within the window, by flow.",
            labels=["flow"],
        )
        aggregates = {
            f"le_{i}": Count("id", filter=Q(duration_ms__lte=b * 1000)) for i, b in enumerate(LATENCY_BUCKETS)
        }
        rows = (
            Attempt.objects.filter(started_at__gte=since)
            .values("message__flow__slug")
            .annotate(total=Count("id"), total_ms=Sum("duration_ms"), **aggregates)
            .order_by()
        )
        for row in rows:
            buckets = [(str(b), row[f"le_{i}"]) for i, b in enumerate(LATENCY_BUCKETS)]
            buckets.append(("+Inf", row["total"]))
            latency.add_metric([row["message__flow__slug"]], buckets, (row["total_ms"] or 0) / 1000)
        yield latency

        depth = GaugeMetricFamily(
            "icbridge_queue_depth", "Work waiting: broker queue length and due messages.", labels=["queue"]
        )
        broker_depth = _broker_queue_depth()
        if broker_depth is not None:
            depth.add_metric([settings.CELERY_TASK_DEFAULT_QUEUE], broker_depth)
        due = Message.objects.filter(status__in=Message.DELIVERABLE, next_attempt_at__lte=now).count()
        depth.add_metric(["due_messages"], due)
        yield depth

        throttled = GaugeMetricFamily(
            "icbridge_throttled_attempts",
            "Attempts the target throttled (429) within the window, by target system.",
            labels=["system", "window"],
        )
        for system, n in throttled_by_system(since=since).items():
            throttled.add_metric([system, window_label], n)
        yield throttled

        alerts = GaugeMetricFamily("icbridge_alerts_open", "Alerts currently firing.")
        alerts.add_metric([], Alert.objects.filter(resolved_at__isnull=True).count())
        yield alerts

        took = GaugeMetricFamily("icbridge_metrics_scrape_seconds", "Time spent computing these metrics.")
        took.add_metric([], time.monotonic() - started)
        yield took
