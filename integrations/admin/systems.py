"""Console pages for Systems, CompanyLinks and inbound endpoints."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from integrations.admin.audit import ConfigAuditMixin, HiddenSecretMixin
from integrations.admin.pausing import PausableAdminMixin, pause_actions
from integrations.egress import egress_refusal
from integrations.models import CompanyLink, InboundEndpoint, System
from integrations.pipeline import pause
from integrations.services.record_keys import rekey_links
from integrations.services.systems import system_test_connection


class WriteOnlySecretForm(forms.ModelForm):
    """A form whose `secret` is never rendered back; left empty, the stored secret stays."""

    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Never shown again after saving. Leave empty to keep the stored secret.",
    )

    def clean_secret(self) -> str:
        return self.cleaned_data["secret"] or (self.instance.secret if self.instance.pk else "")

    def _egress_checked(self, name: str) -> str:
        url = self.cleaned_data.get(name) or ""
        if url and (refusal := egress_refusal(url)):
            raise forms.ValidationError(f"The hub may not connect there: {refusal}.")
        return url

    def clean_base_url(self) -> str:
        return self._egress_checked("base_url")

    def clean_auth_url(self) -> str:
        return self._egress_checked("auth_url")

    def clean_jwks_url(self) -> str:
        return self._egress_checked("jwks_url")


class SystemForm(WriteOnlySecretForm):
    class Meta:
        model = System
        fields = [
            "name",
            "slug",
            *System.CONNECTION_FIELDS,
            "secret",
            "scope",
            "settings",
            *System.LIMIT_FIELDS,
            "enabled",
        ]


@admin.register(System)
class SystemAdmin(PausableAdminMixin, HiddenSecretMixin, ConfigAuditMixin, admin.ModelAdmin):
    form = SystemForm
    list_display = ("title", "kind", "state_chip", "waiting", "endpoint", "auth_type", "secret_hint")
    list_display_links = ("title",)
    list_filter = ("kind", "enabled")
    search_fields = ("name", "slug", "base_url")
    prepopulated_fields = {"slug": ("name",)}
    actions = ["pause_systems", "resume_systems", "test_connection"]
    pause_systems, resume_systems = pause_actions("system", pause.system_pause, pause.system_resume)

    @admin.display(description="base URL", ordering="base_url")
    def endpoint(self, obj: System) -> str:
        return format_html("<span class='icb-url' title='{}'>{}</span>", obj.base_url, obj.base_url)

    # It signs in with the System's own credentials: for who may configure it, not for every viewer.
    @admin.action(description="Test connection (token, reachability, permissions)", permissions=["change"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[System]) -> None:
        for system in queryset:
            report = system_test_connection(system=system, actor=request.user)
            level = messages.SUCCESS if report.ok else messages.ERROR
            self.message_user(request, f"{system.name}: {report.summary()}", level=level)


@admin.register(CompanyLink)
class CompanyLinkAdmin(ConfigAuditMixin, admin.ModelAdmin):
    list_display = ("name", "company_a", "system_a", "company_b", "system_b", "currency")
    list_select_related = ("system_a", "system_b")


class InboundEndpointForm(WriteOnlySecretForm):
    class Meta:
        model = InboundEndpoint
        fields = [
            "flow",
            "system",
            "auth_type",
            "credential_name",
            "username",
            "secret",
            "timestamp_tolerance_seconds",
            "jwt_issuer",
            "jwt_audience",
            "jwks_url",
            "id_pointer",
            "id_header",
            "record_key_pointer",
            "version_pointer",
            "allowed_origins",
            "max_body_bytes",
            "throttle_rate",
        ]


@admin.register(InboundEndpoint)
class InboundEndpointAdmin(HiddenSecretMixin, ConfigAuditMixin, admin.ModelAdmin):
    """Who may send events to a flow or system, and where an event's id is (webhook ingress)."""

    form = InboundEndpointForm
    list_display = ("__str__", "flow", "system", "auth_type", "throttle_rate")
    list_filter = ("auth_type",)
    list_select_related = ("flow", "system")
    search_fields = ("flow__slug", "system__slug")

    def save_model(self, request: HttpRequest, obj: InboundEndpoint, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "record_key_pointer" in form.changed_data:  # the links take the new key form
            rekeyed = rekey_links(obj, previous=form.initial.get("record_key_pointer") or "")
            self.message_user(request, f"Record key pointer changed: {rekeyed}.")
