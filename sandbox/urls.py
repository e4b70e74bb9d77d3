"""Each emulator is served under /sandbox/<name>/ by the hub itself; control under /sandbox/control/."""

from django.urls import include, path

from sandbox import control

urlpatterns = [
    path("control/<slug:emulator>/faults", control.FaultsApi.as_view(), name="sandbox-faults"),
    path("control/<slug:emulator>/reset", control.ResetApi.as_view(), name="sandbox-reset"),
    path("recorder/", include("sandbox.emulators.recorder")),
    path("azuread/", include("sandbox.emulators.azuread")),
    path("dataverse/", include("sandbox.emulators.dataverse")),
    path("finops/", include("sandbox.emulators.finops")),
    path("ax2012/", include("sandbox.emulators.ax2012")),
    path("s4hana/", include("sandbox.emulators.s4hana")),
]
