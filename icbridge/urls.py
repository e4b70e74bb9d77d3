"""The hub's routes; the sandbox emulators only when ICBRIDGE_SANDBOX is on (the demo and the tests)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from monitoring import views as monitoring_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", include("integrations.views")),  # chain page, scenario templates (before the admin site)
    path("admin/", admin.site.urls),
    path("api/", include("integrations.api.urls")),
    path("monitoring/", include("monitoring.urls")),
    path("metrics", monitoring_views.metrics, name="metrics-root"),  # where Prometheus looks by default
]
if settings.ICBRIDGE_SANDBOX:
    # Emulators take anonymous writes and fault settings by design: never on a production hub by default.
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
