"""Initial load / re-sync of a flow over the API: POST starts one, GET shows the latest's progress."""

from __future__ import annotations

from typing import Any, ClassVar

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import errors
from integrations.api.operator import ACTION_ERRORS, OperatorApi
from integrations.bulk import load
from integrations.models import Flow, LoadRun


class FlowLoadApi(OperatorApi, APIView):
    """POST: start an initial load (202 with its id); GET: the progress of the flow's latest load."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "FlowLoadInput"

        since = serializers.DateTimeField(required=False, help_text="Only records modified since (ISO 8601).")
        company = serializers.CharField(required=False, allow_blank=True, default="", max_length=20)
        entity = serializers.CharField(required=False, allow_blank=True, default="", max_length=120)
        key = serializers.ListField(child=serializers.CharField(max_length=60), required=False, default=list)
        page_size = serializers.IntegerField(required=False, min_value=1, max_value=10_000)
        cancel = serializers.BooleanField(required=False, default=False, help_text="Cancel the running load.")

    required_perms: ClassVar[tuple[str, ...]] = ("integrations.change_flow",)

    @extend_schema(
        tags=["configuration"],
        operation_id="flow_load_start",
        summary="Start an initial load / re-sync of the flow (or cancel the running one with cancel=true)",
        request=InputSerializer,
        responses={202: OpenApiResponse(description="The load and its progress."), **ACTION_ERRORS},
    )
    def post(self, request: Request, slug: str) -> Response:
        flow = get_object_or_404(Flow.objects.select_related("source", "target"), slug=slug)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values: dict[str, Any] = data.validated_data
        if values["cancel"]:
            run = flow.load_runs.filter(state=LoadRun.State.RUNNING).first()
            if run is None or not load.load_cancel(run=run, actor=request.user):
                return Response({"error": "no load of this flow is running"}, status=status.HTTP_409_CONFLICT)
            run.refresh_from_db()
            return Response(load.load_progress(run=run))
        try:
            run = load.load_start(
                flow=flow,
                since=values.get("since"),
                company=values["company"],
                entity=values["entity"],
                key=values["key"],
                page_size=values.get("page_size"),
                actor=request.user,
            )
        except load.LoadError as exc:
            code = status.HTTP_409_CONFLICT if "already running" in str(exc) else status.HTTP_400_BAD_REQUEST
            return Response({"error": str(exc)}, status=code)
        except errors.ConnectorError as exc:
            return Response({"error": exc.message}, status=status.HTTP_502_BAD_GATEWAY)
        return Response(load.load_progress(run=run), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        tags=["configuration"],
        operation_id="flow_load_progress",
        summary="Progress of the flow's latest load: read, written, failed, rate, ETA",
        responses={200: OpenApiResponse(description="The load's progress."), **ACTION_ERRORS},
    )
    def get(self, request: Request, slug: str) -> Response:
        flow = get_object_or_404(Flow, slug=slug)
        run = flow.load_runs.select_related("flow").order_by("-started_at").first()
        if run is None:
            return Response({"error": "this flow has never been loaded"}, status=status.HTTP_404_NOT_FOUND)
        return Response(load.load_progress(run=run))
