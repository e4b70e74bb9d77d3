from collections.abc import Callable

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from sandbox.azuread.resource import Claims, protected
from sandbox.common.faults import slow_after_commit, with_faults
from sandbox.common.result import Result
from sandbox.common.v4 import service_root
from sandbox.finops import packages
from sandbox.finops.auth import LIMITS, denied, error, fault_body, throttled
from sandbox.finops.batch import batch
from sandbox.finops.config import settings_get
from sandbox.finops.control import ChangeTrackingApi
from sandbox.finops.entities import dispatch
from sandbox.finops.model import EMULATOR
from sandbox.finops.services import services
from sandbox.finops.store import Call


def _guarded(request: HttpRequest, handle: Callable[[Claims], Result]) -> HttpResponse:
    """Token, application user, service protection, then the handler."""
    return protected(request, EMULATOR, LIMITS, handle, denied=denied, throttled=throttled)


@csrf_exempt
@with_faults(EMULATOR, fault_body)
def data(request: HttpRequest, rest: str) -> HttpResponse:
    def handle(_claims: Claims) -> Result:
        root = service_root(request, f"{EMULATOR}/data")
        call = Call.of(request, rest, root, default_company=settings_get()["default_company"])
        if rest == "$batch":
            return batch(call) if call.method == "POST" else error(405, "$batch takes POST")
        if rest.startswith(packages.ACTION_PREFIX):
            with transaction.atomic():
                return packages.action(call)
        with transaction.atomic():
            result = dispatch(call)
        slow_after_commit(request, result.status)
        return result

    return _guarded(request, handle)


@csrf_exempt
@with_faults(EMULATOR, fault_body)
def api_services(request: HttpRequest, rest: str = "") -> HttpResponse:
    return _guarded(request, lambda _claims: services(request, rest))


@csrf_exempt
@with_faults(EMULATOR, fault_body)
def recurring(request: HttpRequest, operation: str, activity_id: str) -> HttpResponse:
    def handle(_claims: Claims) -> Result:
        with transaction.atomic():
            return packages.connector(request.method or "GET", operation, activity_id, request.GET.dict(), request.body)

    return _guarded(request, handle)


@csrf_exempt
def dmf_blob(request: HttpRequest, blob_id: str) -> HttpResponse:
    """The package store (Azure blob storage in F&O): the URL carries its signature, so no token."""
    return packages.blob(request.method or "GET", blob_id, request.body).to_http()


urlpatterns = [
    path("data/<path:rest>", data, name="finops-data"),
    path("api/connector/<str:operation>/<str:activity_id>", recurring, name="finops-recurring"),
    path("dmf-blob/<str:blob_id>", dmf_blob, name="finops-dmf-blob"),
    path("control/change-tracking/<str:entity>", ChangeTrackingApi.as_view(), name="finops-change-tracking"),
    path("api/services", api_services, name="finops-services-root"),
    path("api/services/<path:rest>", api_services, name="finops-services"),
]
