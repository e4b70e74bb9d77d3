"""Console pages for the append-only records: attempts, the audit log, record links."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from integrations.admin.common import EstimatedCountPaginator, ReadOnlyAdmin, link_to_message
from integrations.models import Attempt, AuditEntry, RecordLink


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyAdmin):
    list_display = ("message", "number", "started_at", "duration_ms", "outcome", "response_status", "error_class")
    list_filter = ("outcome", "started_at")
    list_select_related = ("message__flow__source", "message__flow__target")
    search_fields = ("=message__id", "=message__correlation_id")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    readonly_fields = (
        "message",
        "number",
        "started_at",
        "duration_ms",
        "outcome",
        "request_summary",
        "response_status",
        "response_excerpt_block",
        "error_class",
        "error_text_block",
    )
    exclude = ("response_excerpt", "error_text")

    @admin.display(description="response excerpt")
    def response_excerpt_block(self, obj: Attempt) -> str:
        if not obj.response_excerpt:
            return "—"
        return format_html("<details><summary>response</summary><pre>{}</pre></details>", obj.response_excerpt)

    @admin.display(description="error text")
    def error_text_block(self, obj: Attempt) -> str:
        if not obj.error_text:
            return "—"
        return format_html("<details open><summary>error</summary><pre>{}</pre></details>", obj.error_text)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor_name", "action", "object_type", "object_id", "message_link", "reason")
    list_filter = ("action", "object_type", "at")
    search_fields = ("=actor_name", "=object_id", "reason")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator

    @admin.display(description="message")
    def message_link(self, obj: AuditEntry) -> str:
        return link_to_message(obj.message_id, prefix="")


@admin.register(RecordLink)
class RecordLinkAdmin(admin.ModelAdmin):
    list_display = ("flow", "source_key", "target_key", "source_version", "target_etag", "synced_at", "message_link")
    list_filter = ("flow",)
    list_select_related = ("flow",)
    search_fields = ("=source_key", "=target_key", "=correlation_id")
    show_full_result_count = False
    readonly_fields = (
        "flow",
        "source_key",
        "target_key",
        "source_version",
        "target_etag",
        "content_hash",
        "correlation_id",
        "last_message",
        "synced_at",
    )

    @admin.display(description="last message")
    def message_link(self, obj: RecordLink) -> str:
        return link_to_message(obj.last_message_id, prefix="")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # links are written by deliveries
