"""Console pages for Flows (mapping editor, preview, enable/disable), mapping versions and ValueMaps.

Saving a flow's mapping goes through services.mappings.flow_mapping_save, as the API does: the spec
is validated (every problem named by field), the previous version is kept, the change is audited.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from integrations import mapping
from integrations.admin.audit import ConfigAuditMixin
from integrations.admin.common import ago, object_view_urls
from integrations.admin.loads import preview_initial_load, start_initial_load
from integrations.admin.pausing import PausableAdminMixin, pause_actions
from integrations.flow_options import options_problems
from integrations.models import Flow, MappingVersion, Message, ValueMap, ValueMapEntry
from integrations.pipeline import pause, preview
from integrations.polling import schedules
from integrations.retry import RetryPolicy
from integrations.scenarios.payloads import message_payload
from integrations.services import mappings
from integrations.services.audit import audit_record

CODE = {"style": "font-family: monospace; width: 100%;", "spellcheck": "false"}


class PrettyJSONField(forms.JSONField):
    """JSON shown indented, so a spec is editable by hand."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class FlowForm(forms.ModelForm):
    mapping_spec = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={**CODE, "rows": 24}),
        help_text="The mapping (docs/mapping.md). Saving a change validates it and keeps the previous version.",
    )
    mapping_comment = forms.CharField(
        required=False, max_length=200, help_text="Why the mapping changed; kept with the new version."
    )
    retry_policy = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={**CODE, "rows": 4}),
        help_text='e.g. {"max_attempts": 8, "backoff": {"1": 10, "3": 60, "5": 600}, "jitter": 0.2}',
    )
    options = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={**CODE, "rows": 8}),
        help_text="The flow's options (docs/flow-options.md): unknown keys and ill-typed values are refused.",
    )

    class Meta:
        model = Flow
        fields = (
            "name",
            "slug",
            "entity",
            "source",
            "target",
            "company_link",
            "trigger",
            "schedule",
            "enabled",
            "target_entity",
            "target_operation",
            "target_key_fields",
            "options",
            "mapping_spec",
            "master",
            "conflict_policy",
            "retry_policy",
        )
        help_texts = {
            "schedule": "Trigger 'schedule' only: when the flow reads its source (a cron line). Pick one, add one "
            "with +, or change the chosen one with the pencil; its beat task is under Periodic tasks.",
        }

    def clean_mapping_spec(self) -> dict[str, Any]:
        spec = self.cleaned_data.get("mapping_spec") or {}
        if not isinstance(spec, dict):
            raise ValidationError("The mapping spec must be a JSON object.")
        problems = mapping.validate_spec(spec)
        if problems:
            raise ValidationError(problems)
        return spec

    def clean_options(self) -> dict[str, Any]:
        options = self.cleaned_data.get("options")
        if options is None:  # an emptied box: no options
            return {}
        problems = options_problems(options)  # each names its key path and what is allowed
        if problems:
            raise ValidationError(problems)
        return options

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        source = cleaned.get("source")
        if cleaned.get("trigger") == Flow.Trigger.SCHEDULE and source is not None:
            if problem := schedules.schedulable_problem(source.kind):
                self.add_error("trigger", problem)
        return cleaned

    def clean_retry_policy(self) -> dict[str, Any]:
        policy = self.cleaned_data.get("retry_policy") or {}
        if not isinstance(policy, dict):
            raise ValidationError("The retry policy must be a JSON object.")
        RetryPolicy.from_data(policy)  # raises a ValidationError that names the setting
        return policy


@admin.register(Flow)
class FlowAdmin(PausableAdminMixin, ConfigAuditMixin, admin.ModelAdmin):
    form = FlowForm
    list_display = ("title", "state_chip", "route", "trigger", "waiting", "oldest", "last_ok", "mapping_version")
    list_display_links = ("title",)
    list_filter = ("enabled", "trigger", "source__kind", "target__kind")
    list_select_related = ("source", "target")
    search_fields = ("name", "slug", "entity")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("mapping_version", "mapping_tools")
    actions = [
        "pause_flows",
        "resume_flows",
        "enable_flows",
        "disable_flows",
        "preview_initial_load",
        "start_initial_load",
    ]
    # Initial loads (integrations.admin.loads): the same services as the API and manage.py initial_load.
    preview_initial_load = preview_initial_load
    start_initial_load = start_initial_load
    pause_flows, resume_flows = pause_actions("flow", pause.flow_pause, pause.flow_resume)
    fieldsets = (
        (None, {"fields": ("name", "slug", "entity", "source", "target", "company_link", "enabled")}),
        ("When it runs", {"fields": ("trigger", "schedule")}),
        ("Target", {"fields": ("target_entity", "target_operation", "target_key_fields", "options")}),
        ("Mapping", {"fields": ("mapping_version", "mapping_tools", "mapping_spec", "mapping_comment")}),
        ("Ownership and retries", {"fields": ("master", "conflict_policy", "retry_policy")}),
    )

    @admin.display(description="route", ordering="source__name")
    def route(self, obj: Flow) -> str:
        route = f"{obj.source.name} → {obj.target.name}"
        return format_html("<span class='icb-route' title='{}'>{}</span>", route, route)

    @admin.display(description="oldest waiting", ordering="oldest_waiting")
    def oldest(self, obj: Flow) -> str:
        return ago(obj.oldest_waiting)

    @admin.display(description="last success", ordering="last_success")
    def last_ok(self, obj: Flow) -> str:
        return ago(obj.last_success)

    @admin.display(description="mapping tools")
    def mapping_tools(self, obj: Flow) -> str:
        if not obj.pk:
            return "Save the flow first to preview its mapping."
        preview = reverse("admin:integrations_flow_mapping_preview", args=[obj.pk])
        versions = reverse("admin:integrations_mappingversion_changelist") + f"?flow__id__exact={obj.pk}"
        return format_html('<a href="{}">Preview mapping</a> · <a href="{}">Version history</a>', preview, versions)

    def save_model(self, request: HttpRequest, obj: Flow, form: forms.ModelForm, change: bool) -> None:
        new_spec = form.cleaned_data.get("mapping_spec") or {}
        if change and "mapping_spec" in form.changed_data:
            # The spec changes only through the service, which versions and audits it.
            obj.mapping_spec = Flow.objects.values_list("mapping_spec", flat=True).get(pk=obj.pk)
        super().save_model(request, obj, form, change)
        if not change or "mapping_spec" in form.changed_data:
            version = mappings.flow_mapping_save(
                flow=obj, spec=new_spec, actor=request.user, comment=form.cleaned_data.get("mapping_comment", "")
            )
            if change:
                self.message_user(request, f"Mapping saved as version {version.version}.")

    def get_urls(self) -> list[Any]:
        return object_view_urls(self, {"mapping-preview": self.mapping_preview_view}) + super().get_urls()

    def mapping_preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Paste or pick a sample payload and see what the current or a draft spec makes of it."""
        flow = get_object_or_404(Flow.objects.select_related("source", "target", "company_link"), pk=object_id)
        if not self.has_view_permission(request, flow):
            raise PermissionDenied
        recent = list(
            flow.messages.order_by("-created_at").values("pk", "idempotency_key", "status", "created_at")[:15]
        )
        payload_text = spec_text = ""
        result: preview.Preview | None = None
        problems: list[str] = []
        if request.method == "POST":
            payload_text = request.POST.get("payload", "")
            spec_text = request.POST.get("spec", "")
            payload = _parse_json(payload_text, "sample payload", problems)
            spec = _parse_json(spec_text, "draft spec", problems) if spec_text.strip() else None
            if not problems:
                result = preview.mapping_preview(flow=flow, payload=payload, spec=spec)
        else:
            chosen = request.GET.get("message") or (recent[0]["pk"] if recent else None)
            if chosen:
                picked = Message.objects.filter(flow=flow, pk=chosen).only("payload_in", "payload_fetched").first()
                # What the mapping read: the event with what was fetched for it.
                sample = message_payload(picked) if picked is not None else None
                if sample is not None:
                    payload_text = json.dumps(sample, indent=2, ensure_ascii=False)
            spec_text = json.dumps(flow.mapping_spec, indent=2, ensure_ascii=False)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": flow,
            "title": f"Preview mapping of {flow.name} (version {flow.mapping_version})",
            "flow": flow,
            "recent": recent,
            "payload_text": payload_text,
            "spec_text": spec_text,
            "problems": problems + (result.errors if result else []),
            "output": json.dumps(result.output, indent=2, ensure_ascii=False) if result and not result.errors else None,
        }
        return TemplateResponse(request, "admin/integrations/flow/mapping_preview.html", context)

    @admin.action(description="Enable selected flows", permissions=["change"])
    def enable_flows(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        self.message_user(request, f"Enabled {_set_enabled(queryset, True, request.user)} flow(s)")

    @admin.action(description="Disable selected flows (refuse their events)", permissions=["change"])
    def disable_flows(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        self.message_user(request, f"Disabled {_set_enabled(queryset, False, request.user)} flow(s)")


def _set_enabled(queryset: QuerySet[Flow], enabled: bool, actor: Any) -> int:
    count = 0
    for flow in queryset.filter(enabled=not enabled):
        Flow.objects.filter(pk=flow.pk).update(enabled=enabled)
        flow.enabled = enabled
        schedules.flow_schedule_sync(flow=flow)  # update() sends no post_save
        audit_record(actor=actor, action="flow_enable" if enabled else "flow_disable", obj=flow)
        count += 1
    return count


def _parse_json(text: str, what: str, problems: list[str]) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        problems.append(f"The {what} is not valid JSON: {exc}")
        return None


@admin.register(MappingVersion)
class MappingVersionAdmin(admin.ModelAdmin):
    """Read-only history; a version can be made current again (as a new version)."""

    list_display = ("flow", "version", "created_by", "created_at", "comment", "is_current")
    list_filter = ("flow",)
    list_select_related = ("flow", "created_by")
    fields = ("flow", "version", "created_by", "created_at", "comment", "changes", "spec_pretty")
    readonly_fields = fields
    actions = ["restore"]

    @admin.display(description="spec")
    def spec_pretty(self, obj: MappingVersion) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(obj.spec, indent=2))

    @admin.display(description="changes from the previous version")
    def changes(self, obj: MappingVersion) -> str:
        previous = (
            MappingVersion.objects.filter(flow_id=obj.flow_id, version__lt=obj.version).order_by("-version").first()
        )
        if previous is None:
            return "(first version)"
        diff = difflib.unified_diff(
            json.dumps(previous.spec, indent=2, sort_keys=True).splitlines(),
            json.dumps(obj.spec, indent=2, sort_keys=True).splitlines(),
            f"version {previous.version}",
            f"version {obj.version}",
            lineterm="",
        )
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", "\n".join(diff) or "(no change)")

    @admin.display(description="current", boolean=True)
    def is_current(self, obj: MappingVersion) -> bool:
        return obj.version == obj.flow.mapping_version

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_restore_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.change_flow")

    @admin.action(
        description="Make the selected version current again (saved as a new version)", permissions=["restore"]
    )
    def restore(self, request: HttpRequest, queryset: QuerySet[MappingVersion]) -> None:
        for version in queryset.select_related("flow"):
            try:
                saved = mappings.flow_mapping_save(
                    flow=version.flow,
                    spec=version.spec,
                    actor=request.user,
                    comment=f"restored version {version.version}",
                )
            except ValidationError as exc:
                self.message_user(request, f"{version}: {'; '.join(exc.messages)}", level=messages.ERROR)
            else:
                self.message_user(
                    request, f"{version.flow.slug}: version {version.version} is current as {saved.version}"
                )


class ValueMapEntryInline(admin.TabularInline):
    model = ValueMapEntry
    extra = 1


class CsvImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with the header source_value,target_value (UTF-8).")
    replace = forms.BooleanField(required=False, help_text="Delete entries that are not in the file.")


@admin.register(ValueMap)
class ValueMapAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "entry_count", "updated_at")
    search_fields = ("name", "description", "entries__source_value")
    readonly_fields = ("csv_tools",)
    inlines = [ValueMapEntryInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ValueMap]:
        return super().get_queryset(request).annotate(entry_total=Count("entries"))

    @admin.display(description="entries", ordering="entry_total")
    def entry_count(self, obj: ValueMap) -> int:
        return obj.entry_total

    @admin.display(description="CSV")
    def csv_tools(self, obj: ValueMap) -> str:
        if not obj.pk:
            return "Save the value map first to import entries."
        return format_html(
            '<a href="{}">Import entries from CSV</a> · <a href="{}">Export entries as CSV</a>',
            reverse("admin:integrations_valuemap_import_csv", args=[obj.pk]),
            reverse("admin:integrations_valuemap_export_csv", args=[obj.pk]),
        )

    def get_urls(self) -> list[Any]:
        views = {"import-csv": self.import_csv_view, "export-csv": self.export_csv_view}
        return object_view_urls(self, views) + super().get_urls()

    def export_csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        value_map = get_object_or_404(ValueMap, pk=object_id)
        if not self.has_view_permission(request, value_map):
            raise PermissionDenied
        response = HttpResponse(mappings.value_map_export_csv(value_map=value_map), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{value_map.name}.csv"'
        return response

    def import_csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        value_map = get_object_or_404(ValueMap, pk=object_id)
        if not self.has_change_permission(request, value_map):
            raise PermissionDenied
        problems: list[str] = []
        form = CsvImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            raw = form.cleaned_data["file"].read()
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                problems = ["The file is not UTF-8 text."]
            else:
                try:
                    counts = mappings.value_map_import_csv(
                        value_map=value_map, text=text, actor=request.user, replace=form.cleaned_data["replace"]
                    )
                except ValidationError as exc:
                    problems = list(exc.messages)
                else:
                    self.message_user(
                        request,
                        f"Imported into {value_map.name}: {counts['created']} new, {counts['updated']} changed, "
                        f"{counts['deleted']} deleted.",
                    )
                    return HttpResponseRedirect(reverse("admin:integrations_valuemap_change", args=[value_map.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": value_map,
            "title": f"Import entries into {value_map.name}",
            "form": form,
            "problems": problems,
        }
        return TemplateResponse(request, "admin/integrations/valuemap/import_csv.html", context)
