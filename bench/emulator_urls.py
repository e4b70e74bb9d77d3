"""Only the emulators and their control API, under /sandbox/ as on the hub: the hub's API is not served here."""

from django.urls import include, path

urlpatterns = [path("sandbox/", include("sandbox.urls"))]
