"""Routes under /api/: webhook ingress and the operator API."""

from django.urls import path

from monitoring.views import health

urlpatterns = [
    path("health", health, name="api-health"),
]
