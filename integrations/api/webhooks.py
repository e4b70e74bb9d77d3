"""Webhook ingress: one DRF view per sender format, each for one flow or for one system.

A request is resolved, bounded and authenticated (auth.InboundAuthentication), throttled per
endpoint, parsed (services.events) and stored with message_ingest in one commit; the work runs
in Celery. A system-level endpoint routes the event to every enabled flow of that source system
whose entity (or options["event_types"]) matches the event.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, ClassVar

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.auth import (
    InboundAuthentication,
    InboundTarget,
    InboundTargetEnabled,
    IngressThrottle,
    InputError,
    parse_rate,
)
from integrations.api.errors import ErrorSerializer, api_exception_handler, error_response
from integrations.ingress import events
from integrations.models import Flow
from integrations.pipeline.ingest import message_ingest


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


def _event_types(flow: Flow) -> list[str]:
    """The event types a flow lists in options["event_types"]; anything malformed lists none."""
    listed = flow.options.get("event_types") if isinstance(flow.options, dict) else None
    return [item for item in listed if isinstance(item, str)] if isinstance(listed, list) else []


class InboundApi(APIView):
    """Base of the ingress views: auth, throttle and one error shape; subclasses parse one format."""

    authentication_classes = [InboundAuthentication]
    permission_classes = [InboundTargetEnabled]
    throttle_classes = [IngressThrottle]
    parser_classes: ClassVar[list[Any]] = []  # the body is read raw, once, by the authenticator
    # The field of the event that names what it is about, for a system endpoint's routing error.
    entity_field: ClassVar[str] = ""
    # True where that field is the flow's own entity (a Dataverse table's logical name), so a flow's
    # endpoint can refuse another entity's events; elsewhere only a flow listing event_types can.
    entity_is_flow_entity: ClassVar[bool] = False

    def get_exception_handler(self) -> Any:
        return api_exception_handler

    def parse(self, request: Request, document: Any, target: InboundTarget) -> events.InboundEvent:
        """Each sender's view reads its own format; this base view is never routed."""
        raise NotImplementedError(f"{type(self).__name__} must say how to parse its events")

    def document(self, target: InboundTarget) -> Any:
        return events.body_parse(target.body)

    def post(self, request: Request, **kwargs: Any) -> Response:
        target: InboundTarget = request.auth
        event = self.parse(request, self.document(target), target)
        if target.flow:
            self.check_takes(target.flow, event)
        flows = [target.flow] if target.flow else self.routed_flows(target, event)
        # One commit for all: a system event routed to two flows is stored for both or for neither.
        # (message_ingest is atomic itself: one flow needs no outer transaction, and saves two round trips.)
        with transaction.atomic() if len(flows) > 1 else nullcontext():
            results = [
                (
                    flow,
                    *message_ingest(
                        flow=flow,
                        payload=event.payload,
                        idempotency_key=events.key_fit(event.idempotency_key),
                        source_record_key=event.source_record_key,
                        source_version=event.source_version,
                        correlation_id=event.correlation_id,
                        headers=event.headers,
                    ),
                )
                for flow in flows
            ]
        duplicate = not any(created for _, _, created in results)
        code = status.HTTP_200_OK if duplicate else status.HTTP_202_ACCEPTED
        if target.flow:
            _, message, created = results[0]
            return Response({"message_id": message.pk, "duplicate": not created}, status=code)
        routed = [
            {"flow": flow.slug, "message_id": message.pk, "duplicate": not created}
            for flow, message, created in results
        ]
        return Response({"messages": routed, "duplicate": duplicate}, status=code)

    def check_takes(self, flow: Flow, event: events.InboundEvent) -> None:
        """A flow's endpoint refuses events about something else (a step registered on the wrong URL)."""
        types = _event_types(flow)
        if not event.entity or event.entity.lower() == flow.entity.lower() or event.entity in types:
            return
        if self.entity_is_flow_entity or types:
            takes = ", ".join(repr(t) for t in types) if types else repr(flow.entity)
            raise InputError(
                f"flow {flow.slug} takes {takes} events, not {event.entity!r}",
                field=self.entity_field or None,
                status_code=422,
            )

    def routed_flows(self, target: InboundTarget, event: events.InboundEvent) -> list[Flow]:
        wanted = event.entity.lower()
        flows = [
            flow
            for flow in Flow.objects.select_related("source", "target").filter(source=target.system, enabled=True)
            if flow.entity.lower() == wanted or event.entity in _event_types(flow)
        ]
        if not flows:
            raise InputError(
                f"no enabled flow from {target.label} takes {event.entity!r}",
                field=self.entity_field or None,
                status_code=422,
            )
        return flows

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


class DataverseWebhookApi(InboundApi):
    entity_field = "PrimaryEntityName"
    entity_is_flow_entity = True

    def parse(self, request: Request, document: Any, target: InboundTarget) -> events.InboundEvent:
        return events.dataverse_event(document, headers=target.headers)

    @_schema(tag="webhooks", summary="Dataverse webhook (RemoteExecutionContext)", system=False)
    def post(self, request: Request, **kwargs: Any) -> Response:
        return super().post(request, **kwargs)


class DataverseSystemWebhookApi(DataverseWebhookApi):
    @_schema(tag="webhooks", summary="Dataverse webhook for every entity of one system", system=True)
    def post(self, request: Request, **kwargs: Any) -> Response:
        return InboundApi.post(self, request, **kwargs)


class FinOpsEventApi(InboundApi):
    entity_field = "BusinessEventId"

    def parse(self, request: Request, document: Any, target: InboundTarget) -> events.InboundEvent:
        return events.finops_event(document, endpoint=target.endpoint)

    @_schema(tag="webhooks", summary="D365 F&O business event", system=False)
    def post(self, request: Request, **kwargs: Any) -> Response:
        return super().post(request, **kwargs)


class FinOpsSystemEventApi(FinOpsEventApi):
    @_schema(tag="webhooks", summary="D365 F&O business event routed by BusinessEventId", system=True)
    def post(self, request: Request, **kwargs: Any) -> Response:
        return InboundApi.post(self, request, **kwargs)


class SapEventApi(InboundApi):
    entity_field = "type"

    def document(self, target: InboundTarget) -> Any:
        # Structured mode (application/cloudevents+json) carries the envelope in the body; binary
        # mode carries it in ce-* headers with the data as the body.
        content_type = target.headers.get("content-type", "")
        if "ce-specversion" in target.headers and "cloudevents" not in content_type:
            return events.cloudevent_from_binary(target.body, target.headers)
        return events.body_parse(target.body)

    def parse(self, request: Request, document: Any, target: InboundTarget) -> events.InboundEvent:
        return events.sap_event(document, endpoint=target.endpoint)

    @_schema(tag="webhooks", summary="SAP Event Mesh CloudEvent (structured or binary mode)", system=False)
    def post(self, request: Request, **kwargs: Any) -> Response:
        return super().post(request, **kwargs)


class SapSystemEventApi(SapEventApi):
    @_schema(tag="webhooks", summary="SAP Event Mesh CloudEvent routed by type", system=True)
    def post(self, request: Request, **kwargs: Any) -> Response:
        return InboundApi.post(self, request, **kwargs)


class GenericIngestApi(InboundApi):
    def parse(self, request: Request, document: Any, target: InboundTarget) -> events.InboundEvent:
        return events.generic_event(document, headers=target.headers, endpoint=target.endpoint)

    @_schema(tag="webhooks", summary="Any JSON object; id from a header or JSON pointer", system=False)
    def post(self, request: Request, **kwargs: Any) -> Response:
        return super().post(request, **kwargs)
