"""The operator REST API: messages (list, search, retry, replay, discard), flows (pause, resume), systems, audit.

Session or token authentication; each view names the Django model permissions it needs, which
the roles (services.roles) grant. Actions call the same services as the admin console.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from integrations.api.auth import InputError, parse_rate
from integrations.api.errors import ErrorSerializer, api_exception_handler
from integrations.api.serializers import (
    AuditEntrySerializer,
    BulkRetrySerializer,
    CountSerializer,
    DiscardSerializer,
    FlowSerializer,
    MessageDetailSerializer,
    MessageFilterSerializer,
    MessageSerializer,
    ReasonSerializer,
    ReplaySerializer,
    SystemSerializer,
)
from integrations.models import AuditEntry, Flow, Message, System
from integrations.pipeline import operator, pause
from integrations.selectors import overview
from integrations.selectors.messages import messages_filter
from integrations.selectors.search import messages_search

ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="Not signed in."),
    403: OpenApiResponse(ErrorSerializer, description="Signed in without the needed permission."),
}
ACTION_ERRORS = {
    **ERRORS,
    400: OpenApiResponse(ErrorSerializer, description="Bad input."),
    404: OpenApiResponse(ErrorSerializer, description="No such message."),
    409: OpenApiResponse(ErrorSerializer, description="The message's state does not allow this action."),
}


class HasModelPerms(BasePermission):
    """The view's required_perms, e.g. ("integrations.change_message",), all held by the user."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perms(getattr(view, "required_perms", ())))


class OperatorThrottle(UserRateThrottle):
    scope = "operator"

    def get_rate(self) -> str:
        rate = settings.ICBRIDGE_OPERATOR_THROTTLE_RATE.replace(" ", "").lower()
        return rate if parse_rate(rate) else "20/s"


class OperatorApi:
    """Mixin: permissions, throttle and the one error shape for every operator view."""

    # Token first, so an unauthenticated call hears 401 + WWW-Authenticate: Token rather than 403.
    authentication_classes: ClassVar[list[Any]] = [TokenAuthentication, SessionAuthentication]
    permission_classes: ClassVar[list[Any]] = [HasModelPerms]
    throttle_classes: ClassVar[list[Any]] = [OperatorThrottle]
    required_perms: ClassVar[tuple[str, ...]] = ()

    def get_exception_handler(self) -> Any:
        return api_exception_handler


def _messages() -> QuerySet[Message]:
    return Message.objects.select_related("flow")


SEARCH = OpenApiParameter(
    "search",
    str,
    description="A business document number (order, customer, invoice…) found in the payloads, or an exact key.",
)


@extend_schema(
    tags=["messages"], parameters=[MessageFilterSerializer, SEARCH], responses={200: MessageSerializer, **ERRORS}
)
class MessageListApi(OperatorApi, generics.ListAPIView):
    """Messages, newest first, filtered by status, flow, system, time, correlation id, record key or search."""

    required_perms = ("integrations.view_message",)
    serializer_class = MessageSerializer

    def get_queryset(self) -> QuerySet[Message]:
        filters = MessageFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        search = self.request.query_params.get("search", "")
        if len(search) > 255:
            raise InputError("search is longer than 255 characters", field="search")
        queryset = messages_filter(queryset=_messages(), filters=filters.validated_data)
        return messages_search(queryset=queryset, term=search).order_by("-created_at", "-id")


@extend_schema(tags=["messages"], responses={200: MessageDetailSerializer, **ERRORS, 404: ErrorSerializer})
class MessageDetailApi(OperatorApi, generics.RetrieveAPIView):
    """One message with its attempts, payloads and replays."""

    required_perms = ("integrations.view_message", "integrations.view_attempt")
    serializer_class = MessageDetailSerializer

    def get_queryset(self) -> QuerySet[Message]:
        return _messages().prefetch_related("attempt_set", "replays")


def _message(pk: int) -> Message:
    return get_object_or_404(_messages(), pk=pk)


def valid_input(serializer_class: type[Serializer], request: Request) -> dict[str, Any]:
    """The request body validated by serializer_class; a 400 in the one error shape when it does not fit."""
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data


# An action on messages: viewing and changing them. (No docstring: the schema shows the nearest one.)
class _MessageActionApi(OperatorApi, APIView):
    required_perms = ("integrations.view_message", "integrations.change_message")


def _message_action(summary: str, body: type[Serializer], answer: dict[int, Any], **more: Any) -> Any:
    """The schema of a POST on one message: its body, its answer, and what may go wrong (ACTION_ERRORS)."""
    return extend_schema(
        tags=["messages"], summary=summary, request=body, responses={**answer, **ACTION_ERRORS}, **more
    )


class MessageRetryApi(_MessageActionApi):
    @_message_action(
        "Retry one message now, with a fresh attempt budget",
        ReasonSerializer,
        {202: MessageSerializer},
        operation_id="message_retry",
    )
    def post(self, request: Request, pk: int) -> Response:
        message = _message(pk)
        reason = valid_input(ReasonSerializer, request)["reason"]
        if not operator.messages_retry(messages=[message], actor=request.user, reason=reason):
            raise InputError(
                f"message {message.pk} is {message.status}; only {', '.join(operator.RETRYABLE)} can be retried",
                field="status",
                status_code=409,
            )
        message.refresh_from_db()
        return Response(MessageSerializer(message).data, status=status.HTTP_202_ACCEPTED)


class MessagesBulkRetryApi(_MessageActionApi):
    @extend_schema(
        tags=["messages"],
        operation_id="messages_bulk_retry",
        summary="Retry every retryable message matching a filter (at most `limit`)",
        request=BulkRetrySerializer,
        responses={202: CountSerializer, **ERRORS, 400: ErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        filters = valid_input(BulkRetrySerializer, request)
        matching = messages_filter(queryset=_messages(), filters=filters).filter(status__in=operator.RETRYABLE)
        ids = list(matching.order_by("created_at").values_list("pk", flat=True)[: filters["limit"]])
        count = operator.messages_retry(
            messages=Message.objects.filter(pk__in=ids), actor=request.user, reason=filters["reason"]
        )
        return Response({"retried": count}, status=status.HTTP_202_ACCEPTED)


class MessageReplayApi(_MessageActionApi):
    @_message_action(
        "Send a copy of the message, its payload optionally edited; the copy links to the original",
        ReplaySerializer,
        {201: MessageDetailSerializer},
    )
    def post(self, request: Request, pk: int) -> Response:
        message = _message(pk)
        data = valid_input(ReplaySerializer, request)
        try:
            replay = operator.message_replay(
                message=message, actor=request.user, reason=data["reason"], payload=data.get("payload")
            )
        except operator.OperatorError as exc:
            raise InputError(str(exc), field="payload", status_code=400) from None
        replay = _messages().prefetch_related("attempt_set", "replays").get(pk=replay.pk)
        return Response(MessageDetailSerializer(replay).data, status=status.HTTP_201_CREATED)


class MessageDiscardApi(_MessageActionApi):
    @_message_action("Discard a message, saying why", DiscardSerializer, {200: MessageSerializer})
    def post(self, request: Request, pk: int) -> Response:
        message = _message(pk)
        reason = valid_input(DiscardSerializer, request)["reason"]
        try:
            message = operator.message_discard(message=message, actor=request.user, reason=reason)
        except operator.OperatorError as exc:
            field = "reason" if not reason.strip() else "status"
            raise InputError(str(exc), field=field, status_code=400 if field == "reason" else 409) from None
        return Response(MessageSerializer(message).data)


@extend_schema(tags=["configuration"], responses={200: FlowSerializer, **ERRORS})
class FlowListApi(OperatorApi, generics.ListAPIView):
    required_perms = ("integrations.view_flow",)
    serializer_class = FlowSerializer
    queryset = Flow.objects.select_related("source", "target", "inbound", "schedule").order_by("name")


@extend_schema(tags=["configuration"], responses={200: FlowSerializer, **ERRORS, 404: ErrorSerializer})
class FlowDetailApi(OperatorApi, generics.RetrieveAPIView):
    required_perms = ("integrations.view_flow",)
    serializer_class = FlowSerializer
    queryset = Flow.objects.select_related("source", "target", "inbound", "schedule")
    lookup_field = "slug"


class CanPause(BasePermission):
    """Pausing runs the hub rather than configuring it: operators (change_message) and engineers (change_flow)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.has_perm("integrations.view_flow")):
            return False
        return user.has_perm("integrations.change_message") or user.has_perm("integrations.change_flow")


# Per kind of target: its model, and how selectors.overview reads its state after the action.
_TARGETS: dict[str, tuple[type[Flow] | type[System], Callable[..., QuerySet[Any]], Callable[..., tuple[str, str]]]] = {
    "flow": (Flow, overview.flows_with_state, overview.flow_state),
    "system": (System, overview.systems_with_state, overview.system_state),
}
# Per action: the answer's key for what the service returned (paused just now? held messages released),
# and the 200 answer, after "The flow's " or "The system's ".
_OUTCOMES = {"pause": ("changed", "state and held count."), "resume": ("released", "state and how many were released.")}
# Per operation id (the service's name).
_SUMMARIES = {
    "flow_pause": "Pause a flow: its events are still accepted (202) and held until it is resumed",
    "flow_resume": "Resume a paused flow: what it held is delivered, oldest first",
    "system_pause": "Pause a system: every flow from or to it accepts its events and holds them",
    "system_resume": "Resume a paused system: what its flows held is delivered, oldest first",
}


def _target_state(target: Flow | System, kind: str) -> dict[str, Any]:
    model, with_state, state_of = _TARGETS[kind]
    target = with_state(model.objects.filter(pk=target.pk)).get()
    state, why = state_of(target)
    held = target.backlog_n if target.is_held else 0
    return {kind: target.slug, "state": state, "why": why, "held": held, "paused_at": target.paused_at}


# POST pauses or resumes one flow or system (by slug), saying why; answers with its state after.
# No docstring: the schema's description comes from the nearest one, as it did before this base.
class _PauseActionApi(OperatorApi, APIView):
    permission_classes: ClassVar[list[Any]] = [CanPause]
    service: ClassVar[Callable[..., Any]]  # pause.flow_pause …, named "<kind>_<action>"

    def post(self, request: Request, slug: str) -> Response:
        kind, action = self.service.__name__.split("_")
        target = get_object_or_404(_TARGETS[kind][0], slug=slug)
        reason = valid_input(ReasonSerializer, request)["reason"]
        # The services take their target by its kind: pause.flow_pause(flow=…).
        outcome = self.service(**{kind: target}, actor=request.user, reason=reason)
        return Response({**_target_state(target, kind), _OUTCOMES[action][0]: outcome})


def _pause_api(service: Callable[..., Any]) -> type[_PauseActionApi]:
    """The view of one pause service, e.g. pause.flow_pause: FlowPauseApi, documented as operation flow_pause."""
    operation_id = service.__name__
    kind, action = operation_id.split("_")
    name = f"{kind.title()}{action.title()}Api"
    view = type(
        name, (_PauseActionApi,), {"__module__": __name__, "__qualname__": name, "service": staticmethod(service)}
    )
    answer = OpenApiResponse(description=f"The {kind}'s {_OUTCOMES[action][1]}")
    schema = extend_schema(
        tags=["configuration"],
        operation_id=operation_id,
        summary=_SUMMARIES[operation_id],
        request=ReasonSerializer,
        responses={200: answer, **ACTION_ERRORS},
    )
    return extend_schema_view(post=schema)(view)


FlowPauseApi = _pause_api(pause.flow_pause)
FlowResumeApi = _pause_api(pause.flow_resume)
SystemPauseApi = _pause_api(pause.system_pause)
SystemResumeApi = _pause_api(pause.system_resume)


@extend_schema(tags=["configuration"], responses={200: SystemSerializer, **ERRORS})
class SystemListApi(OperatorApi, generics.ListAPIView):
    required_perms = ("integrations.view_system",)
    serializer_class = SystemSerializer
    queryset = System.objects.order_by("name")


@extend_schema(tags=["audit"], responses={200: AuditEntrySerializer, **ERRORS})
class AuditListApi(OperatorApi, generics.ListAPIView):
    """Every operator action, newest first."""

    required_perms = ("integrations.view_auditentry",)
    serializer_class = AuditEntrySerializer
    queryset = AuditEntry.objects.order_by("-at", "-id")
