from django.contrib import admin

from sandbox.models import EmulatorRecord, EmulatorSubscription, FaultSettings, RecorderRecord


@admin.register(FaultSettings)
class FaultSettingsAdmin(admin.ModelAdmin):
    list_display = ("emulator", "latency_ms", "error_rate", "throttle_rate", "retry_after_seconds", "down")
    list_editable = ("latency_ms", "error_rate", "throttle_rate", "retry_after_seconds", "down")


@admin.register(RecorderRecord)
class RecorderRecordAdmin(admin.ModelAdmin):
    list_display = ("entity", "key", "version", "writes", "updated_at")
    list_filter = ("entity",)
    search_fields = ("key",)


@admin.register(EmulatorRecord)
class EmulatorRecordAdmin(admin.ModelAdmin):
    list_display = ("emulator", "entity", "company", "key", "version", "deleted", "modified_at")
    list_filter = ("emulator", "entity", "company")
    search_fields = ("=key",)


@admin.register(EmulatorSubscription)
class EmulatorSubscriptionAdmin(admin.ModelAdmin):
    list_display = ("emulator", "event_type", "url", "enabled")
