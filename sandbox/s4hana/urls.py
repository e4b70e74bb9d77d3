"""The OData endpoint of each service: service document, $metadata, resources, $batch; CSRF tokens on
request. Also the URLs of the token service and the document operations."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path, re_path
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt

from sandbox.common.faults import slow_after_commit, with_faults
from sandbox.s4hana.auth import authenticate, csrf_refused, csrf_valid, issue_csrf_token, oauth_token, unauthorized
from sandbox.s4hana.batch import batch
from sandbox.s4hana.documents import emulator_operation
from sandbox.s4hana.model import load_service
from sandbox.s4hana.reads import Context, query_params
from sandbox.s4hana.reply import GatewayError, error_reply, fault_body
from sandbox.s4hana.store import EMULATOR
from sandbox.s4hana.writes import handle

MODIFYING = {"POST", "PUT", "PATCH", "MERGE", "DELETE"}


def _service_root(request: HttpRequest, service: str) -> str:
    return request.build_absolute_uri(f"/sandbox/s4hana/sap/opu/odata/sap/{service}")


@csrf_exempt
@with_faults(EMULATOR, fault_body)
def odata(request: HttpRequest, service: str, resource: str = "") -> HttpResponse:
    user = authenticate(request)
    if user is None:
        return unauthorized()
    method = request.method.upper()
    if method in MODIFYING and not csrf_valid(request, user):
        return csrf_refused()
    try:
        model = load_service(service)
    except GatewayError as error:
        return error_reply(service, error).to_http()
    ctx = Context(service=model, base=_service_root(request, service), user=user)
    if resource in ("", "/"):
        response = JsonResponse({"d": {"EntitySets": list(model.sets)}})
    elif resource == "$metadata":
        response = HttpResponse(model.metadata, content_type="application/xml")
        response["Last-Modified"] = http_date(0)
    elif resource == "$batch":
        if method != "POST":
            return error_reply(service, GatewayError(405, "/IWBEP/CM_MGW_RT/025", "$batch needs POST")).to_http()
        response = batch(ctx, request)
    else:
        query = query_params(request.META.get("QUERY_STRING", ""))
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            response = handle(ctx, method, resource, query, headers, request.body).to_http()
        except GatewayError as error:
            response = error_reply(service, error).to_http()
        slow_after_commit(request, response.status_code)
    if method in ("GET", "HEAD") and request.headers.get("x-csrf-token", "").lower() == "fetch":
        issue_csrf_token(request, response, user)
    return response


urlpatterns = [
    path("oauth/token", oauth_token, name="s4hana-oauth-token"),
    re_path(
        r"^emulator/(?P<operation>outbound-deliveries|billing-documents)$", emulator_operation, name="s4hana-emulator"
    ),
    re_path(r"^sap/opu/odata/sap/(?P<service>\w+)/?$", odata, name="s4hana-service"),
    re_path(r"^sap/opu/odata/sap/(?P<service>\w+)/(?P<resource>.+)$", odata, name="s4hana-odata"),
]
