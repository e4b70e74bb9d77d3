"""Admin mixins for configuration models: changes reach the hub's audit log, secrets never reach a page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from integrations.services.audit import audit_record


class ConfigAuditMixin(admin.ModelAdmin):
    """Every add, change and delete of the row writes an AuditEntry (names of changed fields, never values)."""

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        changed = form.changed_data if form is not None else []
        # A write-only secret left empty keeps the stored one: only a typed secret is a change.
        fields = sorted(name for name in changed if name != "secret" or form.data.get("secret"))
        audit_record(
            actor=request.user,
            action="config_changed" if change else "config_created",
            obj=obj,
            details={"fields": fields, "name": str(obj)},
        )

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        audit_record(actor=request.user, action="config_deleted", obj=obj, details={"name": str(obj)})
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            audit_record(actor=request.user, action="config_deleted", obj=obj, details={"name": str(obj)})
        super().delete_queryset(request, queryset)


class HiddenSecretMixin(admin.ModelAdmin):
    """Who may only view a row sees whether its `secret` is set, never its value.

    Django renders every field of a read-only change view as text, so the write-only form
    field alone protects only users who may edit.
    """

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Sequence[str]:
        fields = list(super().get_fields(request, obj))
        if not self.has_change_permission(request, obj):
            fields = ["secret_hint" if name == "secret" else name for name in fields]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Sequence[str]:
        return (*super().get_readonly_fields(request, obj), "secret_hint")

    @admin.display(description="secret")
    def secret_hint(self, obj: Model) -> str:
        return "•••••• (set)" if getattr(obj, "secret", None) else "(not set)"
