"""Scenario endpoints: deep links into F&O, the business chain of an order, and the synchronous availability call."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpResponseRedirect
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import BasePermission, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from integrations.api.auth import parse_rate
from integrations.scenarios import deeplinks, sync_calls
from integrations.selectors import chains


def error(text: str, *, status: int, field: str | None = None) -> Response:
    body = {"error": text}
    if field:
        body["field"] = field
    return Response(body, status=status)


class DeepLinkApi(APIView):
    """302 to the F&O form of the record linked to a Sales (or other) record through the flow."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["scenarios"],
        responses={
            302: OpenApiResponse(description="Redirect to the F&O form."),
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="?format=json: url, company, menu_item."),
        },
    )
    def get(self, request: Request, flow_slug: str, record_id: str) -> Response | HttpResponseRedirect:
        try:
            link = deeplinks.deeplink_for(flow_slug=flow_slug, record_id=record_id)
        except deeplinks.DeepLinkError as exc:
            return error(exc.message, status=exc.status)
        if request.query_params.get("format") == "json":
            return Response({"url": link.url, "company": link.company, "menu_item": link.menu_item})
        return HttpResponseRedirect(link.url)


class ChainApi(APIView):
    """Every step of one business transaction (by correlation id) with its state; staff only."""

    permission_classes = [IsAdminUser]

    @extend_schema(tags=["scenarios"], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, correlation_id: str) -> Response:
        try:
            chain = chains.chain_for(correlation_id)
        except chains.ChainNotFound as exc:
            return error(str(exc), status=404, field="correlation_id")
        return Response(chains.chain_as_dict(chain))


class MayCallErp(BasePermission):
    """A synchronous call signs in to an ERP with the hub's credentials: operators and engineers only."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and any(user.has_perm(perm) for perm in ("integrations.change_message", "integrations.change_companylink"))
        )


class SyncCallThrottle(UserRateThrottle):
    """Per user: each call costs an ERP request made with the hub's own credentials."""

    scope = "sync"

    def get_rate(self) -> str:
        rate = settings.ICBRIDGE_SYNC_THROTTLE_RATE.replace(" ", "").lower()
        return rate if parse_rate(rate) else "30/min"


class SyncAvailabilityApi(APIView):
    """Ask the other company, now, whether it can deliver an item and at what price."""

    permission_classes = [MayCallErp]
    throttle_classes = [SyncCallThrottle]

    class InputSerializer(serializers.Serializer):
        company_link = serializers.CharField(help_text="CompanyLink name or id.")
        item = serializers.CharField(max_length=60)
        quantity = serializers.DecimalField(max_digits=18, decimal_places=6, min_value=0)
        unit = serializers.CharField(max_length=20, required=False, default="")
        site = serializers.CharField(max_length=20, required=False, default="")
        warehouse = serializers.CharField(max_length=20, required=False, default="")
        ask_company = serializers.CharField(
            max_length=20, required=False, default="", help_text="Which side to ask; default the F&O/AIF side."
        )
        timeout_seconds = serializers.FloatField(required=False, min_value=0.1, max_value=60)

    @extend_schema(tags=["scenarios"], request=InputSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        if not serializer.is_valid():
            field, problems = next(iter(serializer.errors.items()))
            return error(f"field '{field}': {problems[0]}", status=400, field=field)
        data = serializer.validated_data
        limit = settings.ICBRIDGE_SYNC_MAX_TIMEOUT_SECONDS
        if data.get("timeout_seconds") and data["timeout_seconds"] > limit:
            return error(f"field 'timeout_seconds': at most {limit:g}", status=400, field="timeout_seconds")
        try:
            answer = sync_calls.availability_check(**data, actor=request.user)
        except sync_calls.SyncCallError as exc:
            return error(exc.message, status=exc.status, field=exc.field)
        return Response(answer)


urlpatterns = [
    path("deeplink/<slug:flow_slug>/<path:record_id>", DeepLinkApi.as_view(), name="api-deeplink"),
    path("chains/<str:correlation_id>", ChainApi.as_view(), name="api-chain"),
    path("sync/availability", SyncAvailabilityApi.as_view(), name="api-sync-availability"),
]
