"""Routes under /api/: webhook ingress and the operator API."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from integrations.api import loads, mapping, operator, webhooks
from monitoring.views import health

urlpatterns = [
    path("health", health, name="api-health"),
    path("", include("integrations.api.scenarios")),  # deep links, business chains, synchronous calls
    *webhooks.ingress_routes(),
    # Operator API.
    path("messages", operator.MessageListApi.as_view(), name="api-messages"),
    path("messages/retry", operator.MessagesBulkRetryApi.as_view(), name="api-messages-retry"),
    path("messages/<int:pk>", operator.MessageDetailApi.as_view(), name="api-message"),
    path("messages/<int:pk>/retry", operator.MessageRetryApi.as_view(), name="api-message-retry"),
    path("messages/<int:pk>/replay", operator.MessageReplayApi.as_view(), name="api-message-replay"),
    path("messages/<int:pk>/discard", operator.MessageDiscardApi.as_view(), name="api-message-discard"),
    path("flows", operator.FlowListApi.as_view(), name="api-flows"),
    path("flows/<slug:slug>", operator.FlowDetailApi.as_view(), name="api-flow"),
    path("flows/<slug:slug>/pause", operator.FlowPauseApi.as_view(), name="api-flow-pause"),
    path("flows/<slug:slug>/resume", operator.FlowResumeApi.as_view(), name="api-flow-resume"),
    path("flows/<slug:slug>/load", loads.FlowLoadApi.as_view(), name="api-flow-load"),
    path("flows/<slug:flow_slug>/mapping", mapping.FlowMappingApi.as_view(), name="api-flow-mapping"),
    path(
        "flows/<slug:flow_slug>/mapping/preview", mapping.MappingPreviewApi.as_view(), name="api-flow-mapping-preview"
    ),
    path("systems", operator.SystemListApi.as_view(), name="api-systems"),
    path("systems/<slug:slug>/pause", operator.SystemPauseApi.as_view(), name="api-system-pause"),
    path("systems/<slug:slug>/resume", operator.SystemResumeApi.as_view(), name="api-system-resume"),
    path("audit", operator.AuditListApi.as_view(), name="api-audit"),
    # OpenAPI 3 schema and its browsable docs.
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
