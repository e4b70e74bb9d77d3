"""Webhook ingress: one DRF view per sender format (a system's InboundFormat), for one flow or one system.

A request is resolved, bounded and authenticated (auth.InboundAuthentication), throttled per
endpoint, parsed by its system's parser and stored (integrations.ingress.routing) in one commit;
the work runs in Celery. A system-level endpoint routes the event to every enabled flow of that
source system whose entity (or options["event_types"]) matches the event.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.urls import URLPattern, path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import systems
from integrations.api.auth import (
    InboundAuthentication,
    InboundTarget,
    InboundTargetEnabled,
    IngressThrottle,
    InputError,
    parse_rate,
)
from integrations.api.errors import ErrorSerializer, api_exception_handler, error_response
from integrations.ingress import routing
from integrations.protocols.events import GENERIC, InboundFormat, body_parse


class IngestResultSerializer(serializers.Serializer):
    message_id = serializers.IntegerField()
    duplicate = serializers.BooleanField(help_text="True when this event was already stored: same message id.")


class RoutedResultSerializer(serializers.Serializer):
    flow = serializers.CharField()
    message_id = serializers.IntegerField()
    duplicate = serializers.BooleanField()


class SystemIngestResultSerializer(serializers.Serializer):
    messages = RoutedResultSerializer(many=True)
    duplicate = serializers.BooleanField(help_text="True when every routed message was already stored.")


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Not JSON, wrong shape, or a required field missing."),
    401: OpenApiResponse(ErrorSerializer, description="Credentials missing or wrong (see WWW-Authenticate)."),
    404: OpenApiResponse(ErrorSerializer, description="No such flow or system."),
    409: OpenApiResponse(ErrorSerializer, description="The flow or system is disabled."),
    413: OpenApiResponse(ErrorSerializer, description="The body is over the size limit."),
    429: OpenApiResponse(ErrorSerializer, description="Too many requests (see Retry-After)."),
}


class InboundApi(APIView):
    """An ingress view of one sender format (`fmt`): auth, throttle, parse, route, store; 202 fast."""

    authentication_classes = [InboundAuthentication]
    permission_classes = [InboundTargetEnabled]
    throttle_classes = [IngressThrottle]
    parser_classes: ClassVar[list[Any]] = []  # the body is read raw, once, by the authenticator
    fmt: ClassVar[InboundFormat]

    def get_exception_handler(self) -> Any:
        return api_exception_handler

    def post(self, request: Request, **kwargs: Any) -> Response:
        target: InboundTarget = request.auth
        # An empty body is refused by the parser ("the body is empty"), whatever it claims to be.
        if target.body.strip() and not self.fmt.takes_content_type(target.headers):
            given = target.headers.get("content-type", "") or "none"
            raise InputError(
                f"Content-Type must be application/json, got {given}", field="Content-Type", status_code=415
            )
        read = self.fmt.document or (lambda body, headers: body_parse(body))
        document = read(target.body, target.headers)
        try:
            if target.flow:
                said = document.get(self.fmt.entity_field) if isinstance(document, dict) else None
                routing.check_takes(target.flow, said if isinstance(said, str) else "", self.fmt)
            event = self.fmt.parse(document, headers=target.headers, endpoint=target.endpoint)
            if target.flow:
                routing.check_takes(target.flow, event.entity, self.fmt)
            flows = [target.flow] if target.flow else routing.routed_flows(target.system, target.label, event, self.fmt)
        except routing.RoutingError as exc:
            raise InputError(exc.text, field=exc.field, status_code=422) from None
        stored = routing.event_ingest(event=event, flows=flows)
        duplicate = not any(item.created for item in stored)
        code = status.HTTP_200_OK if duplicate else status.HTTP_202_ACCEPTED
        if target.flow:
            return Response({"message_id": stored[0].message.pk, "duplicate": not stored[0].created}, status=code)
        routed = [{"flow": i.flow.slug, "message_id": i.message.pk, "duplicate": not i.created} for i in stored]
        return Response({"messages": routed, "duplicate": duplicate}, status=code)

    def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """CloudEvents webhook validation handshake (HTTP 1.1 Web Hooks, §4 abuse protection).

        The sender asks with WebHook-Request-Origin; we grant with WebHook-Allowed-Origin and the
        rate this endpoint accepts. An endpoint with allowed_origins grants only those.
        """
        target: InboundTarget = request.auth
        origin = request.headers.get("WebHook-Request-Origin", "").strip()
        if not origin:
            return error_response(
                "header 'WebHook-Request-Origin' is missing", field="WebHook-Request-Origin", status=400
            )
        allowed = target.endpoint.allowed_origins if target.endpoint else []
        if allowed and origin not in allowed:
            return error_response(
                f"origin {origin!r} may not send events here", field="WebHook-Request-Origin", status=403
            )
        rate = parse_rate((target.endpoint.throttle_rate if target.endpoint else "") or "") or parse_rate(
            IngressThrottle().get_rate() or ""
        )
        per_minute = str(max(1, rate[0] * 60 // rate[1])) if rate else "*"
        return Response(
            status=200,
            headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": per_minute, "Allow": "POST, OPTIONS"},
        )


FLOW_SLUG = OpenApiParameter("flow_slug", str, OpenApiParameter.PATH, description="The flow that takes the event.")
SYSTEM_SLUG = OpenApiParameter(
    "system_slug", str, OpenApiParameter.PATH, description="The source system; routed to its matching flows."
)


def _schema(*, tag: str, summary: str, system: bool, request: Any = OpenApiTypes.OBJECT) -> Any:
    ok = SystemIngestResultSerializer if system else IngestResultSerializer
    responses = {
        202: OpenApiResponse(ok, description="Stored; processing is queued."),
        200: OpenApiResponse(ok, description="Already stored earlier (duplicate): the same message id."),
        **ERRORS,
    }
    if system:
        responses[422] = OpenApiResponse(ErrorSerializer, description="No enabled flow takes this event.")
    return extend_schema(
        tags=[tag],
        summary=summary,
        parameters=[SYSTEM_SLUG if system else FLOW_SLUG],
        request=request,
        responses=responses,
    )


def view_for(fmt: InboundFormat, *, system: bool) -> type[InboundApi]:
    """The view class of one sender format, per flow or per source system, with its OpenAPI schema."""
    summary = fmt.system_summary if system else fmt.summary
    schema = _schema(tag="webhooks", summary=summary, system=system)
    post = schema(lambda self, request, **kwargs: InboundApi.post(self, request, **kwargs))
    name = "".join(part.capitalize() for part in fmt.url_name.split("-")) + ("SystemApi" if system else "Api")
    return type(name, (InboundApi,), {"fmt": fmt, "post": post, "__doc__": summary})


def ingress_routes() -> list[URLPattern]:
    """/api/<prefix>/<flow_slug> and /api/<prefix>/systems/<system_slug> for every registered sender format."""
    routes = []
    for fmt in [*systems.inbound_formats(), GENERIC]:
        routes.append(path(f"{fmt.prefix}/<slug:flow_slug>", view_for(fmt, system=False).as_view(), name=fmt.url_name))
        if not fmt.per_flow_only:
            view = view_for(fmt, system=True).as_view()
            routes.append(path(f"{fmt.prefix}/systems/<slug:system_slug>", view, name=f"{fmt.url_name}-system"))
    return routes
