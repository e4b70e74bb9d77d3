"""Control API of the AX emulator's port configuration: the document filters of one inbound port.

GET / PUT / DELETE /sandbox/ax2012/control/document-filters/<Service>; PUT {"filters": [{"CustGroup": "IC"}]}
({} in the list: a filter without ranges). Same permissions as the faults API (FaultSettings model perms).
"""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sandbox.ax2012 import ports
from sandbox.ax2012.schema import SERVICES
from sandbox.control import FaultSettingsPerms


class FiltersSerializer(serializers.Serializer):
    filters = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField(max_length=200, allow_blank=True)), max_length=50
    )


class DocumentFiltersApi(APIView):
    permission_classes = [FaultSettingsPerms]

    def _unknown(self, service: str) -> Response | None:
        if service not in SERVICES:
            return Response({"error": f"no AIF port '{service}'", "field": "service"}, status=404)
        return None

    def get(self, request: Request, service: str) -> Response:
        return self._unknown(service) or Response({"filters": ports.document_filters(service)})

    def put(self, request: Request, service: str) -> Response:
        if unknown := self._unknown(service):
            return unknown
        serializer = FiltersSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ports.set_document_filters(service, serializer.validated_data["filters"])
        return Response({"filters": ports.document_filters(service)})

    def delete(self, request: Request, service: str) -> Response:
        if unknown := self._unknown(service):
            return unknown
        ports.set_document_filters(service, None)
        return Response(status=204)
