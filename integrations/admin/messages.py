"""Console pages for Messages, Attempts, RecordLinks and the audit log.

Admin actions call the same services as the API."""

from __future__ import annotations

import json

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from integrations.models import (
    Attempt,
    AuditEntry,
    Message,
    RecordLink,
)
from integrations.services import operator


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "duration_ms", "outcome", "response_status", "error_class", "error_text")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = "attention"
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("needs", "Needs attention (failed, dead, conflict)"), ("open", "In progress")]

    def queryset(self, request: HttpRequest, queryset):  # noqa: ANN201
        if self.value() == "needs":
            return queryset.filter(status__in=Message.NEEDS_ATTENTION)
        if self.value() == "open":
            return queryset.filter(status__in=(*Message.DELIVERABLE, Message.Status.DELIVERING))
        return queryset


def _pretty(value: object) -> str:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "flow", "status", "attempts", "next_attempt_at", "last_error_class", "created_at")
    list_filter = (NeedsAttentionFilter, "status", "flow", "flow__target__kind")
    list_select_related = ("flow__source", "flow__target")
    search_fields = ("=correlation_id", "=source_record_key", "=target_record_key", "=idempotency_key")
    show_full_result_count = False
    date_hierarchy = "created_at"
    inlines = [AttemptInline]
    readonly_fields = (
        "flow",
        "idempotency_key",
        "status",
        "payload_in_pretty",
        "payload_out_pretty",
        "mapping_version",
        "source_record_key",
        "source_version",
        "target_record_key",
        "correlation_id",
        "attempts",
        "next_attempt_at",
        "last_error_class",
        "last_error",
        "delivered_at",
        "replay_of",
    )
    exclude = ("payload_in", "payload_out", "headers", "target_snapshot", "queued_at", "lease_expires_at")
    actions = ["retry_now"]

    @admin.display(description="payload in")
    def payload_in_pretty(self, obj: Message) -> str:
        return _pretty(obj.payload_in)

    @admin.display(description="payload out")
    def payload_out_pretty(self, obj: Message) -> str:
        return _pretty(obj.payload_out)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Retry selected messages now", permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset) -> None:  # noqa: ANN001
        count = operator.messages_retry(messages=queryset, actor=request.user, reason="retry from the console")
        self.message_user(request, f"Requeued {count} message(s)")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyAdmin):
    list_display = ("message", "number", "started_at", "duration_ms", "outcome", "response_status", "error_class")
    list_filter = ("outcome",)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor_name", "action", "object_type", "object_id", "reason")
    list_filter = ("action",)
    search_fields = ("actor_name", "object_id", "reason")


@admin.register(RecordLink)
class RecordLinkAdmin(admin.ModelAdmin):
    list_display = ("flow", "source_key", "target_key", "source_version", "target_etag", "synced_at")
    list_select_related = ("flow",)
    search_fields = ("=source_key", "=target_key", "=correlation_id")
