"""Mapping API: preview a transform (current or draft spec) and save a new mapping version.

POST /api/flows/<slug>/mapping/preview {"payload": {...}, "spec": optional draft}
    200 {"output": {...}}             the mapped payload; nothing is sent anywhere
    200 {"errors": ["field 'X': ..."]} the spec is fine but this payload does not map
    400 {"errors": [...], "error": first, "field": its field}   the draft spec is invalid
GET  /api/flows/<slug>/mapping        the current spec, its version and the version history
POST /api/flows/<slug>/mapping {"spec": {...}, "comment": "why"}
    201 {"version": n, ...} or 400 {"errors": [...], "error": first, "field": its field}
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.errors import ErrorSerializer
from integrations.api.operator import OperatorApi
from integrations.models import Flow, MappingVersion
from integrations.pipeline import preview
from integrations.services import mappings

_FIELD = re.compile(r"^field '([^']*)'")


def _field_of(text: str) -> str | None:
    match = _FIELD.match(text)
    return match.group(1) if match else None


def _refusal(problems: list[str], *, field: str | None = None) -> Response:
    return Response(
        {"errors": problems, "error": problems[0], "field": field or _field_of(problems[0])},
        status=status.HTTP_400_BAD_REQUEST,
    )


class PreviewInputSerializer(serializers.Serializer):
    payload = serializers.JSONField(help_text="A sample source payload, e.g. a recent message's payload_in.")
    spec = serializers.JSONField(required=False, help_text="A draft spec; omitted: the flow's current spec.")

    def validate_payload(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        return value

    def validate_spec(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        return value


class PreviewOutputSerializer(serializers.Serializer):
    output = serializers.JSONField(required=False)
    errors = serializers.ListField(child=serializers.CharField(), required=False)


class SaveInputSerializer(serializers.Serializer):
    spec = serializers.JSONField()
    comment = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")

    def validate_spec(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        return value


class MappingVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.get_username", default=None, read_only=True)

    class Meta:
        model = MappingVersion
        fields = ["version", "created_by", "created_at", "comment", "spec"]


class MappingStateSerializer(serializers.Serializer):
    flow = serializers.SlugField()
    version = serializers.IntegerField(help_text="The current version.")
    spec = serializers.JSONField(help_text="The current spec.")
    history = MappingVersionSerializer(many=True, help_text="The last 50 versions, newest first.")


def _invalid_input(serializer: serializers.Serializer) -> Response:
    field, messages = next(iter(serializer.errors.items()))
    return _refusal([f"field '{field}': {messages[0]}"], field=field)


@extend_schema(
    tags=["configuration"],
    request=PreviewInputSerializer,
    responses={200: PreviewOutputSerializer, 400: OpenApiResponse(ErrorSerializer), 404: ErrorSerializer},
)
class MappingPreviewApi(OperatorApi, APIView):
    """What the flow's mapping (or a draft) makes of a sample payload; nothing is sent."""

    required_perms = ("integrations.view_flow",)

    def post(self, request: Request, flow_slug: str) -> Response:
        flow = get_object_or_404(Flow.objects.select_related("source", "company_link"), slug=flow_slug)
        serializer = PreviewInputSerializer(data=request.data)
        if not serializer.is_valid():
            return _invalid_input(serializer)
        draft = serializer.validated_data.get("spec")
        if draft is not None:
            problems = mappings.mapping.validate_spec(draft)
            if problems:
                return _refusal(problems)
        result = preview.mapping_preview(flow=flow, payload=serializer.validated_data["payload"], spec=draft)
        return Response(result.as_dict())


@extend_schema(tags=["configuration"])
class FlowMappingApi(OperatorApi, APIView):
    """The flow's mapping: read it with its history, or save a new version."""

    def get_permissions(self) -> list[Any]:
        self.required_perms = (
            ("integrations.change_flow",) if self.request.method == "POST" else ("integrations.view_flow",)
        )
        return super().get_permissions()

    @extend_schema(responses={200: MappingStateSerializer, 404: ErrorSerializer})
    def get(self, request: Request, flow_slug: str) -> Response:
        flow = get_object_or_404(Flow, slug=flow_slug)
        versions = flow.mapping_versions.select_related("created_by").order_by("-version")[:50]
        return Response(
            {
                "flow": flow.slug,
                "version": flow.mapping_version,
                "spec": flow.mapping_spec,
                "history": MappingVersionSerializer(versions, many=True).data,
            }
        )

    @extend_schema(
        request=SaveInputSerializer,
        responses={201: MappingVersionSerializer, 400: OpenApiResponse(ErrorSerializer), 404: ErrorSerializer},
    )
    def post(self, request: Request, flow_slug: str) -> Response:
        flow = get_object_or_404(Flow, slug=flow_slug)
        serializer = SaveInputSerializer(data=request.data)
        if not serializer.is_valid():
            return _invalid_input(serializer)
        try:
            version = mappings.flow_mapping_save(
                flow=flow,
                spec=serializer.validated_data["spec"],
                actor=request.user,
                comment=serializer.validated_data["comment"],
            )
        except ValidationError as exc:
            return _refusal(list(exc.messages))
        return Response(MappingVersionSerializer(version).data, status=status.HTTP_201_CREATED)
