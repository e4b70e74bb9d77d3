"""Shared pieces of the message console: forms, the estimated-count paginator, JSON panes, read-only admins."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.timesince import timesince

from integrations.models import Message
from integrations.selectors import overview

Status = Message.Status


def ago(when: datetime | None) -> str:
    """ "5 minutes ago", with the exact time on hover; "—" for never."""
    if when is None:
        return "—"
    seconds = (timezone.now() - when).total_seconds()
    text = "just now" if seconds < 60 else f"{timesince(when).split(',')[0]} ago"
    return format_html(
        "<time datetime='{}' title='{}'>{}</time>", when.isoformat(), when.strftime("%Y-%m-%d %H:%M:%S"), text
    )


def state_chip(state: str, why: str = "") -> str:
    return format_html("<span class='icb-chip state-{}' title='{}'>{}</span>", state, why, state)


def pretty_json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _payload(value: object, label: str, open_: bool = False) -> str:
    if value in (None, {}):
        return format_html("<em>{}</em>", "none (not produced yet, or purged by retention)")
    return format_html(
        "<details class='icb-payload'{}><summary>{}</summary><pre>{}</pre></details>",
        " open" if open_ else "",
        label,
        pretty_json(value),
    )


class EstimatedCountPaginator(Paginator):
    """Pages without counting a whole large table.

    Django counts the filtered queryset for the page links; with no filter that is COUNT(*) of the
    table, seconds on millions of rows. An unfiltered queryset on PostgreSQL takes the planner's row
    estimate (pg_class.reltuples, kept by autovacuum) instead, once the table is past exact_below rows.
    """

    exact_below = 20_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if connection.vendor == "postgresql" and isinstance(queryset, QuerySet) and not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                    [queryset.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] >= self.exact_below:
                return int(row[0])
        return super().count


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Kept in the audit log with your name.",
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why: the reason goes into the audit log.")
        return reason


class ReplayForm(ReasonForm):
    payload = forms.CharField(
        widget=forms.Textarea(attrs={"class": "icb-editor", "spellcheck": "false"}),
        help_text="The source payload (payload in) as JSON; it goes through the flow's mapping again.",
    )

    def clean_payload(self) -> dict[str, Any]:
        text = self.cleaned_data["payload"]
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"payload is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from exc
        if not isinstance(value, dict):
            raise forms.ValidationError(f"payload must be a JSON object, got {type(value).__name__}")
        return value


class ResolveForm(ReasonForm):
    side = forms.ChoiceField(
        choices=[
            ("source", "Ours (payload out) — overwrite the target"),
            ("target", "Theirs (target version) — keep the target"),
        ],
        widget=forms.RadioSelect,
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Append-only records: nobody adds, edits or deletes them from the console."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class HistoryInline(admin.TabularInline):
    """Rows recorded under a parent (writes, alerts, discrepancies): shown read-only, none deleted, no blank row."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> Any:
        return self.fields


def object_view_urls(model_admin: admin.ModelAdmin, views: dict[str, Callable[..., HttpResponse]]) -> list[URLPattern]:
    """Pages under one object, each at <object_id>/<suffix>/ and named <app>_<model>_<suffix with _>."""
    opts = model_admin.model._meta
    return [
        path(
            f"<path:object_id>/{suffix}/",
            model_admin.admin_site.admin_view(view),
            name=f"{opts.app_label}_{opts.model_name}_{suffix.replace('-', '_')}",
        )
        for suffix, view in views.items()
    ]


def link_to_message(pk: int | None, *, prefix: str = "message ") -> str:
    """A link to the message's console page, "message 42"; "—" for none."""
    if pk is None:
        return "—"
    url = reverse("admin:integrations_message_change", args=[pk])
    return format_html("<a href='{}'>{}{}</a>", url, prefix, pk)


class NeedsAttentionFilter(admin.SimpleListFilter):
    """The console opens on failed, dead and conflict messages; a search or another filter widens it."""

    title = "attention"
    parameter_name = "attention"
    WIDENING = ("q", "status__exact", "flow__id__exact", "flow__target__id__exact", "flow__source__id__exact")

    def __init__(self, request: HttpRequest, params: Any, model: Any, model_admin: Any) -> None:
        self._widened = any(request.GET.get(name) for name in self.WIDENING)
        super().__init__(request, params, model, model_admin)

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("needs", "Needs attention (failed, dead, conflict, retrying too long)"),
            ("stuck", "Retrying too long"),
            ("open", "In progress"),
            ("all", "All messages"),
        ]

    def value(self) -> str:
        return super().value() or ("all" if self._widened else "needs")

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        if self.value() == "needs":
            return queryset.filter(overview.needs_attention_q())
        if self.value() == "stuck":
            return queryset.filter(overview.stuck_retrying())
        if self.value() == "open":
            return queryset.filter(status__in=(*Message.DELIVERABLE, Status.DELIVERING))
        return queryset
