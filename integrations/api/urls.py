"""Routes under /api/: webhook ingress and the operator API."""

from django.urls import URLPattern, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.views import APIView

from integrations.api import loads, mapping, operator, webhooks
from monitoring.views import health


def _resource(route: str, name: str, views: dict[str, type[APIView]]) -> list[URLPattern]:
    """One resource's routes: "" is the resource itself (route, named name), "retry" is route/retry (name-retry)."""
    return [
        path(f"{route}/{action}" if action else route, view.as_view(), name=f"{name}-{action}" if action else name)
        for action, view in views.items()
    ]


urlpatterns = [
    path("health", health, name="api-health"),
    path("", include("integrations.api.scenarios")),  # deep links, business chains, synchronous calls
    *webhooks.ingress_routes(),
    # Operator API.
    *_resource("messages", "api-messages", {"": operator.MessageListApi, "retry": operator.MessagesBulkRetryApi}),
    *_resource(
        "messages/<int:pk>",
        "api-message",
        {
            "": operator.MessageDetailApi,
            "retry": operator.MessageRetryApi,
            "replay": operator.MessageReplayApi,
            "discard": operator.MessageDiscardApi,
        },
    ),
    *_resource("flows", "api-flows", {"": operator.FlowListApi}),
    *_resource(
        "flows/<slug:slug>",
        "api-flow",
        {
            "": operator.FlowDetailApi,
            "pause": operator.FlowPauseApi,
            "resume": operator.FlowResumeApi,
            "load": loads.FlowLoadApi,
        },
    ),
    *_resource(
        "flows/<slug:flow_slug>/mapping",
        "api-flow-mapping",
        {"": mapping.FlowMappingApi, "preview": mapping.MappingPreviewApi},
    ),
    *_resource("systems", "api-systems", {"": operator.SystemListApi}),
    *_resource(
        "systems/<slug:slug>", "api-system", {"pause": operator.SystemPauseApi, "resume": operator.SystemResumeApi}
    ),
    path("audit", operator.AuditListApi.as_view(), name="api-audit"),
    # OpenAPI 3 schema and its browsable docs.
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
