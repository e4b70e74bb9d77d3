"""Each emulator is served under /sandbox/<name>/ by the hub itself; control under /sandbox/control/."""

from django.urls import include, path

from sandbox import control
from sandbox.registry import descriptors

urlpatterns = [
    path("control/<slug:emulator>/faults", control.FaultsApi.as_view(), name="sandbox-faults"),
    path("control/<slug:emulator>/reset", control.ResetApi.as_view(), name="sandbox-reset"),
    *(path(f"{emulator.name}/", include(emulator.urls)) for emulator in descriptors()),
]
