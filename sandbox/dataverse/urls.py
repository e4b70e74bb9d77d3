from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from sandbox.azuread.resource import Claims, protected
from sandbox.common.faults import slow_after_commit, with_faults
from sandbox.common.result import Result
from sandbox.common.v4 import service_root
from sandbox.dataverse.auth import LIMITS, denied, error, fault_body, throttled
from sandbox.dataverse.batch import batch
from sandbox.dataverse.entities import dispatch
from sandbox.dataverse.store import Call
from sandbox.dataverse.tables import API, EMULATOR


@csrf_exempt
@with_faults(EMULATOR, fault_body)
def api(request: HttpRequest, rest: str) -> HttpResponse:
    def handle(claims: Claims) -> Result:
        call = Call.of(request, rest, service_root(request, f"{EMULATOR}/{API}"), claims=claims)
        if rest == "$batch":
            return batch(call) if call.method == "POST" else error(405, "0x80060888", "$batch takes POST")
        with transaction.atomic():
            result = dispatch(call)
        slow_after_commit(request, result.status)
        return result

    return protected(
        request,
        EMULATOR,
        LIMITS,
        handle,
        denied=denied,
        throttled=throttled,
        remaining_header="x-ms-ratelimit-burst-remaining-xrm-requests",
    )


urlpatterns = [path(f"{API}/<path:rest>", api, name="dataverse-api")]
