"""Console pages for reconciliation schedules and runs, alert rules and alerts, heartbeats."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from integrations.admin.common import HistoryInline, ReadOnlyAdmin, link_to_message
from monitoring.models import (
    Alert,
    AlertRule,
    Discrepancy,
    Heartbeat,
    ReconciliationRun,
    ReconciliationSchedule,
)
from monitoring.services import alerts, reconciliation


@admin.register(ReconciliationSchedule)
class ReconciliationScheduleAdmin(admin.ModelAdmin):
    list_display = ("flow", "enabled", "every_minutes", "cron", "source_mode", "auto_repair", "last_run")
    list_filter = ("enabled", "source_mode", "auto_repair")
    list_select_related = ("flow",)
    exclude = ("periodic_task",)
    actions = ["run_now"]

    @admin.display(description="last run")
    def last_run(self, obj: ReconciliationSchedule) -> str:
        run = ReconciliationRun.objects.filter(flow_id=obj.flow_id).first()
        if run is None:
            return "—"
        url = reverse("admin:monitoring_reconciliationrun_change", args=[run.pk])
        # format_html takes no format specs ({:%Y…} raises ValueError): the date is formatted first.
        return format_html(
            "<a href='{}'>{}: {} checked, {} discrepancies</a>",
            url,
            f"{run.started_at:%Y-%m-%d %H:%M}",
            run.checked,
            run.discrepancies_count,
        )

    def save_model(self, request: HttpRequest, obj: ReconciliationSchedule, form: Any, change: bool) -> None:
        try:
            reconciliation.schedule_save(schedule=obj)
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)

    def delete_model(self, request: HttpRequest, obj: ReconciliationSchedule) -> None:
        reconciliation.schedule_delete(schedule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ReconciliationSchedule]) -> None:
        for schedule in queryset:
            reconciliation.schedule_delete(schedule=schedule)

    @admin.action(description="Reconcile selected flows now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[ReconciliationSchedule]) -> None:
        for schedule in queryset.select_related("flow__source", "flow__target"):
            run = reconciliation.reconciliation_run(flow=schedule.flow, actor=request.user)
            self.message_user(
                request,
                f"{schedule.flow.slug}: {run.checked} checked, {run.matched} matched, "
                f"{run.missing_in_target} missing in target, {run.missing_in_source} missing in source, "
                f"{run.different} different, {run.missing_from_hub} never reached the hub",
            )


class DiscrepancyInline(HistoryInline):
    model = Discrepancy
    fields = ("kind", "source_key", "target_key", "fields", "source_values", "target_values", "repair", "detail")

    @admin.display(description="repair")
    def repair(self, obj: Discrepancy) -> str:
        return link_to_message(obj.repair_message_id)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


# What a reconciliation run counted, in the list and on its page.
RUN_COUNTS = ("checked", "matched", "missing_in_target", "missing_in_source", "different", "missing_from_hub", "errors")


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = ("flow", "started_at", "status", *RUN_COUNTS)
    list_filter = ("status", "flow")
    list_select_related = ("flow",)
    show_full_result_count = False
    inlines = [DiscrepancyInline]
    readonly_fields = (
        "flow",
        "status",
        "started_at",
        "finished_at",
        *RUN_COUNTS,
        "source_pass",
        "totals_table",
        "error",
    )
    exclude = ("totals",)
    actions = ["repair"]

    @admin.display(description="source listing")
    def source_pass(self, obj: ReconciliationRun) -> str:
        """Whether the source was listed for records that never reached the hub, and if not, why."""
        found = (obj.totals or {}).get(reconciliation.SOURCE_PASS) or {}
        if not found:
            return "—"
        if not found.get("checked"):
            return f"not checkable: {found.get('reason', '')}"
        unkeyed = (
            f", {found['unkeyed']} without their key ({found.get('unkeyed_error', '')})" if found.get("unkeyed") else ""
        )
        return (
            f"{found.get('listed', 0)} listed in {found.get('entity', '')}, {found.get('skipped_by_filter', 0)} "
            f"skipped by the flow's filter, {found.get('missing_from_hub', 0)} never reached the hub{unkeyed}"
        )

    @admin.display(description="business totals")
    def totals_table(self, obj: ReconciliationRun) -> str:
        rows = (obj.totals or {}).get("rows") or []
        if not rows:
            return "—"
        # Values come from the ERPs: escaped as arguments, never used as a format string (braces, markup).
        body = format_html_join(
            "",
            "<tr class='{}'><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    "bad" if str(r.get("difference")) != "0" else "",
                    r.get("day"),
                    r.get("company"),
                    r.get("source"),
                    r.get("target"),
                    r.get("difference"),
                )
                for r in rows
            ),
        )
        return format_html(
            "<table><tr><th>Day</th><th>Company</th><th>Source</th><th>Target</th><th>Difference</th></tr>{}</table>",
            body,
        )

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Nobody edits a run; "change" here only unlocks the repair action for operators.
        return obj is None and request.user.has_perm("integrations.change_message")

    @admin.action(
        description="Repair: re-deliver records missing or different, ingest those that never reached the hub",
        permissions=["change"],
    )
    def repair(self, request: HttpRequest, queryset: QuerySet[ReconciliationRun]) -> None:
        count = reconciliation.discrepancies_repair(
            discrepancies=Discrepancy.objects.filter(run__in=queryset, repair_message__isnull=True),
            actor=request.user,
            reason="repair from the console",
        )
        self.message_user(request, f"Queued {count} re-deliveries.")


@admin.register(Discrepancy)
class DiscrepancyAdmin(ReadOnlyAdmin):
    list_display = ("run", "kind", "source_key", "target_key", "fields", "repaired_at")
    list_filter = ("kind", "run__flow")
    list_select_related = ("run__flow",)
    search_fields = ("=source_key", "=target_key")
    show_full_result_count = False


class AlertInline(HistoryInline):
    model = Alert
    fields = ("opened_at", "resolved_at", "value", "detail")
    ordering = ("-opened_at",)
    max_num = 0


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "flow", "system", "threshold", "window_minutes", "enabled", "state")
    list_filter = ("kind", "enabled")
    list_select_related = ("flow", "system")
    inlines = [AlertInline]
    actions = ["evaluate_now"]

    @admin.display(description="state")
    def state(self, obj: AlertRule) -> str:
        open_alert = obj.alerts.filter(resolved_at__isnull=True).first()
        if open_alert is None:
            return format_html("<span class='ok'>{}</span>", "ok")
        return format_html("<span class='bad'>firing since {}</span>", f"{open_alert.opened_at:%Y-%m-%d %H:%M}")

    @admin.action(description="Evaluate selected rules now", permissions=["change"])
    def evaluate_now(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        result = alerts.alerts_evaluate(rules=queryset.select_related("flow", "system"))
        self.message_user(request, f"{result['opened']} alert(s) opened, {result['resolved']} resolved.")


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("rule", "opened_at", "resolved_at", "value", "detail")
    list_filter = ("rule", "rule__kind")
    list_select_related = ("rule",)


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("name", "seen_at", "details")
