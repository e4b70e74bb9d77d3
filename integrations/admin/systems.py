"""Console pages for Systems and CompanyLinks."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from integrations.models import CompanyLink, System
from integrations.services.systems import system_test_connection


class SystemForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Never shown again after saving. Leave empty to keep the stored secret.",
    )

    class Meta:
        model = System
        fields = [
            "name",
            "slug",
            "kind",
            "base_url",
            "auth_type",
            "auth_url",
            "client_id",
            "secret",
            "scope",
            "settings",
            "timeout_seconds",
            "rate_limit_per_second",
            "batch_size",
            "enabled",
        ]

    def clean_secret(self) -> str:
        return self.cleaned_data["secret"] or (self.instance.secret if self.instance.pk else "")


@admin.register(System)
class SystemAdmin(admin.ModelAdmin):
    form = SystemForm
    list_display = ("name", "kind", "base_url", "auth_type", "secret_hint", "enabled")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "slug", "base_url")
    prepopulated_fields = {"slug": ("name",)}
    actions = ["test_connection"]

    @admin.action(description="Test connection (token, reachability, permissions)", permissions=["view"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[System]) -> None:
        for system in queryset:
            report = system_test_connection(system=system, actor=request.user)
            level = messages.SUCCESS if report.ok else messages.ERROR
            self.message_user(request, f"{system.name}: {report.summary()}", level=level)


@admin.register(CompanyLink)
class CompanyLinkAdmin(admin.ModelAdmin):
    list_display = ("name", "company_a", "system_a", "company_b", "system_b", "currency")
    list_select_related = ("system_a", "system_b")
