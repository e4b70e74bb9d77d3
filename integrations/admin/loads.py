"""Initial loads in the console: the load runs with a progress bar, and the flow actions that start them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from integrations import errors
from integrations.bulk import load
from integrations.models import Flow, LoadRun


def progress_bar(run: LoadRun) -> str:
    """A plain HTML/CSS bar: read of expected (or an indeterminate stripe while the total is unknown)."""
    progress = load.load_progress(run=run)
    percent = progress["percent"]
    width = percent if percent is not None else 100
    colour = {"done": "#2e7d32", "failed": "#c62828", "cancelled": "#757575"}.get(run.state, "#1565c0")
    label = f"{percent}%" if percent is not None else "…"
    eta = f", ETA {progress['eta_seconds']:.0f} s" if progress["eta_seconds"] is not None else ""
    return format_html(
        '<div class="load-progress" role="progressbar" aria-valuenow="{}" aria-valuemin="0" aria-valuemax="100"'
        ' style="width:16em;background:#e0e0e0;border-radius:3px;overflow:hidden">'
        '<div style="width:{}%;background:{};color:#fff;padding:1px 4px;white-space:nowrap">{}</div></div>'
        "<small>{} read, {} written, {} failed, {} delivered · {} records/s{}</small>",
        percent if percent is not None else "",
        width,
        colour,
        label,
        progress["read"],
        progress["written"],
        progress["failed"],
        progress["delivered"],
        progress["rate_per_second"],
        eta,
    )


@admin.register(LoadRun)
class LoadRunAdmin(admin.ModelAdmin):
    list_display = ("id", "flow", "state", "progress", "started_at", "finished_at")
    list_filter = ("state", "flow")
    list_select_related = ("flow",)
    readonly_fields = (
        "flow",
        "entity",
        "filters",
        "state",
        "progress",
        "expected",
        "read",
        "written",
        "failed",
        "pages",
        "cursor",
        "last_error",
        "started_by",
        "started_at",
        "finished_at",
    )
    fields = readonly_fields
    actions = ["cancel_loads"]

    @admin.display(description="Progress")
    def progress(self, obj: LoadRun) -> str:
        return progress_bar(obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # started from a flow (its action), the API or manage.py initial_load

    @admin.action(description="Cancel selected loads", permissions=["change"])
    def cancel_loads(self, request: HttpRequest, queryset: QuerySet[LoadRun]) -> None:
        cancelled = sum(load.load_cancel(run=run, actor=request.user) for run in queryset.select_related("flow"))
        self.message_user(request, f"Cancelled {cancelled} load(s)")


@admin.action(description="Preview an initial load (count the source records)", permissions=["change"])
def preview_initial_load(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
    for flow in queryset.select_related("source"):
        try:
            count = load.load_preview(flow=flow)
        except (load.LoadError, errors.ConnectorError) as exc:
            modeladmin.message_user(request, f"{flow}: {exc}", level=messages.ERROR)
            continue
        shown = count if count is not None else "an unknown number of"
        modeladmin.message_user(request, f"{flow}: an initial load would read {shown} record(s)")


@admin.action(description="Start an initial load / re-sync", permissions=["change"])
def start_initial_load(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
    for flow in queryset.select_related("source", "target"):
        try:
            run = load.load_start(flow=flow, actor=request.user)
        except (load.LoadError, errors.ConnectorError) as exc:
            modeladmin.message_user(request, f"{flow}: {exc}", level=messages.ERROR)
            continue
        modeladmin.message_user(
            request, f"{flow}: load {run.pk} started, {run.expected if run.expected is not None else '?'} record(s)"
        )
