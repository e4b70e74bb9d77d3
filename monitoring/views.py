"""Health, Prometheus metrics and the operator dashboard. Thin: the numbers come from services."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from integrations.models import Flow
from integrations.selectors import overview
from monitoring.charts import line_chart
from monitoring.metrics import DatabaseCollector
from monitoring.models import Alert, ReconciliationRun
from monitoring.services import health as health_service
from monitoring.services import stats

_registry = CollectorRegistry(auto_describe=False)
_registry.register(DatabaseCollector())


def _has_metrics_token(request: HttpRequest) -> bool:
    token = settings.ICBRIDGE_METRICS_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def _health_response(request: HttpRequest, report: dict, ok: tuple[str, ...] = ("ok",)) -> JsonResponse:
    """Status and code for any probe; which check failed only for staff, the metrics token, or the demo."""
    code = 200 if report["status"] in ok else 503
    user = getattr(request, "user", None)
    detailed = settings.ICBRIDGE_HEALTH_DETAILS_PUBLIC or _has_metrics_token(request) or (user and user.is_staff)
    return JsonResponse(report if detailed else {"status": report["status"]}, status=code)


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Every part (database, broker, workers, beat): 503 when one fails. For monitoring, not for a restart."""
    return _health_response(request, health_service.health_report())


@require_GET
def health_live(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Restart it only when this fails."""
    return JsonResponse(health_service.live_report())


@require_GET
def health_ready(request: HttpRequest) -> JsonResponse:
    """Readiness: database and broker reachable; busy or missing workers are "degraded", still 200."""
    return _health_response(request, health_service.ready_report(), ok=("ok", "degraded"))


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text: with the bearer token, or without one only where ICBRIDGE_METRICS_PUBLIC (the demo)."""
    if settings.ICBRIDGE_METRICS_TOKEN:
        if not _has_metrics_token(request):
            response = HttpResponse("metrics need 'Authorization: Bearer <ICBRIDGE_METRICS_TOKEN>'\n", status=401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif not settings.ICBRIDGE_METRICS_PUBLIC:
        return HttpResponse("metrics are off: set ICBRIDGE_METRICS_TOKEN and scrape with it\n", status=403)
    return HttpResponse(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)


@staff_member_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    window = request.GET.get("window", "hour")
    if window not in stats.WINDOWS:
        return HttpResponse(f"window must be one of: {', '.join(stats.WINDOWS)}", status=400)
    flow = None
    if slug := request.GET.get("flow"):
        flow = Flow.objects.filter(slug=slug).first()
        if flow is None:
            return HttpResponse(f"flow {slug!r} does not exist", status=400)
    data = stats.dashboard(window=window, flow=flow)
    time_format = "%H:%M" if window == "hour" else "%d %H:00"
    throughput = {k: data.series[k] for k in ("received", "delivered", "failed")}
    context = {
        "title": f"Dashboard — {flow.name}" if flow else "Dashboard",
        "data": data,
        "window": window,
        "windows": list(stats.WINDOWS),
        "flow": flow,
        "flows": Flow.objects.order_by("name").values("slug", "name"),
        "incidents": overview.incidents(),
        "throughput_chart": line_chart(throughput, title="Messages per bucket", time_format=time_format),
        "latency_chart": line_chart(
            {"latency_p95_ms": data.series["latency_p95_ms"]},
            title="Attempt latency p95",
            unit=" ms",
            time_format=time_format,
        ),
        "wait_chart": line_chart(
            {"wait_max_s": data.series["wait_max_s"]},
            title="Backlog age (longest wait)",
            unit=" s",
            time_format=time_format,
        ),
        "attention": overview.needs_attention().count(),
        "open_alerts": Alert.objects.filter(resolved_at__isnull=True).select_related("rule")[:20],
        "runs": ReconciliationRun.objects.select_related("flow")[:10],
        "health": health_service.health_report()["checks"],
    }
    return render(request, "monitoring/dashboard.html", context)
