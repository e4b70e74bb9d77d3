from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", include("integrations.api.urls")),
    path("monitoring/", include("monitoring.urls")),
    path("sandbox/", include("sandbox.urls")),
]
