"""Console pages for the sandbox: fault injection per emulator, and what the emulators hold."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from integrations.admin.common import HistoryInline
from sandbox.common.faults import FIELDS as FAULT_FIELDS
from sandbox.common.faults import clear_faults
from sandbox.models import EmulatorRecord, EmulatorSubscription, FaultSettings, RecorderRecord, RecorderWrite
from sandbox.registry import EMULATORS, descriptor


def _pretty(value: object) -> str:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


class FaultSettingsForm(forms.ModelForm):
    emulator = forms.ChoiceField(choices=[(name, name) for name in EMULATORS])

    class Meta:
        model = FaultSettings
        fields = ["emulator", *FAULT_FIELDS]

    def clean(self) -> dict:
        cleaned = super().clean()
        for rate in ("error_rate", "throttle_rate"):
            value = cleaned.get(rate)
            if value is not None and not 0 <= value <= 1:
                self.add_error(rate, f"{rate} must be between 0 and 1 (a share of calls), got {value}")
        return cleaned


@admin.register(FaultSettings)
class FaultSettingsAdmin(admin.ModelAdmin):
    form = FaultSettingsForm
    list_display = ("emulator", *FAULT_FIELDS)
    list_editable = FAULT_FIELDS
    actions = ["clear_selected", "reset_emulator_data"]

    @admin.action(description="Clear the faults of the selected emulators", permissions=["change"])
    def clear_selected(self, request: HttpRequest, queryset: QuerySet[FaultSettings]) -> None:
        names = list(queryset.values_list("emulator", flat=True))
        for name in names:
            clear_faults(name)
        self.message_user(request, f"Cleared faults of {', '.join(names)}.")

    @admin.action(description="Reset the selected emulators (delete their data and faults)", permissions=["delete"])
    def reset_emulator_data(self, request: HttpRequest, queryset: QuerySet[FaultSettings]) -> None:
        for name in list(queryset.values_list("emulator", flat=True)):
            clear_faults(name)
            if name not in EMULATORS:
                self.message_user(request, f"{name}: no emulator module to reset.", messages.WARNING)
                continue
            descriptor(name).reset()
            self.message_user(request, f"{name}: reset.")


class RecorderWriteInline(HistoryInline):
    model = RecorderWrite
    fields = ("at", "idempotency_key", "correlation_id", "applied")
    ordering = ("-at",)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(RecorderRecord)
class RecorderRecordAdmin(admin.ModelAdmin):
    list_display = ("entity", "key", "version", "writes", "updated_at")
    list_filter = ("entity",)
    search_fields = ("=key",)
    readonly_fields = ("payload_pretty", "version", "writes", "created_at", "updated_at")
    inlines = [RecorderWriteInline]

    @admin.display(description="payload")
    def payload_pretty(self, obj: RecorderRecord) -> str:
        return _pretty(obj.payload)


@admin.register(EmulatorRecord)
class EmulatorRecordAdmin(admin.ModelAdmin):
    list_display = ("emulator", "entity", "company", "key", "version", "deleted", "modified_at")
    list_filter = ("emulator", "entity", "company", "deleted")
    search_fields = ("=key",)
    show_full_result_count = False


@admin.register(EmulatorSubscription)
class EmulatorSubscriptionAdmin(admin.ModelAdmin):
    list_display = ("emulator", "event_type", "url", "enabled")
    list_filter = ("emulator", "enabled")
