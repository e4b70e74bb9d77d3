"""The Prometheus endpoint reports from the database; health reports database, broker, workers and beat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from prometheus_client.parser import text_string_to_metric_families

from integrations.models import Attempt, Message
from monitoring.models import Heartbeat
from monitoring.services import health

pytestmark = pytest.mark.django_db
Status = Message.Status


def scrape(client, path: str = "/metrics", **headers) -> dict[str, list]:
    response = client.get(path, **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.content.decode())}


def sample(families: dict, family: str, name: str | None = None, **labels) -> float:
    found = [
        s.value
        for s in families[family]
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (family, labels, families.get(family))
    return found[0]


def attempt(message: Message, number: int, ms: int, status: int | None = 200, outcome: str = "delivered") -> None:
    Attempt.objects.create(
        message=message,
        number=number,
        started_at=timezone.now(),
        duration_ms=ms,
        outcome=outcome,
        response_status=status,
    )


def test_metrics_count_messages_by_flow_and_status_and_bucket_latency(client, make_flow, make_message):
    flow = make_flow(slug="orders")
    dead = make_message(flow, status=Status.DEAD)
    make_message(flow, status=Status.RETRYING, next_attempt_at=timezone.now() - timedelta(seconds=5))
    delivered = make_message(flow)
    attempt(delivered, 1, 40)
    attempt(delivered, 2, 700)
    attempt(dead, 1, 3000, status=429, outcome="retry")

    families = scrape(client)

    assert sample(families, "icbridge_messages", flow="orders", status="dead") == 1
    assert sample(families, "icbridge_messages", flow="orders", status="retrying") == 1
    assert sample(families, "icbridge_messages_recent", flow="orders", status="delivered") == 1
    latency = "icbridge_delivery_latency_seconds"
    assert sample(families, latency, name=f"{latency}_bucket", flow="orders", le="0.05") == 1
    assert sample(families, latency, name=f"{latency}_bucket", flow="orders", le="1.0") == 2
    assert sample(families, latency, name=f"{latency}_bucket", flow="orders", le="+Inf") == 3
    # The classic text format carries the gauge-histogram sum as its own gauge family.
    assert sample(families, f"{latency}_gsum", flow="orders") == pytest.approx(3.74)
    assert sample(families, "icbridge_queue_depth", queue="due_messages") == 1
    assert sample(families, "icbridge_queue_depth", queue="icbridge") >= 0  # the Redis broker list
    assert sample(families, "icbridge_throttled_attempts", system=flow.target.slug) == 1
    assert sample(families, "icbridge_alerts_open") == 0


def test_metrics_are_also_under_monitoring(client, make_flow, make_message):
    make_message(make_flow(slug="x"), status=Status.FAILED)

    assert sample(scrape(client, "/monitoring/metrics"), "icbridge_messages", flow="x", status="failed") == 1


def test_metrics_token_when_configured(client, settings):
    settings.ICBRIDGE_METRICS_TOKEN = "s3cret"

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_health_without_any_worker_or_beat_is_failing(client, settings):
    settings.ICBRIDGE_HEALTH_PING_SECONDS = 0.3
    PeriodicTask.objects.all().delete()

    response = client.get("/monitoring/health")

    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["workers"].startswith("failed: no worker heartbeat")
    assert body["checks"]["beat"].startswith("failed: beat has not sent a task")


def test_health_with_a_fresh_heartbeat_is_ok(client):
    from monitoring import tasks

    tasks.heartbeat()  # what a worker does when beat sends it

    response = client.get("/monitoring/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "workers": "ok", "beat": "ok"},
    }


def test_a_stale_heartbeat_is_a_dead_worker(settings):
    settings.ICBRIDGE_HEALTH_PING_SECONDS = 0.3
    health.heartbeat_record()
    Heartbeat.objects.update(seen_at=timezone.now() - timedelta(minutes=10))

    assert health.check_workers() == "failed: no worker heartbeat for 600 s"


def test_beat_counts_as_alive_while_its_scheduler_recently_sent_tasks(make_flow):
    PeriodicTask.objects.create(
        name="x", task="monitoring.tasks.heartbeat", last_run_at=timezone.now(), interval=_interval()
    )

    assert health.check_beat() == "ok"


def _interval():
    from django_celery_beat.models import IntervalSchedule

    return IntervalSchedule.objects.create(every=30, period=IntervalSchedule.SECONDS)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_running_worker_answers_the_ping(start_worker, settings):
    start_worker("health")

    assert health.check_workers() == "ok"


def test_a_scrape_costs_the_same_few_queries_however_many_messages(
    client, make_flow, make_message, django_assert_max_num_queries
):
    flows = [make_flow() for _ in range(3)]
    for flow in flows:
        for status in (Status.DELIVERED, Status.DEAD, Status.RETRYING):
            attempt(make_message(flow, status=status), 1, 120)

    with django_assert_max_num_queries(8):
        scrape(client)


def test_the_dashboard_costs_a_bounded_number_of_queries(
    admin_client, make_flow, make_message, django_assert_max_num_queries
):
    for flow in [make_flow() for _ in range(4)]:
        for status in (Status.DELIVERED, Status.FAILED):
            attempt(make_message(flow, status=status, delivered_at=timezone.now()), 1, 80)

    with django_assert_max_num_queries(40):
        response = admin_client.get("/monitoring/dashboard")

    assert response.status_code == 200
