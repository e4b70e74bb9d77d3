"""Console pages for Flows, mapping versions and ValueMaps."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from integrations.models import Flow, MappingVersion, ValueMap, ValueMapEntry


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin):
    list_display = ("name", "entity", "source", "target", "trigger", "mapping_version", "enabled")
    list_filter = ("enabled", "trigger", "source__kind", "target__kind")
    list_select_related = ("source", "target")
    search_fields = ("name", "slug", "entity")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(MappingVersion)
class MappingVersionAdmin(admin.ModelAdmin):
    list_display = ("flow", "version", "created_by", "created_at", "comment")
    list_select_related = ("flow", "created_by")

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ValueMapEntryInline(admin.TabularInline):
    model = ValueMapEntry
    extra = 1


@admin.register(ValueMap)
class ValueMapAdmin(admin.ModelAdmin):
    list_display = ("name", "description")
    inlines = [ValueMapEntryInline]
