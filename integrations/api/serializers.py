"""Serializers of the operator API. Secrets never leave: a System or InboundEndpoint says only whether one is set."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from integrations.flow_options import options_problems
from integrations.flow_schedule import schedule_problem
from integrations.models import Attempt, AuditEntry, Flow, InboundEndpoint, Message, System
from integrations.polling.schedules import schedulable_problem


class SystemSerializer(serializers.ModelSerializer):
    secret_set = serializers.SerializerMethodField()

    class Meta:
        model = System
        fields = [
            "id",
            "name",
            "slug",
            *System.CONNECTION_FIELDS,
            "scope",
            "secret_set",
            *System.LIMIT_FIELDS,
            "enabled",
            "created_at",
            "updated_at",
        ]

    def get_secret_set(self, system: System) -> bool:
        return bool(system.secret)


class InboundEndpointSerializer(serializers.ModelSerializer):
    secret_set = serializers.SerializerMethodField()

    class Meta:
        model = InboundEndpoint
        fields = ["auth_type", "credential_name", "username", "secret_set", "throttle_rate", "max_body_bytes"]

    def get_secret_set(self, endpoint: InboundEndpoint) -> bool:
        return bool(endpoint.secret)


class FlowSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    target = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    inbound = serializers.SerializerMethodField()
    schedule_cron = serializers.SerializerMethodField(help_text="The schedule as a cron line with its time zone.")

    class Meta:
        model = Flow
        fields = [
            "id",
            "name",
            "slug",
            "entity",
            "source",
            "target",
            "trigger",
            "schedule",
            "schedule_cron",
            "target_entity",
            "target_operation",
            "target_key_fields",
            "mapping_version",
            "master",
            "conflict_policy",
            "retry_policy",
            "options",
            "enabled",
            "inbound",
            "created_at",
            "updated_at",
        ]

    def validate_options(self, value: Any) -> dict[str, Any]:
        """The schema of integrations.flow_options: each problem names its key path and what is allowed."""
        problems = options_problems({} if value is None else value)
        if problems:
            raise serializers.ValidationError(problems)
        return {} if value is None else value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Trigger and schedule together (integrations.flow_schedule), as Flow.clean and the console check them."""
        trigger = attrs.get("trigger", getattr(self.instance, "trigger", Flow.Trigger.WEBHOOK))
        schedule = attrs["schedule"] if "schedule" in attrs else getattr(self.instance, "schedule_id", None)
        if problem := schedule_problem(trigger=trigger, has_schedule=schedule is not None):
            raise serializers.ValidationError({"schedule": problem})
        source = getattr(self.instance, "source", None)
        if trigger == Flow.Trigger.SCHEDULE and source and (problem := schedulable_problem(source.kind)):
            raise serializers.ValidationError({"trigger": problem})
        return attrs

    def get_schedule_cron(self, flow: Flow) -> str | None:
        return str(flow.schedule) if flow.schedule_id else None

    @extend_schema_field(InboundEndpointSerializer(allow_null=True))
    def get_inbound(self, flow: Flow) -> dict[str, Any] | None:
        try:
            endpoint = flow.inbound
        except InboundEndpoint.DoesNotExist:
            return None
        return InboundEndpointSerializer(endpoint).data


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Attempt
        exclude = ["message"]  # every field of the try: it is shown nested in its message


class MessageSerializer(serializers.ModelSerializer):
    flow = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "flow",
            "status",
            "idempotency_key",
            "source_record_key",
            "source_version",
            "target_record_key",
            "correlation_id",
            "attempts",
            "next_attempt_at",
            "last_error_class",
            "last_error",
            "replay_of",
            "created_at",
            "updated_at",
            "delivered_at",
        ]


class MessageDetailSerializer(MessageSerializer):
    attempt_set = AttemptSerializer(many=True, read_only=True)
    replays = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta(MessageSerializer.Meta):
        fields = [
            *MessageSerializer.Meta.fields,
            "payload_in",
            "payload_fetched",
            "payload_out",
            "headers",
            "mapping_version",
            "target_snapshot",
            "force_overwrite",
            "replays",
            "attempt_set",
        ]


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["id", "at", "actor_name", "action", "object_type", "object_id", "message", "reason", "details"]


class MessageFilterSerializer(serializers.Serializer):
    """Query parameters of the message list, also the body of a bulk retry (applied by selectors.messages)."""

    status = serializers.CharField(required=False, help_text="One status or several, comma-separated.")
    flow = serializers.SlugField(required=False, help_text="Flow slug.")
    system = serializers.SlugField(required=False, help_text="System slug, as source or target.")
    since = serializers.DateTimeField(required=False, help_text="Created at or after (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Created before (ISO 8601).")
    correlation_id = serializers.CharField(required=False, max_length=100)
    source_record_key = serializers.CharField(required=False, max_length=255)
    q = serializers.CharField(
        required=False, max_length=255, help_text="Search idempotency key, record keys and correlation id."
    )

    def validate_status(self, value: str) -> list[str]:
        statuses = [part.strip() for part in value.split(",") if part.strip()]
        unknown = [s for s in statuses if s not in Message.Status.values]
        if unknown or not statuses:
            raise serializers.ValidationError(
                f"unknown status {', '.join(unknown) or repr(value)}; use {', '.join(Message.Status.values)}"
            )
        return statuses

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "must be later than since"})
        return attrs


class BulkRetrySerializer(MessageFilterSerializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=5000, default=1000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if not any(attrs.get(name) for name in MessageFilterSerializer().fields):
            raise serializers.ValidationError("give at least one filter; retrying every message is not an accident")
        return attrs


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")


class DiscardSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, help_text="Why; kept in the audit log.")


class ReplaySerializer(serializers.Serializer):
    payload = serializers.JSONField(required=False, help_text="Edited payload; omit to send the original again.")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")

    def validate_payload(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        return value


class CountSerializer(serializers.Serializer):
    retried = serializers.IntegerField()
